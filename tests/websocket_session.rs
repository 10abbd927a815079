//! WebSockets through the gateway (docs/design.md §4, §7, §8), how long they live: a socket
//! closes with its session (logout, idle expiry) while client messages count as activity, and
//! a `?token=` reaches neither upstream nor the gateway's logs.
//!
//! Tests run the real gateway over TLS (`wss://`) on `127.0.0.1:0` in front of the WebSocket
//! stub ([`common::ws_env::Env`]); the log test runs the gateway binary to read its JSON logs
//! at debug level. Every wait is bounded.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::arcp_profile::*;
use common::jwt::*;
use common::ws_client::*;
use common::ws_env::*;
use common::ws_stub::*;
use common::{assert_problem, GatewayProcess, Proto};

// ---------------------------------------------------------------------------------------------
// Sockets live and die with their session.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_dashboard_socket_within_a_second() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-logout";
    let token = env.login(fp).await;
    let mut ws = env
        .ws(&format!("/dashboard/ws?token={token}&case=logout"))
        .await;
    ws.send_json(&auth_frame(&token, fp)).await;
    ws.recv_json(SETTLE, is_type("monitoring")).await;

    let logout = tokio::spawn({
        let client = env.gw.client.clone();
        let req = api_request(
            Method::POST,
            "/auth/logout",
            Some(&token),
            Some(fp),
            &[],
            None,
        );
        async move { client.send(Proto::H1, req).await }
    });
    let started = Instant::now();
    let (code, at) = ws.expect_close(SETTLE).await;
    let took = at - started;
    assert_eq!(code, Some(4001));
    assert!(
        took < Duration::from_secs(1),
        "closed {took:?} after the logout request"
    );
    let resp = logout.await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    env.stub
        .wait_for_case("logout", SETTLE, "upstream socket closed", |c| c.ended)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_keep_the_session_alive_and_idle_expiry_closes_the_socket() {
    let idle = 2;
    let cfg = ArcpConfig {
        idle_timeout: format!("{idle}s"),
        ..ArcpConfig::default()
    };
    let env = Env::start(cfg).await;
    let fp = "fp-idle";
    // The socket is opened right after the login (an argon2id login in a debug build can take
    // about as long as the idle timeout).
    let token = env.login(fp).await;
    let mut ws = env
        .ws(&format!("/dashboard/ws?token={token}&case=idle"))
        .await;
    ws.send_json(&auth_frame(&token, fp)).await;
    ws.recv_json(SETTLE, is_type("monitoring")).await;

    // A message every half second for five seconds, two and a half idle timeouts.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        n += 1;
        echo_round_trip(&mut ws, &json!({"type": "ping", "n": n})).await;
    }
    assert!(n >= 9, "only {n} messages");
    let resp = env.call(Method::GET, "/agents/stats", &token, fp).await;
    assert_eq!(
        resp.status,
        200,
        "after {:?}: {}",
        started.elapsed(),
        resp.text()
    );
    let last_activity = Instant::now();

    // Then silence from the client: upstream's monitoring frames are no activity, and the
    // housekeeping notices the idle session without any traffic.
    let (code, at) = ws.expect_close(Duration::from_secs(idle + 6)).await;
    let after = at - last_activity;
    assert_eq!(code, Some(4001));
    assert!(
        after >= Duration::from_millis(idle * 1000 - 500),
        "closed {after:?} after the last activity, before the idle timeout"
    );
    assert!(
        after < Duration::from_secs(idle + 3),
        "closed {after:?} after the last activity"
    );
    let resp = env.call(Method::GET, "/agents/stats", &token, fp).await;
    let v = assert_problem(
        &resp,
        401,
        "session-expired",
        "SESSION_EXPIRED",
        "/agents/stats",
    );
    assert_eq!(v["session_timeout"], idle);
    env.stub
        .wait_for_case("idle", SETTLE, "upstream socket closed", |c| c.ended)
        .await;
}

// ---------------------------------------------------------------------------------------------
// `?token=` stays out of upstream and the logs (the binary, JSON logs at debug level).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_tokens_reach_neither_upstream_nor_the_logs() {
    let stub = WsStub::start().await;
    let keys = Keys::new();
    let opts = keys
        .options(&stub.url(), &ArcpConfig::default())
        .logging("level", "debug")
        .logging("format", "json");
    let mut gw = GatewayProcess::start(opts).await;
    stub.arcp.wait_for_logins(1, Duration::from_secs(20)).await;
    let broker = stub.arcp.last_issued().unwrap();

    let fp = "fp-log-check-7f3a91";
    let token = login(&gw.client, fp).await;
    let mut ws = WsClient::connect(
        &gw.client,
        &format!("/dashboard/ws?token={token}&case=logs&lang=en"),
    )
    .await;
    ws.send_json(&auth_frame(&token, fp)).await;
    ws.recv_json(SETTLE, is_type("monitoring")).await;
    echo_round_trip(&mut ws, &json!({"type": "ping"})).await;
    ws.send(Message::Close(None)).await;

    // A refused `?token=` is not logged either.
    let forged = hs256(
        Some("main"),
        &claims_of(&token),
        b"not-the-gateway-secret-0123456789",
    );
    let mut refused = WsClient::connect(&gw.client, &format!("/dashboard/ws?token={forged}")).await;
    assert_eq!(refused.expect_close(SETTLE).await.0, Some(4001));

    let conn = stub
        .wait_for_case("logs", SETTLE, "closed", |c| c.ended)
        .await;
    assert_eq!(conn.target(), "/dashboard/ws?case=logs&lang=en");
    assert_eq!(conn.param("token"), None);
    assert!(!conn.upgrade_contains(&token), "{conn:?}");
    assert_eq!(
        stub.connections().len(),
        1,
        "the refused socket never reached upstream"
    );

    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(20)).await.success());
    let log = gw.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "the gateway logged at debug level:\n{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["path"] == "/dashboard/ws" && l["status"] == 101),
        "the upgrade was logged:\n{log}"
    );
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    for (what, secret) in [
        ("gateway token", token.clone()),
        ("gateway token signature", signature(&token)),
        ("forged token", forged.clone()),
        ("forged token signature", signature(&forged)),
        ("upstream admin token", broker.token.clone()),
        ("client fingerprint", fp.to_owned()),
    ] {
        assert!(
            !log.contains(&secret),
            "the {what} appears in the gateway's logs:\n{log}"
        );
    }
}
