//! The gateway's own HTTP/1.1 loop (bodyless requests) and hyper (everything else) on one
//! connection: requests pipelined across the hand-over are each served once, in order; the
//! connection's deadlines still tell a quiet connection from a stalled head after it; and the
//! framing checks still refuse what follows a request the loop served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::closes_within;
use super::common::{read_raw_response, within, Proto, TestGateway, STEP};
use super::framing::public_gateway;

/// One response cut from the front of `bytes`: status, fields and body. `head_request`: the
/// answer to a HEAD, which has no body whatever its length says.
fn take_response(bytes: &mut Vec<u8>, head_request: bool) -> (u16, String, Vec<u8>) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head")
        + 4;
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_owned))
    };
    let mut rest = bytes.split_off(end);
    let body = if head_request {
        Vec::new()
    } else if let Some(len) = field("content-length:") {
        let len: usize = len.parse().unwrap();
        let tail = rest.split_off(len);
        std::mem::replace(&mut rest, tail)
    } else {
        assert_eq!(
            field("transfer-encoding:").as_deref(),
            Some("chunked"),
            "{head}"
        );
        let mut body = Vec::new();
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
            body.extend_from_slice(&rest[line + 2..line + 2 + size]);
            rest.drain(..line + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        body
    };
    *bytes = rest;
    (status, head, body)
}

/// Writes `bytes` on a fresh HTTP/1.1 TLS connection and reads until the gateway closes it.
async fn until_closed(gw: &TestGateway, bytes: &[u8]) -> Vec<u8> {
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    within(STEP, "write", tls.write_all(bytes)).await.unwrap();
    let mut read = Vec::new();
    within(STEP, "read to the close", tls.read_to_end(&mut read))
        .await
        .unwrap();
    read
}

/// Six requests written at once: bodyless ones (the gateway's loop), a `POST` with a body
/// (handed to hyper with the bytes read after it), and bodyless ones again (hyper's now).
/// Each is answered once, in order, with its own body, and reaches the upstream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_across_the_hand_over_are_each_served_once_in_order() {
    let (stub, gw) = public_gateway(&[]).await;
    let requests = [
        "GET /echo?n=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /stream/100000 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "HEAD /echo?n=3 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /echo?n=4 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        "GET /echo?n=5 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "DELETE /echo?n=6 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ];
    let mut bytes = until_closed(&gw, requests.concat().as_bytes()).await;

    let mut bodies = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let (status, head, body) = take_response(&mut bytes, request.starts_with("HEAD"));
        assert_eq!(status, 200, "request {i}: {head}");
        bodies.push(body);
    }
    assert!(bytes.is_empty(), "more after the last response: {bytes:?}");
    for (i, n) in [(0, 1), (4, 5), (5, 6)] {
        let echo: serde_json::Value = serde_json::from_slice(&bodies[i]).unwrap();
        assert_eq!(echo["uri"], format!("/echo?n={n}"), "response {i}");
    }
    assert_eq!(bodies[1].len(), 100_000);
    assert!(bodies[2].is_empty());
    let echo: serde_json::Value = serde_json::from_slice(&bodies[3]).unwrap();
    assert_eq!(
        (&echo["uri"], &echo["body_len"]),
        (&"/echo?n=4".into(), &5.into())
    );

    let seen: Vec<String> = stub
        .records()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /echo?n=1",
            "GET /stream/100000",
            "HEAD /echo?n=3",
            "POST /echo?n=4",
            "GET /echo?n=5",
            "DELETE /echo?n=6"
        ]
    );
}

/// After the hand-over, a quiet connection still waits `idle_timeout` (4 s) and a stalled
/// head is still cut `header_read_timeout` (1 s) after its first byte: the head the loop
/// began and hyper finished is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_hand_over_the_deadlines_still_tell_quiet_from_stalled() {
    let deadlines = [("header_read_timeout", "1s"), ("idle_timeout", "4s")];
    let (_stub, gw) = public_gateway(&deadlines).await;
    let handed_over = || async {
        let mut tls = gw.client.tls_connect(Proto::H1).await;
        for request in [
            "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi",
        ] {
            tls.write_all(request.as_bytes()).await.unwrap();
            let resp = within(STEP, "a response", read_raw_response(&mut tls)).await;
            assert_eq!(resp.status, 200, "{}", resp.text());
        }
        tls
    };

    let mut quiet = handed_over().await;
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

    let mut stalled = handed_over().await;
    stalled
        .write_all(b"GET /echo HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let began = Instant::now();
    assert!(
        closes_within(&mut stalled, Duration::from_millis(3000)).await,
        "a stalled head still open after {:?}",
        began.elapsed()
    );
}

/// A smuggling attempt right behind a request the gateway's loop served: the loop hands it to
/// hyper, whose framing check refuses it (400 and close); only the first reaches upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_behind_a_bodyless_request_is_refused() {
    let (stub, gw) = public_gateway(&[]).await;
    let both = "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n\
                POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 30\r\n\
                Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut bytes = until_closed(&gw, both.as_bytes()).await;
    let (first, _, _) = take_response(&mut bytes, false);
    let (second, head, body) = take_response(&mut bytes, false);
    assert_eq!((first, second), (200, 400), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("Content-Length together with Transfer-Encoding"),
        "{text}"
    );
    let records = stub.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].uri.path(), "/echo");
}

/// The HTTP/2 preface after a request the gateway's loop served is not switched to HTTP/2
/// (hyper gets the rest of the connection as HTTP/1.1 only): at most a 400, never an HTTP/2
/// frame, and nothing more upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_does_not_begin_in_the_middle_of_an_http1_connection() {
    let (stub, gw) = public_gateway(&[]).await;
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    let mut bytes = b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    bytes.extend_from_slice(super::PREFACE);
    bytes.extend_from_slice(&super::frame(super::SETTINGS, 0, 0, &[]));
    within(STEP, "write", tls.write_all(&bytes)).await.unwrap();
    let mut read = Vec::new();
    // The connection ends (a reset counts as the end too).
    let _ = within(STEP, "read to the close", tls.read_to_end(&mut read)).await;
    let (first, head, _) = take_response(&mut read, false);
    assert_eq!(first, 200, "{head}");
    assert!(
        read.is_empty() || read.starts_with(b"HTTP/1.1 400"),
        "after the first response: {:?}",
        String::from_utf8_lossy(&read)
    );
    assert_eq!(stub.records().len(), 1);
}

/// HTTP/1.1 on a connection whose TLS handshake chose `h2` is not served (it would bypass the
/// HTTP/1.1 framing check, which stands aside for HTTP/2): no HTTP/1.1 answer, nothing upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_on_a_connection_that_chose_h2_is_not_served() {
    let (stub, gw) = public_gateway(&[]).await;
    let mut tls = gw.client.tls_connect(Proto::H2).await;
    within(
        STEP,
        "write",
        tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
    .await
    .unwrap();
    let mut read = Vec::new();
    // The connection ends (a reset counts as the end too).
    let _ = within(STEP, "read to the close", tls.read_to_end(&mut read)).await;
    assert!(
        !read.starts_with(b"HTTP/1"),
        "answered as HTTP/1.1: {:?}",
        String::from_utf8_lossy(&read)
    );
    assert!(stub.records().is_empty(), "{:?}", stub.records());
}
