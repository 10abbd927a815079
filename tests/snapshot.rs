//! The configuration snapshot seam: a replaced snapshot decides the next request, while a
//! request already in flight finishes on the snapshot it started with.
//!
//! The gateway runs in-process on a plain-HTTP loopback listener in front of a tiny
//! upstream that holds `/slow` until the test releases it.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcp_gateway::config;
use arcp_gateway::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

/// An upstream that records request paths and holds `/slow` until released.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    slow_arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let slow_arrived = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, a, r) = (seen.clone(), slow_arrived.clone(), release.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, a, r) = (s.clone(), a.clone(), r.clone());
                tokio::spawn(async move {
                    let head = read_head(&mut stream).await;
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    s.lock().unwrap().push(path.clone());
                    if path == "/slow" {
                        a.notify_one();
                        r.notified().await;
                    }
                    let body = format!("upstream {path}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Upstream {
            port,
            seen,
            slow_arrived,
            release,
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// One `GET` over a fresh connection; returns the status code and the body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: gateway.test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn settings(upstream_port: u16, slow: &str, probe: &str) -> config::Settings {
    let yaml = format!(
        r#"
listeners: [{{address: "127.0.0.1:0", plain_http: true}}]
upstream: {{url: "http://127.0.0.1:{upstream_port}"}}
routes:
  profile: none
  default_access: deny
  rules:
    - {{name: slow, path: /slow, access: {slow}}}
    - {{name: probe, path: /probe, access: {probe}}}
"#
    );
    config::from_str(&yaml, "snapshot.yaml", Path::new(".")).unwrap()
}

#[tokio::test]
async fn replaced_snapshot_decides_the_next_request_and_in_flight_ones_finish() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::bind(settings(upstream.port, "public", "public"))
        .await
        .unwrap();
    let port = gateway.local_addrs()[0].port();
    let reloader = gateway.reloader();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(async {
        let _ = stop_rx.await;
    }));

    // Before the swap both routes are public and reach upstream.
    assert_eq!(get(port, "/probe").await, (200, "upstream /probe".into()));

    // A request in flight, admitted under the first snapshot.
    let arrived = upstream.slow_arrived.notified();
    let in_flight = tokio::spawn(get(port, "/slow"));
    tokio::time::timeout(Duration::from_secs(10), arrived)
        .await
        .expect("the slow request reached upstream");

    // Both routes are denied from now on.
    reloader.apply(&settings(upstream.port, "deny", "deny"));
    let (status, body) = get(port, "/probe").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("/problems/forbidden"), "{body}");
    let (status, _) = get(port, "/slow").await;
    assert_eq!(status, 403);

    // The request in flight still completes, on the snapshot it started with.
    upstream.release.notify_one();
    let finished = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("in-flight request finished")
        .unwrap();
    assert_eq!(finished, (200, "upstream /slow".into()));
    assert_eq!(
        *upstream.seen.lock().unwrap(),
        ["/probe", "/slow"],
        "nothing denied reached upstream"
    );

    // And back: the next request sees the first configuration again.
    reloader.apply(&settings(upstream.port, "public", "public"));
    assert_eq!(get(port, "/probe").await, (200, "upstream /probe".into()));

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
}
