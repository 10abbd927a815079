//! Hostile connections (issue 10 §2): nothing a client does at the connection level can hold a
//! slot for free or smuggle a request past the gateway.
//!
//! Every test writes the concrete hostile bytes on a raw socket (TCP + TLS, HTTP/1.1 text or
//! hand-made HTTP/2 frames, since a client library would refuse to send them), asserts what the
//! gateway answers or that it closes, and that the upstream stub saw nothing. Deadlines are
//! configured short so that the tests prove the slot is freed, not that a timer exists.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::arcp_profile::{admin_login, ArcpConfig, Keys};
use common::arcp_stub::ArcpStub;
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Short deadlines, so that a test shows the slot is freed, not merely that a timer exists.
const SHORT: [(&str, &str); 4] = [
    ("handshake_timeout", "1s"),
    ("header_read_timeout", "1s"),
    ("idle_timeout", "1s"),
    ("body_read_timeout", "1s"),
];

// ---------------------------------------------------------------------------------------------
// Helpers: raw HTTP/1.1 exchanges
// ---------------------------------------------------------------------------------------------

/// A gateway in front of a recording stub, every route public (so anything the gateway lets
/// through would reach the stub).
async fn public_gateway(server: &[(&'static str, &str)]) -> (Stub, TestGateway) {
    let stub = Stub::start().await;
    let mut opts = GatewayOptions::new(stub.url());
    for (k, v) in server {
        opts = opts.server(k, *v);
    }
    let gw = TestGateway::start(opts).await;
    (stub, gw)
}

/// Reads until EOF (or a reset), bounded; true if the peer closed within `limit`.
async fn closes_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.is_ok()
}

/// Writes `bytes` on a fresh HTTP/1.1 TLS connection, reads one response and reports whether
/// the gateway closed the connection after it.
async fn raw_exchange(gw: &TestGateway, bytes: &[u8]) -> (TestResponse, bool) {
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    within(STEP, "write the hostile request", async {
        tls.write_all(bytes).await.unwrap();
        tls.flush().await.unwrap();
    })
    .await;
    let resp = within(STEP, "read the response", read_raw_response(&mut tls)).await;
    let closed = closes_within(&mut tls, STEP).await;
    (resp, closed)
}

fn head(lines: &str) -> String {
    format!("POST /echo HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n")
}

// ---------------------------------------------------------------------------------------------
// 1. HTTP/1.1 framing (RFC 9112 §6; nginx ≥ 1.21.1 behaviour)
// ---------------------------------------------------------------------------------------------

/// Each request is ambiguous about where it ends or how its headers are split; each gets 400
/// and the connection closes, and nothing reaches upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_http1_framing_is_400_and_close() {
    let (stub, gw) = public_gateway(&[]).await;
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length then Transfer-Encoding",
            head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n",
        ),
        (
            "Transfer-Encoding then Content-Length",
            head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n") + "0\r\n\r\n",
        ),
        (
            "duplicate equal Content-Length",
            head("Content-Length: 5\r\nContent-Length: 5\r\n") + "hello",
        ),
        (
            "conflicting Content-Length",
            head("Content-Length: 5\r\nContent-Length: 6\r\n") + "hello!",
        ),
        (
            "Content-Length list",
            head("Content-Length: 5, 5\r\n") + "hello",
        ),
        (
            "signed Content-Length",
            head("Content-Length: +5\r\n") + "hello",
        ),
        (
            "unknown transfer coding",
            head("Transfer-Encoding: xchunked\r\n") + "0\r\n\r\n",
        ),
        (
            "chunked not last",
            head("Transfer-Encoding: chunked, identity\r\n") + "0\r\n\r\n",
        ),
        (
            "a coding before chunked",
            head("Transfer-Encoding: identity, chunked\r\n") + "0\r\n\r\n",
        ),
        (
            "duplicate Transfer-Encoding lines",
            head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n",
        ),
        (
            "space before the colon",
            head("Transfer-Encoding : chunked\r\n") + "0\r\n\r\n",
        ),
        (
            "vertical tab before the value",
            head("Transfer-Encoding:\x0bchunked\r\n") + "0\r\n\r\n",
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            "POST /echo HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .into(),
        ),
        (
            "bare LF between header lines",
            "GET /echo HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n".into(),
        ),
        (
            "bare LF line endings throughout",
            "GET /echo HTTP/1.1\nHost: localhost\n\n".into(),
        ),
        (
            "bare CR inside a value",
            "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n".into(),
        ),
        (
            "NUL inside a value",
            "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n".into(),
        ),
        (
            "obsolete line folding",
            "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n".into(),
        ),
    ];
    let mut failures = Vec::new();
    for (what, request) in &cases {
        let (resp, closed) = raw_exchange(&gw, request.as_bytes()).await;
        if resp.status.as_u16() != 400 || !closed {
            failures.push(format!(
                "{what}: status {} closed {closed}: {}",
                resp.status,
                resp.text()
            ));
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    assert_eq!(stub.heads(), 0, "upstream saw {:?}", stub.records());
}

/// A benign request followed, on the same connection, by a smuggling attempt: the first is
/// served, the second refused, and only the first reaches upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_after_a_benign_request_on_the_same_connection_is_refused() {
    let (stub, gw) = public_gateway(&[]).await;
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    let benign = head("Content-Length: 5\r\n") + "hello";
    within(STEP, "write", tls.write_all(benign.as_bytes()))
        .await
        .unwrap();
    let first = within(STEP, "first response", read_raw_response(&mut tls)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let smuggling = head("Content-Length: 30\r\nTransfer-Encoding: chunked\r\n")
        + "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    within(STEP, "write", tls.write_all(smuggling.as_bytes()))
        .await
        .unwrap();
    let second = within(STEP, "second response", read_raw_response(&mut tls)).await;
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(
        second
            .text()
            .contains("Content-Length together with Transfer-Encoding"),
        "{}",
        second.text()
    );
    assert!(closes_within(&mut tls, STEP).await, "connection closed");
    let records = stub.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].uri.path(), "/echo");
    assert_eq!(stub.heads(), 1);
}

