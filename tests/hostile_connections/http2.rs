//! HTTP/2: the stream limit the gateway announces, and the floods (rapid reset, CONTINUATION)
//! that end the connection before anything reaches upstream.

use tokio::io::AsyncWriteExt;

use super::common::{get, within, Proto, STEP};
use super::{
    arcp_gateway, assert_upstream_saw_nothing, frame, get_block, h2_connect, literal, read_frame,
    until_closed, CONTINUATION, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, SETTINGS,
};

/// The HTTP/2 SETTINGS the gateway sends carry the configured stream limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_announces_the_configured_stream_limit() {
    let (_stub, _keys, gw) = arcp_gateway(&[("http2_max_concurrent_streams", "7")]).await;
    let mut tls = h2_connect(&gw.client).await;
    let (kind, flags, _, payload) = within(STEP, "SETTINGS", read_frame(&mut tls))
        .await
        .expect("a frame");
    assert_eq!(
        (kind, flags & 1),
        (SETTINGS, 0),
        "the server's SETTINGS first"
    );
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(
        settings.contains(&(0x3, 7)),
        "MAX_CONCURRENT_STREAMS: {settings:?}"
    );
    assert!(
        settings.contains(&(0x6, 64 * 1024)),
        "MAX_HEADER_LIST_SIZE: {settings:?}"
    );
}

/// Rapid reset (CVE-2023-44487): streams opened and cancelled at once, in bulk. The gateway
/// ends the connection with GOAWAY ENHANCE_YOUR_CALM, keeps serving others, and nothing
/// reaches upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_ends_the_connection() {
    let (stub, _keys, gw) = arcp_gateway(&[]).await;
    let mut tls = h2_connect(&gw.client).await;
    let block = get_block("/agents", &gw.client.authority());
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        let id = 1 + 2 * i;
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = tls.write_all(&flood).await; // the gateway may close mid-write
    let goaway = until_closed(&mut tls, STEP).await;
    assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
    let live = gw.client.send(Proto::H2, get("/gateway/live")).await;
    assert_eq!(live.status, 200);
    assert_upstream_saw_nothing(&stub);
}

/// CONTINUATION flood (CVE-2024-27316 class): a header block that never ends. The gateway stops
/// at its header-list limit and closes the connection instead of buffering; nothing reaches
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_ends_the_connection() {
    let (stub, _keys, gw) = arcp_gateway(&[]).await;
    let mut tls = h2_connect(&gw.client).await;
    let mut first = get_block("/agents", &gw.client.authority());
    first.extend(literal(0x0f, "x")); // keep the block open-ended
    let _ = tls.write_all(&frame(HEADERS, END_STREAM, 1, &first)).await;
    let mut junk = Vec::new();
    while junk.len() < 16_000 {
        // literal without indexing, new name `x-flood`, 100-byte value
        junk.extend([0x00, 7]);
        junk.extend_from_slice(b"x-flood");
        junk.push(100);
        junk.extend_from_slice(&[b'a'; 100]);
    }
    let continuation = frame(CONTINUATION, 0, 1, &junk);
    let writer = async {
        for _ in 0..640 {
            // 10 MiB in all, far past the 64 KiB limit
            if tls.write_all(&continuation).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(STEP, writer).await;
    let goaway = until_closed(&mut tls, STEP).await;
    assert!(
        goaway.is_some_and(|code| code != 0),
        "GOAWAY with an error: {goaway:?}"
    );
    assert_upstream_saw_nothing(&stub);
}
