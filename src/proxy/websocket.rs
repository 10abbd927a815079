//! The WebSocket relay (RFC 6455): the upstream connection and the frame pump.
//!
//! Nothing here authenticates. The pipeline decides whether a socket may open and what its
//! first frame becomes (`pipeline::websocket`); this module answers the client's upgrade,
//! reads the client's first frame off the raw stream within a small limit ([`first_frame`]),
//! opens the upstream socket with a token-free URL and facts-only forwarding headers, drops
//! upstream's greeting where the gateway already sent it, and then pumps frames both ways
//! under a message size limit and an idle timeout until either side closes or the bound
//! session ends.

mod first_frame;
mod write_deadline;

use std::future::Future;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderMap, HeaderValue, CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE, USER_AGENT,
};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, WebSocketStream};

use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use super::ConnInfo;
use crate::arcp::X_REQUEST_ID;
use crate::body::Body;
use crate::clock::io_now;
use crate::upstream::UpstreamClient;
pub use first_frame::{read_first_frame, FirstFrame};
pub use write_deadline::WriteDeadline;

/// The socket to upstream.
pub type UpstreamSocket = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
/// The client's socket, after the gateway answered its upgrade.
/// The upgraded client stream, whose writes fail once one has waited `server.send_timeout`.
pub type ClientIo = WriteDeadline<TokioIo<hyper::upgrade::Upgraded>>;
pub type ClientSocket = WebSocketStream<ClientIo>;
type UpstreamTx = SplitSink<UpstreamSocket, Message>;
type UpstreamRx = SplitStream<UpstreamSocket>;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("not a valid WebSocket upgrade request")]
    BadHandshake,
    #[error("WebSocket upgrades are not offered on this route")]
    NotOffered,
    #[error("upstream WebSocket connection failed")]
    Upstream(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("upstream WebSocket connection timed out")]
    Timeout,
    #[error("this client address holds websocket.max_per_address sockets")]
    TooManyFromAddress,
    #[error("websocket.max_public public sockets are open")]
    PublicFull,
}

/// How upstream answered the upgrade.
pub enum Connected {
    Open(Box<UpstreamSocket>, Option<HeaderValue>),
    /// Upstream answered the upgrade with a normal HTTP response; it is passed through.
    Refused(Response<Body>),
}

/// Opens the upstream socket for `path` with the client's query minus any `token`.
pub async fn connect(
    upstream: &UpstreamClient,
    conn: &ConnInfo,
    client_headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    request_id: &str,
) -> Result<Connected, SocketError> {
    let query = query.map(without_token).unwrap_or_default();
    let uri = format!(
        "{}{path}{}{query}",
        upstream.websocket_base(),
        if query.is_empty() { "" } else { "?" }
    );
    let host = client_headers
        .get(HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    let mut builder = Request::builder()
        .uri(uri)
        .header(HOST, host.clone())
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(http::header::SEC_WEBSOCKET_KEY, generate_key())
        .header(X_FORWARDED_FOR.clone(), conn.forwarded_for.clone())
        .header(
            X_FORWARDED_PROTO.clone(),
            if conn.tls { "https" } else { "http" },
        )
        .header(X_FORWARDED_HOST.clone(), host)
        .header(X_REQUEST_ID.clone(), request_id);
    for name in [SEC_WEBSOCKET_PROTOCOL, USER_AGENT, ORIGIN] {
        if let Some(v) = client_headers.get(&name) {
            builder = builder.header(name, v.clone());
        }
    }
    let request = builder.body(()).map_err(|_| SocketError::BadHandshake)?;
    let connector = match upstream.tls_config() {
        Some(tls) => Connector::Rustls(tls),
        None => Connector::Plain,
    };
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
    match tokio::time::timeout(upstream.handshake_deadline(), connect).await {
        Err(_) => Err(SocketError::Timeout),
        Ok(Ok((ws, response))) => {
            let protocol = response.headers().get(SEC_WEBSOCKET_PROTOCOL).cloned();
            Ok(Connected::Open(Box::new(ws), protocol))
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(refusal))) => {
            let (mut parts, body) = (*refusal).into_parts();
            super::headers::strip_hop_by_hop(&mut parts.headers);
            Ok(Connected::Refused(Response::from_parts(
                parts,
                Body::full(body.unwrap_or_default()),
            )))
        }
        Ok(Err(e)) => Err(SocketError::Upstream(Box::new(e))),
    }
}

