//! An in-process stand-in for an unmodified ARCP server that **enforces ARCP's admin session
//! rule** (contract §0, §2.5). The gateway's side of the same setup (configuration, keys,
//! requests) is [`super::arcp_profile`]; tokens are made with [`super::jwt`].
//!
//! The stub (plain HTTP/1.1 on `127.0.0.1:0`):
//! * `POST /auth/login` `{"username","password"}` + `X-Client-Fingerprint` → 200
//!   `{"access_token":<fresh random token>,"token_type":"bearer","expires_in":N,
//!   "agent_id":"user_<u>"}` for the service credentials, 401 otherwise, 400 without a
//!   fingerprint. Logins are counted.
//! * Admin paths (`/agents/stats`, `/metrics`, `/dashboard/**`, `/tokens/mint`, `/health/**`,
//!   the `/auth/*` session endpoints) answer 200 only for `Authorization: Bearer <token>` plus
//!   the `X-Client-Fingerprint` of a login it served; anything else gets 401
//!   `session-invalid` (an agent token gets 403, as upstream).
//! * Agent paths (`/agents`, `/agents/**`, `/security/**`) accept such an admin session or an
//!   agent token: an HS256 JWT signed with the test upstream secret, no `kid`, role `agent`.
//! * Everything else is public and answered 200.
//! * Every request is recorded whole (method, path, query, headers, body), and
//!   [`ArcpStub::drop_sessions`] forgets every login (an upstream restart).
//!
//! The listener, connection tasks and the record journal are the shared stub skeleton
//! ([`super::server`]).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::server::{Journal, StubServer, StubService};
use super::{full, hex, TestBody};

/// The service account the gateway logs in upstream with.
pub const SERVICE_USER: &str = "svc-admin";
pub const SERVICE_PASSWORD: &str = "svc-password-0123456789";
/// ARCP's `JWT_SECRET` in the tests (agent tokens are signed with it).
pub const UPSTREAM_SECRET: &str = "upstream-jwt-secret-for-tests-0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// The stub.
// ---------------------------------------------------------------------------------------------

/// One request the stub received, body included.
#[derive(Debug, Clone)]
pub struct StubRecord {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl StubRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether `needle` occurs anywhere in what was received (target, headers, body).
    pub fn contains(&self, needle: &str) -> bool {
        let in_target =
            self.path.contains(needle) || self.query.as_deref().is_some_and(|q| q.contains(needle));
        let in_headers = self
            .headers
            .iter()
            .any(|(k, v)| k.as_str().contains(needle) || contains_bytes(v.as_bytes(), needle));
        in_target || in_headers || contains_bytes(&self.body, needle)
    }
}

fn contains_bytes(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && hay.windows(n.len()).any(|w| w == n)
}

/// A login the stub served.
#[derive(Debug, Clone)]
pub struct StubSession {
    pub token: String,
    pub fingerprint: String,
}

/// Which of ARCP's auth labels a stub path has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Public,
    Agent,
    Admin,
}

/// ARCP's labels for the paths the tests use (contract §1.3).
pub fn area(path: &str) -> Area {
    let admin_exact = [
        "/agents/stats",
        "/metrics",
        "/tokens/mint",
        "/auth/logout",
        "/auth/set_pin",
        "/auth/verify_pin",
        "/auth/pin_status",
        "/auth/session_status",
    ];
    if admin_exact.contains(&path)
        || path.starts_with("/dashboard/")
        || path.starts_with("/health/")
    {
        return Area::Admin;
    }
    if path == "/security/health" || path == "/security/attestation/challenge" {
        return Area::Public;
    }
    if path == "/agents" || path.starts_with("/agents/") || path.starts_with("/security/") {
        return Area::Agent;
    }
    Area::Public
}

