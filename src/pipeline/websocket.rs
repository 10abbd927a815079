//! WebSockets (RFC 6455) through the gateway, authenticated like the HTTP routes.
//!
//! ARCP authenticates its sockets with a token in the **first frame**, checks no session
//! there, and wipes an admin's sessions when a forged token arrives that way. So:
//!
//! * `/dashboard/ws` (an `admin` route): the dashboard puts the gateway token in `?token=`
//!   and sends `{"type":"auth","token":…,"fingerprint":…}` first. A `?token=` is checked
//!   against its session before anything else; the first frame's token is verified against
//!   the session and the frame's fingerprint (required), then upstream receives the
//!   same frame carrying the brokered upstream token. Failures close with 4001 (4003 for a
//!   valid non-admin token) and upstream never sees a frame.
//! * `/agents/ws` (an `agent` route): the first frame `{"token":…}` must hold a verified
//!   upstream agent token (forwarded unchanged) or a gateway session token with its
//!   `"fingerprint"` (exchanged for the brokered one). Failures close with 1008, as ARCP does.
//! * `public` routes (`/public/ws`): relayed as they are.
//!
//! The upgrade is answered with 101 only after upstream answered 101 (an upstream refusal
//! is passed through as its HTTP response). `?token=` never reaches upstream, and the
//! access log has no query strings. A socket bound to a session counts every client message
//! as activity and is closed with 4001 as soon as the session ends (logout, eviction, idle
//! expiry, absolute cap).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderValue, CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE, USER_AGENT,
};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, WebSocketStream};

use super::admit::{check_fingerprint, session_of_token, AdmitError};
use super::{ConnInfo, GatewayError, State};
use crate::auth::token::Kind;
use crate::auth::Auth;
use crate::body::Body;
use crate::policy::Access;
use crate::proxy::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::session::{Lookup, SessionId};
use crate::upstream::Broker;

/// How long a client has to send its authentication frame (ARCP allows 30 s).
const AUTH_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Close codes: ARCP's dashboard codes, and RFC 6455's policy violation for agents.
const CLOSE_UNAUTHORIZED: u16 = 4001;
const CLOSE_FORBIDDEN: u16 = 4003;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN: u16 = 1013;

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

/// Which first-frame rules a socket follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind2 {
    Public,
    Dashboard,
    Agent,
}

/// Whether `req` asks for a WebSocket (HTTP/1.1 `Upgrade: websocket`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Handles an upgrade request on a route with `access`.
pub async fn upgrade(
    state: &State,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    access: Access,
    path: &str,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let kind = match access {
        Access::Public | Access::Passthrough => Kind2::Public,
        Access::Admin => Kind2::Dashboard,
        Access::Agent => Kind2::Agent,
        Access::Deny => return Err(AdmitError::Denied.into()),
        Access::Gateway | Access::AgentOnly | Access::Temp => {
            return Err(SocketError::NotOffered.into())
        }
    };
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or(SocketError::BadHandshake)?;
    if req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(SocketError::BadHandshake.into());
    }
    let query_token = req
        .uri()
        .query()
        .and_then(|q| super::admit::url_param(q, "token"));

    // A `?token=` on the dashboard socket is checked before upstream is contacted.
    let refused = match (kind, &query_token) {
        (Kind2::Dashboard, Some(token)) => session_of_token(&state.auth, token).await.err(),
        _ => None,
    };

    let upstream = match refused {
        Some(_) => None,
        None => Some(connect_upstream(state, conn, &req, path, request_id).await?),
    };
    let (upstream, protocol) = match upstream {
        None => (None, None),
        Some(Connected::Refused(response)) => return Ok(response),
        Some(Connected::Open(ws, protocol)) => (Some(ws), protocol),
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let ctx = SocketCtx {
        auth: state.auth.clone(),
        broker: state.broker.clone(),
        request_id: request_id.to_owned(),
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "client WebSocket upgrade failed");
                return;
            }
        };
        let client =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match (upstream, refused) {
            (Some(upstream), _) => run(ctx, kind, client, *upstream).await,
            (None, refusal) => {
                let code = refusal.as_ref().map_or(CLOSE_UNAUTHORIZED, close_code_for);
                close(client, code, "authentication failed").await;
            }
        }
    });

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
    Ok(response)
}

type UpstreamSocket = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type ClientSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

