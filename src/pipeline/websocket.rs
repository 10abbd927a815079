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
//!   upstream agent token that is not a registration-phase one (forwarded unchanged) or a
//!   gateway session token with its `"fingerprint"` (exchanged for the brokered one). Failures close with 1008, as ARCP does.
//! * `public` routes (`/public/ws`): relayed as they are.
//!
//! **Upstream is contacted only for an authenticated client.** A dashboard or agent upgrade
//! is answered with 101 by the gateway itself; the first frame is read (at most
//! `websocket.max_first_frame_bytes`, within `websocket.auth_timeout`) and checked, and only
//! then is the upstream socket opened, so unauthenticated clients cannot use up ARCP's
//! socket capacity. ARCP's agent socket greets with `auth_required` before its client sends
//! the token, so the gateway sends that greeting itself ([`AGENT_GREETING`]) and drops
//! upstream's. Upstream refusing or unreachable after that closes the client with 1013. A
//! public socket needs no authentication: upstream is contacted at once and its refusal is
//! passed through as the answer to the upgrade.
//!
//! **Sockets count against the limits** ([`slots`]): a socket takes over its connection's
//! place in `server.max_connections` (and its address's count) until it closes, one address
//! holds at most `websocket.max_per_address` sockets and public sockets share
//! `websocket.max_public`; over a cap, the upgrade gets a problem document (429, or 503 for
//! the public cap, with `Retry-After`) before upstream is contacted. Once open, a client
//! message over `websocket.max_message_bytes` closes the socket with 1009, and no data
//! frame either way for `websocket.idle_timeout` closes it with 1001 (`proxy::websocket`).
//!
//! `?token=` never reaches upstream, and the access log has no query strings. A socket bound
//! to a session counts every client message as activity and is closed with 4001 as soon as
//! the session ends (logout, eviction, idle expiry, absolute cap).

mod slots;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderMap, HeaderValue, CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE, USER_AGENT,
};
use http::{Request, Response, Version};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

mod first_frame;

use first_frame::refusal;
pub use first_frame::{parse_first_frame, Claimed};

use super::admit::{check_fingerprint, session_of, AdmitError};
use super::state::{Handles, Snapshot};
use super::{ConnInfo, GatewayError};
use crate::audit::AuditEvent;
use crate::auth::token::TokenError;
use crate::auth::{Tokens, Verified};
use crate::body::{Body, Inbound};
use crate::policy::Access;
use crate::proxy::websocket::{
    self as relay, Connected, FirstFrame, Greeting, SocketError, CLOSE_PROTOCOL, CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN, CLOSE_UNAUTHORIZED,
};
use crate::session::{Lookup, SessionId};
pub use slots::{ConnSlot, Sockets};

/// What ARCP's agent socket sends before it reads the token (`api/agents.py`
/// `websocket_endpoint`, `json.dumps` of `{"type": "auth_required", "message": …}`); the
/// gateway sends it itself, byte for byte, because upstream is contacted only afterwards.
pub const AGENT_GREETING: &str =
    r#"{"type": "auth_required", "message": "Send your authentication token"}"#;
/// Close codes: ARCP's dashboard codes, and RFC 6455's policy violation for agents.
const CLOSE_FORBIDDEN: u16 = 4003;
const CLOSE_POLICY: u16 = 1008;

/// `websocket:`: limits on relayed sockets.
#[derive(Debug, Clone, Copy)]
pub struct WebSocketSettings {
    /// Largest message (and frame) a client may send on an open socket; 1009 beyond.
    pub max_message_bytes: usize,
    /// Largest first frame (the authentication frame) of dashboard and agent sockets; 1009
    /// beyond, read before anything else is done for the socket.
    pub max_first_frame_bytes: usize,
    /// Time a client has to send its authentication frame (ARCP allows 30 s).
    pub auth_timeout: Duration,
    /// A socket with no data frame either way for this long is closed with 1001.
    pub idle_timeout: Duration,
    /// `server.send_timeout`: a write to the client that waits this long ends the socket.
    pub send_timeout: Duration,
    /// Sockets one client address (an IPv6 /64) may hold open.
    pub max_per_address: u32,
    /// Public sockets open at once, all clients together.
    pub max_public: u32,
}

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

