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
//! This module is the admission of sockets; the upstream connection and the frame pump are
//! `proxy::websocket`. The upgrade is answered with 101 only after upstream answered 101
//! (an upstream refusal is passed through as its HTTP response). `?token=` never reaches
//! upstream, and the access log has no query strings. A socket bound to a session counts
//! every client message as activity and is closed with 4001 as soon as the session ends
//! (logout, eviction, idle expiry, absolute cap).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::admit::{check_fingerprint, session_of, AdmitError};
use super::state::{Handles, Snapshot};
use super::{ConnInfo, GatewayError};
use crate::auth::token::{GatewayToken, TokenError};
use crate::auth::{Tokens, Verified};
use crate::body::Body;
use crate::policy::Access;
use crate::proxy::websocket::{
    self as relay, ClientSocket, Connected, FirstFrame, SocketError, UpstreamSocket,
    CLOSE_UNAUTHORIZED,
};
use crate::session::{Lookup, SessionId};

/// How long a client has to send its authentication frame (ARCP allows 30 s).
const AUTH_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Close codes: ARCP's dashboard codes, and RFC 6455's policy violation for agents.
const CLOSE_FORBIDDEN: u16 = 4003;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN: u16 = 1013;

/// Which first-frame rules a socket follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketKind {
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
    snapshot: Arc<Snapshot>,
    handles: &Handles,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    access: Access,
    path: &str,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let kind = match access {
        Access::Public | Access::Passthrough => SocketKind::Public,
        Access::Admin => SocketKind::Dashboard,
        Access::Agent => SocketKind::Agent,
        Access::Deny => return Err(AdmitError::Denied.into()),
        Access::Gateway(_) | Access::AgentOnly | Access::Temp => {
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
        (SocketKind::Dashboard, Some(token)) => {
            query_session(&snapshot.tokens, handles, token).await.err()
        }
        _ => None,
    };

    let upstream = match refused {
        Some(_) => None,
        None => Some(
            relay::connect(
                &handles.upstream,
                conn,
                req.headers(),
                path,
                req.uri().query(),
                request_id,
            )
            .await?,
        ),
    };
    let (upstream, protocol) = match upstream {
        None => (None, None),
        Some(Connected::Refused(response)) => return Ok(response),
        Some(Connected::Open(ws, protocol)) => (Some(ws), protocol),
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let ctx = SocketCtx {
        tokens: snapshot.tokens.clone(),
        handles: handles.clone(),
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
                relay::close(client, code, "authentication failed").await;
            }
        }
    });
    Ok(relay::switching_protocols(&key, protocol))
}

/// A `?token=` must be a gateway token with a live session (its fingerprint comes later,
/// in the first frame); anything else closes the socket with 4001.
async fn query_session(tokens: &Tokens, handles: &Handles, token: &str) -> Result<(), AdmitError> {
    match tokens.verify(token)? {
        Verified::Gateway(t) => session_of(&handles.sessions, &t).await.map(|_| ()),
        Verified::Upstream(_) => Err(AdmitError::Token(TokenError::UnknownKid)),
    }
}