enum Connected {
    Open(Box<UpstreamSocket>, Option<HeaderValue>),
    /// Upstream answered the upgrade with a normal HTTP response; it is passed through.
    Refused(Response<Body>),
}

async fn connect_upstream(
    state: &State,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    path: &str,
    request_id: &str,
) -> Result<Connected, GatewayError> {
    let query = req.uri().query().map(without_token).unwrap_or_default();
    let uri = format!(
        "{}{path}{}{query}",
        state.upstream.websocket_base(),
        if query.is_empty() { "" } else { "?" }
    );
    let host = req
        .headers()
        .get(HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    let mut builder = Request::builder()
        .uri(uri)
        .header(HOST, host.clone())
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(SEC_WEBSOCKET_KEY, generate_key())
        .header(X_FORWARDED_FOR.clone(), conn.peer.ip().to_string())
        .header(
            X_FORWARDED_PROTO.clone(),
            if conn.tls { "https" } else { "http" },
        )
        .header(X_FORWARDED_HOST.clone(), host)
        .header(X_REQUEST_ID.clone(), request_id);
    for name in [SEC_WEBSOCKET_PROTOCOL, USER_AGENT, http::header::ORIGIN] {
        if let Some(v) = req.headers().get(&name) {
            builder = builder.header(name, v.clone());
        }
    }
    let request = builder.body(()).map_err(|_| SocketError::BadHandshake)?;
    let connector = match state.upstream.tls_config() {
        Some(tls) => Connector::Rustls(tls),
        None => Connector::Plain,
    };
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
    match tokio::time::timeout(state.upstream.handshake_deadline(), connect).await {
        Err(_) => Err(SocketError::Timeout.into()),
        Ok(Ok((ws, response))) => {
            let protocol = response.headers().get(SEC_WEBSOCKET_PROTOCOL).cloned();
            Ok(Connected::Open(Box::new(ws), protocol))
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(refusal))) => {
            let (mut parts, body) = (*refusal).into_parts();
            crate::proxy::headers::strip_hop_by_hop(&mut parts.headers);
            Ok(Connected::Refused(Response::from_parts(
                parts,
                Body::full(body.unwrap_or_default()),
            )))
        }
        Ok(Err(e)) => Err(SocketError::Upstream(Box::new(e)).into()),
    }
}

/// The query without any `token` parameter.
fn without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some("token") && !pair.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}

struct SocketCtx {
    auth: Auth,
    broker: Broker,
    request_id: String,
}

/// A session the socket is bound to.
struct Bound {
    sid: SessionId,
    ended: watch::Receiver<bool>,
}

fn close_code_for(e: &AdmitError) -> u16 {
    match e {
        AdmitError::AgentOnAdmin { .. } => CLOSE_FORBIDDEN,
        _ => CLOSE_UNAUTHORIZED,
    }
}

async fn run(ctx: SocketCtx, kind: Kind2, mut client: ClientSocket, upstream: UpstreamSocket) {
    let (mut up_tx, mut up_rx) = upstream.split();
    let mut bound = None;
    if kind != Kind2::Public {
        // Relay upstream's greeting (the agent socket's `auth_required`) while waiting for
        // the client's authentication frame.
        let first = loop {
            tokio::select! {
                m = tokio::time::timeout(AUTH_FRAME_TIMEOUT, client.next()) => break m,
                m = up_rx.next() => match m {
                    Some(Ok(m)) if is_data(&m) => {
                        if client.send(m).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        close(client, 1011, "upstream closed").await;
                        return;
                    }
                },
            }
        };
        let text = match first {
            Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                let _ = up_tx.close().await;
                return;
            }
            _ => String::new(),
        };
        match authenticate(&ctx, kind, &text).await {
            Ok((frame, session)) => {
                if up_tx.send(Message::text(frame)).await.is_err() {
                    close(client, 1011, "upstream closed").await;
                    return;
                }
                bound = session;
            }
            Err((code, reason)) => {
                tracing::info!(request_id = %ctx.request_id, code, reason, "WebSocket authentication refused");
                let _ = up_tx.close().await;
                close(client, code, reason).await;
                return;
            }
        }
    }
    relay(&ctx, client, up_tx, up_rx, bound).await;
}