/// Handles an upgrade request on a route with `access`, on the connection whose place in
/// the connection budget is `slot`.
#[allow(clippy::too_many_arguments)]
pub async fn upgrade(
    snapshot: Arc<Snapshot>,
    handles: &Handles,
    conn: &ConnInfo,
    slot: &ConnSlot,
    mut req: Request<Inbound>,
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
    let query_token = super::admit::query_token(req.uri().query())?;
    // The caps come before anything else is spent on the socket.
    let permit = handles
        .sockets
        .admit(conn.peer.ip(), kind == SocketKind::Public)?;

    // A `?token=` on the dashboard socket is checked before the upgrade is answered.
    let refused = match (kind, &query_token) {
        (SocketKind::Dashboard, Some(token)) => {
            query_session(&snapshot.tokens, handles, token).await.err()
        }
        _ => None,
    };

    // Public sockets need no authentication: upstream is contacted now, and its refusal is
    // the answer. The others reach upstream only once their first frame was accepted.
    let (public, protocol) = match kind {
        SocketKind::Public => match relay::connect(
            &handles.upstream,
            conn,
            req.headers(),
            path,
            req.uri().query(),
            request_id,
        )
        .await?
        {
            Connected::Refused(response) => return Ok(response),
            Connected::Open(ws, protocol) => (Some(ws), protocol),
        },
        _ => (None, None),
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let ctx = SocketCtx {
        tokens: snapshot.tokens.clone(),
        handles: handles.clone(),
        settings: handles.sockets.settings,
        request_id: request_id.to_owned(),
        target: Target {
            conn: conn.clone(),
            // Only what `relay::connect` forwards, and no subprotocol: the client was
            // answered without one (ARCP's endpoints never choose one).
            headers: [HOST, USER_AGENT, ORIGIN]
                .into_iter()
                .filter_map(|name| {
                    let value = req.headers().get(&name)?.clone();
                    Some((name, value))
                })
                .collect(),
            path: path.to_owned(),
            query: req.uri().query().map(relay::without_token),
        },
    };
    // From here the socket holds its connection's slot and its own permits until it ends.
    let held = (slot.take(), permit);
    tokio::spawn(async move {
        let _held = held;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "client WebSocket upgrade failed");
                return;
            }
        };
        let io = relay::WriteDeadline::new(TokioIo::new(upgraded), ctx.settings.send_timeout);
        let max = ctx.settings.max_message_bytes;
        match (public, refused) {
            (Some(upstream), _) => {
                let _open = ctx.handles.metrics.websocket_opened();
                let client = relay::client_socket(io, Vec::new(), max).await;
                let (up_tx, up_rx) = (*upstream).split();
                let idle = ctx.settings.idle_timeout;
                let activity = || async { true };
                relay::relay(
                    client,
                    up_tx,
                    up_rx,
                    None,
                    activity,
                    idle,
                    ctx.settings.send_timeout,
                    &ctx.request_id,
                )
                .await;
            }
            (None, Some(refusal)) => {
                let client = relay::client_socket(io, Vec::new(), max).await;
                relay::close(client, close_code_for(&refusal), "authentication failed").await;
            }
            (None, None) => run(ctx, kind, io).await,
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
    settings: WebSocketSettings,
    request_id: String,
    target: Target,
}

/// Where the upstream socket goes, once the client is authenticated.
struct Target {
    conn: ConnInfo,
    headers: HeaderMap,
    path: String,
    /// Without `token`.
    query: Option<String>,
}

/// A session the socket is bound to.
struct Bound {
    sid: SessionId,
    ended: watch::Receiver<bool>,
}

/// A first frame that checked out.
struct Authenticated {
    /// The frame to send upstream.
    frame: String,
    bound: Option<Bound>,
    /// The session's user or the agent token's subject.
    user: Option<Arc<str>>,
}

fn close_code_for(e: &AdmitError) -> u16 {
    match e {
        AdmitError::AgentOnAdmin { .. } => CLOSE_FORBIDDEN,
        _ => CLOSE_UNAUTHORIZED,
    }
}

/// A dashboard or agent socket: greet (agents), read and check the first frame, and only then
/// open the upstream socket and relay.
async fn run(ctx: SocketCtx, kind: SocketKind, mut io: relay::ClientIo) {
    let _open = ctx.handles.metrics.websocket_opened();
    let settings = ctx.settings;
    let (refused, invalid) = refusal(kind == SocketKind::Dashboard);
    if kind == SocketKind::Agent && !relay::greet(&mut io, AGENT_GREETING).await {
        return;
    }
    let read = relay::read_first_frame(&mut io, settings.max_first_frame_bytes);
    let (first, read_ahead) = tokio::time::timeout(settings.auth_timeout, read)
        .await
        .unwrap_or((FirstFrame::Other, Vec::new()));
    let client = relay::client_socket(io, read_ahead, settings.max_message_bytes).await;
    let text = match first {
        FirstFrame::Text(t) => t,
        FirstFrame::Gone => return,
        FirstFrame::TooBig => {
            tracing::info!(request_id = %ctx.request_id, "WebSocket first frame over the size limit");
            relay::close_and_linger(client, CLOSE_TOO_BIG, "first frame too big").await;
            return;
        }
        FirstFrame::Protocol => {
            relay::close_and_linger(client, CLOSE_PROTOCOL, "protocol error").await;
            return;
        }
        // Also the deadline passing: refused like a bad frame.
        FirstFrame::Other => String::new(),
    };
    let Authenticated { frame, bound, user } = match authenticate(
        &ctx,
        kind,
        &text,
        (refused, invalid),
    )
    .await
    {
        Ok(accepted) => accepted,
        Err((code, reason)) => {
            tracing::info!(request_id = %ctx.request_id, code, reason, "WebSocket authentication refused");
            relay::close(client, code, reason).await;
            return;
        }
    };

    // Authenticated: only now is upstream contacted.
    let t = &ctx.target;
    let connected = relay::connect(
        &ctx.handles.upstream,
        &t.conn,
        &t.headers,
        &t.path,
        t.query.as_deref(),
        &ctx.request_id,
    )
    .await;
    let upstream = match connected {
        Ok(Connected::Open(ws, _)) => ws,
        Ok(Connected::Refused(response)) => {
            tracing::warn!(request_id = %ctx.request_id, status = response.status().as_u16(), "upstream refused the WebSocket");
            relay::close(client, CLOSE_TRY_AGAIN, "upstream refused the socket").await;
            return;
        }
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "upstream WebSocket unavailable");
            relay::close(client, CLOSE_TRY_AGAIN, "upstream unavailable").await;
            return;
        }
    };
    let (mut up_tx, mut up_rx) = (*upstream).split();
    let mut client = client;
    if kind == SocketKind::Agent {
        let deadline = ctx.handles.upstream.handshake_deadline();
        match relay::take_greeting(&mut up_rx, deadline).await {
            Greeting::Consumed => {}
            Greeting::Other(m) => {
                if client.send(m).await.is_err() {
                    let _ = up_tx.close().await;
                    return;
                }
            }
            Greeting::Missing => {
                let _ = up_tx.close().await;
                relay::close(client, 1011, "upstream closed").await;
                return;
            }
        }
    }
    if up_tx.send(Message::text(frame)).await.is_err() {
        relay::close(client, 1011, "upstream closed").await;
        return;
    }
    let (sid, ended) = match bound {
        Some(b) => (Some(b.sid), Some(b.ended)),
        None => (None, None),
    };
    ctx.handles.audit.record(&AuditEvent {
        kind: "websocket",
        user: user.as_deref(),
        session: sid,
        client: ctx.target.conn.peer.ip(),
        method: "GET",
        path: &ctx.target.path,
        pin: false,
        status: 101,
        upstream_status: Some(101),
        request_id: &ctx.request_id,
    });
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
    let idle = settings.idle_timeout;
    relay::relay(
        client,
        up_tx,
        up_rx,
        ended,
        activity,
        idle,
        ctx.settings.send_timeout,
        &ctx.request_id,
    )
    .await;
}

