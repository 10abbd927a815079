//! Connection caps: one address holds at most `server.max_connections_per_address`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common::{get, within, Proto, STEP};
use super::{arcp_gateway, assert_upstream_saw_nothing, closes_within};

const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

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

/// With several workers, a worker whose socket has nothing to accept holds no place in
/// `max_connections`: with one place and two workers, one connection after another is
/// served whichever worker the kernel hands it to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_holds_no_connection_place() {
    let (stub, _keys, gw) = arcp_gateway(&[("max_connections", "1"), ("workers", "2")]).await;
    for i in 0..12 {
        let resp = within(STEP, &format!("connection {i}"), async {
            gw.client.send(Proto::H1, get("/gateway/live")).await
        })
        .await;
        assert_eq!(resp.status, 200, "connection {i}");
    }
    assert_upstream_saw_nothing(&stub);
}