/// What a socket task keeps of the request.
struct SocketCtx {
    tokens: Tokens,
    handles: Handles,
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

async fn run(ctx: SocketCtx, kind: SocketKind, mut client: ClientSocket, upstream: UpstreamSocket) {
    let (mut up_tx, mut up_rx) = upstream.split();
    let mut bound = None;
    if kind != SocketKind::Public {
        let text = match relay::first_frame(&mut client, &mut up_tx, &mut up_rx, AUTH_FRAME_TIMEOUT)
            .await
        {
            FirstFrame::Text(t) => t,
            FirstFrame::Other => String::new(),
            FirstFrame::Gone => return,
            FirstFrame::UpstreamClosed => {
                relay::close(client, 1011, "upstream closed").await;
                return;
            }
        };
        match authenticate(&ctx, kind, &text).await {
            Ok((frame, session)) => {
                if up_tx.send(Message::text(frame)).await.is_err() {
                    relay::close(client, 1011, "upstream closed").await;
                    return;
                }
                bound = session;
            }
            Err((code, reason)) => {
                tracing::info!(request_id = %ctx.request_id, code, reason, "WebSocket authentication refused");
                let _ = up_tx.close().await;
                relay::close(client, code, reason).await;
                return;
            }
        }
    }
    let (sid, ended) = match bound {
        Some(b) => (Some(b.sid), Some(b.ended)),
        None => (None, None),
    };
    let sessions = &ctx.handles.sessions;
    // Client traffic is session activity; a dead session ends the socket.
    let activity = || async move {
        let Some(sid) = sid else { return true };
        match sessions.lookup(&sid).await {
            Lookup::Active(session) => {
                sessions.touch(&session);
                true
            }
            _ => false,
        }
    };
    relay::relay(client, up_tx, up_rx, ended, activity, &ctx.request_id).await;
}

/// What a first frame claims, checked without any session or upstream lookup.
#[doc(hidden)]
#[derive(Debug)]
pub enum Claimed {
    /// A verified gateway token and the frame's (non-empty) fingerprint; the session and
    /// the fingerprint still have to be checked.
    Gateway(GatewayToken, String, Map<String, Value>),
    /// A verified upstream token on an agent socket: the frame goes upstream unchanged.
    Upstream,
}

/// The I/O-free part of [`authenticate`]: parses the frame and verifies its token. Public
/// only for the fuzz target `ws_first_frame` (`fuzz/`); `dashboard` picks the dashboard
/// socket's rules, else the agent socket's.
#[doc(hidden)]
pub fn parse_first_frame(
    tokens: &Tokens,
    dashboard: bool,
    text: &str,
) -> Result<Claimed, (u16, &'static str)> {
    let (refused, invalid) = if dashboard {
        (CLOSE_UNAUTHORIZED, "authentication failed")
    } else {
        (CLOSE_POLICY, "Invalid token")
    };
    let frame: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => return Err((refused, "expected a JSON authentication frame")),
    };
    let token = match frame.get("token") {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => return Err((refused, "no token in the first frame")),
    };
    match tokens.verify(token).map_err(|_| (refused, invalid))? {
        Verified::Gateway(t) => {
            // Sessions are bound to their fingerprint; a socket is no exception.
            let fp = match frame.get("fingerprint") {
                Some(Value::String(fp)) if !fp.is_empty() => fp.clone(),
                _ => return Err((refused, "fingerprint required")),
            };
            Ok(Claimed::Gateway(t, fp, frame))
        }
        Verified::Upstream(_) if dashboard => Err((CLOSE_FORBIDDEN, "admin role required")),
        Verified::Upstream(_) => Ok(Claimed::Upstream),
    }
}

/// Checks the first frame and returns the frame to send upstream.
async fn authenticate(
    ctx: &SocketCtx,
    kind: SocketKind,
    text: &str,
) -> Result<(String, Option<Bound>), (u16, &'static str)> {
    let (refused, invalid) = match kind {
        SocketKind::Dashboard => (CLOSE_UNAUTHORIZED, "authentication failed"),
        _ => (CLOSE_POLICY, "Invalid token"),
    };
    match parse_first_frame(&ctx.tokens, kind == SocketKind::Dashboard, text)? {
        Claimed::Gateway(t, fp, mut frame) => {
            // Subscribe before the lookup, so an end in between is not missed.
            let ended = ctx.handles.sessions.watch_end(&t.sid);
            let admin = session_of(&ctx.handles.sessions, &t)
                .await
                .map_err(|_| (refused, invalid))?;
            check_fingerprint(&admin, &fp).map_err(|_| (refused, "fingerprint mismatch"))?;
            ctx.handles.sessions.touch(&admin.session);
            let creds = ctx
                .handles
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
            Ok((
                Value::Object(frame).to_string(),
                Some(Bound { sid: t.sid, ended }),
            ))
        }
        Claimed::Upstream => Ok((text.to_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
