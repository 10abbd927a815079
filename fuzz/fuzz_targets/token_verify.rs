//! Token classification and verification (`auth::Tokens::verify`).
//!
//! Input: a mode byte, then data.
//! * `v` (or any other byte): the data is the bearer token, verified as is.
//! * `g`: `HEADER\nPAYLOAD` (JSON as bytes), signed with the gateway key `k1` (HS256):
//!   claims and headers the fuzzer picks behind a valid signature (fast and general path).
//! * `u`: the same, signed with ARCP's `JWT_SECRET` (HS256, or HS384/HS512 if the header
//!   says so): the upstream-claims checks.
//! * `m`: byte edits (`index`, `byte` pairs) applied to a genuine gateway token.
//!
//! Invariants: the per-thread kept verdict equals a fresh verification; a verified gateway
//! token is unexpired, agrees with the general path
//! (`gateway_claims`) whenever that accepts it, and an edited genuine token that still
//! verifies names the same session and expiry; a verified upstream token is never `admin`.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use arcp_gateway::auth::token::TokenError;
use arcp_gateway::auth::{Tokens, Verified};
use arcp_gateway::session::SessionId;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    tokens: Tokens,
    sid: SessionId,
    exp: i64,
    genuine: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let tokens = common::tokens();
    let sid = SessionId::from_hex("0123456789abcdef0123456789abcdef").expect("sid");
    let exp = tokens.clock().now() + 24 * 3600;
    let genuine = tokens.issue("ARCP", &sid, exp).expect("issue");
    Fixture {
        tokens,
        sid,
        exp,
        genuine,
    }
});

fn split_once(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, b"{}"),
    }
}

fn check(f: &Fixture, token: &str, edited_genuine: bool) {
    let now = f.tokens.clock().now();
    // Each token is verified twice: the second answer may be the kept verdict of the first
    // (or of an earlier input), and must be what a fresh verification says.
    let verified = f.tokens.verify(token);
    assert_eq!(f.tokens.verify(token), verified, "a kept verdict differs");
    assert_eq!(f.tokens.verify_afresh(token), verified, "a kept verdict differs afresh");
    let general = f.tokens.gateway_claims(token);
    match &verified {
        Ok(Verified::Gateway(t)) => {
            assert!(t.exp > now, "an expired gateway token verified");
            if let Ok(claims) = &general {
                assert_eq!(SessionId::from_hex(&claims.sid), Some(t.sid));
                assert_eq!(claims.exp, t.exp);
            }
            if edited_genuine {
                assert_eq!((t.sid, t.exp), (f.sid, f.exp), "an edited token verified");
            }
        }
        Ok(Verified::Upstream(claims)) => {
            assert_ne!(claims.role, "admin", "an upstream admin token verified");
            assert!(
                !edited_genuine,
                "an edited gateway token verified as upstream"
            );
        }
        Err(TokenError::Expired { .. }) | Err(_) => {}
    }
    // The general path never accepts what admission refuses.
    if let Ok(claims) = &general {
        match &verified {
            Ok(Verified::Gateway(t)) => assert_eq!(claims.exp, t.exp),
            other => panic!("gateway_claims accepted a token verify refused: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'g' => {
            let (header, payload) = split_once(rest);
            let token = common::sign_raw(header, payload, Algorithm::HS256, common::SIGNING_SECRET);
            check(f, &token, false);
        }
        b'u' => {
            let (header, payload) = split_once(rest);
            let text = String::from_utf8_lossy(header);
            let algorithm = if text.contains("HS512") {
                Algorithm::HS512
            } else if text.contains("HS384") {
                Algorithm::HS384
            } else {
                Algorithm::HS256
            };
            let token = common::sign_raw(header, payload, algorithm, common::JWT_SECRET);
            check(f, &token, false);
        }
        b'm' => {
            let mut bytes = f.genuine.clone().into_bytes();
            for pair in rest.chunks_exact(2) {
                let i = pair[0] as usize * 7 % (bytes.len() + 1);
                match pair[1] {
                    // Truncate, insert or replace, always keeping ASCII (a valid &str).
                    0 => bytes.truncate(i),
                    b @ 1..=0x7f if i == bytes.len() => bytes.push(b),
                    b @ 1..=0x7f => bytes[i] = b,
                    b => bytes.insert(i, b & 0x7f),
                }
            }
            let token = String::from_utf8(bytes).expect("ASCII");
            check(f, &token, token != f.genuine);
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(f, token, false);
            }
        }
    }
});