struct StubInner {
    records: Journal<StubRecord>,
    /// token → (fingerprint, absolute expiry), as upstream's `session:info`.
    sessions: Mutex<HashMap<String, (String, Instant)>>,
    issued: Mutex<Vec<StubSession>>,
    login_attempts: AtomicUsize,
    logins: AtomicUsize,
    /// Requests refused with 401 `session-invalid`.
    session_rejections: AtomicUsize,
    expires_in: AtomicU64,
    /// Refuse every login as wrong credentials (a changed ADMIN_PASSWORD).
    refuse_logins: AtomicBool,
}

impl StubService for StubInner {
    fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<TestBody>> + Send {
        serve(self, req)
    }
}

/// The ARCP stand-in. Dropping it stops accepting.
pub struct ArcpStub {
    pub addr: SocketAddr,
    inner: Arc<StubInner>,
    _server: StubServer,
}

impl ArcpStub {
    pub async fn start() -> ArcpStub {
        let inner = Arc::new(StubInner {
            records: Journal::new(),
            sessions: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            login_attempts: AtomicUsize::new(0),
            logins: AtomicUsize::new(0),
            session_rejections: AtomicUsize::new(0),
            expires_in: AtomicU64::new(1800),
            refuse_logins: AtomicBool::new(false),
        });
        let server = StubServer::start(inner.clone()).await;
        ArcpStub {
            addr: server.addr,
            inner,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn records(&self) -> Vec<StubRecord> {
        self.inner.records.entries()
    }

    /// Requests other than logins.
    pub fn non_login_records(&self) -> Vec<StubRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.path != "/auth/login")
            .collect()
    }

    /// Records for `path`.
    pub fn records_for(&self, path: &str) -> Vec<StubRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Successful logins served.
    pub fn logins(&self) -> usize {
        self.inner.logins.load(Ordering::SeqCst)
    }

    /// Login requests of any outcome.
    pub fn login_attempts(&self) -> usize {
        self.inner.login_attempts.load(Ordering::SeqCst)
    }

    /// Requests refused with 401 `session-invalid` (unknown, expired or dropped session,
    /// wrong fingerprint, foreign token).
    pub fn session_rejections(&self) -> usize {
        self.inner.session_rejections.load(Ordering::SeqCst)
    }

    /// Every login served, oldest first (including dropped ones).
    pub fn issued(&self) -> Vec<StubSession> {
        self.inner.issued.lock().unwrap().clone()
    }

    /// The newest login served.
    pub fn last_issued(&self) -> Option<StubSession> {
        self.issued().last().cloned()
    }

    /// Forgets every session (what an upstream restart without Redis does).
    pub fn drop_sessions(&self) {
        self.inner.sessions.lock().unwrap().clear();
    }

    /// Makes every future login fail with 401 (`false` restores normal logins).
    pub fn refuse_logins(&self, refuse: bool) {
        self.inner.refuse_logins.store(refuse, Ordering::SeqCst);
    }

