//! A listener behind a TCP load balancer (`listeners[].proxy_protocol.trusted`): the
//! balancer's PROXY header names the client, and everything keyed by the client's address
//! (upstream's `X-Forwarded-For`, login throttling, per-address connection caps) uses the
//! named client, not the balancer. Nobody else can name an address, and the balancer
//! cannot skip the header.
//!
//! The real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub; the balancer is
//! 127.0.0.1, an untrusted client 127.0.0.2; headers are sent raw, as HAProxy's
//! `send-proxy-v2` and nginx's `proxy_protocol on` (v1) write them.

#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ppp::v2::{Addresses, Builder, Command, IPv4, Protocol, Version};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use common::arcp_profile::{admin_login, login_request, ArcpConfig, Keys, ADMIN_USER};
use common::arcp_stub::ArcpStub;
use common::{free_port, get, TempDir, TestGateway, TlsClient};

const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LIMIT: Duration = Duration::from_secs(10);

async fn behind_balancer(cfg: ArcpConfig, server: &[(&str, &str)]) -> (ArcpStub, TestGateway) {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let mut opts = keys
        .options(&stub.url(), &cfg)
        .listener("proxy_protocol", json!({"trusted": ["127.0.0.1/32"]}));
    for (k, v) in server {
        opts = opts.server(k, *v);
    }
    (stub, TestGateway::start(opts).await)
}

/// What HAProxy's `send-proxy-v2` writes for a client at `client`.
fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let addresses: Addresses = IPv4::new(client, [127, 0, 0, 1], port, 8443).into();
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_names_the_client_upstream_sees() {
    let (stub, gw) = behind_balancer(ArcpConfig::default(), &[]).await;
    let resp = gw
        .client
        .send_behind(
            BALANCER,
            &v2([192, 0, 2, 7], 50000),
            get("/public/agents"),
            LIMIT,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v1 = b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 8443\r\n";
    let resp = gw
        .client
        .send_behind(BALANCER, v1, get("/public/agents"), LIMIT)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The balancer's own health check (LOCAL) is served as the balancer.
    let local = Builder::with_addresses(
        Version::Two | Command::Local,
        Protocol::Unspecified,
        Addresses::Unspecified,
    )
    .build()
    .unwrap();
    let resp = gw
        .client
        .send_behind(BALANCER, &local, get("/public/agents"), LIMIT)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let forwarded: Vec<_> = stub
        .records_for("/public/agents")
        .iter()
        .map(|r| r.header("x-forwarded-for").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(forwarded, ["192.0.2.7", "198.51.100.9", "127.0.0.1"]);
}

/// Wrong passwords lock the (name, named client) pair: the client behind the balancer is
/// locked, another client behind the same balancer still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttling_counts_the_named_client() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 3,
        ..ArcpConfig::default()
    };
    let (_stub, gw) = behind_balancer(cfg, &[]).await;
    let wrong = || {
        let body = json!({"username": ADMIN_USER, "password": "not-the-password"});
        login_request(&body.to_string(), Some("fp-lb"))
    };
    let attacker = v2([203, 0, 113, 66], 1234);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = gw
            .client
            .send_behind(BALANCER, &attacker, wrong(), LIMIT)
            .await;
        statuses.push(resp.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let admin = v2([192, 0, 2, 10], 4321);
    let resp = gw
        .client
        .send_behind(BALANCER, &admin, admin_login("fp-admin"), LIMIT)
        .await;
    assert_eq!(
        resp.status,
        200,
        "another client is not locked: {}",
        resp.text()
    );
}

/// Connects from `source`, writes `bytes`, and reports whether the gateway closes the
/// connection (rather than waiting for a TLS handshake) within a second.
async fn closed_after(source: IpAddr, gw: SocketAddr, bytes: &[u8]) -> bool {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut tcp = socket.connect(gw).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue, // a TLS alert, then the close
        }
    }
}

/// A client that is not a trusted balancer cannot name an address (its header is not a
/// TLS handshake), and the balancer cannot skip the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_else_names_an_address_and_the_balancer_must() {
    let (stub, gw) = behind_balancer(ArcpConfig::default(), &[]).await;
    let header = v2([192, 0, 2, 7], 50000);
    assert!(closed_after(STRANGER, gw.addr, &header).await);
    // The untrusted client without a header is an ordinary direct client.
    let resp = gw
        .client
        .send_from(STRANGER, get("/public/agents"), LIMIT)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The balancer's TLS ClientHello without a header, and a malformed header.
    assert!(
        closed_after(
            BALANCER,
            gw.addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        )
        .await
    );
    assert!(closed_after(BALANCER, gw.addr, b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n").await);
    let seen: Vec<_> = stub
        .records_for("/public/agents")
        .iter()
        .map(|r| r.header("x-forwarded-for").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        seen,
        ["127.0.0.2"],
        "only the direct client's request arrived"
    );
}

/// A balancer that opens a connection and sends half a header holds it only for the
/// handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_header_is_closed_at_the_handshake_timeout() {
    let (_stub, gw) = behind_balancer(ArcpConfig::default(), &[("handshake_timeout", "1s")]).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(BALANCER, 0)).unwrap();
    let mut tcp = socket.connect(gw.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.").await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed: {read:?}");
}

/// `server.max_connections_per_address` applies to the named client: the balancer carries
/// many clients, one client holds at most its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_caps_apply_to_the_named_client() {
    let (_stub, gw) = behind_balancer(
        ArcpConfig::default(),
        &[("max_connections_per_address", "1")],
    )
    .await;
    // One held connection for 192.0.2.7 (header sent, TLS handshake not started).
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(BALANCER, 0)).unwrap();
    let mut held = socket.connect(gw.addr).await.unwrap();
    held.write_all(&v2([192, 0, 2, 7], 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A second one for the same client is closed at once.
    assert!(closed_after(BALANCER, gw.addr, &v2([192, 0, 2, 7], 2)).await);
    // Other clients behind the same balancer are served.
    for client in [[192, 0, 2, 8], [192, 0, 2, 9]] {
        let resp = gw
            .client
            .send_behind(BALANCER, &v2(client, 3), get("/public/agents"), LIMIT)
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    drop(held);
}

/// A real HAProxy (Debian's) in TCP mode with `send-proxy-v2` in front of the gateway:
/// a client connecting to HAProxy from 127.0.0.2 is 127.0.0.2 to the gateway and upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_haproxy_the_gateway_sees_the_client() {
    let (stub, gw) = behind_balancer(ArcpConfig::default(), &[]).await;
    let dir = TempDir::new();
    let port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend gw\n\
             backend gw\n    server g {} send-proxy-v2\n",
            gw.addr
        ),
    )
    .unwrap();
    let _haproxy = KillOnDrop(
        std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy; scripts/test.sh installs it)"),
    );
    let through = TlsClient::new(
        SocketAddr::from(([127, 0, 0, 1], port)),
        gw.client.ca.clone(),
    );
    let mut resp = None;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            resp = Some(
                through
                    .send_from(STRANGER, get("/public/agents"), LIMIT)
                    .await,
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = resp.expect("HAProxy listened within 5 s");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = stub.records_for("/public/agents");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.2"));
}

/// Stops a child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
