//! YAML configuration, parsed in two steps.
//!
//! 1. [`raw`]: a serde mirror of the file with unknown keys rejected. Type errors come out
//!    of serde-saphyr with a line and column, and `serde_path_to_error` adds the dotted
//!    path (`routes.rules[3].access`).
//! 2. [`settings`]: typed settings that are valid by construction: cross-field rules are
//!    checked, secrets are read from their references, key and certificate files are parsed.
//!
//! Every error names the file, `line:column`, the dotted path and, where one helps, a hint.
//! No secret value ever appears in an error.

pub(crate) mod raw;
pub mod schema;
pub(crate) mod secret;
pub mod settings;
pub(crate) mod units;

use std::fmt;
use std::path::Path;

pub use crate::observability::LogFormat;
pub use crate::secret::Secret;
pub use settings::*;

/// The built-in ARCP route profile (docs/design.md §5), also shipped as `config/routes/arcp.yaml`.
pub const ARCP_PROFILE: &str = include_str!("../config/routes/arcp.yaml");

/// The embedded default configuration (`config/default.yaml`), used by `run` without
/// `--config`. Its relative paths resolve against the working directory.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.yaml");

/// Loads the embedded default configuration.
pub fn load_default() -> Result<Settings, ConfigError> {
    from_str(
        DEFAULT_CONFIG,
        "(embedded config/default.yaml)",
        Path::new("."),
    )
}

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Dotted path of the offending key (`upstream.url`), empty for the document root.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, ": {path}: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message: format!("cannot read the file: {e}"),
        hint: None,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_str(&text, &file, base)
}

/// Checks the file at `path` without reading anything it refers to (`check-config
/// --structure-only`): syntax, types, unknown keys and every rule across fields, but no
/// environment variable and no file it names (secrets, keys, certificates, CA bundles) —
/// for pipelines that validate configs without access to the secrets.
pub fn check_structure(path: &Path) -> Result<(), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message: format!("cannot read the file: {e}"),
        hint: None,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let raw: raw::RawConfig = parse_yaml(&text, &file)?;
    let ctx = Ctx {
        file: &file,
        base,
        structure_only: true,
    };
    // The settings built here hold placeholders for what was not read; they are dropped.
    settings::build(raw, &ctx).map(drop)
}

/// Parses configuration text. `file` names it in errors; relative paths inside resolve
/// against `base`.
pub fn from_str(text: &str, file: &str, base: &Path) -> Result<Settings, ConfigError> {
    let raw: raw::RawConfig = parse_yaml(text, file)?;
    let ctx = Ctx {
        file,
        base,
        structure_only: false,
    };
    settings::build(raw, &ctx)
}

/// Context for locating errors of step 2.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub base: &'a Path,
    /// Read no secret, key or certificate the file names; use placeholders
    /// ([`check_structure`]).
    pub structure_only: bool,
}

impl Ctx<'_> {
    pub fn err(
        &self,
        at: serde_saphyr::Location,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: at.line(),
            column: at.column(),
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// Resolves a path written in the file relative to the file's directory.
    pub fn resolve(&self, p: &str) -> std::path::PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }
}

/// Step 1: YAML into a raw mirror, with location and dotted path on failure.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, ConfigError> {
    let mut failed_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            failed_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = clean_message(&e.without_snippet().to_string());
        let mut path = clean_path(&failed_path);
        // serde cannot name a duplicated key; the message does.
        if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
            if failed_path.ends_with('?') {
                path = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
            }
        }
        let hint = hint_for(&message);
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            path,
            message,
            hint,
        }
    })
}

/// Drops the `value` steps that [`serde_saphyr::Spanned`] wrappers add to a path.
fn clean_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.split('.')
        .filter(|seg| *seg != "value" && *seg != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// serde-saphyr's rendering repeats the location; keep the first line of the message only.
fn clean_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered).trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let first = match first.find(", set DuplicateKeyPolicy") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches('.').to_owned()
}

fn hint_for(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some("check the spelling; config/gateway.example.yaml lists every key".into())
    } else if message.contains("unknown variant") {
        Some("use one of the values listed in the message".into())
    } else if message.contains("duplicate mapping key") {
        Some("each key may appear once per mapping; remove one of them".into())
    } else if message.contains("illegal placement of ':'")
        || message.contains("mapping values are not allowed")
    {
        Some(
            "check for an unclosed `[` or `{`, or wrong indentation, on this or an earlier line"
                .into(),
        )
    } else if message.contains("missing field") {
        Some("this key is required here; see config/gateway.example.yaml".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
