//! ARCP's three WebSockets, stubbed.
//!
//! [`WsStub`] (plain HTTP/1.1 on `127.0.0.1:0`) behaves like ARCP's sockets (contract §1.3)
//! and records every upgrade request (target with query, headers) and every data frame it
//! received, per connection:
//! * `/dashboard/ws`: waits for a first frame `{"type":"auth","token":…}` and accepts it only
//!   if `token` is an admin token this stub's [`ArcpStub`] issued at `/auth/login`; then sends
//!   `{"type":"monitoring",…}` every [`MONITORING_INTERVAL`] and echoes client messages as
//!   `{"type":"echo","data":…}`. Anything else is closed with 4001.
//! * `/agents/ws`: sends `{"type":"auth_required"}`, expects `{"token":…}` holding an agent
//!   JWT (HS256, [`UPSTREAM_SECRET`], role `agent`) or an issued admin token, answers
//!   `{"type":"auth_success"}` and echoes; anything else is closed with 1008.
//! * `/public/ws`: sends `{"type":"welcome"}` and echoes.
//!
//! Binary frames are echoed unchanged. Every other request (the broker's `/auth/login`, admin
//! and agent HTTP calls) is relayed to an inner [`ArcpStub`], which enforces ARCP's session
//! rule and records it. Both run on the shared stub skeleton ([`super::server`]).
//!
//! The client side is [`super::ws_client`].

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::arcp_stub::{verify_agent_token, ArcpStub};
use super::server::{Journal, StubServer, StubService};
use super::{full, TestBody};

/// How often an authenticated dashboard socket gets a `monitoring` frame.
pub const MONITORING_INTERVAL: Duration = Duration::from_millis(200);
/// ARCP's `DASHBOARD_WS_TIMEOUT` for the authentication frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Records.
// ---------------------------------------------------------------------------------------------

/// A data frame the stub received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Vec<u8>),
}

impl WsFrame {
    pub fn text(&self) -> &str {
        match self {
            WsFrame::Text(t) => t,
            WsFrame::Binary(_) => panic!("a binary frame where text was expected"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.text())
            .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {}", self.text()))
    }
}

/// One upgraded connection: its upgrade request and everything received on it.
#[derive(Debug, Clone)]
pub struct WsConnection {
    pub id: usize,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// Data frames received, in order.
    pub frames: Vec<WsFrame>,
    /// The first frame carried acceptable credentials.
    pub authenticated: bool,
    /// Close code the stub sent, if it closed the socket.
    pub closed_with: Option<u16>,
    /// The peer sent a close frame (with this code, if any).
    pub peer_closed: Option<Option<u16>>,
    /// The socket is gone (closed by either side or dropped).
    pub ended: bool,
}

impl WsConnection {
    /// The upgrade request target, `path?query`.
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The only value of `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all: Vec<&HeaderValue> = self.headers.get_all(name).iter().collect();
        assert!(all.len() <= 1, "{name} appears {} times", all.len());
        all.first().map(|v| v.to_str().unwrap())
    }

    /// Whether `needle` occurs in the upgrade request (target or any header).
    pub fn upgrade_contains(&self, needle: &str) -> bool {
        self.target().contains(needle)
            || self.headers.iter().any(|(k, v)| {
                k.as_str().contains(needle)
                    || String::from_utf8_lossy(v.as_bytes()).contains(needle)
            })
    }

    /// The value of query parameter `name` (not decoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The stub.
// ---------------------------------------------------------------------------------------------

struct WsState {
    arcp: Arc<ArcpStub>,
    conns: Journal<WsConnection>,
}

impl WsState {
    /// Changes connection `id` and wakes waiters.
    fn update(&self, id: usize, f: impl FnOnce(&mut WsConnection)) {
        self.conns.update(id, f);
    }

    fn is_admin_token(&self, token: &str) -> bool {
        self.arcp.issued().iter().any(|s| s.token == token)
    }
}

impl StubService for WsState {
    fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<TestBody>> + Send {
        serve(self, req)
    }
}

/// ARCP's sockets on `127.0.0.1:0`, other requests relayed to [`WsStub::arcp`].
pub struct WsStub {
    pub addr: SocketAddr,
    /// Serves `/auth/login` and every HTTP route; its logins are the valid admin tokens.
    pub arcp: Arc<ArcpStub>,
    state: Arc<WsState>,
    _server: StubServer,
}

impl WsStub {
    pub async fn start() -> WsStub {
        let arcp = Arc::new(ArcpStub::start().await);
        let state = Arc::new(WsState {
            arcp: arcp.clone(),
            conns: Journal::new(),
        });
        let server = StubServer::start(state.clone()).await;
        WsStub {
            addr: server.addr,
            arcp,
            state,
            _server: server,
        }
    }

    /// `http://127.0.0.1:<port>` for `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every upgraded connection so far, in arrival order.
    pub fn connections(&self) -> Vec<WsConnection> {
        self.state.conns.entries()
    }

