//! A client that stops reading its response (a "slow read"): the gateway's writes to it wait,
//! and `server.send_timeout` after the first one that waits, the connection and the upstream
//! exchange behind it are dropped, the socket with a reset. On HTTP/2, a stream the client starves of flow-control
//! window while the socket stays open is reset on its own. A client that reads slowly but
//! steadily keeps its response.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{GatewayOptions, Proto, Stub, TestGateway, STEP};
use super::{
    closes_within, frame, get_block, read_frame, END_HEADERS, END_STREAM, HEADERS, PREFACE,
    RST_STREAM, SETTINGS,
};

/// Larger than every buffer between the stub and the client (socket buffers on both
/// connections, rustls's), so that the gateway's writes wait when the client stops reading.
const LARGE: usize = 64 << 20;

async fn gateway(stub: &Stub) -> TestGateway {
    TestGateway::start(
        GatewayOptions::new(stub.url())
            .server("send_timeout", "1s")
            .server("header_read_timeout", "1s")
            .server("idle_timeout", "1s"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_at_the_send_deadline() {
    let stub = Stub::start().await;
    let gw = gateway(&stub).await;
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    let request = format!("GET /stream/{LARGE} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let sent = Instant::now();
    assert!(
        stub.wait_until(STEP, |s| s.heads() == 1).await,
        "the request reached upstream"
    );

    // Streaming, then stuck on the client: the upstream exchange is still open well into the
    // stall, not cut before the deadline.
    tokio::time::sleep(Duration::from_millis(500)).await; // the client's silence
    assert_eq!(
        stub.open_connections(),
        1,
        "upstream exchange open during the stall"
    );

    // The first write that waited did so well within the first 500 ms; the supervisor looks
    // at least every second (the shortest deadline), so the drop comes within 1–2.5 s.
    let dropped = stub
        .wait_until(Duration::from_secs(4), |s| s.open_connections() == 0)
        .await;
    let took = sent.elapsed();
    assert!(
        dropped,
        "the upstream exchange still open {took:?} after the request"
    );
    assert!(
        took >= Duration::from_secs(1),
        "dropped after only {took:?}"
    );

    // The client gets what was buffered for it, then a reset (not a close that leaves the
    // kernel retransmitting the rest): far less than the body.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let ended = tokio::time::timeout(STEP, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => return None,
                Err(e) => return Some(e.kind()),
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert_eq!(
        ended,
        Ok(Some(std::io::ErrorKind::ConnectionReset)),
        "the client connection still open, or closed without a reset"
    );
    assert!(got < LARGE, "the whole body arrived ({got} bytes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_slowly_but_steadily_gets_its_whole_response() {
    let stub = Stub::start().await;
    let gw = gateway(&stub).await;
    let mut tls = gw.client.tls_connect(Proto::H1).await;
    // About 3 s to read at the pace below: three send deadlines, during which the gateway's
    // writes wait often, but never for a whole second.
    const SIZE: usize = 12 << 20;
    let request = format!("GET /stream/{SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut received = Vec::with_capacity(SIZE + 4096);
    let mut buf = vec![0u8; 64 << 10];
    let mut slice = 0usize;
    loop {
        let n = tokio::time::timeout(STEP, tls.read(&mut buf))
            .await
            .expect("a read within the step")
            .expect("the connection stays up");
        assert!(n > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&buf[..n]);
        slice += n;
        if slice >= 1 << 20 {
            slice = 0;
            tokio::time::sleep(Duration::from_millis(250)).await; // the client's pace
        }
        if let Some(head) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            if received.len() >= head + 4 + SIZE {
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "read too fast to test ({took:?})"
    );
    let head = String::from_utf8_lossy(&received[..received.len().min(512)]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Kept alive after the response, then closed at the idle deadline as usual.
    assert!(closes_within(&mut tls, Duration::from_secs(3)).await);
}

/// HTTP/2 with no flow-control window for any stream (`SETTINGS_INITIAL_WINDOW_SIZE` 0, no
/// `WINDOW_UPDATE` for the stream): the socket never blocks, but the response body cannot
/// move. `send_timeout` after the response was handed to hyper the stream is reset, with the
/// upstream exchange behind it, and the connection goes on: a second stream given window is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_starved_of_window_is_reset_at_the_send_deadline() {
    const PING: u8 = 0x6;
    const DATA: u8 = 0x0;
    const WINDOW_UPDATE: u8 = 0x8;
    let stub = Stub::start().await;
    let gw = gateway(&stub).await;
    let mut tls = gw.client.tls_connect(Proto::H2).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[0x00, 0x04, 0, 0, 0, 0])); // INITIAL_WINDOW_SIZE 0
    let block = get_block(&format!("/stream/{LARGE}"), &gw.client.authority());
    hello.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    tls.write_all(&hello).await.unwrap();
    let sent = Instant::now();

    // A live client: it acknowledges SETTINGS, answers PINGs and reads every frame. Once
    // stream 1 is reset it asks for a small answer on stream 3, with window for it.
    let mut status = false;
    let mut data_1 = 0usize;
    let mut reset_after = None;
    let mut second_done = false;
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        while let Some((kind, flags, stream, payload)) = read_frame(&mut tls).await {
            match kind {
                SETTINGS if flags & 0x1 == 0 => {
                    let _ = tls.write_all(&frame(SETTINGS, 0x1, 0, &[])).await;
                }
                PING if flags & 0x1 == 0 => {
                    let _ = tls.write_all(&frame(PING, 0x1, 0, &payload)).await;
                }
                HEADERS if stream == 1 => status = true,
                DATA if stream == 1 => data_1 += payload.len(),
                RST_STREAM if stream == 1 => {
                    reset_after = Some(sent.elapsed());
                    // The starved stream's upstream exchange is gone with it.
                    assert!(
                        stub.wait_until(STEP, |s| s.open_connections() == 0).await,
                        "the starved stream's upstream exchange still open"
                    );
                    let block = get_block("/second", &gw.client.authority());
                    let mut next = frame(HEADERS, END_STREAM | END_HEADERS, 3, &block);
                    next.extend(frame(WINDOW_UPDATE, 0, 3, &65_535u32.to_be_bytes()));
                    tls.write_all(&next).await.unwrap();
                }
                DATA | HEADERS if stream == 3 && flags & END_STREAM != 0 => {
                    second_done = true;
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(status, "the response head came");
    assert_eq!(data_1, 0, "no window, no data");
    let reset_after = reset_after.expect("stream 1 was not reset");
    assert!(
        reset_after >= Duration::from_secs(1),
        "reset after only {reset_after:?}"
    );
    assert!(
        ended.is_ok() && second_done,
        "the connection did not serve stream 3"
    );
    // The second stream reached upstream, and its connection went back to the pool.
    assert_eq!(stub.heads(), 2);
    assert!(stub.wait_until(STEP, |s| s.open_connections() == 1).await);
}
