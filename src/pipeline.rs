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

pub mod frame;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::{Limits, Settings};
use crate::observability::{self, AccessLog};
use crate::policy::{Access, Policy};
use crate::problem::{Problem, ProblemKind};
use crate::proxy::headers::X_REQUEST_ID;
use crate::proxy::{self, ConnInfo, Credentials};
use crate::upstream::{UpstreamClient, UpstreamError};
use frame::FrameError;

/// Handles shared by every request, built once from the settings.
#[derive(Debug)]
pub struct State {
    pub policy: Policy,
    pub limits: Limits,
    pub upstream: UpstreamClient,
}

impl State {
    pub fn new(settings: &Settings) -> Result<Arc<State>, UpstreamError> {
        Ok(Arc::new(State {
            policy: settings.policy.clone(),
            limits: settings.limits,
            upstream: UpstreamClient::new(&settings.upstream)?,
        }))
    }
}

/// Everything that can stop a request, from any stage.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("request framing")]
    Frame(#[from] FrameError),
    #[error("route is denied by policy")]
    Denied,
    #[error("upstream")]
    Upstream(#[from] UpstreamError),
    #[error("route needs credentials the gateway cannot check yet")]
    Unsupported,
}

impl GatewayError {
    /// The public face of each error; the only place errors become problems.
    pub fn problem(&self) -> Problem {
        match self {
            GatewayError::Frame(FrameError::UriTooLong { len, max }) => Problem::new(
                ProblemKind::RequestError,
                format!("Request target of {len} bytes exceeds maximum limit of {max} bytes"),
            )
            .with_status(StatusCode::URI_TOO_LONG)
            .with_title("URI Too Long")
            .with_extension("uri_length", *len)
            .with_extension("max_uri_length", *max),
            GatewayError::Frame(FrameError::HeadersTooLarge { size, max }) => Problem::new(
                ProblemKind::HeadersTooLarge,
                format!("Request headers size {size} bytes exceeds maximum limit of {max} bytes"),
            )
            .with_extension("header_size", *size)
            .with_extension("max_header_size", *max),
            GatewayError::Frame(FrameError::BodyTooLarge { declared, max }) => Problem::new(
                ProblemKind::RequestTooLarge,
                format!("Request body of {declared} bytes exceeds maximum limit of {max} bytes"),
            )
            .with_extension("content_length", *declared)
            .with_extension("max_size", *max),
            GatewayError::Frame(FrameError::BadContentLength) => {
                Problem::new(ProblemKind::RequestError, "Invalid Content-Length header")
            }
            GatewayError::Frame(FrameError::AmbiguousPath(why)) => Problem::new(
                ProblemKind::RequestError,
                format!("Ambiguous request path rejected: {why}"),
            ),
            GatewayError::Denied => Problem::new(
                ProblemKind::Forbidden,
                "Access to this endpoint is not allowed through the gateway",
            ),
            GatewayError::Upstream(UpstreamError::Timeout(t)) => Problem::new(
                ProblemKind::ConnectionTimeout,
                "The upstream service did not respond in time",
            )
            .with_extension("timeout_seconds", t.as_secs_f64()),
            GatewayError::Upstream(UpstreamError::BodyTooLarge(_)) => Problem::new(
                ProblemKind::RequestTooLarge,
                "Request body exceeds the maximum size",
            ),
            GatewayError::Upstream(UpstreamError::Unreachable(_) | UpstreamError::Tls(_)) => {
                Problem::new(
                    ProblemKind::EndpointUnreachable,
                    "The upstream service is unreachable",
                )
            }
            GatewayError::Unsupported => Problem::new(
                ProblemKind::AuthenticationFailed,
                "Authentication required for admin endpoint",
            ),
        }
    }
}

/// Mutable facts gathered for the access log.
#[derive(Debug, Default)]
pub struct Trace {
    pub route: Option<String>,
    pub upstream_status: Option<u16>,
    pub user: Option<String>,
}

/// Serves one request. Never fails.
pub async fn handle(state: Arc<State>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = frame::request_id(req.headers());
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let mut trace = Trace::default();
    let mut response = match handle_inner(&state, &conn, req, &request_id, &mut trace).await {
        Ok(response) => response,
        Err(err) => {
            let problem = err.problem();
            observability::log_error(&err, &request_id, problem.status());
            problem.into_response(&raw_path, &request_id)
        }
    };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    observability::access_log(&AccessLog {
        method: &method,
        path: &raw_path,
        route: trace.route.as_deref(),
        status: response.status().as_u16(),
        upstream_status: trace.upstream_status,
        duration: started.elapsed(),
        request_id: &request_id,
        user: trace.user.as_deref(),
        peer: conn.peer,
    });
    response
}

async fn handle_inner(
    state: &State,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &str,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    // 1. frame
    frame::check_limits(&req, &state.limits)?;
    let path = frame::normalise_path(req.uri().path())?;
    let path_and_query = path_and_query(&path, req.uri().query());

    // 2. route
    let route = state.policy.route(req.method(), &path);
    trace.route = Some(route.name.to_owned());

    // 3. admit
    let credentials = match route.access {
        Access::Public => Credentials::Strip,
        Access::Passthrough => Credentials::Keep,
        Access::Deny => return Err(GatewayError::Denied),
        _ => return Err(GatewayError::Unsupported),
    };

    // 4. forward
    let (parts, body) = req.into_parts();
    let body = Body::limited(body, state.limits.max_body_bytes);
    let upstream_req = proxy::upstream_request(
        &state.upstream,
        conn,
        parts,
        body,
        path_and_query,
        &credentials,
        request_id,
    );
    let response = proxy::forward(&state.upstream, upstream_req).await?;
    trace.upstream_status = Some(response.status().as_u16());
    Ok(response)
}

fn path_and_query(path: &Cow<'_, str>, query: Option<&str>) -> PathAndQuery {
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    // The path was validated by `normalise_path` and the query came from a parsed URI.
    PathAndQuery::try_from(text).unwrap_or_else(|_| PathAndQuery::from_static("/"))
}
