//! The request pipeline: one direction, one place for errors.
//!
//! ```text
//! frame (id, limits, path) ─► route (policy) ─► admit (credential → Principal)
//!     ─► answer (gateway endpoints) | forward (hygiene + credential swap → upstream)
//! errors from any stage ─► GatewayError::problem ─► problem document; one access-log event
//! ```
//!
//! [`handle`] never fails: it wraps [`handle_inner`], which uses `?`, logs the error chain
//! once with the request id and renders the problem document.

pub mod admit;
pub(crate) mod answer;
pub mod frame;
mod problems;
pub mod state;
pub(crate) mod websocket;

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body::Body as _;

use crate::arcp::X_REQUEST_ID;
use crate::audit::AuditEvent;
use crate::body::{read_limited, Body, Inbound, Pace, ReadError};
use crate::clock::Stopwatch;
use crate::metrics::LoginOutcome;
use crate::observability::{self, AccessLog};
use crate::policy::{Access, Endpoint};
use crate::proxy::websocket::SocketError;
use crate::proxy::{self, ConnInfo, Credentials};
use crate::session::SessionId;
use crate::upstream::{BrokerError, UpstreamCredentials, UpstreamError};
use admit::{AdminPrincipal, AdmitError, Principal};
use answer::{Answer, AnswerError};
pub use frame::Limits;
use frame::{FrameError, RequestId};
pub use state::{Handles, Snapshot, State};
#[doc(hidden)]
pub use websocket::{parse_first_frame, Claimed};
pub use websocket::{ConnSlot, Sockets, WebSocketSettings};

