//! Hostile WebSockets ("WebSockets count against the limits"): a relayed socket
//! holds a connection slot until it closes, one address and the public sockets have caps, the
//! first frame and later messages have size limits (1009), idle sockets are closed (1001), and
//! upstream is contacted only for an authenticated client.
//!
//! Every test runs the real gateway over TLS on `127.0.0.1:0` in front of [`WsStub`] (ARCP's
//! sockets, recording every upgrade and frame it received) and asserts both what the client
//! gets and what upstream saw. Timeouts are configured short, so that the tests show a slot
//! is freed rather than that a timer exists; every wait is bounded.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcp_gateway::clock::Clock;
use futures_util::StreamExt;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use common::arcp_profile::{ArcpConfig, Keys};
use common::jwt::agent_token;
use common::ws_client::{WsClient, WsEvent};
use common::ws_stub::{WsFrame, WsStub};
use common::TestGateway;
use common::{assert_problem, get, within, Proto, TestResponse, STEP};

/// Bound for a socket to close or a recorded effect to show up.
const SETTLE: Duration = Duration::from_secs(5);
const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// What ARCP's agent socket sends first (`api/agents.py` `websocket_endpoint`).
fn arcp_greeting() -> Value {
    json!({"type": "auth_required", "message": "Send your authentication token"})
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The WebSocket stub and one gateway (ARCP profile) in front of it.
struct Env {
    stub: WsStub,
    _keys: Keys,
    gw: TestGateway,
}

impl Env {
    /// `server` and `websocket` keys added to the test configuration.
    async fn start(server: &[(&'static str, &str)], websocket: &[(&str, &str)]) -> Env {
        let stub = WsStub::start().await;
        let keys = Keys::new();
        let mut opts = keys.options(&stub.url(), &ArcpConfig::default());
        // Numbers as numbers, anything else as text.
        let value = |v: &str| {
            v.parse::<i64>()
                .map_or_else(|_| serde_json::json!(v), |n| serde_json::json!(n))
        };
        for (k, v) in server {
            opts = opts.server(k, value(v));
        }
        if !websocket.is_empty() {
            let section: serde_json::Map<String, serde_json::Value> = websocket
                .iter()
                .map(|(k, v)| ((*k).to_owned(), value(v)))
                .collect();
            opts = opts.section("websocket", serde_json::Value::Object(section));
        }
        let gw = TestGateway::start_with_clock(opts, Clock::system()).await;
        // The broker logs in upstream as soon as the gateway serves.
        stub.arcp.wait_for_logins(1, Duration::from_secs(20)).await;
        Env {
            stub,
            _keys: keys,
            gw,
        }
    }

    async fn ws(&self, path_and_query: &str) -> WsClient {
        WsClient::connect(&self.gw.client, path_and_query).await
    }

    /// An agent socket that got the gateway's greeting and sent nothing yet.
    async fn greeted_agent(&self, case: &str) -> WsClient {
        let mut ws = self.ws(&format!("/agents/ws?case={case}")).await;
        assert_eq!(ws.next_event(SETTLE).await, WsEvent::Json(arcp_greeting()));
        ws
    }

    /// An agent socket authenticated with an upstream agent token (upstream answered).
    async fn authenticated_agent(&self, case: &str) -> WsClient {
        let mut ws = self.greeted_agent(case).await;
        ws.send_json(&json!({"token": agent_token(case)})).await;
        ws.recv_json(SETTLE, |v| v["type"] == "auth_success").await;
        ws
    }

    /// A public socket that got upstream's welcome.
    async fn public(&self, case: &str) -> WsClient {
        let mut ws = self.ws(&format!("/public/ws?case={case}")).await;
        ws.recv_json(SETTLE, |v| v["type"] == "welcome").await;
        ws
    }

    /// The upgrade's refusal, as a response; fails the test if the upgrade succeeded.
    async fn refused(&self, path_and_query: &str) -> TestResponse {
        match WsClient::try_connect(&self.gw.client, path_and_query).await {
            Ok(_) => panic!("{path_and_query}: the upgrade was accepted"),
            Err(e) => refusal(e),
        }
    }

    /// Upstream connections whose upgrade had `?case=<case>`.
    fn upstream_sockets(&self, case: &str) -> usize {
        self.stub
            .connections()
            .iter()
            .filter(|c| c.param("case") == Some(case))
            .count()
    }
}

fn refusal(e: tungstenite::Error) -> TestResponse {
    match e {
        tungstenite::Error::Http(resp) => {
            let (parts, body) = (*resp).into_parts();
            TestResponse {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: body.unwrap_or_default().into(),
            }
        }
        other => panic!("the upgrade failed without an HTTP answer: {other}"),
    }
}

/// A `wss://` upgrade of `path_and_query` over a TLS connection from the local address
/// `source` (any 127/8 address on Linux).
async fn ws_from(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    source: IpAddr,
    path_and_query: &str,
) -> Result<WebSocketStream<TlsStream<TcpStream>>, tungstenite::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let what = format!("WebSocket {path_and_query} from {source}");
    within(STEP, &what, async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let url = format!("wss://localhost:{}{path_and_query}", addr.port());
        tokio_tungstenite::client_async(url, tls)
            .await
            .map(|(ws, _)| ws)
    })
    .await
}

/// Retries `open` until the gateway accepts the upgrade (a closed socket's permits are
/// released when its task ends, just after upstream saw it end); bounded.
async fn accepted_after_release(env: &Env, path_and_query: &str) -> WsClient {
    for _ in 0..50 {
        match WsClient::try_connect(&env.gw.client, path_and_query).await {
            Ok(ws) => return ws,
            Err(e) => {
                let refused = refusal(e);
                assert_eq!(refused.status, 429, "{}", refused.text());
                // The release is a task ending on the gateway, with no event to await here.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    panic!("{path_and_query}: the freed socket slot was not given back");
}

// ---------------------------------------------------------------------------------------------
// Connection slots
// ---------------------------------------------------------------------------------------------

/// With `server.max_connections: 4`: four idle authenticated sockets
/// hold all four slots (the fifth client is not served before one of them is freed), and the
/// fifth client's `GET /gateway/live` still answers within 2 s because the idle timeout frees
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_hold_connection_slots_until_the_idle_timeout_frees_them() {
    let env = Env::start(&[("max_connections", "4")], &[("idle_timeout", "1s")]).await;
    let mut sockets = Vec::new();
    for i in 0..4 {
        sockets.push(env.authenticated_agent(&format!("slot-{i}")).await);
    }

    let started = Instant::now();
    let client = env.gw.client.clone();
    let live = tokio::spawn(async move {
        let resp = client.send(Proto::H1, get("/gateway/live")).await;
        (resp, Instant::now())
    });
    let mut closes = Vec::new();
    for ws in &mut sockets {
        closes.push(ws.expect_close(SETTLE).await);
    }
    let (resp, answered) = within(Duration::from_secs(3), "the fifth client's answer", live)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let waited = answered - started;
    eprintln!("fifth client answered after {waited:?}");
    assert!(
        waited < Duration::from_secs(2),
        "answered {waited:?} after it was sent"
    );
    let first_freed = closes[0].1;
    assert!(
        answered + Duration::from_millis(100) >= first_freed,
        "answered {:?} before the first socket closed: sockets held no slot",
        first_freed - answered
    );
    for (i, (code, _)) in closes.iter().enumerate() {
        assert_eq!(*code, Some(1001), "socket {i}");
    }
    for i in 0..4 {
        env.stub
            .wait_for_case(&format!("slot-{i}"), SETTLE, "upstream closed", |c| c.ended)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Caps
// ---------------------------------------------------------------------------------------------

/// One address holds at most `websocket.max_per_address` sockets, authenticated or not; the
/// next upgrade is 429 with `Retry-After` before upstream is contacted, another address is
/// unaffected, and a closed socket makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_max_per_address_sockets() {
    let env = Env::start(&[], &[("max_per_address", "2")]).await;
    // An agent socket that never authenticates counts as much as a relayed public one.
    let mut waiting = env.greeted_agent("held-agent").await;
    let _public = env.public("held-public").await;

    for target in ["/public/ws?case=third", "/agents/ws?case=third"] {
        let resp = env.refused(target).await;
        let path = target.split('?').next().unwrap();
        let v = assert_problem(
            &resp,
            429,
            "rate-limit-exceeded",
            "RATE_LIMIT_EXCEEDED",
            path,
        );
        assert_eq!(resp.header("retry-after"), Some("5"), "{v}");
    }
    assert_eq!(
        env.upstream_sockets("third"),
        0,
        "a refused upgrade reached upstream"
    );

    // Another address has its own count.
    let mut other = ws_from(
        env.gw.addr,
        &env.gw.client.ca,
        OTHER_LOOPBACK,
        "/public/ws?case=other",
    )
    .await
    .expect("another address is served");
    let welcome = within(STEP, "welcome", other.next()).await;
    assert!(matches!(welcome, Some(Ok(Message::Text(_)))), "{welcome:?}");

    // The unauthenticated agent socket never reached upstream; closing it frees its place.
    assert_eq!(env.upstream_sockets("held-agent"), 0);
    waiting.send(Message::Close(None)).await;
    let _again = accepted_after_release(&env, "/public/ws?case=again").await;
    assert_eq!(env.upstream_sockets("held-public"), 1);
}

/// Public sockets share `websocket.max_public` whatever their address; beyond it the upgrade is
/// 503 with `Retry-After` and upstream sees nothing. Authenticated sockets do not count there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_sockets_have_their_own_cap() {
    let env = Env::start(&[], &[("max_public", "2")]).await;
    let mut first = env.public("public-1").await;
    let _second = env.public("public-2").await;

    let resp = env.refused("/public/ws?case=public-3").await;
    assert_problem(
        &resp,
        503,
        "rate-limit-exceeded",
        "RATE_LIMIT_EXCEEDED",
        "/public/ws",
    );
    assert_eq!(resp.header("retry-after"), Some("5"));
    let other = ws_from(
        env.gw.addr,
        &env.gw.client.ca,
        OTHER_LOOPBACK,
        "/public/ws?case=public-3",
    )
    .await;
    let resp = refusal(other.expect_err("another address is refused too"));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(
        env.upstream_sockets("public-3"),
        0,
        "a refused upgrade reached upstream"
    );

    // An agent socket is not a public one.
    let mut agent = env.authenticated_agent("agent-beside").await;
    let msg = json!({"type": "heartbeat"});
    agent.send_json(&msg).await;
    agent
        .recv_json(SETTLE, |v| v["type"] == "echo" && v["data"] == msg)
        .await;

    first.send(Message::Close(None)).await;
    env.stub
        .wait_for_case("public-1", SETTLE, "upstream closed", |c| c.ended)
        .await;
    let mut freed = false;
    for _ in 0..50 {
        match WsClient::try_connect(&env.gw.client, "/public/ws?case=public-4").await {
            Ok(_) => {
                freed = true;
                break;
            }
            Err(e) => {
                assert_eq!(refusal(e).status, 503);
                // The release is a task ending on the gateway, with no event to await here.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(freed, "the closed public socket's place was not given back");
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/// A first frame over `websocket.max_first_frame_bytes` (4 KiB by default) closes the socket
/// with 1009 and upstream is never contacted; a frame exactly at the limit is read and refused
/// like any bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_first_frame_closes_1009_and_upstream_sees_no_connection() {
    let env = Env::start(&[], &[]).await;
    let padded = |len: usize| {
        let frame = format!("{{\"token\": \"{}\"}}", "x".repeat(len - 13));
        assert_eq!(frame.len(), len);
        frame
    };

    let mut agent = env.greeted_agent("big-agent").await;
    agent.send(Message::text(padded(4097))).await;
    assert_eq!(agent.expect_close(SETTLE).await.0, Some(1009));

    let mut dashboard = env.ws("/dashboard/ws?case=big-dashboard").await;
    dashboard.send(Message::text(padded(64 << 10))).await;
    assert_eq!(dashboard.expect_close(SETTLE).await.0, Some(1009));

    let mut binary = env.greeted_agent("big-binary").await;
    binary.send(Message::binary(vec![0u8; 5000])).await;
    assert_eq!(binary.expect_close(SETTLE).await.0, Some(1009));

    let mut at_limit = env.greeted_agent("at-limit").await;
    at_limit.send(Message::text(padded(4096))).await;
    assert_eq!(at_limit.expect_close(SETTLE).await.0, Some(1008));

    let conns = env.stub.connections();
    assert!(conns.is_empty(), "upstream got connections: {conns:?}");
}

/// Once authenticated, a client message over `websocket.max_message_bytes` (64 KiB by
/// default) closes the socket with 1009 and never reaches upstream; one below it is relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_1009_and_is_not_relayed() {
    let env = Env::start(&[], &[]).await;
    let mut ws = env.authenticated_agent("big-later").await;

    let fits = "a".repeat(60 << 10);
    ws.send(Message::text(fits.clone())).await;
    ws.recv_json(SETTLE, |v| {
        v["type"] == "echo" && v["data"] == fits.as_str()
    })
    .await;

    ws.send(Message::text("b".repeat((64 << 10) + 1))).await;
    assert_eq!(ws.expect_close(SETTLE).await.0, Some(1009));
    let conn = env
        .stub
        .wait_for_case("big-later", SETTLE, "upstream closed", |c| c.ended)
        .await;
    assert_eq!(conn.frames.len(), 2, "upstream got the oversized message");
    assert_eq!(conn.frames[1], WsFrame::Text(fits));
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// No data frame either way for `websocket.idle_timeout` closes the socket with 1001, and the
/// client's pings do not count as activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_is_closed_with_1001_even_while_it_pings() {
    let env = Env::start(&[], &[("idle_timeout", "1s")]).await;
    let mut ws = env.authenticated_agent("idle").await;
    let msg = json!({"type": "heartbeat"});
    ws.send_json(&msg).await;
    ws.recv_json(SETTLE, |v| v["type"] == "echo" && v["data"] == msg)
        .await;
    let last_data = Instant::now();

    let mut closed = None;
    for _ in 0..40 {
        ws.send(Message::Ping(b"still here".to_vec().into())).await;
        match ws.try_next_event(Duration::from_millis(200)).await {
            Some(WsEvent::Close(code)) => {
                closed = Some((code, Instant::now()));
                break;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    let (code, at) = closed.expect("the idle socket was not closed");
    assert_eq!(code, Some(1001));
    let after = at - last_data;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "closed {after:?} after the last data frame"
    );
    env.stub
        .wait_for_case("idle", SETTLE, "upstream closed", |c| c.ended)
        .await;
}

/// A client that never authenticates is closed at `websocket.auth_timeout` (1008 on the agent
/// socket, 4001 on the dashboard's) and upstream never sees a connection for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upstream_connection_before_authentication() {
    let env = Env::start(&[], &[("auth_timeout", "1s")]).await;
    let mut agent = env.greeted_agent("silent-agent").await;
    let mut dashboard = env.ws("/dashboard/ws?case=silent-dashboard").await;
    let started = Instant::now();
    assert_eq!(agent.expect_close(SETTLE).await.0, Some(1008));
    assert_eq!(dashboard.expect_close(SETTLE).await.0, Some(4001));
    assert!(started.elapsed() < Duration::from_secs(3));

    // A garbage first frame is no authentication either.
    let mut garbage = env.greeted_agent("garbage-agent").await;
    garbage
        .send(Message::text("{\"token\": \"not-a-jwt\"}"))
        .await;
    assert_eq!(garbage.expect_close(SETTLE).await.0, Some(1008));

    let conns = env.stub.connections();
    assert!(conns.is_empty(), "upstream got connections: {conns:?}");

    // The same client, authenticated, reaches upstream once, with the greeting only once.
    let mut ws = env.greeted_agent("then-authenticated").await;
    ws.send_json(&json!({"token": agent_token("agent-9")}))
        .await;
    let next = ws.next_event(SETTLE).await;
    assert_eq!(next, WsEvent::Json(json!({"type": "auth_success"})));
    assert_eq!(env.upstream_sockets("then-authenticated"), 1);
}

/// A client that stops reading while upstream keeps sending: once the connection is upgraded
/// no supervisor watches it, so the socket's own writes to the client carry
/// `server.send_timeout`. The gateway's writes wait once the buffers are full, and the socket
/// and its upstream socket are dropped soon after the deadline, freeing the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_client_stops_reading_is_dropped_at_the_send_timeout() {
    let env = Env::start(&[("send_timeout", "1s")], &[]).await;
    let mut ws = env.public("reader").await;
    // Upstream echoes every message; the client sends far more than the socket buffers hold
    // between it and the gateway (both ways) and never reads an echo.
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let message = vec![0x5a_u8; 32 << 10];
        let mut sent = 0usize;
        while sent < 4096 && ws.try_send(Message::binary(message.clone()), SETTLE).await {
            sent += 1;
        }
        (sent, ws)
    });
    env.stub
        .wait_for_case(
            "reader",
            Duration::from_secs(10),
            "upstream socket dropped",
            |c| c.ended,
        )
        .await;
    eprintln!("upstream socket dropped after {:?}", started.elapsed());
    let (sent, _ws) = within(SETTLE, "the client's sender ends", sender)
        .await
        .unwrap();
    assert!(
        sent < 4096,
        "every message went through: the buffers were not filled"
    );
}

/// The relay carries one direction at a time. A client that sends faster than upstream's echo
/// handler (read one, send its reply, then read on) can take, while reading every reply,
/// deadlocks the two: the relay waits to send upstream, upstream waits to send its reply,
/// which the relay is not reading. The wait to send upstream carries `server.send_timeout`,
/// so the socket ends and its slot is freed instead of being held for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_deadlocked_with_upstream_ends_at_the_send_timeout() {
    let env = Env::start(&[("send_timeout", "1s")], &[]).await;
    let ws = ws_from(
        env.gw.client.addr,
        &env.gw.client.ca,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "/public/ws?case=deadlock",
    )
    .await
    .unwrap();
    let (mut tx, mut rx) = ws.split();
    // The client reads everything it is sent, all along.
    let reader = tokio::spawn(async move {
        let mut replies = 0usize;
        while let Some(Ok(_)) = rx.next().await {
            replies += 1;
        }
        replies
    });
    let writer = tokio::spawn(async move {
        use futures_util::SinkExt;
        let message = vec![0x5a_u8; 32 << 10];
        for _ in 0..4096 {
            let send = tx.send(Message::binary(message.clone()));
            if !matches!(tokio::time::timeout(SETTLE, send).await, Ok(Ok(()))) {
                return;
            }
        }
    });
    env.stub
        .wait_for_case(
            "deadlock",
            Duration::from_secs(10),
            "upstream socket ended",
            |c| c.ended,
        )
        .await;
    let replies = within(SETTLE, "the client's reader ends", reader)
        .await
        .unwrap();
    writer.abort();
    assert!(replies < 4096, "every echo came back: no deadlock to end");
}
