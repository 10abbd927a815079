//! HTTP/1.1 framing (RFC 9112 §6; nginx ≥ 1.21.1 behaviour): a request that is ambiguous about
//! where it ends or how its headers are split is 400 and close, and never reaches upstream.

use tokio::io::AsyncWriteExt;

use super::closes_within;
use super::common::{
    read_raw_response, within, GatewayOptions, Proto, Stub, TestGateway, TestResponse, STEP,
};

/// A gateway in front of a recording stub, every route public (so anything the gateway lets
/// through would reach the stub).
pub(super) async fn public_gateway(server: &[(&'static str, &str)]) -> (Stub, TestGateway) {
    let stub = Stub::start().await;
    let mut opts = GatewayOptions::new(stub.url());
    for (k, v) in server {
        opts = opts.server(k, *v);
    }
    let gw = TestGateway::start(opts).await;
    (stub, gw)
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

/// The framing checks cannot be switched off for the rest of a connection: a request that
/// asks to switch protocols (`Upgrade` on a route without WebSockets) is answered and the
/// connection closed, so what follows it is never read; a chunk size written with leading
/// zeros is followed like any other, so the smuggling attempt after it is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_turns_the_framing_checks_off_for_later_requests() {
    let (stub, gw) = public_gateway(&[]).await;
    let smuggling = head("Content-Length: 30\r\nTransfer-Encoding: chunked\r\n")
        + "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

    let upgrade = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: x\r\n\r\n".to_owned();
    let (resp, closed) = raw_exchange(&gw, (upgrade + &smuggling).as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        closed,
        "the connection ends after a request that was not upgraded"
    );

    let zeros =
        head("Transfer-Encoding: chunked\r\n") + "00000000000000000005\r\nhello\r\n0\r\n\r\n";
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    within(STEP, "write", tls.write_all(zeros.as_bytes()))
        .await
        .unwrap();
    let first = within(STEP, "first response", read_raw_response(&mut tls)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    within(STEP, "write", tls.write_all(smuggling.as_bytes()))
        .await
        .unwrap();
    let second = within(STEP, "second response", read_raw_response(&mut tls)).await;
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(closes_within(&mut tls, STEP).await, "connection closed");

    let paths: Vec<_> = stub
        .records()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        ["/echo", "/echo"],
        "nothing smuggled reached upstream"
    );
}
