//! Broken configuration files under `tests/fixtures/config`: each names in its header the
//! `line:column`, dotted path, message and hint its error must have.

use std::path::{Path, PathBuf};

use super::{env_lock, fixture_dir};
use crate::config::load;

/// What a fixture's header comments expect.
#[derive(Debug, Default)]
struct Expectation {
    line: u64,
    /// `None` when the fixture says `*`.
    column: Option<u64>,
    /// Empty for `(document)`.
    path: String,
    message: String,
    contains: Vec<String>,
    hint: Option<String>,
    absent: Vec<String>,
    env: Vec<(String, String)>,
    unset: Vec<String>,
    defect: Option<String>,
}

fn parse_header(file: &Path, text: &str) -> Expectation {
    let name = file.display();
    let mut exp = Expectation::default();
    let mut saw_expect = false;
    let mut last = "";
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let body = line.trim_start_matches('#');
        if let Some(more) = body.strip_prefix("   ") {
            if last == "defect" {
                if let Some(d) = exp.defect.as_mut() {
                    d.push(' ');
                    d.push_str(more.trim());
                }
            }
            continue;
        }
        let Some((key, value)) = body.trim().split_once(": ") else {
            last = "";
            continue;
        };
        let value = value.trim_end().to_owned();
        last = match key {
            "expect" => {
                let (loc, rest) = value
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{name}: `# expect:` needs LINE:COLUMN: PATH: MSG"));
                let (line, column) = loc
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{name}: `# expect:` needs LINE:COLUMN"));
                let (path, message) = rest
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{name}: `# expect:` needs PATH: MESSAGE"));
                exp.line = line.parse().expect("expect: line number");
                exp.column = (column != "*").then(|| column.parse().expect("expect: column"));
                exp.path = if path == "(document)" {
                    String::new()
                } else {
                    path.to_owned()
                };
                exp.message = message.to_owned();
                saw_expect = true;
                "expect"
            }
            "hint" => {
                exp.hint = Some(value);
                "hint"
            }
            "contains" => {
                exp.contains.push(value);
                "contains"
            }
            "absent" => {
                exp.absent.push(value);
                "absent"
            }
            "env" => {
                let (k, v) = value
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}: `# env:` needs NAME=value"));
                exp.env.push((k.to_owned(), v.to_owned()));
                "env"
            }
            "unset" => {
                exp.unset.push(value);
                "unset"
            }
            "defect" => {
                exp.defect = Some(value);
                "defect"
            }
            _ => "",
        };
    }
    assert!(saw_expect, "{name}: no `# expect:` line at the top");
    exp
}

fn fixtures() -> Vec<(PathBuf, Expectation)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/config")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture text");
            let exp = parse_header(&path, &text);
            (path, exp)
        })
        .collect()
}

/// Loads a fixture (caller holds the env lock) and lists how the result misses its
/// expectation; empty when it meets it.
fn check_fixture(file: &Path, exp: &Expectation) -> Vec<String> {
    for (k, v) in &exp.env {
        std::env::set_var(k, v);
    }
    for k in &exp.unset {
        std::env::remove_var(k);
    }
    let err = match load(file) {
        Ok(_) => return vec!["loaded without an error".to_owned()],
        Err(e) => e,
    };
    let mut problems = Vec::new();
    let got = format!(
        "got {}:{}: {}: {}",
        err.line,
        err.column,
        if err.path.is_empty() {
            "(document)"
        } else {
            &err.path
        },
        err.message
    );
    if err.line != exp.line || exp.column.is_some_and(|c| c != err.column) {
        let column = exp.column.map_or("*".to_owned(), |c| c.to_string());
        problems.push(format!("location: want {}:{column}; {got}", exp.line));
    }
    if err.path != exp.path {
        problems.push(format!("path: want `{}`; {got}", exp.path));
    }
    for fragment in std::iter::once(&exp.message).chain(&exp.contains) {
        if !err.message.contains(fragment.as_str()) {
            problems.push(format!("message: want it to contain `{fragment}`; {got}"));
        }
    }
    match (&exp.hint, &err.hint) {
        (Some(want), Some(hint)) if hint.contains(want.as_str()) => {}
        (Some(want), hint) => problems.push(format!("hint: want `{want}`; got {hint:?}")),
        (None, _) => {}
    }
    let shown = err.to_string();
    let prefix = format!(
        "{}:{}:{}: {}: ",
        file.display(),
        err.line,
        err.column,
        if err.path.is_empty() {
            "(document)"
        } else {
            &err.path
        }
    );
    if !shown.starts_with(&prefix) {
        problems.push(format!(
            "display: want it to start with `{prefix}`; got `{shown}`"
        ));
    }
    let debug = format!("{err:?}");
    let secrets = exp.env.iter().map(|(_, v)| v);
    for text in exp.absent.iter().chain(secrets) {
        if shown.contains(text.as_str()) || debug.contains(text.as_str()) {
            problems.push(format!("the error shows `{text}`: {shown}"));
        }
    }
    problems
}

#[test]
fn broken_fixtures_fail_with_expected_location_path_and_message() {
    let _env = env_lock();
    let all = fixtures();
    assert!(all.len() >= 10, "only {} fixtures", all.len());
    let mut failures = Vec::new();
    let mut met = 0;
    for (file, exp) in &all {
        let problems = check_fixture(file, exp);
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if exp.defect.is_some() {
            failures.push(format!(
                "{name}: `# defect:` lines are not allowed; a fixture states correct behaviour"
            ));
        } else if problems.is_empty() {
            met += 1;
        } else {
            failures.push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures that miss their expectation:\n{}",
        failures.join("\n")
    );
    assert!(met >= 8, "only {met} fixtures without a known defect");
}
