//! A client stream dropped while a write to it waits is closed with a reset.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;

use tokio::io::AsyncWrite;

use super::super::{Activity, Watched};

/// Fills the socket until a write to the client waits (the client reads nothing).
async fn stalled(watched: &mut Watched<tokio::net::TcpStream>) {
    let chunk = vec![7u8; 64 << 10];
    loop {
        let waited = std::future::poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut *watched).poll_write(cx, &chunk).is_pending())
        })
        .await;
        if waited {
            return;
        }
    }
}

/// Reads everything the client was sent, then how the connection ended.
async fn ending(mut client: tokio::net::TcpStream) -> Option<std::io::ErrorKind> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match client.read(&mut buf).await {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(e.kind()),
        }
    }
}

async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[tokio::test]
async fn a_client_stream_dropped_while_a_write_waits_is_reset() {
    let (client, server) = pair().await;
    let activity = Activity::new();
    let mut watched = Watched::new(server, activity.clone());
    stalled(&mut watched).await;
    assert_ne!(activity.load.write_waits.load(Ordering::Relaxed), 0);
    drop(watched); // not marked by the supervisor: an idle close, a shutdown's end
    assert_eq!(
        ending(client).await,
        Some(std::io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn a_client_stream_dropped_after_its_writes_went_through_is_closed_gently() {
    use tokio::io::AsyncWriteExt;
    let (client, server) = pair().await;
    let mut watched = Watched::new(server, Activity::new());
    watched
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    drop(watched);
    assert_eq!(ending(client).await, None);
}