/// Well-formed framing still works (the refusals above are not blanket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_http1_framing_is_forwarded() {
    let (stub, gw) = public_gateway(&[]).await;
    for request in [
        head("Content-Length: 5\r\n") + "hello",
        head("Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n",
        head("Transfer-Encoding: Chunked\r\n") + "5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Tab:\tvalue\t\r\n\r\n".into(),
    ] {
        let resp = gw.client.raw(request.as_bytes()).await;
        assert_eq!(resp.status, 200, "{request:?}: {}", resp.text());
    }
    assert_eq!(stub.records().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Helpers: the ARCP profile (gateway endpoints), raw HTTP/2 frames
// ---------------------------------------------------------------------------------------------

/// The gateway with the ARCP profile (so `/gateway/live` and `/auth/login` exist) in front of
/// the ARCP stub, with `server` keys added.
async fn arcp_gateway(server: &[(&'static str, &str)]) -> (ArcpStub, Keys, TestGateway) {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let mut opts = keys.options(&stub.url(), &ArcpConfig::default());
    for (k, v) in server {
        opts = opts.server(k, *v);
    }
    let gw = TestGateway::start(opts).await;
    (stub, keys, gw)
}

/// Fails the test if anything but the broker's own login reached the ARCP stub.
fn assert_upstream_saw_nothing(stub: &ArcpStub) {
    let seen = stub.non_login_records();
    assert!(seen.is_empty(), "upstream saw {seen:?}");
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal without indexing, name from the static table (RFC 7541 §6.2.2).
fn literal(name_index: u8, value: &str) -> Vec<u8> {
    assert!(value.len() < 127);
    let mut b = vec![name_index, value.len() as u8];
    b.extend_from_slice(value.as_bytes());
    b
}

/// The header block of `GET path` (static table: 0x82 `:method GET`, 0x87 `:scheme https`).
fn get_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x87];
    b.extend(literal(4, path));
    b.extend(literal(1, authority));
    b
}

/// A TLS connection that chose `h2`, with the client preface and an empty SETTINGS sent.
async fn h2_connect(client: &TlsClient) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tls = client.tls_connect(Proto::H2).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    within(STEP, "send the HTTP/2 preface", tls.write_all(&hello))
        .await
        .unwrap();
    tls
}

/// The next frame, or `None` at EOF or a reset.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Reads frames until EOF; returns the GOAWAY error code if one came. Bounded by `limit`.
async fn until_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<u32> {
    within(limit, "the gateway closes the HTTP/2 connection", async {
        let mut goaway = None;
        while let Some((kind, _, _, payload)) = read_frame(s).await {
            if kind == GOAWAY && payload.len() >= 8 {
                goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
        goaway
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 2. Deadlines: every stage a client can stall
// ---------------------------------------------------------------------------------------------

/// Acceptance (issue 10 §2): with `max_connections: 4` held by four stalled clients, a fifth
/// client's `GET /gateway/live` still answers within 2 s, because deadlines free the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stalled_clients_cannot_lock_out_a_fifth() {
    let mut server = SHORT.to_vec();
    server.push(("max_connections", "4"));
    server.push(("body_min_rate", "100"));
    let (stub, _keys, gw) = arcp_gateway(&server).await;

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
    // 4. A kept-alive HTTP/1.1 connection that went quiet after one request.
    let mut idle = gw.client.tls_connect(Proto::H1).await;
    idle.write_all(b"GET /gateway/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = within(STEP, "idle client's request", read_raw_response(&mut idle)).await;
    assert_eq!(first.status, 200);

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

    // Each stalled client was closed; the slow login got a 408 problem first.
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
    assert!(
        closes_within(&mut idle, STEP).await,
        "idle keep-alive closed"
    );
    assert_upstream_saw_nothing(&stub);
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

// ---------------------------------------------------------------------------------------------
// 3. Connection caps
// ---------------------------------------------------------------------------------------------

/// One address holds at most `max_connections_per_address`; the next is closed before TLS,
/// another address is unaffected, and a freed connection makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let (stub, _keys, gw) = arcp_gateway(&[("max_connections_per_address", "2")]).await;
    let held1 = gw.client.tls_connect(Proto::H1).await;
    let _held2 = gw.client.tls_connect(Proto::H1).await;

    let mut third = within(STEP, "connect", TcpStream::connect(gw.addr))
        .await
        .unwrap();
    third.write_all(b"\x16\x03\x01").await.ok(); // the start of a ClientHello
    assert!(
        closes_within(&mut third, STEP).await,
        "third connection closed"
    );

    let other = gw
        .send_from(OTHER_LOOPBACK, get("/gateway/live"), STEP)
        .await;
    assert_eq!(other.status, 200, "another address is served");

    drop(held1);
    let mut served = false;
    for _ in 0..100 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(b"\x16\x03\x01").await.ok();
        let mut byte = [0u8; 1];
        // A refused connection is closed at once; an admitted one waits for the rest of the hello.
        match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut byte)).await {
            Err(_) => {
                served = true;
                break;
            }
            Ok(_) => continue,
        }
    }
    assert!(served, "the freed slot was not given back");
    assert_upstream_saw_nothing(&stub);
}

/// The HTTP/2 SETTINGS the gateway sends carry the configured stream limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_announces_the_configured_stream_limit() {
    let (_stub, _keys, gw) = arcp_gateway(&[("http2_max_concurrent_streams", "7")]).await;
    let mut tls = h2_connect(&gw.client).await;
    let (kind, flags, _, payload) = within(STEP, "SETTINGS", read_frame(&mut tls))
        .await
        .expect("a frame");
    assert_eq!(
        (kind, flags & 1),
        (SETTINGS, 0),
        "the server's SETTINGS first"
    );
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(
        settings.contains(&(0x3, 7)),
        "MAX_CONCURRENT_STREAMS: {settings:?}"
    );
    assert!(
        settings.contains(&(0x6, 64 * 1024)),
        "MAX_HEADER_LIST_SIZE: {settings:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. HTTP/2 floods
// ---------------------------------------------------------------------------------------------

/// Rapid reset (CVE-2023-44487): streams opened and cancelled at once, in bulk. The gateway
/// ends the connection with GOAWAY ENHANCE_YOUR_CALM, keeps serving others, and nothing
/// reaches upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_ends_the_connection() {
    let (stub, _keys, gw) = arcp_gateway(&[]).await;
    let mut tls = h2_connect(&gw.client).await;
    let block = get_block("/agents", &gw.client.authority());
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        let id = 1 + 2 * i;
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = tls.write_all(&flood).await; // the gateway may close mid-write
    let goaway = until_closed(&mut tls, STEP).await;
    assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
    let live = gw.client.send(Proto::H2, get("/gateway/live")).await;
    assert_eq!(live.status, 200);
    assert_upstream_saw_nothing(&stub);
}

/// CONTINUATION flood (CVE-2024-27316 class): a header block that never ends. The gateway stops
/// at its header-list limit and closes the connection instead of buffering; nothing reaches
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_ends_the_connection() {
    let (stub, _keys, gw) = arcp_gateway(&[]).await;
    let mut tls = h2_connect(&gw.client).await;
    let mut first = get_block("/agents", &gw.client.authority());
    first.extend(literal(0x0f, "x")); // keep the block open-ended
    let _ = tls.write_all(&frame(HEADERS, END_STREAM, 1, &first)).await;
    let mut junk = Vec::new();
    while junk.len() < 16_000 {
        // literal without indexing, new name `x-flood`, 100-byte value
        junk.extend([0x00, 7]);
        junk.extend_from_slice(b"x-flood");
        junk.push(100);
        junk.extend_from_slice(&[b'a'; 100]);
    }
    let continuation = frame(CONTINUATION, 0, 1, &junk);
    let writer = async {
        for _ in 0..640 {
            // 10 MiB in all, far past the 64 KiB limit
            if tls.write_all(&continuation).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(STEP, writer).await;
    let goaway = until_closed(&mut tls, STEP).await;
    assert!(
        goaway.is_some_and(|code| code != 0),
        "GOAWAY with an error: {goaway:?}"
    );
    assert_upstream_saw_nothing(&stub);
}
