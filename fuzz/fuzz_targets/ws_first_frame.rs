//! The WebSocket first frame (`pipeline::parse_first_frame`, the I/O-free part of the
//! socket admission in src/pipeline/websocket.rs).
//!
//! Input: a mode byte (even: dashboard socket, odd: agent socket), then the frame text. The
//! placeholders `$GW` and `$UP` in the text become a genuine gateway token and a genuine
//! upstream agent token, so the fuzzer gets past the signature check.
//!
//! Invariants: refusals close with the socket kind's code (4001/4003 dashboard, 1008
//! agent); an accepted frame's token verifies as the class it was accepted as; a gateway
//! token is accepted only with its non-empty fingerprint; a dashboard never accepts an
//! upstream token.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use arcp_gateway::auth::{Tokens, Verified};
use arcp_gateway::pipeline::{parse_first_frame, Claimed};
use arcp_gateway::session::SessionId;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Fixture {
    tokens: Tokens,
    gateway: String,
    upstream: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let tokens = common::tokens();
    let now = tokens.clock().now();
    let sid = SessionId::from_hex("00112233445566778899aabbccddeeff").expect("sid");
    let gateway = tokens.issue("ARCP", &sid, now + 24 * 3600).expect("issue");
    let upstream = common::upstream_token(now + 23 * 3600);
    Fixture {
        tokens,
        gateway,
        upstream,
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let dashboard = mode % 2 == 0;
    let text = text.replace("$GW", &f.gateway).replace("$UP", &f.upstream);
    let token_of = |frame: &serde_json::Map<String, Value>| match frame.get("token") {
        Some(Value::String(t)) => t.clone(),
        other => panic!("accepted a frame whose token is {other:?}"),
    };
    match parse_first_frame(&f.tokens, dashboard, &text) {
        Err((code, reason)) => {
            assert!(!reason.is_empty());
            if dashboard {
                assert!(code == 4001 || (code == 4003 && reason == "admin role required"));
            } else {
                assert_eq!(code, 1008);
            }
        }
        Ok(Claimed::Gateway(t, fingerprint, frame)) => {
            assert!(!fingerprint.is_empty());
            assert_eq!(frame.get("fingerprint"), Some(&Value::String(fingerprint)));
            let token = token_of(&frame);
            assert_eq!(f.tokens.verify(&token), Ok(Verified::Gateway(t)));
            assert_eq!(f.tokens.verify_afresh(&token), Ok(Verified::Gateway(t)));
        }
        Ok(Claimed::Upstream(claims)) => {
            assert!(!claims.is_registration_phase(), "a registration-phase token opened an agent socket");
            assert!(!dashboard, "a dashboard socket accepted an upstream token");
            let frame: serde_json::Map<String, Value> =
                serde_json::from_str(&text).expect("an accepted frame is a JSON object");
            let token = token_of(&frame);
            assert!(matches!(f.tokens.verify(&token), Ok(Verified::Upstream(_))));
            assert!(matches!(f.tokens.verify_afresh(&token), Ok(Verified::Upstream(_))));
        }
    }
});