/// Checks the first frame and returns the frame to send upstream.
async fn authenticate(
    ctx: &SocketCtx,
    kind: SocketKind,
    text: &str,
    (refused, invalid): (u16, &'static str),
) -> Result<Authenticated, (u16, &'static str)> {
    match parse_first_frame(&ctx.tokens, kind == SocketKind::Dashboard, text)? {
        Claimed::Gateway(t, fp, mut frame) => {
            // Subscribe before the lookup, so an end in between is not missed.
            let ended = ctx.handles.sessions.watch_end(&t.sid);
            let admin = session_of(&ctx.handles.sessions, &t)
                .await
                .map_err(|_| (refused, invalid))?;
            if check_fingerprint(&admin, &fp).is_err() {
                ctx.handles
                    .sessions
                    .fingerprint_mismatch(&admin.session)
                    .await;
                return Err((refused, "fingerprint mismatch"));
            }
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
            Ok(Authenticated {
                frame: Value::Object(frame).to_string(),
                bound: Some(Bound { sid: t.sid, ended }),
                user: Some(admin.session.user.clone()),
            })
        }
        Claimed::Upstream(claims) => Ok(Authenticated {
            frame: text.to_owned(),
            bound: None,
            user: claims.sub.as_deref().map(Arc::from),
        }),
    }
}

#[cfg(test)]
mod tests;
