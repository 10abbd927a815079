//! Deadlines: every stage a client can stall (TLS, the HTTP/2 preface, the request head, the
//! body, an idle connection, a WebSocket's first frame) is cut at its configured deadline, so
//! that stalled clients cannot hold the connection slots.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::common::arcp_profile::{admin_login, ArcpConfig, Keys};
use super::common::ws_client::{WsClient, WsEvent};
use super::common::ws_stub::WsStub;
use super::common::{assert_problem, get, read_raw_response, within, Proto, TestGateway, STEP};
use super::{
    arcp_gateway, assert_upstream_saw_nothing, closes_within, frame, get_block, h2_connect,
    read_frame, until_closed, END_HEADERS, END_STREAM, HEADERS, PREFACE, SETTINGS,
};

/// Short deadlines, so that a test shows the slot is freed, not merely that a timer exists.
const SHORT: [(&str, &str); 4] = [
    ("handshake_timeout", "1s"),
    ("header_read_timeout", "1s"),
    ("idle_timeout", "1s"),
    ("body_read_timeout", "1s"),
];

/// The ARCP profile in front of [`WsStub`] (ARCP's sockets, recording every upgrade it
/// receives, with the ARCP stub behind it for HTTP), so that `/agents/ws` and
/// `/dashboard/ws` are WebSocket routes; `server` keys and the `websocket` section added.
/// Returns once the broker has logged in upstream.
async fn ws_gateway(
    server: &[(&'static str, &str)],
    websocket: Value,
) -> (WsStub, Keys, TestGateway) {
    let stub = WsStub::start().await;
    let keys = Keys::new();
    let mut opts = keys.options(&stub.url(), &ArcpConfig::default());
    for (k, v) in server {
        opts = opts.server(k, *v);
    }
    opts = opts.section("websocket", websocket);
    let gw = TestGateway::start(opts).await;
    stub.arcp.wait_for_logins(1, Duration::from_secs(20)).await;
    (stub, keys, gw)
}

/// With `server.max_connections: 4` held by the four stalls the
/// acceptance names (TLS done then silence, a partial HTTP/2 preface, a login body at 1 B/s,
/// an idle WebSocket that never sends its first frame), a fifth client's `GET /gateway/live`
/// still answers within 2 s, because deadlines free the slots. Every stalled client is closed
/// and upstream sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stalled_clients_cannot_lock_out_a_fifth() {
    let mut server = SHORT.to_vec();
    server.push(("max_connections", "4"));
    server.push(("body_min_rate", "100"));
    let (stub, _keys, gw) = ws_gateway(&server, json!({"auth_timeout": "1s"})).await;
    // The broker's login; nothing below may add to it.
    let upstream_before = stub.arcp.records().len();

    // 1. TLS handshake done, then silence.
    let mut silent = gw.client.tls_connect(Proto::H1).await;
    // 2. A partial HTTP/2 preface.
    let mut preface = gw.client.tls_connect(Proto::H2).await;
    preface.write_all(&PREFACE[..10]).await.unwrap();
    // 3. A login body of 1000 bytes sent at 1 byte per second.
    let mut login = gw.client.tls_connect(Proto::H1).await;
    login
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
X-Client-Fingerprint: fp\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    let (login_read, mut login_write) = tokio::io::split(login);
    let trickle = tokio::spawn(async move {
        for _ in 0..999 {
            tokio::time::sleep(Duration::from_secs(1)).await; // the attack's pace, not a wait
            if login_write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    // 4. An idle WebSocket: upgraded (the gateway's greeting came), and then nothing, not even
    // the authentication frame.
    let mut socket = WsClient::connect(&gw.client, "/agents/ws?case=idle").await;
    assert_eq!(
        socket.next_event(STEP).await,
        WsEvent::Json(
            json!({"type": "auth_required", "message": "Send your authentication token"})
        ),
        "the agent socket's greeting"
    );

    // The fifth client: every slot is held when it connects.
    let started = Instant::now();
    let resp = within(
        Duration::from_secs(2),
        "GET /gateway/live from a fifth client",
        async { gw.client.send(Proto::H1, get("/gateway/live")).await },
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    eprintln!("fifth client answered after {:?}", started.elapsed());

    // Each stalled client was closed; the slow login got a 408 problem first, the socket a
    // close frame (1008: no authentication frame within `websocket.auth_timeout`).
    let mut login_read = login_read;
    let slow = within(
        STEP,
        "408 for the slow body",
        read_raw_response(&mut login_read),
    )
    .await;
    assert_problem(&slow, 408, "request-error", "REQUEST_ERROR", "/auth/login");
    assert_eq!(slow.header("connection"), Some("close"));
    assert!(
        closes_within(&mut login_read, STEP).await,
        "slow login closed"
    );
    trickle.abort();
    assert!(closes_within(&mut silent, STEP).await, "silent TLS closed");
    assert!(
        closes_within(&mut preface, STEP).await,
        "partial preface closed"
    );
    assert_eq!(socket.expect_close(STEP).await.0, Some(1008), "idle socket");

    // Upstream saw no HTTP request and no WebSocket upgrade.
    let seen = &stub.arcp.records()[upstream_before..];
    assert!(seen.is_empty(), "upstream saw {seen:?}");
    let upgrades = stub.connections();
    assert!(upgrades.is_empty(), "upstream got upgrades: {upgrades:?}");
}

/// Each stall alone is cut at its deadline (1 s here), not later: the timer is the one
/// configured, and hyper's defaults (none before the first request) are not what frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stall_is_closed_at_its_deadline() {
    let (stub, _keys, gw) = arcp_gateway(&SHORT).await;
    let bound = Duration::from_millis(3500);
    let stalls: Vec<(&str, Vec<u8>, Proto)> = vec![
        ("TLS then silence", Vec::new(), Proto::H1),
        ("TLS (h2) then silence", Vec::new(), Proto::H2),
        ("partial HTTP/2 preface", PREFACE[..20].to_vec(), Proto::H2),
        (
            "HTTP/2 preface and SETTINGS, no stream",
            {
                let mut b = PREFACE.to_vec();
                b.extend(frame(SETTINGS, 0, 0, &[]));
                b
            },
            Proto::H2,
        ),
        (
            "partial HTTP/1.1 head",
            b"GET /gateway/live HTTP/1.1\r\nHost: loc".to_vec(),
            Proto::H1,
        ),
    ];
    for (what, bytes, proto) in stalls {
        let mut tls = gw.client.tls_connect(proto).await;
        tls.write_all(&bytes).await.unwrap();
        let started = Instant::now();
        assert!(
            closes_within(&mut tls, bound).await,
            "{what}: still open after {bound:?}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after only {took:?}"
        );
    }
    assert_upstream_saw_nothing(&stub);
}

/// A kept-alive HTTP/1.1 connection that went quiet after one request is closed, freeing its
/// slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    let (stub, _keys, gw) = arcp_gateway(&SHORT).await;
    let mut idle = gw.client.tls_connect(Proto::H1).await;
    idle.write_all(b"GET /gateway/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = within(STEP, "idle client's request", read_raw_response(&mut idle)).await;
    assert_eq!(first.status, 200);
    assert_ne!(first.header("connection"), Some("close"), "kept alive");
    assert!(
        closes_within(&mut idle, STEP).await,
        "idle keep-alive closed"
    );
    assert_upstream_saw_nothing(&stub);
}

/// On a kept-alive HTTP/1.1 connection, waiting for the next request is `idle_timeout` (4 s
/// here), while a next head that begins and stalls is cut `header_read_timeout` (1 s) after
/// its first byte: the two deadlines are not confused either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_waits_idle_timeout_but_a_stalled_next_head_header_read_timeout() {
    let deadlines = [
        ("handshake_timeout", "1s"),
        ("header_read_timeout", "1s"),
        ("idle_timeout", "4s"),
    ];
    let (stub, _keys, gw) = arcp_gateway(&deadlines).await;
    // A kept-alive connection that has had one request answered.
    let served_once = || async {
        let mut tls = gw.client.tls_connect(Proto::H1).await;
        tls.write_all(b"GET /gateway/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let first = within(STEP, "the first response", read_raw_response(&mut tls)).await;
        assert_eq!(first.status, 200);
        tls
    };

    // Quiet after one request: still open well past header_read_timeout, closed after idle.
    let mut quiet = served_once().await;
    let answered = Instant::now();
    assert!(
        !closes_within(&mut quiet, Duration::from_millis(2500)).await,
        "closed {:?} after the response, before idle_timeout",
        answered.elapsed()
    );
    assert!(
        closes_within(&mut quiet, Duration::from_secs(4)).await,
        "still open {:?} after the response",
        answered.elapsed()
    );
    let took = answered.elapsed();
    assert!(
        took >= Duration::from_millis(3900),
        "closed after only {took:?}"
    );

    // The next head begins and stalls: closed about header_read_timeout after its first byte.
    let mut stalled = served_once().await;
    stalled
        .write_all(b"GET /gateway/live HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let began = Instant::now();
    assert!(
        closes_within(&mut stalled, Duration::from_millis(3000)).await,
        "a stalled second head still open after {:?}",
        began.elapsed()
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed after only {took:?}"
    );
    assert_upstream_saw_nothing(&stub);
}

/// An HTTP/2 connection whose only stream has finished is closed after `idle_timeout` with a
/// GOAWAY (NO_ERROR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_with_goaway() {
    let (_stub, _keys, gw) = arcp_gateway(&SHORT).await;
    let mut tls = h2_connect(&gw.client).await;
    let block = get_block("/gateway/live", &gw.client.authority());
    tls.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    within(STEP, "the response to stream 1", async {
        loop {
            let (_, flags, stream, _) = read_frame(&mut tls).await.expect("a frame");
            if stream == 1 && flags & END_STREAM != 0 {
                break;
            }
        }
    })
    .await;
    let started = Instant::now();
    let goaway = until_closed(&mut tls, Duration::from_secs(4)).await;
    assert_eq!(goaway, Some(0), "GOAWAY NO_ERROR");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// `POST /auth/login` whose body trickles: 408 `request-error` about `body_read_timeout` after
/// it falls behind `body_min_rate`, the connection closes, and no login happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_login_body_is_408_and_close() {
    let mut server = SHORT.to_vec();
    server.push(("body_min_rate", "1KiB"));
    let (stub, _keys, gw) = arcp_gateway(&server).await;
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    let body = r#"{"username":"ARCP","password":"ARCP"}"#;
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
X-Client-Fingerprint: fp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = tokio::io::split(tls);
    let trickle = tokio::spawn(async move {
        for b in body.bytes() {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // 5 B/s: the attack's pace
        }
    });
    let resp = within(STEP, "408", read_raw_response(&mut read)).await;
    let took = started.elapsed();
    assert_problem(&resp, 408, "request-error", "REQUEST_ERROR", "/auth/login");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(closes_within(&mut read, STEP).await, "closed after the 408");
    trickle.abort();
    assert_upstream_saw_nothing(&stub);
    // An ordinary login on a fresh connection still works at the same settings.
    let ok = gw.client.send(Proto::H1, admin_login("fp")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}
