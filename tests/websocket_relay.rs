//! WebSockets through the gateway (docs/design.md §1, §2, §8), what crosses them: the
//! dashboard, agent and public sockets of ARCP are relayed both ways with the credential
//! exchange (the gateway's token out, the brokered upstream session in) and a token-free
//! upstream URL; refused first frames and query tokens close the socket before upstream sees a
//! frame.
//!
//! Every test runs the real gateway over TLS (`wss://`) on `127.0.0.1:0` in front of the
//! WebSocket stub ([`common::ws_env::Env`]). Every wait is bounded.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use http::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use common::arcp_profile::*;
use common::arcp_stub::*;
use common::jwt::*;
use common::ws_env::*;
use common::ws_stub::*;

// ---------------------------------------------------------------------------------------------
// Relaying with valid credentials.
// ---------------------------------------------------------------------------------------------

/// A refused first frame never reaches upstream: the upstream socket is
/// opened only after the first frame was accepted, so there is no upstream connection for
/// `case` at all (the refusal was decided before the close the client just read).
fn assert_no_upstream_socket(stub: &WsStub, case: &str) {
    let conns = stub.connections();
    assert!(
        conns.iter().all(|c| c.param("case") != Some(case)),
        "{case}: upstream got a connection: {conns:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_socket_relays_both_ways_with_the_brokered_credentials() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-dashboard-3c9e";
    let token = env.login(fp).await;
    let broker = env.broker();
    assert_ne!(broker.token, token);

    // As the bundled dashboard does (token in the URL and in the first frame), and with the
    // token only in the first frame.
    let variants = [
        ("query", format!("/dashboard/ws?token={token}&case=query")),
        ("frame", "/dashboard/ws?case=frame".to_owned()),
    ];
    for (case, target) in &variants {
        let mut ws = env.ws(target).await;
        ws.send_json(&auth_frame(&token, fp)).await;
        // upstream → client: the periodic frames of an authenticated dashboard socket.
        let first = ws.recv_json(SETTLE, is_type("monitoring")).await;
        assert_eq!(first["data"], json!({"active_agents": 0}), "{case}");
        let later = ws.recv_json(SETTLE, is_type("monitoring")).await;
        assert!(
            later["seq"].as_u64() > first["seq"].as_u64(),
            "{case}: {later}"
        );

        // client → upstream → client, text and binary.
        let msg = json!({"type": "refresh_request", "case": case, "n": 1});
        echo_round_trip(&mut ws, &msg).await;
        let bytes = vec![0u8, 1, 2, 254, 255];
        ws.send(Message::binary(bytes.clone())).await;
        assert_eq!(ws.recv_binary(SETTLE).await, bytes, "{case}");

        let conn = env
            .stub
            .wait_for_case(case, SETTLE, "three frames", |c| c.frames.len() >= 3)
            .await;
        assert!(
            conn.authenticated,
            "{case}: the stub accepted the auth frame"
        );
        assert_eq!(conn.path, "/dashboard/ws");
        assert_eq!(
            conn.query.as_deref(),
            Some(format!("case={case}").as_str()),
            "{case}: only the token was removed from the query"
        );
        assert!(!conn.upgrade_contains(&token), "{case}: {conn:?}");
        assert_forwarded_facts(&conn);
        // The first frame upstream saw carries the broker's credentials, nothing of ours.
        assert_eq!(
            conn.frames[0].json(),
            json!({"type": "auth", "token": broker.token, "fingerprint": broker.fingerprint}),
            "{case}"
        );
        assert_eq!(conn.frames[1].json(), msg, "{case}");
        assert_eq!(conn.frames[2], WsFrame::Binary(bytes), "{case}");

        ws.send(Message::Close(None)).await;
        env.stub
            .wait_for_case(case, SETTLE, "closed", |c| c.ended)
            .await;
    }
    assert_eq!(env.stub.connections().len(), 2);
    assert_eq!(
        env.stub.arcp.logins(),
        1,
        "one brokered login serves every socket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_socket_forwards_agent_tokens_unchanged_and_exchanges_gateway_tokens() {
    let env = Env::start(ArcpConfig::default()).await;

    // An upstream agent token is relayed byte for byte.
    let agent = agent_token("agent-ws-1");
    let mut ws = env.ws("/agents/ws?case=agent").await;
    ws.recv_json(SETTLE, is_type("auth_required")).await;
    let first = format!("{{\"token\": \"{agent}\"}}");
    ws.send(Message::text(first.clone())).await;
    ws.recv_json(SETTLE, is_type("auth_success")).await;
    let msg = json!({"type": "heartbeat", "agent_id": "agent-ws-1"});
    echo_round_trip(&mut ws, &msg).await;
    let conn = env
        .stub
        .wait_for_case("agent", SETTLE, "two frames", |c| c.frames.len() >= 2)
        .await;
    assert!(conn.authenticated);
    assert_eq!(conn.frames[0], WsFrame::Text(first));
    assert_eq!(conn.frames[1].json(), msg);
    assert_forwarded_facts(&conn);

    // A gateway session token (with its fingerprint) is exchanged for the brokered one.
    let fp = "fp-agent-socket";
    let token = env.login(fp).await;
    let mut ws = env.ws("/agents/ws?case=admin").await;
    ws.recv_json(SETTLE, is_type("auth_required")).await;
    ws.send_json(&json!({"token": token, "fingerprint": fp}))
        .await;
    ws.recv_json(SETTLE, is_type("auth_success")).await;
    echo_round_trip(&mut ws, &msg).await;
    let conn = env
        .stub
        .wait_for_case("admin", SETTLE, "two frames", |c| c.frames.len() >= 2)
        .await;
    let broker = env.broker();
    assert_eq!(
        conn.frames[0].json(),
        json!({"token": broker.token, "fingerprint": broker.fingerprint})
    );
    assert!(!conn.upgrade_contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_socket_is_relayed_as_is() {
    let env = Env::start(ArcpConfig::default()).await;
    let mut ws = env.ws("/public/ws?case=public").await;
    let welcome = ws.recv_json(SETTLE, |_| true).await;
    assert_eq!(
        welcome["type"], "welcome",
        "the greeting comes first: {welcome}"
    );
    let msg = json!({"type": "get_discovery"});
    echo_round_trip(&mut ws, &msg).await;
    ws.send(Message::text("not json")).await;
    ws.recv_json(SETTLE, |v| v["data"] == "not json").await;
    let conn = env
        .stub
        .wait_for_case("public", SETTLE, "two frames", |c| c.frames.len() >= 2)
        .await;
    assert_eq!(
        conn.frames,
        [
            WsFrame::Text(msg.to_string()),
            WsFrame::Text("not json".into())
        ]
    );
    assert_forwarded_facts(&conn);
}

// ---------------------------------------------------------------------------------------------
// Refused credentials never reach upstream.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dashboard_frames_close_4001_or_4003_and_upstream_sees_no_frame() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-dashboard-forgery";
    let real = env.login(fp).await;
    let claims = claims_of(&real);
    let now = now();

    let bad_signature = hs256(Some("main"), &claims, b"not-the-gateway-secret-0123456789");
    let mut old = claims.clone();
    old["iat"] = json!(now - 7200);
    old["exp"] = json!(now - 3600);
    let expired_gateway = hs256(Some("main"), &old, GATEWAY_SECRET.as_bytes());
    let expired_agent = hs256(
        None,
        &json!({"sub": "agent-1", "role": "agent", "iat": now - 7200, "exp": now - 3600}),
        UPSTREAM_SECRET.as_bytes(),
    );
    let alg_none = assemble_jwt(
        &json!({"alg": "none", "typ": "JWT", "kid": "main"}),
        &claims,
        b"",
    );
    let alg_none_upstream = assemble_jwt(
        &json!({"alg": "none", "typ": "JWT"}),
        &json!({"sub": "ARCP", "role": "admin", "iat": now, "exp": now + 600}),
        b"",
    );
    let upstream_admin = hs256(
        None,
        &json!({"sub": "ARCP", "agent_id": "user_ARCP", "scopes": ["admin"], "role": "admin",
                "iat": now, "exp": now + 600}),
        UPSTREAM_SECRET.as_bytes(),
    );
    let broker_token = env.broker().token;

    let cases: Vec<(&str, String, &str, u16)> = vec![
        ("bad-signature", bad_signature, fp, 4001),
        ("expired-gateway", expired_gateway, fp, 4001),
        ("expired-agent", expired_agent, fp, 4001),
        ("alg-none", alg_none, fp, 4001),
        ("alg-none-upstream", alg_none_upstream, fp, 4001),
        ("upstream-secret-admin", upstream_admin, fp, 4001),
        ("garbage", "not-a-jwt".into(), fp, 4001),
        // The upstream admin session token itself is no credential at the edge.
        ("upstream-session-token", broker_token, fp, 4001),
        ("wrong-fingerprint", real.clone(), "fp-somebody-else", 4001),
        ("agent-token", agent_token("agent-7"), fp, 4003),
    ];
    for (case, token, frame_fp, code) in &cases {
        let mut ws = env.ws(&format!("/dashboard/ws?case={case}")).await;
        ws.send_json(&auth_frame(token, frame_fp)).await;
        let (got, _) = ws.expect_close(SETTLE).await;
        assert_eq!(got, Some(*code), "{case}");
        assert_no_upstream_socket(&env.stub, case);
    }

    // The refusals touched neither the real session nor the brokered one.
    let mut ws = env.ws("/dashboard/ws?case=real").await;
    ws.send_json(&auth_frame(&real, fp)).await;
    ws.recv_json(SETTLE, is_type("monitoring")).await;
    let resp = env.call(Method::GET, "/agents/stats", &real, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(env.stub.arcp.logins(), 1);
}

/// docs/design.md §4: a fingerprint that is missing is refused like a wrong one (an HTTP admin call
/// without `X-Client-Fingerprint` gets 401 `session-invalid`), so a token leaked from a
/// dashboard URL is not enough to open the dashboard socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_frame_without_the_fingerprint_closes_4001() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-missing";
    let token = env.login(fp).await;
    for (case, target) in [
        (
            "no-fp-query",
            format!("/dashboard/ws?token={token}&case=no-fp-query"),
        ),
        ("no-fp-frame", "/dashboard/ws?case=no-fp-frame".to_owned()),
    ] {
        let mut ws = env.ws(&target).await;
        ws.send_json(&json!({"type": "auth", "token": token})).await;
        let (got, _) = ws.expect_close(SETTLE).await;
        assert_eq!(got, Some(4001), "{case}");
        assert_no_upstream_socket(&env.stub, case);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_agent_socket_tokens_close_1008_and_upstream_sees_no_frame() {
    let env = Env::start(ArcpConfig::default()).await;
    let now = now();
    let agent_claims = json!({"sub": "agent-1", "agent_id": "agent-1", "role": "agent",
                              "iat": now, "exp": now + 600});
    let cases: Vec<(&str, String)> = vec![
        (
            "bad-signature",
            hs256(None, &agent_claims, b"not-the-upstream-secret-0123456789"),
        ),
        (
            "expired",
            hs256(
                None,
                &json!({"sub": "agent-1", "role": "agent", "iat": now - 7200, "exp": now - 3600}),
                UPSTREAM_SECRET.as_bytes(),
            ),
        ),
        (
            "alg-none",
            assemble_jwt(&json!({"alg": "none", "typ": "JWT"}), &agent_claims, b""),
        ),
        (
            "upstream-secret-admin",
            hs256(
                None,
                &json!({"sub": "ARCP", "role": "admin", "iat": now, "exp": now + 600}),
                UPSTREAM_SECRET.as_bytes(),
            ),
        ),
        (
            "forged-gateway",
            hs256(
                Some("main"),
                &json!({"iss": GATEWAY_ISSUER, "sub": "ARCP", "sid": common::hex(&[7u8; 16]),
                        "role": "admin", "agent_id": "user_ARCP", "scopes": [],
                        "iat": now, "exp": now + 600}),
                b"not-the-gateway-secret-0123456789",
            ),
        ),
        ("garbage", "not-a-jwt".into()),
        // A genuine gateway session token, but without the session's fingerprint.
        (
            "gateway-without-fingerprint",
            env.login("fp-agent-nofp").await,
        ),
    ];
    for (case, token) in &cases {
        let mut ws = env.ws(&format!("/agents/ws?case={case}")).await;
        ws.recv_json(SETTLE, is_type("auth_required")).await;
        ws.send_json(&json!({"token": token})).await;
        let (got, _) = ws.expect_close(SETTLE).await;
        assert_eq!(got, Some(1008), "{case}");
        assert_no_upstream_socket(&env.stub, case);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_query_token_closes_4001_before_upstream_is_contacted() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-query";
    let real = env.login(fp).await;
    let forged = hs256(
        Some("main"),
        &claims_of(&real),
        b"not-the-gateway-secret-0123456789",
    );
    let logged_out = env.login(fp).await;
    let resp = env
        .call(Method::POST, "/auth/logout", &logged_out, fp)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    for (case, token) in [
        ("forged", forged.as_str()),
        ("garbage", "not-a-jwt"),
        ("logged-out", logged_out.as_str()),
    ] {
        let mut ws = env
            .ws(&format!("/dashboard/ws?token={token}&case={case}"))
            .await;
        // Even a valid first frame does not help once the URL's token was refused.
        ws.send_json(&auth_frame(&real, fp)).await;
        let (got, _) = ws.expect_close(SETTLE).await;
        assert_eq!(got, Some(4001), "{case}");
    }
    assert!(
        env.stub.connections().is_empty(),
        "upstream got upgrades: {:?}",
        env.stub.connections()
    );
}