/// The 101 answer to the client's upgrade (`Sec-WebSocket-Accept` from its key).
pub fn switching_protocols(key: &HeaderValue, protocol: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// The query without any `token` parameter, its name decoded as upstream decodes it (so
/// `tok%65n=` goes too).
pub fn without_token(query: &str) -> String {
    let is_token = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default().replace('+', " ");
        percent_encoding::percent_decode_str(&name).decode_utf8_lossy() == "token"
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_token(pair))
        .collect::<Vec<_>>()
        .join("&")
}

/// A client socket on the upgraded stream, going on after `read_ahead` (the bytes
/// [`read_first_frame`] read past the first frame), with the message limit in force: a message
/// or frame over `max_message_bytes` ends the socket with 1009 ([`relay`]).
pub async fn client_socket(
    io: ClientIo,
    read_ahead: Vec<u8>,
    max_message_bytes: usize,
) -> ClientSocket {
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
        // Eagerly allocated per socket; client messages are small.
        .read_buffer_size(CLIENT_READ_BUFFER);
    WebSocketStream::from_partially_read(io, read_ahead, Role::Server, Some(config)).await
}

/// Sends `text` as one text frame on the raw upgraded stream (before the first frame is read,
/// so before any WebSocket state exists). RFC 6455 §5.1: a server's frames are not masked.
pub async fn greet<S: AsyncWrite + Unpin>(io: &mut S, text: &'static str) -> bool {
    let mut bytes = Vec::with_capacity(text.len() + 4);
    let frame = Frame::message(text, OpCode::Data(Data::Text), true);
    if frame.format(&mut bytes).is_err() {
        return false;
    }
    io.write_all(&bytes).await.is_ok() && io.flush().await.is_ok()
}

/// What upstream sent first on a socket the gateway already greeted.
pub enum Greeting {
    /// Its greeting, dropped: the client had the gateway's.
    Consumed,
    /// Something else, to be relayed.
    Other(Message),
    /// Nothing within the deadline, or upstream closed.
    Missing,
}

