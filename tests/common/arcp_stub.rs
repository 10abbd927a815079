//! An in-process stand-in for an unmodified ARCP server that **enforces ARCP's admin session
//! rule** (contract §0, §2.5), plus what the session tests need around it: the gateway
//! configuration for the ARCP profile, JWT helpers and request builders.
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
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::server::{Journal, StubServer, StubService};
use super::{full, GatewayOptions, TempDir, TestBody};

/// The service account the gateway logs in upstream with.
pub const SERVICE_USER: &str = "svc-admin";
pub const SERVICE_PASSWORD: &str = "svc-password-0123456789";
/// ARCP's `JWT_SECRET` in the tests (agent tokens are signed with it).
pub const UPSTREAM_SECRET: &str = "upstream-jwt-secret-for-tests-0123456789abcdef";
/// The gateway's HS256 signing secret (kid `main`).
pub const GATEWAY_SECRET: &str = "gateway-signing-secret-for-tests-0123456789abcdef";
pub const GATEWAY_ISSUER: &str = "arcp-gateway-test";
/// The human admin the gateway knows (password `ARCP`, as in the seeds).
pub const ADMIN_USER: &str = "ARCP";
pub const ADMIN_PASSWORD: &str = "ARCP";

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// JWTs.
// ---------------------------------------------------------------------------------------------

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 JWT of `claims` with `kid` (if any), signed with `key`.
pub fn hs256(kid: Option<&str>, claims: &Value, key: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

/// An agent token as ARCP mints it (`registry.create_access_token`), valid for an hour.
pub fn agent_token(sub: &str) -> String {
    let now = now();
    hs256(
        None,
        &json!({"sub": sub, "agent_id": sub, "scopes": [], "role": "agent", "iat": now, "exp": now + 3600}),
        UPSTREAM_SECRET.as_bytes(),
    )
}

/// `header.payload.signature` from JSON parts and raw signature bytes.
pub fn assemble_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The claims of a JWT, unverified (for assertions on tokens the gateway issued).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a JWT, unverified.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Gateway configuration for the ARCP profile.
// ---------------------------------------------------------------------------------------------

/// The user's argon2id hash, made once per test binary (argon2 is slow in debug builds).
pub fn admin_password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| arcp_gateway::auth::credentials::hash_password(ADMIN_PASSWORD).unwrap())
}

/// Knobs of the ARCP-profile configuration.
#[derive(Debug, Clone)]
pub struct ArcpConfig {
    pub idle_timeout: String,
    pub absolute_timeout: String,
    pub max_failures_per_ip: u32,
    pub max_failures_per_user: u32,
    pub attempts_per_minute_per_ip: u32,
    pub lockout: String,
    pub max_per_user: u32,
    /// `upstream.replay_buffer_bytes`, when not the default.
    pub replay_buffer_bytes: Option<String>,
}

impl Default for ArcpConfig {
    fn default() -> Self {
        ArcpConfig {
            idle_timeout: "10m".into(),
            absolute_timeout: "1h".into(),
            max_failures_per_ip: 1000,
            max_failures_per_user: 1000,
            attempts_per_minute_per_ip: 10_000,
            lockout: "5m".into(),
            max_per_user: 1000,
            replay_buffer_bytes: None,
        }
    }
}

/// Secret files and the Ed25519 key pair, kept for the life of a test (a restarted gateway
/// reads the same files).
pub struct Keys {
    pub dir: TempDir,
    pub ed25519: rcgen::KeyPair,
    pub ed_public_pem: String,
    files: HashMap<&'static str, PathBuf>,
}

