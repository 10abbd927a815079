//! The WebSocket relay (RFC 6455): the upstream connection and the frame pump.
//!
//! Nothing here authenticates. The pipeline decides whether a socket may open and what its
//! first frame becomes (`pipeline::websocket`); this module opens the upstream socket with
//! a token-free URL and facts-only forwarding headers, answers the client's upgrade, waits
//! for the client's first frame while relaying upstream's greeting, and then pumps frames
//! both ways until either side closes or the bound session ends.

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
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, WebSocketStream};

use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use super::ConnInfo;
use crate::arcp::X_REQUEST_ID;
use crate::body::Body;
use crate::upstream::UpstreamClient;

/// The socket to upstream.
pub type UpstreamSocket = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
/// The client's socket, after the gateway answered its upgrade.
pub type ClientSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
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
        .header(X_FORWARDED_FOR.clone(), conn.peer.ip().to_string())
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

/// What the client sent first.
pub enum FirstFrame {
    /// A text frame (the authentication frame, if the client follows the protocol).
    Text(String),
    /// Something else, or nothing within the deadline: refused like a bad frame.
    Other,
    /// The client went away.
    Gone,
    /// Upstream closed first; the client still has to be told.
    UpstreamClosed,
}

/// Waits up to `deadline` for the client's first frame, relaying upstream's greeting (the
/// agent socket's `auth_required`) meanwhile. Upstream never receives anything here.
pub async fn first_frame(
    client: &mut ClientSocket,
    up_tx: &mut UpstreamTx,
    up_rx: &mut UpstreamRx,
    deadline: Duration,
) -> FirstFrame {
    let first = loop {
        tokio::select! {
            m = tokio::time::timeout(deadline, client.next()) => break m,
            m = up_rx.next() => match m {
                Some(Ok(m)) if is_data(&m) => {
                    if client.send(m).await.is_err() {
                        return FirstFrame::Gone;
                    }
                }
                Some(Ok(_)) => {}
                _ => return FirstFrame::UpstreamClosed,
            },
        }
    };
    match first {
        Ok(Some(Ok(Message::Text(t)))) => FirstFrame::Text(t.to_string()),
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
            let _ = up_tx.close().await;
            FirstFrame::Gone
        }
        _ => FirstFrame::Other,
    }
}

/// Pumps frames both ways. `on_client_message` runs before each client data frame goes up
/// (session activity); when it answers `false` the socket closes with 4001. `ended` turning
/// `true` closes the socket the same way.
pub async fn relay<F, Fut>(
    client: ClientSocket,
    mut up_tx: UpstreamTx,
    mut up_rx: UpstreamRx,
    mut ended: Option<watch::Receiver<bool>>,
    mut on_client_message: F,
    request_id: &str,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let (mut client_tx, mut client_rx) = client.split();
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
                    let _ = up_tx.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(m)) if is_data(&m) => {
                    if !on_client_message().await {
                        let _ = client_tx.send(close_message(CLOSE_UNAUTHORIZED, "session ended")).await;
                        let _ = up_tx.close().await;
                        break;
                    }
                    if up_tx.send(m).await.is_err() {
                        let _ = client_tx.send(close_message(1011, "upstream closed")).await;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    let _ = up_tx.close().await;
                    break;
                }
            },
            m = up_rx.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    let _ = client_tx.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(m)) if is_data(&m) => {
                    if client_tx.send(m).await.is_err() {
                        let _ = up_tx.close().await;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    let _ = client_tx.send(close_message(1011, "upstream closed")).await;
                    break;
                }
            },
            () = end => {
                tracing::info!(request_id, "session ended; closing its WebSocket");
                let _ = client_tx.send(close_message(CLOSE_UNAUTHORIZED, "session ended")).await;
                let _ = up_tx.close().await;
                break;
            }
        }
    }
    let _ = client_tx.close().await;
}

/// ARCP's dashboard close code for an unauthenticated or ended session.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;

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