/// Reads upstream's first data message within `deadline`, dropping it when it is ARCP's
/// `{"type":"auth_required",…}` (the agent socket sends it before it reads a token).
pub async fn take_greeting(up_rx: &mut UpstreamRx, deadline: Duration) -> Greeting {
    let first = tokio::time::timeout(deadline, async {
        loop {
            match up_rx.next().await {
                Some(Ok(m)) if is_data(&m) => return Some(m),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    match first {
        Ok(Some(Message::Text(t))) if is_auth_required(&t) => Greeting::Consumed,
        Ok(Some(m)) => Greeting::Other(m),
        Ok(None) | Err(_) => Greeting::Missing,
    }
}

fn is_auth_required(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["type"] == "auth_required")
}

/// Pumps frames both ways. `on_client_message` runs before each client data frame goes up
/// (session activity); when it answers `false` the socket closes with 4001. `ended` turning
/// `true` closes the socket the same way. A client message over the socket's limit closes it
/// with 1009 (and never reaches upstream); no data frame either way for `idle_timeout` closes
/// it with 1001. Pings and pongs are answered by each side's WebSocket layer and are not
/// activity: a client that only pings would otherwise hold its slot for ever.
///
/// One direction at a time: while a message waits to go upstream, nothing is read from
/// upstream. A send to upstream that waits `send_timeout` (upstream itself blocked on a reply
/// this relay is not reading) ends the socket, as a client write that waits that long does
/// (the client stream's [`WriteDeadline`]).
#[allow(clippy::too_many_arguments)]
pub async fn relay<F, Fut>(
    client: ClientSocket,
    mut up_tx: UpstreamTx,
    mut up_rx: UpstreamRx,
    mut ended: Option<watch::Receiver<bool>>,
    mut on_client_message: F,
    idle_timeout: Duration,
    send_timeout: Duration,
    request_id: &str,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let (mut client_tx, mut client_rx) = client.split();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut too_big = false;
    loop {
        let end = async {
            match ended.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|ended| *ended).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = client_rx.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    let _ = timeout(send_timeout, up_tx.send(Message::Close(frame))).await;
                    break;
                }
                Some(Ok(m)) if is_data(&m) => {
                    idle.as_mut().reset(io_now() + idle_timeout);
                    if !on_client_message().await {
                        let _ = client_tx.send(close_message(CLOSE_UNAUTHORIZED, "session ended")).await;
                        let _ = timeout(send_timeout, up_tx.close()).await;
                        break;
                    }
                    if !matches!(timeout(send_timeout, up_tx.send(m)).await, Ok(Ok(()))) {
                        let _ = client_tx.send(close_message(1011, "upstream closed")).await;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::Capacity(_))) => {
                    tracing::info!(request_id, "WebSocket message over the size limit; closing with 1009");
                    let _ = client_tx.send(close_message(CLOSE_TOO_BIG, "message too big")).await;
                    let _ = timeout(send_timeout, up_tx.close()).await;
                    too_big = true;
                    break;
                }
                _ => {
                    let _ = timeout(send_timeout, up_tx.close()).await;
                    break;
                }
            },
            m = up_rx.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    let _ = client_tx.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(m)) if is_data(&m) => {
                    idle.as_mut().reset(io_now() + idle_timeout);
                    if client_tx.send(m).await.is_err() {
                        let _ = timeout(send_timeout, up_tx.close()).await;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    let _ = client_tx.send(close_message(1011, "upstream closed")).await;
                    break;
                }
            },
            () = &mut idle => {
                tracing::debug!(request_id, ?idle_timeout, "WebSocket idle; closing with 1001");
                let _ = client_tx.send(close_message(CLOSE_GOING_AWAY, "idle timeout")).await;
                let _ = timeout(send_timeout, up_tx.close()).await;
                break;
            }
            () = end => {
                tracing::info!(request_id, "session ended; closing its WebSocket");
                let _ = client_tx.send(close_message(CLOSE_UNAUTHORIZED, "session ended")).await;
                let _ = timeout(send_timeout, up_tx.close()).await;
                break;
            }
        }
    }
    match (too_big, client_rx.reunite(client_tx)) {
        (true, Ok(client)) => linger(client.into_inner()).await,
        // Flushes a close reply tungstenite queued, or sends ours.
        (_, Ok(mut client)) => {
            let _ = SinkExt::close(&mut client).await;
        }
        (_, Err(_)) => {}
    }
}

/// ARCP's dashboard close code for an unauthenticated or ended session.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// RFC 6455 §7.4.1: the endpoint is going away (here: the socket was idle).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// RFC 6455 §7.4.1: a frame that breaks the protocol.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// RFC 6455 §7.4.1: a message too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// RFC 6455 §7.4.1 (IANA registry): try again later; upstream refused or is unreachable.
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// The client read buffer (tungstenite allocates it eagerly; its default is 128 KiB).
const CLIENT_READ_BUFFER: usize = 16 << 10;
/// After a 1009 the client may still be sending the rest of its message: read and drop at
/// most this much, for at most [`LINGER_TIME`], before closing the connection.
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

fn is_data(m: &Message) -> bool {
    matches!(m, Message::Text(_) | Message::Binary(_))
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Closes the client's socket with `code`.
pub async fn close(mut client: ClientSocket, code: u16, reason: &'static str) {
    let _ = client
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
        .await;
}

/// Closes the client's socket with `code` while it may still be sending (a frame over the
/// limit, a broken frame): see [`linger`].
pub async fn close_and_linger(mut client: ClientSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    if client.close(Some(frame)).await.is_ok() {
        linger(client.into_inner()).await;
    }
}

/// Reads and drops what the client still sends, bounded, then closes the stream. Closing a
/// TCP connection with unread data resets it, and a reset can destroy the close frame before
/// the client reads it (the reason for nginx's lingering close).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let _ = io.shutdown().await;
    let mut buf = [0u8; 8192];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_removed_from_the_query() {
        assert_eq!(without_token("token=abc"), "");
        assert_eq!(without_token("a=1&token=abc&b=2"), "a=1&b=2");
        assert_eq!(without_token("tokens=1"), "tokens=1");
        assert_eq!(without_token("a=1&tok%65n=abc"), "a=1");
    }
}
