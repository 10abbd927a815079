//! The stub upstream: an HTTP/1.1 server on `127.0.0.1:0` that records every request it
//! received completely (only once the body was read to its end) and answers as the test
//! chooses ([`Reply`]). It also counts request heads, aborted requests and open connections,
//! so a test can prove that nothing, or nothing complete, reached it. It runs on the shared
//! stub skeleton ([`super::server`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::server::{Journal, StubServer, StubService};
use super::{full, hex, PatternBody, TestBody};

/// One request the stub received completely (recorded only once its body was read to the end).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// The request target as received (origin-form).
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
}

impl Recorded {
    /// The only value of `name`; fails the test if the field is repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all: Vec<&HeaderValue> = self.headers.get_all(name).iter().collect();
        assert!(
            all.len() <= 1,
            "{name} appears {} times: {all:?}",
            all.len()
        );
        all.first()
            .map(|v| v.to_str().expect("visible ASCII header"))
    }

    fn echo_json(&self) -> serde_json::Value {
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        serde_json::json!({
            "method": self.method.as_str(),
            "uri": self.uri.to_string(),
            "version": format!("{:?}", self.version),
            "headers": headers,
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
        })
    }
}

/// How the stub answers a recorded request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 `application/json` describing the request (method, uri, headers, body length/hash).
    Echo,
    /// 200 with a [`PatternBody`] of this many bytes.
    Stream(u64),
    /// Never answers (the request is recorded first).
    Hang,
    /// Echo after this delay (the request is recorded first).
    Delay(Duration),
    /// Echo plus hop-by-hop response fields (`Connection: x-stub-hop`, `Keep-Alive`,
    /// `X-Stub-Hop`, `Proxy-Authenticate`, `Trailer`, `Upgrade`) and an end-to-end
    /// `X-Stub-Visible: yes`.
    HopHeaders,
}

/// The default behaviour, chosen by path: `/stream/<bytes>`, `/delay/<ms>`, `/hang…`,
/// `/hop-headers`, anything else echoes.
pub fn reply_by_path(rec: &Recorded) -> Reply {
    let path = rec.uri.path();
    if let Some(n) = path.strip_prefix("/stream/").and_then(|n| n.parse().ok()) {
        return Reply::Stream(n);
    }
    if let Some(ms) = path.strip_prefix("/delay/").and_then(|n| n.parse().ok()) {
        return Reply::Delay(Duration::from_millis(ms));
    }
    if path.starts_with("/hang") {
        return Reply::Hang;
    }
    if path == "/hop-headers" {
        return Reply::HopHeaders;
    }
    Reply::Echo
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct StubState {
    records: Journal<Recorded>,
    /// Request heads that reached the service (complete or not).
    heads: AtomicUsize,
    /// Requests whose body failed or whose connection ended before the body was complete.
    aborted: AtomicUsize,
    open_connections: AtomicUsize,
    handler: Box<Handler>,
}

impl StubService for StubState {
    fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<TestBody>> + Send {
        stub_service(self, req)
    }

    fn connected(self: Arc<Self>) -> impl Send + 'static {
        self.open_connections.fetch_add(1, Ordering::SeqCst);
        self.records.notify();
        ConnGuard(self)
    }
}

/// An HTTP/1.1 upstream on `127.0.0.1:0` that records what reaches it.
pub struct Stub {
    pub addr: SocketAddr,
    state: Arc<StubState>,
    _server: StubServer,
}

impl Stub {
    /// A stub answering by path ([`reply_by_path`]).
    pub async fn start() -> Stub {
        Stub::start_with(reply_by_path).await
    }

    /// A stub answering with `handler`.
    pub async fn start_with(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Stub {
        let state = Arc::new(StubState {
            records: Journal::new(),
            heads: AtomicUsize::new(0),
            aborted: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            handler: Box::new(handler),
        });
        let server = StubServer::start(state.clone()).await;
        Stub {
            addr: server.addr,
            state,
            _server: server,
        }
    }

    /// `http://127.0.0.1:<port>` for `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every complete request so far, in arrival order.
    pub fn records(&self) -> Vec<Recorded> {
        self.state.records.entries()
    }

    /// Request heads seen, complete or not.
    pub fn heads(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }

    /// Requests that ended before their body was complete.
    pub fn aborted(&self) -> usize {
        self.state.aborted.load(Ordering::SeqCst)
    }

    pub fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    /// Every head seen was either recorded or aborted, and no connection is open.
    pub fn is_quiet(&self) -> bool {
        let settled = self.state.records.len() + self.aborted();
        settled == self.heads() && self.open_connections() == 0
    }

    /// Waits until `cond` holds; returns whether it did within `limit`.
    pub async fn wait_until(&self, limit: Duration, cond: impl Fn(&Stub) -> bool) -> bool {
        self.state.records.wait_until(limit, || cond(self)).await
    }

    /// Waits until at least `n` requests were recorded; fails the test after `limit`.
    pub async fn wait_for_records(&self, n: usize, limit: Duration) {
        let ok = self.wait_until(limit, |s| s.state.records.len() >= n).await;
        assert!(
            ok,
            "stub recorded {} of {n} requests within {limit:?}",
            self.records().len()
        );
    }
}

struct ConnGuard(Arc<StubState>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
        self.0.records.notify();
    }
}

/// Counts a request as aborted unless it was recorded; runs when the service future ends or
/// is dropped with its connection.
struct InFlight {
    state: Arc<StubState>,
    recorded: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.recorded {
            self.state.aborted.fetch_add(1, Ordering::SeqCst);
        }
        self.state.records.notify();
    }
}

async fn stub_service(state: Arc<StubState>, req: Request<Incoming>) -> Response<TestBody> {
    state.heads.fetch_add(1, Ordering::SeqCst);
    state.records.notify();
    let mut in_flight = InFlight {
        state: state.clone(),
        recorded: false,
    };
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len() as u64;
                    hasher.update(&data);
                }
            }
            Err(_) => {
                let mut r = Response::new(full("incomplete body"));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                return r;
            }
        }
    }
    let rec = Recorded {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body_len: len,
        body_sha256: hex(&hasher.finalize()),
    };
    let reply = (state.handler)(&rec);
    let echo = rec.echo_json();
    state.records.push(rec);
    in_flight.recorded = true;
    drop(in_flight);

    let json = |extra: &[(&'static str, &'static str)]| {
        let mut r = Response::new(full(serde_json::to_vec(&echo).unwrap()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in extra {
            r.headers_mut()
                .append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        r
    };
    match reply {
        Reply::Echo => json(&[]),
        Reply::Stream(n) => {
            let mut r = Response::new(PatternBody::boxed(n));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Reply::Hang => std::future::pending().await,
        Reply::Delay(d) => {
            tokio::time::sleep(d).await;
            json(&[])
        }
        Reply::HopHeaders => json(&[
            ("connection", "x-stub-hop"),
            ("keep-alive", "timeout=5, max=7"),
            ("x-stub-hop", "must-not-pass"),
            ("proxy-authenticate", "Basic realm=\"stub\""),
            ("trailer", "x-stub-trailer"),
            ("upgrade", "stub-proto/1"),
            ("x-stub-visible", "yes"),
        ]),
    }
}
