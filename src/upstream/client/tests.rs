//! The client against a small HTTP/1.1 server on loopback that counts its connections.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

mod pieces;

/// What the test server answers: `close` ends the connection after the response.
#[derive(Clone, Copy)]
enum Mode {
    KeepAlive,
    Close,
}

struct Server {
    address: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Request heads as received (the raw server only).
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let host = req
                            .headers()
                            .get(HOST)
                            .map(|h| h.to_str().unwrap_or_default().to_owned())
                            .unwrap_or_default();
                        let target = req.uri().to_string();
                        if target == "/204" {
                            let mut empty = Response::new(Full::new(Bytes::new()));
                            *empty.status_mut() = StatusCode::NO_CONTENT;
                            return Ok::<_, Infallible>(empty);
                        }
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let text = format!("{target} {host} {}", body.len());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.keep_alive(matches!(mode, Mode::KeepAlive));
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server {
        address,
        connections,
        requests,
        heads: Arc::default(),
    }
}

fn client(server: &Server) -> UpstreamClient {
    client_with(
        "http",
        server,
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
}

fn client_with(
    scheme: &str,
    server: &Server,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> UpstreamClient {
    UpstreamClient::new(&UpstreamSettings {
        url: format!("{scheme}://{}", server.address).parse().unwrap(),
        ca: None,
        connect_timeout,
        response_timeout,
        pool_idle_timeout: Duration::from_secs(90),
        pool_max_idle_per_host: 4,
        service_account: None,
        session_refresh_margin: Duration::from_secs(60),
        replay_buffer_bytes: 0,
        login_backoff_max: Duration::from_secs(5),
    })
    .unwrap()
}

fn get(client: &UpstreamClient, path: &'static str) -> Request<Body> {
    Request::get(client.uri_for(PathAndQuery::from_static(path)))
        .body(Body::empty())
        .unwrap()
}

async fn text(response: Response<UpstreamBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection_in_origin_form() {
    let server = server(Mode::KeepAlive).await;
    let client = client(&server);
    for _ in 0..5 {
        let response = client.send(get(&client, "/a?b=c")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let host = server.address.to_string();
        assert_eq!(text(response).await, format!("/a?b=c {host} 0"));
    }
    let post = Request::post(client.uri_for(PathAndQuery::from_static("/p")))
        .header(HOST, "api.example")
        .body(Body::full("12345"))
        .unwrap();
    let response = client.send(post).await.unwrap();
    assert_eq!(text(response).await, "/p api.example 5");
    assert_eq!(server.requests.load(Ordering::SeqCst), 6);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(client.pool.idle_count(), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let server = server(Mode::KeepAlive).await;
    let client = client(&server);
    let unread = client.send(get(&client, "/x")).await.unwrap();
    drop(unread);
    assert_eq!(client.pool.idle_count(), 0);
    let response = client.send(get(&client, "/y")).await.unwrap();
    assert!(text(response).await.starts_with("/y "));
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_pool_them() {
    let server = server(Mode::KeepAlive).await;
    let client = client(&server);
    let (a, b, c) = tokio::join!(
        client.send(get(&client, "/1")),
        client.send(get(&client, "/2")),
        client.send(get(&client, "/3")),
    );
    for r in [a, b, c] {
        text(r.unwrap()).await;
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    assert_eq!(client.pool.idle_count(), 3);
    text(client.send(get(&client, "/4")).await.unwrap()).await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn connections_the_upstream_closes_are_not_reused() {
    let server = server(Mode::Close).await;
    let client = client(&server);
    for i in 0..3 {
        let response = client.send(get(&client, "/c")).await.unwrap();
        assert!(text(response).await.starts_with("/c "), "request {i}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let server = Server {
        address,
        connections: Arc::default(),
        requests: Arc::default(),
        heads: Arc::default(),
    };
    let client = client(&server);
    let err = client.send(get(&client, "/")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn bodiless_answers_head_and_204_keep_their_connection() {
    let server = server(Mode::KeepAlive).await;
    let client = client(&server);
    let head = Request::head(client.uri_for(PathAndQuery::from_static("/h")))
        .body(Body::empty())
        .unwrap();
    let response = client.send(head).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "");
    let response = client.send(get(&client, "/204")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(text(response).await, "");
    let response = client.send(get(&client, "/after")).await.unwrap();
    assert!(text(response).await.starts_with("/after "));
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(client.pool.idle_count(), 1);
}

/// A raw HTTP/1.1 server: each connection reads request heads and hands each to `answer`
/// with its number on the connection (1, 2, ...); `None` closes the connection unanswered.
async fn raw_server(answer: fn(usize) -> Option<&'static [u8]>) -> Server {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let heads: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (c, r, h) = (connections.clone(), requests.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (r, h) = (r.clone(), h.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut n = 0;
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = seen.drain(..end + 4).collect::<Vec<u8>>();
                        h.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        n += 1;
                        r.fetch_add(1, Ordering::SeqCst);
                        match answer(n) {
                            Some(bytes) => stream.write_all(bytes).await.unwrap(),
                            None => return,
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        // Request bodies are not read as such: they stay in `seen` unparsed
                        // (the tests below send none where it matters).
                        Ok(k) => seen.extend_from_slice(&buf[..k]),
                    }
                }
            });
        }
    });
    Server {
        address,
        connections,
        requests,
        heads,
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn only_a_safe_request_that_failed_on_a_reused_connection_is_sent_again() {
    // Each connection answers its first request, then closes on the second unanswered.
    let server = raw_server(|n| (n == 1).then_some(OK)).await;
    let client = client(&server);
    assert_eq!(
        text(client.send(get(&client, "/1")).await.unwrap()).await,
        "ok"
    );
    // The GET meets the closing connection, and is answered on a fresh one.
    let response = client.send(get(&client, "/2")).await.unwrap();
    assert_eq!(text(response).await, "ok");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    {
        // Sent again as it went the first time: same target, same `Host`, same fields.
        let heads = server.heads.lock().unwrap();
        assert_eq!(heads.len(), 3, "{heads:?}");
        assert!(heads[1].starts_with("GET /2 HTTP/1.1\r\n"), "{}", heads[1]);
        assert!(heads[1].contains(&format!("host: {}\r\n", server.address)));
        assert_eq!(heads[1], heads[2]);
    }
    // A DELETE on the same kind of connection is not sent twice: upstream may have acted.
    let delete = Request::delete(client.uri_for(PathAndQuery::from_static("/agents/a")))
        .body(Body::empty())
        .unwrap();
    let failed = client.send(delete).await;
    assert!(
        matches!(failed, Err(UpstreamError::Unreachable(_))),
        "{failed:?}"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_connection_answered_before_its_request_body_was_sent_is_not_pooled() {
    // Answers at once, reads nothing more, keeps the connection open.
    let server =
        raw_server(|_| Some(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")).await;
    let client = client(&server);
    let big = Request::post(client.uri_for(PathAndQuery::from_static("/upload")))
        .body(Body::full(vec![b'x'; 16 << 20]))
        .unwrap();
    let response = client.send(big).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text(response).await, "");
    assert_eq!(
        client.pool.idle_count(),
        0,
        "a half-sent request is not parked"
    );
    let response = client.send(get(&client, "/next")).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_a_chunked_body_is_decoded_on_a_kept_connection() {
    let server = raw_server(|_| {
        Some(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
              content-length: 99\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\ntrailer: x\r\n\r\n",
        )
    })
    .await;
    let client = client(&server);
    for i in 0..3 {
        let response = client.send(get(&client, "/c")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let fields = response.body().fields();
        assert!(
            fields.contains("transfer-encoding") && !fields.contains("content-length"),
            "a length beside a transfer coding does not reach the client"
        );
        assert_eq!(text(response).await, "abcde", "request {i}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(client.pool.idle_count(), 1);
}

#[tokio::test]
async fn a_connection_that_sent_more_than_its_answer_is_not_reused() {
    let server =
        raw_server(|_| Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokSURPLUS")).await;
    let client = client(&server);
    for _ in 0..2 {
        let response = client.send(get(&client, "/s")).await.unwrap();
        assert_eq!(text(response).await, "ok");
        assert_eq!(client.pool.idle_count(), 0);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

/// A server that accepts one connection and hands it to `serve`.
async fn one_connection<F, Fut>(serve: F) -> Server
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream).await;
    });
    Server {
        address,
        connections: Arc::default(),
        requests: Arc::default(),
        heads: Arc::default(),
    }
}

#[tokio::test]
async fn a_body_cut_short_by_the_upstream_is_an_error_not_an_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers one request with half of the promised body, then closes.
    let server = one_connection(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
            .await;
    })
    .await;
    let client = client(&server);
    let response = client.send(get(&client, "/t")).await.unwrap();
    let read = response.into_body().collect().await;
    let err = read.expect_err("a truncated body is an error");
    assert!(
        err.to_string().contains("before the response body ended"),
        "{err}"
    );
    assert_eq!(client.pool.idle_count(), 0);
}

#[tokio::test]
async fn an_upstream_that_answers_while_it_reads_the_body_gets_all_of_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Sends its head at once, then echoes the request body as it reads it.
    let server = one_connection(|mut stream| async move {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            let n = stream.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
        let length: usize = head
            .split("content-length: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .unwrap()
            .parse()
            .unwrap();
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
        stream.write_all(answer.as_bytes()).await.unwrap();
        let mut echoed = seen.len() - end;
        stream.write_all(&seen[end..]).await.unwrap();
        while echoed < length {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the body stopped at {echoed} of {length}");
            stream.write_all(&buf[..n]).await.unwrap();
            echoed += n;
        }
        // Keeps the connection open for a second request.
        let _ = stream.read(&mut buf).await;
    })
    .await;
    let client = client(&server);
    let body: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let post = Request::post(client.uri_for(PathAndQuery::from_static("/echo")))
        .body(Body::full(body.clone()))
        .unwrap();
    let response = client.send(post).await.unwrap();
    // Bounded: without the rest of the request, upstream and gateway would wait on each other.
    let echoed = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .expect("the echo ends")
        .unwrap()
        .to_bytes();
    assert!(
        echoed == body,
        "{} bytes came back of {}",
        echoed.len(),
        body.len()
    );
    assert_eq!(
        client.pool.idle_count(),
        1,
        "sent whole and answered whole: kept"
    );
}

#[tokio::test]
async fn a_malformed_answer_on_a_reused_connection_is_not_sent_again() {
    // Each connection answers its first request, then garbles the second.
    let server = raw_server(|n| {
        Some(if n == 1 {
            OK
        } else {
            b"HTTP/1.1 2x0 OK\r\n\r\n"
        })
    })
    .await;
    let client = client(&server);
    assert_eq!(
        text(client.send(get(&client, "/1")).await.unwrap()).await,
        "ok"
    );
    let failed = client.send(get(&client, "/2")).await;
    assert!(
        matches!(failed, Err(UpstreamError::Unreachable(_))),
        "{failed:?}"
    );
    // Upstream got the GET and answered: it is not sent a second time.
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

mod deadline;
