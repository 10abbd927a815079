//! Hostile connections: nothing a client does at the connection level can hold a
//! slot for free or smuggle a request past the gateway.
//!
//! * [`framing`]: ambiguous HTTP/1.1 framing (RFC 9112 §6, as strict as nginx ≥ 1.21.1),
//!   smuggling after a benign request, and well-formed framing still forwarded.
//! * [`handover`]: the gateway's own loop for bodyless HTTP/1.1 requests and hyper on one
//!   connection: pipelining across the hand-over, deadlines after it, smuggling behind it.
//! * [`stalls`]: every stage a client can stall is cut at its deadline; four stalled clients
//!   holding every slot cannot lock out a fifth (the acceptance).
//! * [`readers`]: a client that stops reading its response is dropped at `send_timeout`; one
//!   that reads slowly but steadily is served.
//! * [`caps`]: one address cannot take every connection slot.
//! * [`http2`]: the announced stream limit, rapid reset and CONTINUATION floods.
//!
//! Every test writes the concrete hostile bytes on a raw socket (TCP + TLS, HTTP/1.1 text or
//! hand-made HTTP/2 frames, since a client library would refuse to send them), asserts what the
//! gateway answers or that it closes, and that the upstream stub saw nothing. Deadlines are
//! configured short so that the tests prove the slot is freed, not that a timer exists.
//! docs/security.md lists every class with the test that covers it.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

#[path = "hostile_connections/caps.rs"]
mod caps;
#[path = "hostile_connections/framing.rs"]
mod framing;
#[path = "hostile_connections/handover.rs"]
mod handover;
#[path = "hostile_connections/http2.rs"]
mod http2;
#[path = "hostile_connections/readers.rs"]
mod readers;
#[path = "hostile_connections/stalls.rs"]
mod stalls;

use std::time::Duration;

use common::arcp_profile::{ArcpConfig, Keys};
use common::arcp_stub::ArcpStub;
use common::{within, Proto, TestGateway, TlsClient, STEP};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Helpers: closing, the ARCP profile (gateway endpoints), raw HTTP/2 frames
// ---------------------------------------------------------------------------------------------

/// Reads until EOF (or a reset), bounded; true if the peer closed within `limit`.
async fn closes_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.is_ok()
}

/// The gateway with the ARCP profile (so `/gateway/live` and `/auth/login` exist) in front of
/// the ARCP stub, with `server` keys added.
async fn arcp_gateway(server: &[(&'static str, &str)]) -> (ArcpStub, Keys, TestGateway) {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let mut opts = keys.options(&stub.url(), &ArcpConfig::default());
    for (k, v) in server {
        opts = opts.server(k, *v);
    }
    let gw = TestGateway::start(opts).await;
    (stub, keys, gw)
}

/// Fails the test if anything but the broker's own login reached the ARCP stub.
fn assert_upstream_saw_nothing(stub: &ArcpStub) {
    let seen = stub.non_login_records();
    assert!(seen.is_empty(), "upstream saw {seen:?}");
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal without indexing, name from the static table (RFC 7541 §6.2.2).
fn literal(name_index: u8, value: &str) -> Vec<u8> {
    assert!(value.len() < 127);
    let mut b = vec![name_index, value.len() as u8];
    b.extend_from_slice(value.as_bytes());
    b
}

/// The header block of `GET path` (static table: 0x82 `:method GET`, 0x87 `:scheme https`).
fn get_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x87];
    b.extend(literal(4, path));
    b.extend(literal(1, authority));
    b
}

/// A TLS connection that chose `h2`, with the client preface and an empty SETTINGS sent.
async fn h2_connect(client: &TlsClient) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tls = client.tls_connect(Proto::H2).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    within(STEP, "send the HTTP/2 preface", tls.write_all(&hello))
        .await
        .unwrap();
    tls
}

/// The next frame, or `None` at EOF or a reset.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Reads frames until EOF; returns the GOAWAY error code if one came. Bounded by `limit`.
async fn until_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<u32> {
    within(limit, "the gateway closes the HTTP/2 connection", async {
        let mut goaway = None;
        while let Some((kind, _, _, payload)) = read_frame(s).await {
            if kind == GOAWAY && payload.len() >= 8 {
                goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
        goaway
    })
    .await
}
