//! `arcp-gateway check-config`: exit status and the `file:line:column: path: message` +
//! `hint:` form on stderr (fixtures in tests/fixtures/config).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const EXAMPLE: &str = "config/gateway.example.yaml";
const UNKNOWN_KEY: &str = "tests/fixtures/config/unknown-key-in-rule.yaml";
const UPSTREAM_PATH: &str = "tests/fixtures/config/upstream-path.yaml";

/// Secrets the example names, as check-config reads them.
const EXAMPLE_ENV: [(&str, &str); 3] = [
    ("ARCP_ADMIN_PASSWORD", "example-admin-password"),
    ("ARCP_JWT_SECRET", "example-upstream-jwt-secret"),
    (
        "ARCP_GATEWAY_SIGNING_SECRET",
        "example-gateway-signing-secret-0123456789abcdef",
    ),
];

fn check_config(files: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check-config")
        .args(files)
        .envs(EXAMPLE_ENV)
        .output()
        .expect("run arcp-gateway")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

#[test]
fn unknown_key_exits_1_with_location_path_message_and_hint() {
    let out = check_config(&[UNKNOWN_KEY]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(text(&out.stdout), "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "tests/fixtures/config/unknown-key-in-rule.yaml:15:7: routes.rules[1].acces: \
             unknown field `acces`, expected one of name, path, methods, access, require_pin",
            "  hint: check the spelling; config/gateway.example.yaml lists every key",
        ]
    );
}

#[test]
fn upstream_url_with_path_exits_1_with_location_path_message_and_hint() {
    let out = check_config(&[UPSTREAM_PATH]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "stderr: {stderr}");
    assert!(
        lines[0].starts_with(
            "tests/fixtures/config/upstream-path.yaml:8:8: upstream.url: \
             the URL must not have a path"
        ),
        "stderr: {stderr}"
    );
    assert_eq!(lines[1], "  hint: for example `http://127.0.0.1:8001`");
}

#[test]
fn example_config_is_ok() {
    let out = check_config(&[EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config/gateway.example.yaml: ok\n");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn every_file_is_checked_and_one_failure_fails_the_run() {
    let out = check_config(&[UNKNOWN_KEY, EXAMPLE, UPSTREAM_PATH]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(text(&out.stdout), "config/gateway.example.yaml: ok\n");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("  hint: "))
        .collect();
    assert_eq!(errors.len(), 2, "stderr: {stderr}");
    assert!(errors[0].starts_with("tests/fixtures/config/unknown-key-in-rule.yaml:15:7: "));
    assert!(errors[1].starts_with("tests/fixtures/config/upstream-path.yaml:8:8: "));
    for (_, secret) in EXAMPLE_ENV {
        assert!(!stderr.contains(secret));
    }
}

#[test]
fn unknown_gateway_endpoint_exits_1_with_its_line() {
    let file = "tests/fixtures/config/unknown-gateway-endpoint.yaml";
    let out = check_config(&[file]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(
            "tests/fixtures/config/unknown-gateway-endpoint.yaml:12:25: \
             routes.rules[0].access.gateway: unknown variant `whoami`, expected one of live, ready, login"
        ),
        "stderr: {stderr}"
    );
}
