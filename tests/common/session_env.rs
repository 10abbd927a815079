//! What every session suite (`tests/sessions_*.rs`) starts from: the ARCP stub, the key
//! material and one gateway in front of it ([`Env`]), and assertions for the problem
//! documents the gateway answers for sessions and tokens (docs/design.md §6).
//!
//! The gateway owns the admin login and the sessions (docs/design.md §1, §3–§7): it
//! authenticates people itself, issues its own tokens, keeps time-to-idle sessions bound to
//! `X-Client-Fingerprint`, and talks to ARCP only through one brokered upstream login.
//! [`ArcpStub`] enforces ARCP's session rule (an admin request is accepted only with the token
//! and fingerprint of a login it served itself) and records everything it receives.
//!
//! Argon2id runs for every login and PIN operation; logins are the slow part of these tests.

use std::time::Duration;

use arcp_gateway::clock::Clock;
use http::Method;
use serde_json::Value;

use super::arcp_profile::{admin_login, api_request, ArcpConfig, Keys};
use super::arcp_stub::ArcpStub;
use super::jwt::claims_of;
use super::{assert_problem, json_key_order, Proto, TestBody, TestGateway, TestResponse};

/// Members of a `session-invalid` problem, in wire order (docs/design.md §6).
pub const SESSION_INVALID_FIELDS: [&str; 9] = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "timestamp",
    "request_id",
    "session_id",
    "error_code",
];

/// Members of a `session-expired` problem, in wire order.
pub const SESSION_EXPIRED_FIELDS: [&str; 9] = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "timestamp",
    "request_id",
    "session_timeout",
    "error_code",
];

/// A stub upstream, the key material and one gateway in front of it.
pub struct Env {
    pub stub: ArcpStub,
    pub keys: Keys,
    pub cfg: ArcpConfig,
    pub gw: TestGateway,
}

impl Env {
    pub async fn start(cfg: ArcpConfig) -> Env {
        Env::start_with_clock(cfg, Clock::system()).await
    }

    pub async fn start_with_clock(cfg: ArcpConfig, clock: Clock) -> Env {
        Env::start_full(cfg, clock, 1800).await
    }

    /// `upstream_expires_in`: the lifetime of the stub's sessions (ARCP's `SESSION_TIMEOUT`).
    pub async fn start_full(cfg: ArcpConfig, clock: Clock, upstream_expires_in: u64) -> Env {
        let stub = ArcpStub::start().await;
        stub.set_expires_in(upstream_expires_in);
        let keys = Keys::new();
        let gw = TestGateway::start_with_clock(keys.options(&stub.url(), &cfg), clock).await;
        // The broker logs in upstream as soon as the gateway serves.
        stub.wait_for_logins(1, Duration::from_secs(20)).await;
        Env {
            stub,
            keys,
            cfg,
            gw,
        }
    }

    pub async fn send(&self, req: http::Request<TestBody>) -> TestResponse {
        self.gw.client.send(Proto::H1, req).await
    }

    /// Logs in as the seeds do and returns the gateway token.
    pub async fn login(&self, fingerprint: &str) -> String {
        let resp = self.send(admin_login(fingerprint)).await;
        assert_eq!(resp.status, 200, "login: {}", resp.text());
        resp.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        fingerprint: Option<&str>,
    ) -> TestResponse {
        self.send(api_request(method, path, token, fingerprint, &[], None))
            .await
    }

    pub async fn get(&self, path: &str, token: &str, fingerprint: &str) -> TestResponse {
        self.call(Method::GET, path, Some(token), Some(fingerprint))
            .await
    }

    /// Nothing but the broker's own logins reached the upstream.
    pub fn assert_upstream_saw_only_logins(&self) {
        let others = self.stub.non_login_records();
        assert!(
            others.is_empty(),
            "upstream received {:?}",
            others
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect::<Vec<_>>()
        );
        for r in self.stub.records() {
            assert_eq!(r.header("user-agent"), Some("arcp-gateway"), "{r:?}");
        }
    }

    /// No request the upstream received carried `needle` anywhere.
    pub fn assert_upstream_never_saw(&self, needle: &str, what: &str) {
        for r in self.stub.records() {
            assert!(
                !r.contains(needle),
                "upstream saw the {what} in {} {}",
                r.method,
                r.path
            );
        }
    }
}

pub fn assert_challenge(resp: &TestResponse) {
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer"),
        "a 401 carries a Bearer challenge: {}",
        resp.text()
    );
}

/// `sess_` and the first 12 hex digits of the token's `sid`.
pub fn session_ref(token: &str) -> String {
    let sid = claims_of(token)["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 32, "sid is 128 bits of hex: {sid}");
    format!("sess_{}", &sid[..12])
}

/// A 401 `session-invalid` with exactly ARCP's documented members, in order.
pub fn assert_session_invalid(resp: &TestResponse, instance: &str, token: &str, detail: &str) {
    let v = assert_problem(resp, 401, "session-invalid", "SESSION_INVALID", instance);
    assert_eq!(json_key_order(&resp.text()), SESSION_INVALID_FIELDS);
    assert_eq!(v["title"], "Session Validation Failed");
    assert_eq!(v["detail"], detail);
    assert_eq!(v["session_id"], session_ref(token));
    assert_challenge(resp);
}

/// A 401 `session-expired` after `timeout` seconds of inactivity.
pub fn assert_idle_expired(resp: &TestResponse, instance: &str, timeout: u64) {
    let v = assert_problem(resp, 401, "session-expired", "SESSION_EXPIRED", instance);
    assert_eq!(json_key_order(&resp.text()), SESSION_EXPIRED_FIELDS);
    assert_eq!(v["title"], "Session Expired");
    let span = match timeout {
        60 => "1 minute".to_owned(),
        t if t % 60 == 0 => format!("{} minutes", t / 60),
        t => format!("{t} seconds"),
    };
    assert_eq!(
        v["detail"],
        format!("Admin session has expired after {span} of inactivity")
    );
    assert!(v["session_timeout"].is_u64(), "integer seconds: {v}");
    assert_eq!(v["session_timeout"].as_u64(), Some(timeout));
    assert_challenge(resp);
}

/// A 401 `session-expired` because the absolute lifetime of `cap` seconds ran out.
pub fn assert_cap_expired(resp: &TestResponse, instance: &str, cap: u64) {
    let v = assert_problem(resp, 401, "session-expired", "SESSION_EXPIRED", instance);
    assert_eq!(json_key_order(&resp.text()), SESSION_EXPIRED_FIELDS);
    assert_eq!(v["title"], "Session Expired");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("Admin session has expired"),
        "{v}"
    );
    assert!(v["session_timeout"].is_u64(), "integer seconds: {v}");
    assert_eq!(v["session_timeout"].as_u64(), Some(cap));
    assert_challenge(resp);
}

pub fn assert_token_invalid(resp: &TestResponse, instance: &str, error_code: &str) -> Value {
    let v = assert_problem(resp, 401, "token-invalid", error_code, instance);
    assert_challenge(resp);
    v
}