    /// Waits until `cond` holds; returns whether it did within `limit`.
    pub async fn wait_until(
        &self,
        limit: Duration,
        cond: impl Fn(&[WsConnection]) -> bool,
    ) -> bool {
        let conns = &self.state.conns;
        conns.wait_until(limit, || conns.with(&cond)).await
    }

    /// The connection whose upgrade had `?case=<case>`, once `cond` holds for it.
    pub async fn wait_for_case(
        &self,
        case: &str,
        limit: Duration,
        what: &str,
        cond: impl Fn(&WsConnection) -> bool,
    ) -> WsConnection {
        let find = |conns: &[WsConnection]| {
            conns
                .iter()
                .find(|c| c.param("case") == Some(case))
                .cloned()
        };
        let ok = self
            .wait_until(limit, |conns| find(conns).is_some_and(|c| cond(&c)))
            .await;
        let conn = find(&self.connections());
        assert!(
            ok,
            "stub connection case={case}: {what} within {limit:?}: {conn:?}"
        );
        conn.unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
enum SocketKind {
    Dashboard,
    Agents,
    Public,
}

async fn serve(state: Arc<WsState>, mut req: Request<Incoming>) -> Response<TestBody> {
    let upgrade = req
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return relay_to_arcp(&state, req).await;
    }
    let kind = match req.uri().path() {
        "/dashboard/ws" => SocketKind::Dashboard,
        "/agents/ws" => SocketKind::Agents,
        "/public/ws" => SocketKind::Public,
        _ => {
            let mut r = Response::new(full(r#"{"detail":"Not Found"}"#));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        let mut r = Response::new(full("missing Sec-WebSocket-Key"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let id = state.conns.push_with(|id| WsConnection {
        id,
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        headers: req.headers().clone(),
        frames: Vec::new(),
        authenticated: false,
        closed_with: None,
        peer_closed: None,
        ended: false,
    });

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _ended = EndGuard(state.clone(), id);
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let mut sock = StubSocket { ws, state, id };
        match kind {
            SocketKind::Dashboard => sock.dashboard().await,
            SocketKind::Agents => sock.agents().await,
            SocketKind::Public => sock.public().await,
        }
    });

    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("websocket"));
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut().insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).unwrap(),
    );
    r
}

/// Marks a connection ended however its task finishes.
struct EndGuard(Arc<WsState>, usize);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.update(self.1, |c| c.ended = true);
    }
}

/// Sends a plain HTTP request on to the inner ARCP stub and returns its answer.
async fn relay_to_arcp(state: &WsState, req: Request<Incoming>) -> Response<TestBody> {
    let bad_gateway = || {
        let mut r = Response::new(full("ws stub: ARCP stub unreachable"));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return bad_gateway();
    };
    let Ok(tcp) = TcpStream::connect(state.arcp.addr).await else {
        return bad_gateway();
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, TestBody>(TokioIo::new(tcp)).await
    else {
        return bad_gateway();
    };
    tokio::spawn(conn);
    let Ok(response) = sender
        .send_request(Request::from_parts(parts, full(body)))
        .await
    else {
        return bad_gateway();
    };
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(b) => Response::from_parts(parts, full(b.to_bytes())),
        Err(_) => bad_gateway(),
    }
}

type ServerWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What the stub read from its peer.
enum Read {
    Data(WsFrame),
    Gone,
}

struct StubSocket {
    ws: ServerWs,
    state: Arc<WsState>,
    id: usize,
}

impl StubSocket {
    /// The next data frame (recorded), skipping control frames; `Gone` on close or error.
    async fn read(&mut self) -> Read {
        loop {
            let frame = match self.ws.next().await {
                Some(Ok(Message::Text(t))) => WsFrame::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => WsFrame::Binary(b.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    self.state.update(self.id, |c| c.peer_closed = Some(code));
                    return Read::Gone;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Read::Gone,
            };
            let recorded = frame.clone();
            self.state.update(self.id, |c| c.frames.push(recorded));
            return Read::Data(frame);
        }
    }

    async fn send_json(&mut self, v: Value) -> bool {
        self.ws.send(Message::text(v.to_string())).await.is_ok()
    }

    async fn close(&mut self, code: u16, reason: &str) {
        self.state.update(self.id, |c| c.closed_with = Some(code));
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        // Let the peer's close reply arrive (bounded), as a server does before dropping.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// The first frame, as the token it carries (if it is a JSON object with a string
    /// `token`) and whether it had `type: auth`.
    async fn first_token(&mut self) -> Option<(String, bool)> {
        let frame = match tokio::time::timeout(AUTH_TIMEOUT, self.read()).await {
            Ok(Read::Data(frame)) => frame,
            _ => return None,
        };
        let WsFrame::Text(text) = frame else {
            return Some((String::new(), false));
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let token = v["token"].as_str().unwrap_or_default().to_owned();
        Some((token, v["type"] == "auth"))
    }

    async fn dashboard(&mut self) {
        let Some((token, is_auth)) = self.first_token().await else {
            return;
        };
        if !is_auth || !self.state.is_admin_token(&token) {
            self.close(4001, "Authentication failed").await;
            return;
        }
        self.state.update(self.id, |c| c.authenticated = true);
        self.echo_loop(true).await;
    }

    async fn agents(&mut self) {
        let greeting = json!({"type": "auth_required", "message": "Send {\"token\": \"<jwt>\"}"});
        if !self.send_json(greeting).await {
            return;
        }
        let Some((token, _)) = self.first_token().await else {
            return;
        };
        if !(verify_agent_token(&token) || self.state.is_admin_token(&token)) {
            self.close(1008, "Invalid token").await;
            return;
        }
        self.state.update(self.id, |c| c.authenticated = true);
        if self.send_json(json!({"type": "auth_success"})).await {
            self.echo_loop(false).await;
        }
    }

    async fn public(&mut self) {
        if self
            .send_json(json!({"type": "welcome", "message": "ARCP public WebSocket"}))
            .await
        {
            self.echo_loop(false).await;
        }
    }

    /// Echoes every data frame; with `monitoring`, also sends a `monitoring` frame at once
    /// and then every [`MONITORING_INTERVAL`].
    async fn echo_loop(&mut self, monitoring: bool) {
        let mut tick = tokio::time::interval(MONITORING_INTERVAL);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick(), if monitoring => {
                    seq += 1;
                    let frame = json!({"type": "monitoring", "seq": seq, "data": {"active_agents": 0}});
                    if !self.send_json(frame).await {
                        return;
                    }
                }
                read = self.read() => {
                    let reply = match read {
                        Read::Gone => return,
                        Read::Data(WsFrame::Binary(b)) => Message::binary(b),
                        Read::Data(WsFrame::Text(t)) => {
                            let data = serde_json::from_str(&t).unwrap_or(Value::String(t));
                            Message::text(json!({"type": "echo", "data": data}).to_string())
                        }
                    };
                    if self.ws.send(reply).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
