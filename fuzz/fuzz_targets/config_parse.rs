//! Configuration parsing (`config::from_str`) on arbitrary text, and the structure-only
//! check (`config::check_structure`, what `check-config --structure-only` runs).
//!
//! Relative paths resolve against a scratch directory holding `signing.secret`,
//! `jwt.secret` and `admin.password`; the environment holds the `FUZZ_*` and `ARCP_*`
//! secrets the seeds name.
//!
//! Invariants: no error message and no `Debug` of the settings shows a secret value (unless
//! the text itself holds it); whatever loads also passes the structure-only check (checked
//! for one loadable input in four).
#![no_main]

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::sync::LazyLock;

use arcp_gateway::config;
use libfuzzer_sys::fuzz_target;

const FILE_SECRET: &str = "fuzz-secret-from-a-file-0123456789abcdef";

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    common::set_env();
    let dir = std::env::temp_dir().join(format!("arcp-gateway-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    for name in ["signing.secret", "jwt.secret", "admin.password"] {
        std::fs::write(dir.join(name), format!("{FILE_SECRET}\n")).expect("secret file");
    }
    dir
});

const SECRETS: [&str; 5] = [
    common::SIGNING_SECRET,
    common::OLD_SECRET,
    common::JWT_SECRET,
    common::ADMIN_PASSWORD,
    FILE_SECRET,
];

fn assert_no_secret(text: &str, shown: &str) {
    for secret in SECRETS {
        if shown.contains(secret) {
            assert!(text.contains(secret), "a secret value leaked: {shown}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = &*DIR;
    match config::from_str(text, "fuzz.yaml", dir) {
        Err(e) => assert_no_secret(text, &e.to_string()),
        Ok(settings) => {
            assert_no_secret(text, &format!("{settings:?}"));
            // Writing and parsing again halves the rate on loadable inputs: one in four
            // (picked by content, so a crash input reproduces) is also checked.
            if data.iter().fold(0u8, |a, b| a.wrapping_add(*b)) % 4 != 0 {
                return;
            }
            let file = dir.join("fuzz.yaml");
            std::fs::write(&file, text).expect("write the config");
            if let Err(e) = config::check_structure(&file) {
                panic!("loads but fails the structure-only check: {e}");
            }
        }
    }
});