/// Checks the first frame and returns the frame to send upstream.
async fn authenticate(
    ctx: &SocketCtx,
    kind: Kind2,
    text: &str,
) -> Result<(String, Option<Bound>), (u16, &'static str)> {
    let (refused, invalid) = match kind {
        Kind2::Dashboard => (CLOSE_UNAUTHORIZED, "authentication failed"),
        _ => (CLOSE_POLICY, "Invalid token"),
    };
    let mut frame: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => return Err((refused, "expected a JSON authentication frame")),
    };
    let token = match frame.get("token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err((refused, "no token in the first frame")),
    };
    match ctx.auth.tokens.classify(&token) {
        Ok(Kind::Gateway) => {
            // Sessions are bound to their fingerprint; a socket is no exception.
            let fp = match frame.get("fingerprint") {
                Some(Value::String(fp)) if !fp.is_empty() => fp.clone(),
                _ => return Err((refused, "fingerprint required")),
            };
            let sid = ctx
                .auth
                .tokens
                .verify_gateway(&token)
                .map_err(|_| (refused, invalid))?
                .sid;
            // Subscribe before the lookup, so an end in between is not missed.
            let ended = ctx.auth.sessions.watch_end(&sid);
            let admin = session_of_token(&ctx.auth, &token)
                .await
                .map_err(|_| (refused, invalid))?;
            check_fingerprint(&admin, &fp).map_err(|_| (refused, "fingerprint mismatch"))?;
            ctx.auth.sessions.touch(&admin.session);
            let creds = ctx
                .broker
                .credentials()
                .await
                .map_err(|_| (CLOSE_TRY_AGAIN, "upstream session unavailable"))?;
            let upstream_token = creds
                .authorization
                .to_str()
                .unwrap_or_default()
                .trim_start_matches("Bearer ")
                .to_owned();
            frame.insert("token".into(), Value::String(upstream_token));
            let fp = creds.fingerprint.to_str().unwrap_or_default().to_owned();
            frame.insert("fingerprint".into(), Value::String(fp));
            Ok((Value::Object(frame).to_string(), Some(Bound { sid, ended })))
        }
        Ok(Kind::Upstream) => match ctx.auth.tokens.verify_upstream(&token) {
            Ok(_) if kind == Kind2::Dashboard => Err((CLOSE_FORBIDDEN, "admin role required")),
            Ok(_) => Ok((text.to_owned(), None)),
            Err(_) => Err((refused, invalid)),
        },
        Err(_) => Err((refused, invalid)),
    }
}

async fn relay(
    ctx: &SocketCtx,
    client: ClientSocket,
    mut up_tx: futures_util::stream::SplitSink<UpstreamSocket, Message>,
    mut up_rx: futures_util::stream::SplitStream<UpstreamSocket>,
    mut bound: Option<Bound>,
) {
    let (mut client_tx, mut client_rx) = client.split();
    loop {
        let ended = async {
            match bound.as_mut() {
                Some(b) => {
                    let _ = b.ended.wait_for(|ended| *ended).await;
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
                    if let Some(b) = &bound {
                        // Client traffic is session activity; a dead session ends the socket.
                        match ctx.auth.sessions.lookup(&b.sid).await {
                            Lookup::Active(session) => ctx.auth.sessions.touch(&session),
                            _ => {
                                let _ = client_tx.send(close_message(CLOSE_UNAUTHORIZED, "session ended")).await;
                                let _ = up_tx.close().await;
                                break;
                            }
                        }
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
            () = ended => {
                tracing::info!(request_id = %ctx.request_id, "session ended; closing its WebSocket");
                let _ = client_tx.send(close_message(CLOSE_UNAUTHORIZED, "session ended")).await;
                let _ = up_tx.close().await;
                break;
            }
        }
    }
    let _ = client_tx.close().await;
}

fn is_data(m: &Message) -> bool {
    matches!(m, Message::Text(_) | Message::Binary(_))
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

async fn close(mut client: ClientSocket, code: u16, reason: &'static str) {
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
    }

    #[test]
    fn upgrade_detection() {
        let req = Request::builder()
            .header(UPGRADE, "WebSocket")
            .header(CONNECTION, "keep-alive, Upgrade")
            .body(())
            .unwrap();
        assert!(is_upgrade(&req));
        let plain = Request::builder().body(()).unwrap();
        assert!(!is_upgrade(&plain));
    }
}
