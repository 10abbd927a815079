//! WebSockets through the gateway (docs/design.md §1, §2, §8): the dashboard, agent and public
//! sockets of ARCP, authenticated in their first frame, with the credential exchange, the
//! token-free upstream URL and the session-bound closing.
//!
//! Every test runs the real gateway over TLS (`wss://`) on `127.0.0.1:0` in front of
//! [`WsStub`], which behaves like ARCP's sockets and records every upgrade request and every
//! frame it received; one test runs the gateway binary to read its logs. Every wait is
//! bounded.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use arcp_gateway::clock::Clock;
use http::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::arcp_stub::*;
use common::ws_stub::*;
use common::{
    assert_problem, GatewayOptions, GatewayProcess, Proto, TestBody, TestResponse, TlsClient,
};

/// Bound for a socket to close or a recorded effect to show up.
const SETTLE: Duration = Duration::from_secs(5);

/// The WebSocket stub, the key material and one gateway in front of it.
struct Env {
    stub: WsStub,
    _keys: Keys,
    gw: ClockedGateway,
}

impl Env {
    async fn start(cfg: ArcpConfig) -> Env {
        let stub = WsStub::start().await;
        let keys = Keys::new();
        let gw = ClockedGateway::start(&keys.options(&stub.url(), &cfg), Clock::system()).await;
        // The broker logs in upstream as soon as the gateway serves.
        stub.arcp.wait_for_logins(1, Duration::from_secs(20)).await;
        Env {
            stub,
            _keys: keys,
            gw,
        }
    }

    async fn send(&self, req: http::Request<TestBody>) -> TestResponse {
        self.gw.client.send(Proto::H1, req).await
    }

    /// Logs in as the seeds do and returns the gateway token.
    async fn login(&self, fingerprint: &str) -> String {
        login(&self.gw.client, fingerprint).await
    }

    async fn call(&self, method: Method, path: &str, token: &str, fp: &str) -> TestResponse {
        self.send(api_request(method, path, Some(token), Some(fp), &[], None))
            .await
    }

    /// The brokered upstream login (token and fingerprint).
    fn broker(&self) -> StubSession {
        self.stub.arcp.last_issued().expect("the broker logged in")
    }

    async fn ws(&self, path_and_query: &str) -> WsClient {
        WsClient::connect(&self.gw.client, path_and_query).await
    }
}

async fn login(client: &TlsClient, fingerprint: &str) -> String {
    let resp = client.send(Proto::H1, admin_login(fingerprint)).await;
    assert_eq!(resp.status, 200, "login: {}", resp.text());
    resp.json()["access_token"].as_str().unwrap().to_owned()
}

fn auth_frame(token: &str, fingerprint: &str) -> Value {
    json!({"type": "auth", "token": token, "fingerprint": fingerprint})
}

fn is_type(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}

/// Sends `msg` and waits for the stub's echo of it.
async fn echo_round_trip(ws: &mut WsClient, msg: &Value) {
    ws.send_json(msg).await;
    let want = msg.clone();
    ws.recv_json(SETTLE, move |v| v["type"] == "echo" && v["data"] == want)
        .await;
}

/// A refused first frame never reaches upstream: since issue 10 §2 the upstream socket is
/// opened only after the first frame was accepted, so there is no upstream connection for
/// `case` at all (the refusal was decided before the close the client just read).
fn assert_no_upstream_socket(stub: &WsStub, case: &str) {
    let conns = stub.connections();
    assert!(
        conns.iter().all(|c| c.param("case") != Some(case)),
        "{case}: upstream got a connection: {conns:?}"
    );
}

/// Headers the gateway sets on every upgrade it makes upstream, from facts.
fn assert_forwarded_facts(conn: &WsConnection) {
    assert_eq!(conn.header("x-forwarded-proto"), Some("https"), "{conn:?}");
    assert_eq!(
        conn.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{conn:?}"
    );
    assert!(
        conn.header("x-request-id")
            .is_some_and(|v| v.starts_with("req_")),
        "{conn:?}"
    );
    for never in ["authorization", "cookie", "x-client-fingerprint"] {
        assert_eq!(
            conn.header(never),
            None,
            "{never} reached upstream: {conn:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Relaying with valid credentials.
// ---------------------------------------------------------------------------------------------

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
    let mut opts: GatewayOptions = keys.options(&stub.url(), &ArcpConfig::default());
    opts.log_level = "debug\n  format: json".into();
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
