//! The admin listener: plain-HTTP health endpoints on an address of its own, for
//! orchestrator probes and `arcp-gateway healthcheck`.
//!
//! - `GET /healthz` — 200 while the process runs (liveness).
//! - `GET /readyz` — 200 when the configuration is loaded (the gateway runs, so it is), the
//!   brokered upstream admin session is held ([`Broker::is_ready`]) and the shared session
//!   storage (`sessions.store.redis`, if configured) answers a `PING`; 503 otherwise, and 503
//!   from the moment shutdown begins, so load balancers stop sending while requests drain.
//! - `GET /metrics` — the gateway's metrics in the OpenMetrics text format Prometheus
//!   scrapes ([`crate::metrics`] lists the families).
//!
//! It never serves the client API, speaks no TLS and checks no credential: bind it to loopback
//! or to a network only probes and scrapers reach. The client listeners keep their own
//! `/gateway/live` and `/gateway/ready`. [`healthcheck`] is the matching client, for container
//! images without curl.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::pipeline::State;

/// The URL `arcp-gateway healthcheck` asks when given none: readiness on the conventional
/// admin address (`admin: {address: 127.0.0.1:9901}`; `0.0.0.0:9901` answers there too).
pub const DEFAULT_HEALTHCHECK_URL: &str = "http://127.0.0.1:9901/readyz";

/// `admin:` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub address: SocketAddr,
}

/// Errors of the admin listener and of [`healthcheck`].
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr} (admin listener)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not a plain http:// URL with a host")]
    Url(String),
    #[error("cannot connect to {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("HTTP exchange with {0} failed")]
    Http(String, #[source] hyper::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("{url} answered {status}")]
    NotReady { url: String, status: StatusCode },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// A bound admin listener; nothing is served until [`AdminListener::spawn`].
pub struct AdminListener {
    listener: TcpListener,
}

impl AdminListener {
    /// Opens the admin port (port 0 works; see [`AdminListener::local_addr`]).
    pub async fn bind(settings: &AdminSettings) -> Result<AdminListener, AdminError> {
        let listener = TcpListener::bind(settings.address)
            .await
            .map_err(|source| AdminError::Bind {
                addr: settings.address,
                source,
            })?;
        Ok(AdminListener { listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the returned task is aborted (which also ends its open connections).
    /// `stopping` turns true when the gateway begins to shut down.
    pub fn spawn(self, state: Arc<State>, stopping: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(accept_loop(self.listener, Probe { state, stopping }))
    }
}

/// Asks `url` once and succeeds only on 200 (`arcp-gateway healthcheck`). Plain HTTP/1.1,
/// one connection, everything within `limit`. Runs its own small runtime: call it from a
/// synchronous `main`, not from async code.
pub fn healthcheck(url: &str, limit: Duration) -> Result<(), AdminError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminError::Runtime)?;
    let status = runtime.block_on(async {
        tokio::time::timeout(limit, get_status(url))
            .await
            .map_err(|_| AdminError::Timeout(url.to_owned(), limit))?
    })?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(AdminError::NotReady {
            url: url.to_owned(),
            status,
        })
    }
}

/// What the admin endpoints read: readiness (the broker; Redis reachability joins once the
/// shared store exists) and the metrics.
#[derive(Clone)]
struct Probe {
    state: Arc<State>,
    stopping: watch::Receiver<bool>,
}

async fn accept_loop(listener: TcpListener, probe: Probe) {
    // Connections live in this set: aborting the loop's task drops it and ends them.
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "admin listener: accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
        };
        let probe = probe.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let probe = probe.clone();
                async move {
                    if req.uri().path() == "/metrics" && req.method() == Method::GET {
                        return Ok::<_, Infallible>(metrics(&probe).await);
                    }
                    if req.uri().path() == "/readyz"
                        && matches!(*req.method(), Method::GET | Method::HEAD)
                    {
                        return Ok(readiness(&probe).await);
                    }
                    Ok(route(&req))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// The admin routes. Bodies are small JSON objects; nothing here is cached.
fn route(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut res = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"method not allowed"}"#,
        );
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, r#"{"status":"alive"}"#),
        // Answered before this (they await the session store); HEAD /metrics gets headers.
        "/metrics" => reply(StatusCode::OK, ""),
        _ => reply(StatusCode::NOT_FOUND, r#"{"status":"not found"}"#),
    }
}

async fn readiness(probe: &Probe) -> Response<Full<Bytes>> {
    let handles = &probe.state.handles;
    let not_ready = |body| reply(StatusCode::SERVICE_UNAVAILABLE, body);
    if *probe.stopping.borrow() {
        not_ready(r#"{"status":"not ready","reason":"shutting down"}"#)
    } else if !handles.broker.is_ready() {
        not_ready(r#"{"status":"not ready","reason":"no upstream admin session"}"#)
    } else if !handles.sessions.check_available().await {
        not_ready(r#"{"status":"not ready","reason":"session storage unavailable"}"#)
    } else {
        reply(StatusCode::OK, r#"{"status":"ready"}"#)
    }
}

async fn metrics(probe: &Probe) -> Response<Full<Bytes>> {
    let handles = &probe.state.handles;
    // The store's count is settled by its pending maintenance (idle expiry, evictions).
    handles.sessions.run_pending_tasks().await;
    handles.metrics.set_sessions_live(handles.sessions.len());
    let mut res = Response::new(Full::new(Bytes::from(handles.metrics.encode())));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

/// One GET over a fresh connection; the status of the answer.
async fn get_status(url: &str) -> Result<StatusCode, AdminError> {
    let bad_url = || AdminError::Url(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad_url())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad_url());
    }
    let authority = uri.authority().ok_or_else(bad_url)?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| AdminError::Connect(authority.to_string(), e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| AdminError::Http(url.to_owned(), e))?;
    let connection = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "arcp-gateway-healthcheck")
        .body(Empty::<Bytes>::new())
        .map_err(|_| bad_url())?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| AdminError::Http(url.to_owned(), e));
    connection.abort();
    Ok(res?.status())
}
