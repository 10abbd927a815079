//! The gateway in front of ARCP as the session and WebSocket tests configure it: the ARCP
//! route profile, the brokered service account, token verification with the upstream
//! secret, two signing keys (HS256 `main`, EdDSA `ed`), the seeds' admin user and the
//! session and throttling knobs a test may turn ([`ArcpConfig`]); plus the requests those
//! tests send ([`admin_login`], [`api_request`]).
//!
//! The configuration is typed ([`GatewayOptions`] with `json!` sections). Secrets live in
//! files under a [`Keys`] directory that outlives a gateway restart. It does not start
//! anything; see [`super::TestGateway`] and [`super::arcp_stub::ArcpStub`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use serde_json::{json, Value};

use super::arcp_stub::{SERVICE_PASSWORD, SERVICE_USER, UPSTREAM_SECRET};
use super::{empty, full, GatewayOptions, TempDir, TestBody};

/// The gateway's HS256 signing secret (kid `main`).
pub const GATEWAY_SECRET: &str = "gateway-signing-secret-for-tests-0123456789abcdef";
pub const GATEWAY_ISSUER: &str = "arcp-gateway-test";
/// The human admin the gateway knows (password `ARCP`, as in the seeds).
pub const ADMIN_USER: &str = "ARCP";
pub const ADMIN_PASSWORD: &str = "ARCP";

/// Knobs of the ARCP-profile configuration.
#[derive(Debug, Clone)]
pub struct ArcpConfig {
    pub idle_timeout: String,
    pub absolute_timeout: String,
    pub max_failures_per_ip: u32,
    /// `auth.login.max_failures_per_address` (the shipped default, 50, unless set).
    pub max_failures_per_address: u32,
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
            max_failures_per_address: 50,
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

    fn file(&self, name: &str) -> &Path {
        &self.files[name]
    }

    /// Gateway options for the ARCP profile against `upstream_url`.
    pub fn options(&self, upstream_url: &str, cfg: &ArcpConfig) -> GatewayOptions {
        let mut opts = GatewayOptions::new(upstream_url)
            .upstream(
                "service_account",
                json!({
                    "username": SERVICE_USER,
                    "password_file": self.file("service-password"),
                }),
            )
            .upstream(
                "token_verification",
                json!({
                    "algorithm": "HS256",
                    "secret_file": self.file("upstream-secret"),
                    "leeway": "60s",
                }),
            )
            .upstream("response_timeout", "10s")
            .routes(json!({"profile": "arcp", "default_access": "admin"}))
            .logging("level", "warn")
            .section(
                "auth",
                json!({
                    "issuer": GATEWAY_ISSUER,
                    "signing_key": "main",
                    "keys": [
                        {"kid": "main", "algorithm": "HS256",
                         "secret_file": self.file("gateway-secret")},
                        {"kid": "ed", "algorithm": "EdDSA",
                         "public_key_file": self.file("ed25519.pub.pem")},
                    ],
                    "users": [
                        {"name": ADMIN_USER, "password_hash": admin_password_hash(),
                         "role": "admin"},
                    ],
                    "login": {
                        "max_failures_per_ip": cfg.max_failures_per_ip,
                        "max_failures_per_address": cfg.max_failures_per_address,
                        "max_failures_per_user": cfg.max_failures_per_user,
                        "failure_window": "15m",
                        "lockout": cfg.lockout,
                        "attempts_per_minute_per_ip": cfg.attempts_per_minute_per_ip,
                    },
                }),
            )
            .section(
                "sessions",
                json!({
                    "idle_timeout": cfg.idle_timeout,
                    "absolute_timeout": cfg.absolute_timeout,
                    "max_per_user": cfg.max_per_user,
                    "capacity": 100_000,
                }),
            );
        if let Some(bytes) = &cfg.replay_buffer_bytes {
            opts = opts.upstream("replay_buffer_bytes", bytes.as_str());
        }
        opts
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new()
    }
}

/// The user's argon2id hash, made once per test binary (argon2 is slow in debug builds).
pub fn admin_password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| arcp_gateway::auth::credentials::hash_password(ADMIN_PASSWORD).unwrap())
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
        None => b.body(empty()).unwrap(),
    }
}
