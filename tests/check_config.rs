//! `arcp-gateway check-config` (also `--structure-only`) and `schema`: exit status and the
//! `file:line:column: path: message` + `hint:` form on stderr (fixtures in
//! tests/fixtures/config).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
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
             unknown field `acces`, expected one of name, path, methods, access, require_pin, registration, own_agent",
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
// --- `check-config --structure-only` ------------------------------------------------------

/// Runs check-config with `args` and no secret in the environment.
fn check_config_without_secrets(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arcp-gateway"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check-config")
        .args(args);
    for (name, _) in EXAMPLE_ENV {
        cmd.env_remove(name);
    }
    cmd.output().expect("run arcp-gateway")
}

#[test]
fn structure_only_passes_without_the_secrets_the_full_check_needs() {
    let full = check_config_without_secrets(&[EXAMPLE]);
    assert_eq!(
        full.status.code(),
        Some(1),
        "stdout: {}",
        text(&full.stdout)
    );
    assert!(
        text(&full.stderr).contains("environment variable `ARCP_ADMIN_PASSWORD` is not set"),
        "stderr: {}",
        text(&full.stderr)
    );

    let out = check_config_without_secrets(&["--structure-only", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config/gateway.example.yaml: ok\n");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn structure_only_reads_no_secret_key_or_certificate_file() {
    // Every file this config names is missing; only the structure is checked.
    let dir = std::env::temp_dir().join(format!(
        "arcp-gateway-structure-only-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        r#"listeners:
  - address: 127.0.0.1:8443
    tls: {cert_file: /nonexistent/tls.crt, key_file: /nonexistent/tls.key}
upstream:
  url: https://127.0.0.1:8001
  ca_file: /nonexistent/ca.pem
  service_account: {username: admin, password_file: /nonexistent/password}
  token_verification: {algorithm: HS256, secret_env: ARCP_CFGTEST_UNSET_SECRET}
auth:
  signing_key: ed
  keys:
    - {kid: ed, algorithm: EdDSA, private_key_file: /nonexistent/ed.pem, public_key_file: /nonexistent/ed.pub.pem}
    - {kid: hs, algorithm: HS256, secret_file: /nonexistent/hs}
admin: {address: 127.0.0.1:9901}
"#,
    )
    .unwrap();
    let path = config.display().to_string();
    let out = check_config_without_secrets(&["--structure-only", &path]);
    let full = check_config_without_secrets(&[&path]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{path}: ok\n"));
    assert_eq!(
        full.status.code(),
        Some(1),
        "the full check reads the files"
    );
}

#[test]
fn structure_only_still_reports_type_reference_and_cross_field_errors() {
    let cases = [
        // unknown key (step 1)
        (
            UNKNOWN_KEY,
            "tests/fixtures/config/unknown-key-in-rule.yaml:15:7: routes.rules[1].acces: ",
        ),
        // a rule across fields (step 2)
        (
            "tests/fixtures/config/sessions-absolute-shorter.yaml",
            "tests/fixtures/config/sessions-absolute-shorter.yaml:11:21: sessions.absolute_timeout: \
             must not be shorter than sessions.idle_timeout",
        ),
        // a signing kid that names no key
        (
            "tests/fixtures/config/unknown-signing-kid.yaml",
            "tests/fixtures/config/unknown-signing-kid.yaml:10:16: auth.signing_key: \
             no key with kid `mian` in auth.keys",
        ),
        (
            UPSTREAM_PATH,
            "tests/fixtures/config/upstream-path.yaml:8:8: upstream.url: ",
        ),
    ];
    for (file, prefix) in cases {
        let out = check_config_without_secrets(&["--structure-only", file]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: stderr: {stderr}");
        assert!(stderr.starts_with(prefix), "{file}: stderr: {stderr}");
    }
}

#[test]
fn structure_only_still_requires_a_secret_reference() {
    let dir = std::env::temp_dir().join(format!(
        "arcp-gateway-structure-only-ref-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners:\n\
         \x20 - {address: 127.0.0.1:8443, plain_http: true}\n\
         upstream:\n\
         \x20 url: http://127.0.0.1:8001\n\
         \x20 service_account: {username: admin}\n",
    )
    .unwrap();
    let out = check_config_without_secrets(&["--structure-only", &config.display().to_string()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("upstream.service_account: missing `password_env` or `password_file`"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn structure_only_accepts_every_shipped_config() {
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("config/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files.extend(
        [
            "deploy/compose/gateway.yaml",
            "deploy/kubernetes/base/gateway.yaml",
            "deploy/kubernetes/overlays/example/gateway.yaml",
            "deploy/systemd/gateway.yaml",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = std::iter::once("--structure-only")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = check_config_without_secrets(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), files.len());
}

// --- `schema` ------------------------------------------------------------------------------

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
        .arg("schema")
        .output()
        .expect("run arcp-gateway schema");
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/schema/config.schema.json"
    ))
    .unwrap();
    assert!(
        text(&out.stdout) == committed,
        "deploy/schema/config.schema.json is out of date; run \
         `cargo run -q -- schema > deploy/schema/config.schema.json`"
    );
}

#[test]
fn shipped_configs_point_editors_at_the_schema() {
    for file in ["config/default.yaml", "config/gateway.example.yaml"] {
        let text =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../deploy/schema/config.schema.json"),
            "{file}"
        );
    }
}

#[test]
fn the_demo_config_refuses_a_non_loopback_listener() {
    let out = Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--listen", "0.0.0.0:0"])
        .envs(EXAMPLE_ENV)
        .output()
        .expect("run arcp-gateway");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("would listen on 0.0.0.0:0") && stderr.contains("--danger-demo-on-network"),
        "stderr: {stderr}"
    );
}
