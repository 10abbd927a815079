//! Request limits: oversized headers and bodies (413), overlong URIs (414) and ambiguous paths
//! (400) are answered by the gateway itself, and nothing, not even a request head, reaches the
//! upstream. The real gateway runs in-process on loopback in front of a recording
//! stub upstream, every route public; the requests are written as raw bytes where a client
//! library would refuse to send them.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::StatusCode;

const MAX_HEADER_BYTES: u64 = 1024;

async fn limited() -> (Stub, TestGateway) {
    let stub = Stub::start().await;
    let gw = TestGateway::start(
        GatewayOptions::new(stub.url())
            .limit("max_header_bytes", MAX_HEADER_BYTES)
            .limit("max_uri_bytes", 256)
            .limit("max_body_bytes", "64KiB"),
    )
    .await;
    (stub, gw)
}

fn assert_untouched(stub: &Stub) {
    assert!(
        stub.records().is_empty(),
        "stub recorded {:?}",
        stub.records()
    );
    assert_eq!(stub.heads(), 0, "a request head reached the stub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_413_headers_too_large() {
    let (stub, gw) = limited().await;
    let authority = gw.client.authority();
    let big = "a".repeat(2000);
    let request = format!("GET /h HTTP/1.1\r\nHost: {authority}\r\nX-Big: {big}\r\n\r\n");
    let resp = gw.client.raw(request.as_bytes()).await;
    let v = assert_problem(&resp, 413, "headers-too-large", "HEADERS_TOO_LARGE", "/h");
    let size = v["header_size"].as_u64().expect("integer header_size");
    let max = v["max_header_size"]
        .as_u64()
        .expect("integer max_header_size");
    assert_eq!(max, MAX_HEADER_BYTES);
    assert!(size > max && size >= 2000, "header_size {size}");
    assert_untouched(&stub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_body_over_the_limit_is_413_request_too_large() {
    let (stub, gw) = limited().await;
    let authority = gw.client.authority();
    // The head alone decides; no body is sent.
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
    );
    let resp = gw.client.raw(request.as_bytes()).await;
    assert_problem(
        &resp,
        413,
        "request-too-large",
        "REQUEST_TOO_LARGE",
        "/upload",
    );
    assert_untouched(&stub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_streaming_past_the_limit_is_413_and_never_completes_upstream() {
    let (stub, gw) = limited().await;
    let authority = gw.client.authority();
    // 5 x 16 KiB = 80 KiB against a 64 KiB limit, no Content-Length, and no final chunk:
    // the client stops and waits, as a slow uploader would.
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for i in 0..5u8 {
        request.extend_from_slice(b"4000\r\n");
        request.extend(std::iter::repeat_n(b'a' + i, 16 * 1024));
        request.extend_from_slice(b"\r\n");
    }
    let resp = gw.client.raw(&request).await;
    assert_problem(
        &resp,
        413,
        "request-too-large",
        "REQUEST_TOO_LARGE",
        "/upload",
    );

    // The stub may have seen the head of a streamed request; it must never see a complete
    // one. Wait until every request it saw has ended one way or the other.
    let quiet = stub.wait_until(STEP, Stub::is_quiet).await;
    assert!(
        stub.records().is_empty(),
        "the stub received a complete (truncated) request: {:?}",
        stub.records()
    );
    assert!(
        quiet,
        "the upstream connection stayed open: heads {}, aborted {}, open {}",
        stub.heads(),
        stub.aborted(),
        stub.open_connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_uri_is_414() {
    let (stub, gw) = limited().await;
    let authority = gw.client.authority();
    let path = format!("/{}", "u".repeat(300));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let resp = gw.client.raw(request.as_bytes()).await;
    assert_eq!(resp.status, StatusCode::URI_TOO_LONG, "{}", resp.text());
    let v = resp.json();
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    assert!(v["type"].as_str().unwrap().starts_with(PROBLEM_BASE), "{v}");
    assert_eq!(v["status"], 414);
    assert_eq!(v["instance"], path.as_str());
    assert_eq!(
        &json_key_order(&resp.text())[..PROBLEM_FIELDS.len()],
        PROBLEM_FIELDS
    );
    assert_eq!(v["request_id"], resp.header("x-request-id").unwrap());
    assert_untouched(&stub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_400_request_error() {
    let (stub, gw) = limited().await;
    let authority = gw.client.authority();
    for path in ["/static/%2e%2e/x", "/a%2fb", "/x/../y"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        let resp = gw.client.raw(request.as_bytes()).await;
        assert_problem(&resp, 400, "request-error", "REQUEST_ERROR", path);
    }
    assert_untouched(&stub);
}