/// Everything that can stop a request, from any stage.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("request framing")]
    Frame(#[from] FrameError),
    #[error("admission")]
    Admit(#[from] AdmitError),
    #[error("gateway endpoint")]
    Answer(#[from] AnswerError),
    #[error("upstream")]
    Upstream(#[from] UpstreamError),
    #[error("upstream admin session")]
    Broker(#[from] BrokerError),
    #[error("upstream refused the brokered session for a request whose body cannot be replayed")]
    ReplayImpossible,
    #[error("WebSocket")]
    Socket(#[from] SocketError),
    #[error("request body")]
    BodyTooSlow(#[source] ReadError),
}

impl GatewayError {
    /// Whether the connection must close after the answer: the client was cut off in the
    /// middle of a body, so what follows on the connection cannot be framed.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BodyTooSlow(_)
                | GatewayError::Answer(AnswerError::BodyTooSlow(_))
                | GatewayError::Frame(FrameError::AmbiguousFraming(_))
        )
    }
}

/// Mutable facts gathered for the access log, the metrics and the audit trail (borrowed or
/// shared, never copied on the common path).
#[derive(Debug, Default)]
pub struct Trace<'a> {
    pub route: Option<&'a str>,
    /// The access kind of the route, once one was decided.
    pub access: Option<Access>,
    /// Admission produced a principal.
    pub admitted: bool,
    pub upstream_status: Option<u16>,
    pub user: Option<Arc<str>>,
    /// Set for an admitted admin request that changes state: it gets an audit event.
    pub audit: Option<AuditSubject>,
}

/// Who did what, for the audit event of an admitted state-changing admin request.
#[derive(Debug)]
pub struct AuditSubject {
    pub user: Arc<str>,
    pub session: SessionId,
    /// The normalised path (never the query).
    pub path: String,
    /// The route required `X-Session-Pin` (admission checked it).
    pub pin: bool,
}

/// Serves one request. Never fails. `framing` is why the connection reader found this
/// request's raw HTTP/1.1 head ambiguous, if it did (`server::framing`); `slot` is the
/// connection's place in the connection budget, which a WebSocket upgraded on it takes over.
/// The response carries the request's `X-Request-Id`.
pub async fn handle(
    state: Arc<State>,
    conn: &ConnInfo,
    slot: &ConnSlot,
    req: Request<Inbound>,
    framing: Option<&'static str>,
) -> Response<Body> {
    let (mut response, request_id) = respond(state, conn, slot, req, framing).await;
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.header());
    response
}

/// [`handle`], the request's id returned beside the response instead of set in its
/// `X-Request-Id`: for a writer that puts that field in the head itself (the gateway's own
/// HTTP/1.1 loop, through `encode_head`'s `request_id`), so that an upstream response's empty
/// header map is never allocated for it. A caller that does not write the id itself must use
/// [`handle`]: every response carries it.
pub(crate) async fn respond(
    state: Arc<State>,
    conn: &ConnInfo,
    slot: &ConnSlot,
    req: Request<Inbound>,
    framing: Option<&'static str>,
) -> (Response<Body>, RequestId) {
    let started = Stopwatch::start();
    // Loaded once: this request is decided by this snapshot to its end.
    let snapshot = state.snapshot();
    let head = frame::Head::read(req.headers(), &snapshot.server_names);
    let method = req.method().clone();
    // A shared handle on the request target (no copy): the problem's instance and the log.
    let uri = req.uri().clone();
    let raw_path = uri.path();
    let http1 = req.version() < http::Version::HTTP_2;
    // The connection's framing reader stops following HTTP/1.1 at a request that asks to
    // switch protocols; if it is not switched, nothing more is read on that connection.
    let asks_upgrade = http1 && (method == http::Method::CONNECT || head.upgrade);
    let mut trace = Trace::default();
    let result = match framing {
        Some(why) => Err(FrameError::AmbiguousFraming(why).into()),
        None => {
            handle_inner(
                &snapshot,
                &state.handles,
                conn,
                slot,
                req,
                &head,
                &mut trace,
            )
            .await
        }
    };
    let metrics = &state.handles.metrics;
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            let problem = err.problem(state.handles.sessions.settings());
            observability::log_error(&err, &head.request_id, problem.status());
            metrics.problem(problem.kind());
            if !trace.admitted {
                metrics.refused(problem.kind());
            }
            let mut response = problem.into_response(raw_path, &head.request_id);
            if http1 && err.closes_connection() {
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if asks_upgrade && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    metrics.request(trace.access, status);
    if trace.admitted {
        metrics.admitted();
    }
    if trace.access == Some(Access::Gateway(Endpoint::Login)) {
        metrics.login(LoginOutcome::from_status(status));
    }
    if let Some(subject) = &trace.audit {
        state.handles.audit.record(&AuditEvent {
            kind: "http",
            user: Some(&subject.user),
            session: Some(subject.session),
            client: conn.peer.ip(),
            method: method.as_str(),
            path: &subject.path,
            pin: subject.pin,
            status,
            upstream_status: trace.upstream_status,
            request_id: &head.request_id,
        });
    }
    observability::access_log(&AccessLog {
        method: &method,
        path: raw_path,
        route: trace.route,
        status,
        upstream_status: trace.upstream_status,
        duration: started.elapsed(),
        request_id: &head.request_id,
        user: trace.user.as_deref(),
        peer: conn.peer,
    });
    (response, head.request_id)
}

async fn handle_inner<'s>(
    snapshot: &'s Arc<Snapshot>,
    handles: &Handles,
    conn: &ConnInfo,
    slot: &ConnSlot,
    req: Request<Inbound>,
    head: &frame::Head,
    trace: &mut Trace<'s>,
) -> Result<Response<Body>, GatewayError> {
    // 1. frame
    head.check(&req, &snapshot.limits, &snapshot.server_names)?;
    let request_id = &head.request_id;
    let path = frame::normalise_path(req.uri().path())?;
    let path_and_query = match (&path, req.uri().path_and_query()) {
        // Unchanged: share the parsed target instead of copying it.
        (std::borrow::Cow::Borrowed(_), Some(pq)) => pq.clone(),
        _ => path_and_query(&path, req.uri().query()),
    };

    // 2. route
    let route = snapshot.policy.route(req.method(), &path);
    trace.route = Some(route.name);
    trace.access = Some(route.access);

    // WebSockets authenticate in their first frame: a stage of their own.
    if head.upgrade && websocket::is_upgrade(&req) {
        let (access, path) = (route.access, path.into_owned());
        // Boxed: the socket and gateway-endpoint paths are rare and their futures large; keeping
        // them out of line keeps the per-request future small.
        return Box::pin(websocket::upgrade(
            snapshot.clone(),
            handles,
            conn,
            slot,
            req,
            access,
            &path,
            request_id,
        ))
        .await;
    }

    // 3. admit
    let principal = admit::admit(&snapshot.tokens, &handles.sessions, &route, &path, &req).await?;
    trace.user = principal.user();
    trace.admitted = true;
    if let Principal::Admin(admin) = &principal {
        if changes_state(req.method()) {
            trace.audit = Some(AuditSubject {
                user: admin.session.user.clone(),
                session: admin.session.id,
                path: path.clone().into_owned(),
                pin: route.require_pin,
            });
        }
    }

    // 4a. answer
    let (principal, req) = match route.access {
        Access::Gateway(endpoint) => {
            let answered = Box::pin(answer::answer(
                endpoint, principal, snapshot, handles, conn, req, trace,
            ))
            .await?;
            match answered {
                Answer::Respond(response) => return Ok(response),
                Answer::Forward(principal, req) => (principal, *req),
            }
        }
        _ => (principal, req),
    };

    // 4b. forward
    let (parts, body) = req.into_parts();
    let credentials = match principal {
        Principal::Admin(admin) => {
            let response = forward_admin(
                snapshot,
                handles,
                conn,
                parts,
                body,
                path_and_query,
                &admin,
                head,
            )
            .await?;
            trace.upstream_status = Some(response.status().as_u16());
            return Ok(response);
        }
        Principal::Anonymous | Principal::Probe(_) => Credentials::Strip,
        Principal::Passthrough => Credentials::Keep,
        Principal::Agent(agent) => Credentials::Bearer(agent.bearer),
    };
    let body = Body::limited(body, snapshot.limits.max_body_bytes);
    let response = send(
        handles,
        conn,
        &parts,
        body,
        &path_and_query,
        &credentials,
        request_id,
    )
    .await?;
    trace.upstream_status = Some(response.status().as_u16());
    Ok(response)
}

/// Sends the request upstream, its head written from the client's parts with the gateway's
/// hygiene, forwarded facts and credentials.
async fn send(
    handles: &Handles,
    conn: &ConnInfo,
    parts: &Parts,
    body: Body,
    target: &PathAndQuery,
    credentials: &Credentials,
    request_id: &RequestId,
) -> Result<Response<Body>, UpstreamError> {
    let head = proxy::Proxied::new(conn, parts, target, credentials, request_id);
    let started = Stopwatch::start();
    let response = proxy::forward(&handles.upstream, &head, body).await;
    handles.metrics.upstream_latency(started.elapsed());
    response
}

/// Any method but the safe ones (RFC 9110 §9.2.1) may change state upstream.
fn changes_state(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Forwards an admin request with the brokered credentials. If upstream refuses them
/// (its session was dropped), logs in again once and replays the request, whose body was
/// buffered when it fits `replay_buffer_bytes`; a larger body cannot be replayed and the
/// client gets a 503 with `Retry-After`.
#[allow(clippy::too_many_arguments)]
async fn forward_admin(
    snapshot: &Snapshot,
    handles: &Handles,
    conn: &ConnInfo,
    parts: Parts,
    body: Inbound,
    path_and_query: PathAndQuery,
    _admin: &AdminPrincipal,
    head: &frame::Head,
) -> Result<Response<Body>, GatewayError> {
    let request_id = &head.request_id;
    let creds = handles.broker.credentials().await?;
    let swap = |c: &UpstreamCredentials| Credentials::Swap {
        authorization: c.authorization.clone(),
        fingerprint: c.fingerprint.clone(),
    };
    let replayable = body.is_end_stream()
        || head
            .content_length()
            .is_some_and(|n| n <= snapshot.replay_buffer_bytes);
    if !replayable {
        let body = Body::limited(body, snapshot.limits.max_body_bytes);
        let response = send(
            handles,
            conn,
            &parts,
            body,
            &path_and_query,
            &swap(&creds),
            request_id,
        )
        .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // Renew in the background; this request's body is gone.
            let broker = handles.broker.clone();
            tokio::spawn(async move {
                let _ = broker.relogin(creds.generation).await;
            });
            return Err(GatewayError::ReplayImpossible);
        }
        return Ok(response);
    }

    let bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        read_replayable(body, snapshot.replay_buffer_bytes, snapshot.body_pace).await?
    };
    let response = send(
        handles,
        conn,
        &parts,
        Body::full(bytes.clone()),
        &path_and_query,
        &swap(&creds),
        request_id,
    )
    .await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return Ok(response);
    }
    tracing::info!(
        request_id = &**request_id,
        "upstream refused the brokered session; logging in again and replaying"
    );
    let creds = handles.broker.relogin(creds.generation).await?;
    let creds = swap(&creds);
    Ok(send(
        handles,
        conn,
        &parts,
        Body::full(bytes),
        &path_and_query,
        &creds,
        request_id,
    )
    .await?)
}

async fn read_replayable(body: Inbound, limit: u64, pace: Pace) -> Result<Bytes, GatewayError> {
    read_limited(body, limit, pace).await.map_err(|e| match e {
        ReadError::TooSlow { .. } => GatewayError::BodyTooSlow(e),
        ReadError::TooLarge { .. } | ReadError::Body(_) => {
            GatewayError::Frame(FrameError::BodyTooLarge {
                declared: limit + 1,
                max: limit,
            })
        }
    })
}

fn path_and_query(path: &str, query: Option<&str>) -> PathAndQuery {
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    // The path was validated by `normalise_path` and the query came from a parsed URI.
    PathAndQuery::try_from(text).unwrap_or_else(|_| PathAndQuery::from_static("/"))
}
