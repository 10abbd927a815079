//! Path normalisation (`pipeline::frame::normalise_path`) and route lookup
//! (`policy::Policy::route` on the built-in ARCP profile).
//!
//! Input: `METHOD PATH` (no space: `GET` and the whole input as the path).
//!
//! Invariants: a normalised path starts with `/`, has no `//`, `\`, NUL or dot segment,
//! and its escapes are upper-case and not of an unreserved character or of `.`, `/`, `\`,
//! `%` or NUL; normalising is idempotent (and borrows when nothing changes); inputs with
//! `\` or NUL are refused; the route of a path does not depend on a trailing slash.
#![no_main]

#[path = "common.rs"]
mod common;

use std::borrow::Cow;
use std::sync::LazyLock;

use arcp_gateway::config;
use arcp_gateway::pipeline::frame::normalise_path;
use arcp_gateway::policy::Policy;
use http::Method;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    common::set_env();
    config::load_default()
        .expect("embedded default config")
        .policy
});

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~' | b'.')
}

fn check_normal(path: &str) {
    let b = path.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "{path:?}");
    assert!(!path.contains("//"), "{path:?}");
    assert!(!path.contains('\\') && !path.contains('\0'), "{path:?}");
    assert!(path.split('/').all(|s| s != "." && s != ".."), "{path:?}");
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (b[i + 1], b[i + 2]);
            assert!(
                matches!(h, b'0'..=b'9' | b'A'..=b'F') && matches!(l, b'0'..=b'9' | b'A'..=b'F'),
                "{path:?}"
            );
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).expect("hex"), 16)
                .expect("hex");
            assert!(
                !is_unreserved(v) && !matches!(v, b'/' | b'\\' | b'%' | 0),
                "{path:?}"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, raw) = match text.split_once(' ') {
        Some((m, p)) => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => (m, p),
            Err(_) => return,
        },
        None => (Method::GET, text),
    };
    let normal = match normalise_path(raw) {
        Ok(p) => p,
        Err(_) => return,
    };
    assert!(!raw.contains('\\') && !raw.contains('\0'));
    check_normal(&normal);
    match normalise_path(&normal) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, &*normal),
        other => panic!("normalising {normal:?} again gave {other:?}"),
    }
    let policy = &*POLICY;
    let route = policy.route(&method, &normal);
    let with_slash = format!("{normal}/");
    let again = policy.route(&method, &with_slash);
    assert_eq!(
        (route.name, route.access, route.require_pin),
        (again.name, again.access, again.require_pin),
        "{normal:?} and {with_slash:?} route differently"
    );
});
