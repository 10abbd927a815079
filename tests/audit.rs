//! The per-person audit trail: an admitted state-changing admin request
//! yields exactly one JSON line naming the user, the session's public reference, the client,
//! the method, the normalised path, whether the PIN was used, the statuses and the request
//! id; reads, refused requests and logins yield none; no token, PIN or fingerprint is written.
//!
//! The real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub (tests/sessions_pin.rs
//! has the PIN flows in detail).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
mod common;

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use common::arcp_profile::*;
use common::arcp_stub::*;
use common::jwt::*;
use common::{Proto, TempDir, TestGateway};

/// The test PIN: '~' and '!' never occur in a JWT, a hex id or a base64 value, so finding it
/// in what upstream received or in a log line cannot be a coincidence.
const PIN: &str = "48~27!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_protected_delete_yields_one_audit_line_naming_the_user() {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let dir = TempDir::new();
    let trail = dir.path().join("audit.jsonl");
    let opts = keys
        .options(&stub.url(), &ArcpConfig::default())
        .section("audit", json!({ "file": trail }));
    let gw = TestGateway::start(opts).await;
    stub.wait_for_logins(1, Duration::from_secs(20)).await;
    let send = |req| gw.client.send(Proto::H1, req);

    let fp = "fp-audit";
    let resp = send(admin_login(fp)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let token = resp.json()["access_token"].as_str().unwrap().to_owned();
    let sid = claims_of(&token)["sid"].as_str().unwrap().to_owned();

    let pin = json!({"pin": PIN});
    let resp = send(api_request(
        Method::POST,
        "/auth/set_pin",
        Some(&token),
        Some(fp),
        &[],
        Some(&pin),
    ))
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Not audited: a read, a refused delete (no PIN), an unauthenticated delete.
    let resp = send(api_request(
        Method::GET,
        "/agents/stats",
        Some(&token),
        Some(fp),
        &[],
        None,
    ))
    .await;
    assert_eq!(resp.status, 200);
    let resp = send(api_request(
        Method::DELETE,
        "/agents/agent-42",
        Some(&token),
        Some(fp),
        &[],
        None,
    ))
    .await;
    assert_eq!(resp.status, 400);
    let resp = send(api_request(
        Method::DELETE,
        "/agents/agent-42",
        None,
        None,
        &[],
        None,
    ))
    .await;
    assert_eq!(resp.status, 401);
    // The audited delete, with a path the gateway normalises.
    let resp = send(api_request(
        Method::DELETE,
        "/agents//agent%2D42",
        Some(&token),
        Some(fp),
        &[("X-Session-Pin", PIN)],
        None,
    ))
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let request_id = resp.header("x-request-id").unwrap().to_owned();

    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deletes: Vec<&Value> = lines.iter().filter(|l| l["method"] == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{text}");
    let d = deletes[0];
    assert_eq!(d["kind"], "http");
    assert_eq!(d["user"], ADMIN_USER);
    assert_eq!(d["session"], format!("sess_{}", &sid[..12]));
    assert_eq!(d["client"], "127.0.0.1");
    assert_eq!(d["path"], "/agents/agent-42");
    assert_eq!(d["pin"], true);
    assert_eq!(d["status"], 200);
    assert_eq!(d["upstream_status"], 200);
    assert_eq!(d["request_id"], request_id.as_str());
    assert!(d["time"].as_str().unwrap().ends_with('Z'));
    // The other line is the PIN being set (a state change of the session, without a PIN).
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["path"], "/auth/set_pin");
    assert_eq!(lines[0]["pin"], false);
    assert_eq!(lines[0]["upstream_status"], Value::Null);
    for secret in [token.as_str(), &sid, PIN, fp] {
        assert!(!text.contains(secret), "the trail holds a secret");
    }
    gw.shutdown(Duration::from_secs(10)).await;
}
