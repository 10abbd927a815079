//! The client against a small HTTP/1.1 server on loopback that counts its connections.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

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
    }
}

fn client(server: &Server) -> UpstreamClient {
    UpstreamClient::new(&UpstreamSettings {
        url: format!("http://{}", server.address).parse().unwrap(),
        ca: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
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
    };
    let client = client(&server);
    let err = client.send(get(&client, "/")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
}