    /// `expires_in` of future logins; sessions end that many seconds after their login, like
    /// upstream's absolute `SESSION_TIMEOUT`.
    pub fn set_expires_in(&self, seconds: u64) {
        self.inner.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Waits until at least `n` logins were served; fails the test after `limit`.
    pub async fn wait_for_logins(&self, n: usize, limit: Duration) {
        let ok = self
            .inner
            .records
            .wait_until(limit, || self.logins() >= n)
            .await;
        assert!(
            ok,
            "the stub served {} of {n} logins within {limit:?}",
            self.logins()
        );
    }
}

fn stub_json(status: StatusCode, value: &Value) -> Response<TestBody> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An ARCP-style problem (no `request_id`, as upstream).
fn stub_problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    path: &str,
) -> Response<TestBody> {
    let mut r = stub_json(
        status,
        &json!({
            "type": format!("https://arcp.0x001.tech/docs/problems/{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "instance": path,
            "timestamp": "2026-01-01T00:00:00.000000Z",
        }),
    );
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

async fn serve(inner: Arc<StubInner>, req: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return stub_json(
                StatusCode::BAD_REQUEST,
                &json!({"detail": "incomplete body"}),
            )
        }
    };
    let rec = StubRecord {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    inner.records.push(rec.clone());
    answer(&inner, &rec)
}

fn answer(inner: &StubInner, rec: &StubRecord) -> Response<TestBody> {
    let path = rec.path.as_str();
    if rec.method == Method::POST && path == "/auth/login" {
        return login(inner, rec);
    }
    let ok = |auth: &str| {
        stub_json(
            StatusCode::OK,
            &json!({
                "stub": "arcp",
                "auth": auth,
                "method": rec.method.as_str(),
                "path": path,
                "body": String::from_utf8_lossy(&rec.body),
            }),
        )
    };
    let area = area(path);
    if area == Area::Public {
        return ok("public");
    }
    let Some(token) = rec
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        let kind = if area == Area::Admin {
            "admin"
        } else {
            "agent"
        };
        return stub_problem(
            StatusCode::UNAUTHORIZED,
            "authentication-failed",
            "Authentication Failed",
            &format!("Authentication required for {kind} endpoint"),
            path,
        );
    };
    let fingerprint = rec.header("x-client-fingerprint").unwrap_or("");
    let session_fp = inner
        .sessions
        .lock()
        .unwrap()
        .get(token)
        .filter(|(_, expires_at)| Instant::now() < *expires_at)
        .map(|(fp, _)| fp.clone());
    if let Some(fp) = session_fp {
        if !fingerprint.is_empty() && fp == fingerprint {
            return ok("admin");
        }
    } else if verify_agent_token(token) {
        return match area {
            Area::Agent => ok("agent"),
            _ => stub_problem(
                StatusCode::FORBIDDEN,
                "insufficient-permissions",
                "Insufficient Permissions",
                "Access denied: agent role cannot access admin endpoint",
                path,
            ),
        };
    }
    inner.session_rejections.fetch_add(1, Ordering::SeqCst);
    stub_problem(
        StatusCode::UNAUTHORIZED,
        "session-invalid",
        "Session Validation Failed",
        "Admin session validation failed",
        path,
    )
}

fn login(inner: &StubInner, rec: &StubRecord) -> Response<TestBody> {
    inner.login_attempts.fetch_add(1, Ordering::SeqCst);
    let fields: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    let fingerprint = rec.header("x-client-fingerprint").unwrap_or("").to_owned();
    if fingerprint.is_empty() {
        return stub_problem(
            StatusCode::BAD_REQUEST,
            "required-header-missing",
            "Required Header Missing",
            "X-Client-Fingerprint header is required",
            "/auth/login",
        );
    }
    if inner.refuse_logins.load(Ordering::SeqCst)
        || fields["username"] != SERVICE_USER
        || fields["password"] != SERVICE_PASSWORD
    {
        return stub_problem(
            StatusCode::UNAUTHORIZED,
            "authentication-failed",
            "Authentication Failed",
            "Authentication failed: Invalid admin credentials",
            "/auth/login",
        );
    }
    let token = format!("upstream-{}", hex(&rand::random::<[u8; 24]>()));
    let expires_in = inner.expires_in.load(Ordering::SeqCst);
    inner.sessions.lock().unwrap().insert(
        token.clone(),
        (
            fingerprint.clone(),
            Instant::now() + Duration::from_secs(expires_in),
        ),
    );
    inner.issued.lock().unwrap().push(StubSession {
        token: token.clone(),
        fingerprint,
    });
    inner.logins.fetch_add(1, Ordering::SeqCst);
    inner.records.notify();
    stub_json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "agent_id": format!("user_{SERVICE_USER}"),
        }),
    )
}

/// An agent token as ARCP verifies it: HS256 with [`UPSTREAM_SECRET`], no `kid`, valid
/// `exp`, role `agent` (the default when absent).
pub fn verify_agent_token(token: &str) -> bool {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return false;
    };
    if header.kid.is_some() || header.alg != jsonwebtoken::Algorithm::HS256 {
        return false;
    }
    let validation = {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_aud = false;
        v
    };
    let Ok(data) = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(UPSTREAM_SECRET.as_bytes()),
        &validation,
    ) else {
        return false;
    };
    data.claims
        .get("role")
        .is_none_or(|r| r.as_str() == Some("agent"))
}