impl Keys {
    pub fn new() -> Keys {
        let dir = TempDir::new();
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let ed_public_pem = ed25519.public_key_pem();
        let mut files = HashMap::new();
        for (name, content) in [
            ("service-password", SERVICE_PASSWORD.to_owned()),
            ("upstream-secret", UPSTREAM_SECRET.to_owned()),
            ("gateway-secret", GATEWAY_SECRET.to_owned()),
            ("ed25519.pub.pem", ed_public_pem.clone()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            files.insert(name, path);
        }
        Keys {
            dir,
            ed25519,
            ed_public_pem,
            files,
        }
    }

    fn file(&self, name: &str) -> String {
        serde_json::to_string(&self.files[name].display().to_string()).unwrap()
    }

    /// Gateway options for the ARCP profile against `upstream_url`.
    pub fn options(&self, upstream_url: &str, cfg: &ArcpConfig) -> GatewayOptions {
        let mut opts = GatewayOptions::new(upstream_url)
            .upstream(
                "service_account",
                format!(
                    "{{username: {SERVICE_USER}, password_file: {}}}",
                    self.file("service-password")
                ),
            )
            .upstream(
                "token_verification",
                format!(
                    "{{algorithm: HS256, secret_file: {}, leeway: 60s}}",
                    self.file("upstream-secret")
                ),
            )
            .upstream("response_timeout", "10s");
        if let Some(bytes) = &cfg.replay_buffer_bytes {
            opts = opts.upstream("replay_buffer_bytes", bytes.clone());
        }
        opts.routes = "  profile: arcp\n  default_access: admin\n".into();
        opts.log_level = "warn".into();
        opts.extra = format!(
            "auth:\n\
             \x20 issuer: {GATEWAY_ISSUER}\n\
             \x20 signing_key: main\n\
             \x20 keys:\n\
             \x20   - {{kid: main, algorithm: HS256, secret_file: {gw}}}\n\
             \x20   - {{kid: ed, algorithm: EdDSA, public_key_file: {ed}}}\n\
             \x20 users:\n\
             \x20   - {{name: {ADMIN_USER}, password_hash: \"{hash}\", role: admin}}\n\
             \x20 login:\n\
             \x20   max_failures_per_ip: {ip}\n\
             \x20   max_failures_per_user: {user}\n\
             \x20   failure_window: 15m\n\
             \x20   lockout: {lockout}\n\
             \x20   attempts_per_minute_per_ip: {rate}\n\
             sessions:\n\
             \x20 idle_timeout: {idle}\n\
             \x20 absolute_timeout: {abs}\n\
             \x20 max_per_user: {max_per_user}\n\
             \x20 capacity: 100000\n",
            gw = self.file("gateway-secret"),
            ed = self.file("ed25519.pub.pem"),
            hash = admin_password_hash(),
            ip = cfg.max_failures_per_ip,
            user = cfg.max_failures_per_user,
            lockout = cfg.lockout,
            rate = cfg.attempts_per_minute_per_ip,
            idle = cfg.idle_timeout,
            abs = cfg.absolute_timeout,
            max_per_user = cfg.max_per_user,
        );
        opts
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------------

/// `POST /auth/login` with a JSON body and an optional fingerprint.
pub fn login_request(body: &str, fingerprint: Option<&str>) -> Request<TestBody> {
    let mut b = Request::post("/auth/login").header(CONTENT_TYPE, "application/json");
    if let Some(fp) = fingerprint {
        b = b.header("X-Client-Fingerprint", fp);
    }
    b.body(full(body.to_owned())).unwrap()
}

/// The seeds' login: `{"username":"ARCP","password":"ARCP"}`.
pub fn admin_login(fingerprint: &str) -> Request<TestBody> {
    login_request(
        &json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}).to_string(),
        Some(fingerprint),
    )
}

/// A request with an optional bearer token, fingerprint, extra headers and JSON body.
pub fn api_request(
    method: Method,
    path: &str,
    token: Option<&str>,
    fingerprint: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> Request<TestBody> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(fp) = fingerprint {
        b = b.header("X-Client-Fingerprint", fp);
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    match body {
        Some(v) => b
            .header(CONTENT_TYPE, "application/json")
            .body(full(v.to_string()))
            .unwrap(),
        None => b.body(super::empty()).unwrap(),
    }
}
