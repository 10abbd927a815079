//! The gateway owns the admin login and the sessions (docs/design.md §1, §3–§7): it authenticates
//! people itself, issues its own tokens, keeps time-to-idle sessions bound to
//! `X-Client-Fingerprint`, and talks to ARCP only through one brokered upstream login.
//!
//! Every test runs the real gateway over TLS on `127.0.0.1:0` against [`ArcpStub`], which
//! enforces ARCP's session rule (an admin request is accepted only with the token and
//! fingerprint of a login it served itself) and records everything it receives.
//!
//! Argon2id runs for every login and PIN operation; in a debug build that is about a second
//! each, so logins are the slow part of these tests.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use arcp_gateway::clock::Clock;
use futures_util::stream::{self, StreamExt};
use http::Method;
use serde_json::{json, Value};

use common::arcp_stub::*;
use common::{assert_problem, json_key_order, Proto, TestBody, TestResponse};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const OTHER_LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Members of a `session-invalid` problem, in wire order (docs/design.md §6).
const SESSION_INVALID_FIELDS: [&str; 9] = [
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
const SESSION_EXPIRED_FIELDS: [&str; 9] = [
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
struct Env {
    stub: ArcpStub,
    keys: Keys,
    cfg: ArcpConfig,
    gw: ClockedGateway,
}

impl Env {
    async fn start(cfg: ArcpConfig) -> Env {
        Env::start_with_clock(cfg, Clock::system()).await
    }

    async fn start_with_clock(cfg: ArcpConfig, clock: Clock) -> Env {
        Env::start_full(cfg, clock, 1800).await
    }

    /// `upstream_expires_in`: the lifetime of the stub's sessions (ARCP's `SESSION_TIMEOUT`).
    async fn start_full(cfg: ArcpConfig, clock: Clock, upstream_expires_in: u64) -> Env {
        let stub = ArcpStub::start().await;
        stub.set_expires_in(upstream_expires_in);
        let keys = Keys::new();
        let gw = ClockedGateway::start(&keys.options(&stub.url(), &cfg), clock).await;
        // The broker logs in upstream as soon as the gateway serves.
        stub.wait_for_logins(1, Duration::from_secs(20)).await;
        Env {
            stub,
            keys,
            cfg,
            gw,
        }
    }

    async fn send(&self, req: http::Request<TestBody>) -> TestResponse {
        self.gw.client.send(Proto::H1, req).await
    }

    /// Logs in as the seeds do and returns the gateway token.
    async fn login(&self, fingerprint: &str) -> String {
        let resp = self.send(admin_login(fingerprint)).await;
        assert_eq!(resp.status, 200, "login: {}", resp.text());
        resp.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        fingerprint: Option<&str>,
    ) -> TestResponse {
        self.send(api_request(method, path, token, fingerprint, &[], None))
            .await
    }

    async fn get(&self, path: &str, token: &str, fingerprint: &str) -> TestResponse {
        self.call(Method::GET, path, Some(token), Some(fingerprint))
            .await
    }

    /// Nothing but the broker's own logins reached the upstream.
    fn assert_upstream_saw_only_logins(&self) {
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
    fn assert_upstream_never_saw(&self, needle: &str, what: &str) {
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

fn assert_challenge(resp: &TestResponse) {
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer"),
        "a 401 carries a Bearer challenge: {}",
        resp.text()
    );
}

/// `sess_` and the first 12 hex digits of the token's `sid`.
fn session_ref(token: &str) -> String {
    let sid = claims_of(token)["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 32, "sid is 128 bits of hex: {sid}");
    format!("sess_{}", &sid[..12])
}

/// A 401 `session-invalid` with exactly ARCP's documented members, in order.
fn assert_session_invalid(resp: &TestResponse, instance: &str, token: &str, detail: &str) {
    let v = assert_problem(resp, 401, "session-invalid", "SESSION_INVALID", instance);
    assert_eq!(json_key_order(&resp.text()), SESSION_INVALID_FIELDS);
    assert_eq!(v["title"], "Session Validation Failed");
    assert_eq!(v["detail"], detail);
    assert_eq!(v["session_id"], session_ref(token));
    assert_challenge(resp);
}

/// A 401 `session-expired` after `timeout` seconds of inactivity.
fn assert_idle_expired(resp: &TestResponse, instance: &str, timeout: u64) {
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
fn assert_cap_expired(resp: &TestResponse, instance: &str, cap: u64) {
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

fn assert_token_invalid(resp: &TestResponse, instance: &str, error_code: &str) -> Value {
    let v = assert_problem(resp, 401, "token-invalid", error_code, instance);
    assert_challenge(resp);
    v
}

// ---------------------------------------------------------------------------------------------
// Login.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_issues_a_gateway_token_and_admin_calls_use_the_brokered_session() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "client-fp-5d41402abc4b";
    let resp = env.send(admin_login(fp)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let mut keys = json_key_order(&resp.text());
    keys.sort();
    assert_eq!(
        keys,
        ["access_token", "agent_id", "expires_in", "token_type"],
        "exactly the four LoginResponse fields"
    );
    let v = resp.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["agent_id"], "user_ARCP");
    assert!(v["expires_in"].is_u64(), "integer seconds: {v}");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!(
        (3590..=3600).contains(&expires_in),
        "expires_in is the session's absolute lifetime (1h): {expires_in}"
    );
    let token = v["access_token"].as_str().unwrap().to_owned();
    let header = header_of(&token);
    assert_eq!(header["kid"], "main");
    assert_eq!(header["alg"], "HS256");
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], GATEWAY_ISSUER);
    assert_eq!(claims["sub"], "ARCP");
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["agent_id"], "user_ARCP");

    let resp = env.get("/agents/stats", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["auth"],
        "admin",
        "the stub accepted its own session"
    );

    assert_eq!(env.stub.logins(), 1);
    let upstream = env.stub.last_issued().unwrap();
    let login = &env.stub.records_for("/auth/login")[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&login.body).unwrap(),
        json!({"username": SERVICE_USER, "password": SERVICE_PASSWORD}),
        "the broker logs in with the service account"
    );
    let stats = env.stub.records_for("/agents/stats");
    assert_eq!(stats.len(), 1);
    let authorization = format!("Bearer {}", upstream.token);
    assert_eq!(
        stats[0].header("authorization"),
        Some(authorization.as_str())
    );
    assert_eq!(
        stats[0].header("x-client-fingerprint"),
        Some(upstream.fingerprint.as_str())
    );
    assert_ne!(upstream.fingerprint, fp);

    // On a public route the client's credentials are stripped, not swapped.
    let resp = env.get("/public/info", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let public = &env.stub.records_for("/public/info")[0];
    assert_eq!(public.header("authorization"), None);
    assert_eq!(public.header("x-client-fingerprint"), None);

    env.assert_upstream_never_saw(&token, "gateway token");
    env.assert_upstream_never_saw(fp, "client fingerprint");
    assert!(
        !resp.text().contains(&upstream.token),
        "the upstream token never reaches the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_run_in_upstream_order_with_upstream_shapes() {
    let env = Env::start(ArcpConfig::default()).await;
    let bad_password = json!({"username": "ARCP", "password": "wrong"}).to_string();

    // Malformed body first, even without a fingerprint.
    let resp = env.send(login_request("{\"username\": ", None)).await;
    assert_problem(
        &resp,
        422,
        "validation-failed",
        "VALIDATION_FAILED",
        "/auth/login",
    );

    // Agent fields next, still before the fingerprint check.
    let agent = json!({"agent_id": "agent-1", "agent_type": "automation"}).to_string();
    let resp = env.send(login_request(&agent, None)).await;
    let v = assert_problem(
        &resp,
        401,
        "authentication-failed",
        "INVALID_CREDENTIALS",
        "/auth/login",
    );
    assert_eq!(
        v["detail"],
        "Authentication failed: Direct agent login not allowed. Use agent registration flow with valid agent key"
    );
    assert_challenge(&resp);

    // A missing (or empty) fingerprint before the credentials are looked at.
    for fp in [None, Some("")] {
        let resp = env.send(login_request(&bad_password, fp)).await;
        let v = assert_problem(
            &resp,
            400,
            "required-header-missing",
            "REQUIRED_HEADER_MISSING",
            "/auth/login",
        );
        assert_eq!(v["detail"], "X-Client-Fingerprint header is required");
        assert_eq!(v["header"], "X-Client-Fingerprint");
    }

    // Bad password and unknown user look the same.
    let unknown = json!({"username": "nobody", "password": "ARCP"}).to_string();
    for body in [&bad_password, &unknown] {
        let resp = env.send(login_request(body, Some("fp-1"))).await;
        let v = assert_problem(
            &resp,
            401,
            "authentication-failed",
            "INVALID_CREDENTIALS",
            "/auth/login",
        );
        assert_eq!(
            v["detail"],
            "Authentication failed: Invalid admin credentials"
        );
        assert_challenge(&resp);
    }

    // Neither credentials nor agent fields.
    let resp = env.send(login_request("{}", Some("fp-1"))).await;
    let v = assert_problem(
        &resp,
        401,
        "authentication-failed",
        "INVALID_CREDENTIALS",
        "/auth/login",
    );
    assert_eq!(
        v["detail"],
        "Authentication failed: Invalid credentials - provide either agent_id/agent_type or username/password"
    );
    assert_challenge(&resp);

    // The right credentials still work, and none of this reached the upstream.
    env.login("fp-1").await;
    assert_eq!(env.stub.login_attempts(), 1, "only the broker's own login");
    env.assert_upstream_saw_only_logins();
}

// ---------------------------------------------------------------------------------------------
// Fingerprint binding, idle expiry, absolute cap, logout, restart.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_fingerprint_is_session_invalid() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-owner-0001";
    let token = env.login(fp).await;

    let resp = env.get("/agents/stats", &token, "fp-thief-0002").await;
    assert_session_invalid(
        &resp,
        "/agents/stats",
        &token,
        "Session fingerprint mismatch - please re-authenticate",
    );
    let resp = env
        .call(Method::GET, "/agents/stats", Some(&token), None)
        .await;
    assert_session_invalid(
        &resp,
        "/agents/stats",
        &token,
        "Session fingerprint missing - please re-authenticate",
    );
    // The same on an agent route and on a gateway endpoint.
    let resp = env.get("/agents", &token, "fp-thief-0002").await;
    assert_session_invalid(
        &resp,
        "/agents",
        &token,
        "Session fingerprint mismatch - please re-authenticate",
    );
    let resp = env
        .get("/auth/session_status", &token, "fp-thief-0002")
        .await;
    assert_session_invalid(
        &resp,
        "/auth/session_status",
        &token,
        "Session fingerprint mismatch - please re-authenticate",
    );
    env.assert_upstream_saw_only_logins();

    // A mismatch does not end the owner's session.
    let resp = env.get("/agents/stats", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_activity_keeps_them_and_the_absolute_cap_ends_them() {
    let idle = 2;
    let cap = 10;
    let cfg = ArcpConfig {
        idle_timeout: format!("{idle}s"),
        absolute_timeout: format!("{cap}s"),
        ..ArcpConfig::default()
    };
    let env = Env::start(cfg).await;
    // Each session is used right after its own login: an argon2id login in a debug build can
    // take longer than the idle timeout.
    let quiet = env.login("fp-quiet").await;
    assert_eq!(
        env.get("/agents/stats", &quiet, "fp-quiet").await.status,
        200
    );
    let busy = env.login("fp-busy").await;
    let busy_login = Instant::now();

    // A request about every half timeout keeps the busy session alive across several idle
    // timeouts.
    let mut n = 0;
    let mut quiet_checked = false;
    while busy_login.elapsed() < Duration::from_millis(6_700) {
        if !quiet_checked && busy_login.elapsed() > Duration::from_millis(2_500) {
            // The quiet one has been idle longer than its timeout (and is far from its cap).
            let resp = env.get("/agents/stats", &quiet, "fp-quiet").await;
            assert_idle_expired(&resp, "/agents/stats", idle);
            let resp = env.get("/auth/session_status", &quiet, "fp-quiet").await;
            assert_idle_expired(&resp, "/auth/session_status", idle);
            quiet_checked = true;
        }
        let path = if n % 2 == 0 {
            "/agents/stats"
        } else {
            "/auth/session_status"
        };
        let resp = env.get(path, &busy, "fp-busy").await;
        assert_eq!(
            resp.status,
            200,
            "request {n} at {:?}: {}",
            busy_login.elapsed(),
            resp.text()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(n >= 6, "only {n} keep-alive requests");
    assert!(quiet_checked);

    // Activity does not stretch the absolute lifetime.
    let ended = loop {
        let resp = env.get("/agents/stats", &busy, "fp-busy").await;
        if resp.status != 200 {
            break resp;
        }
        assert!(
            busy_login.elapsed() < Duration::from_secs(cap + 3),
            "the session outlived its {cap}s cap"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let at = busy_login.elapsed();
    assert_cap_expired(&ended, "/agents/stats", cap);
    assert!(
        at >= Duration::from_millis((cap - 1) * 1000 - 500),
        "the cap ended the session early, at {at:?}"
    );
    // Only admitted requests reached the upstream: n keep-alive calls (half of them answered
    // by the gateway itself), the quiet session's first call, and the cap loop's successes.
    let forwarded = env.stub.records_for("/agents/stats").len();
    assert!(forwarded > n / 2, "{forwarded} forwarded");
    env.assert_upstream_never_saw(&busy, "gateway token");
    env.assert_upstream_never_saw(&quiet, "gateway token");
}

/// docs/design.md §4: "an admitted request ... is activity". A request that is refused (here: the
/// token without its fingerprint, as a token thief would send it) must not keep the victim's
/// session from idling out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_do_not_keep_a_session_alive() {
    let idle = 2;
    let cfg = ArcpConfig {
        idle_timeout: format!("{idle}s"),
        ..ArcpConfig::default()
    };
    let env = Env::start(cfg).await;
    let token = env.login("fp-owner").await;
    assert_eq!(
        env.get("/agents/stats", &token, "fp-owner").await.status,
        200
    );
    let last_admitted = Instant::now();
    let mut refused = 0;
    while last_admitted.elapsed() < Duration::from_millis(4_500) {
        let resp = env.get("/agents/stats", &token, "fp-thief").await;
        assert_eq!(resp.status, 401, "{}", resp.text());
        refused += 1;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(refused >= 6, "only {refused} refused requests");
    // More than two idle timeouts without an admitted request.
    let resp = env.get("/agents/stats", &token, "fp-owner").await;
    assert_eq!(
        resp.status,
        401,
        "{refused} refused requests (wrong fingerprint) over {:?} kept a session with a \
         {idle}s idle timeout alive: {}",
        last_admitted.elapsed(),
        resp.text()
    );
    assert_idle_expired(&resp, "/agents/stats", idle);
    assert_eq!(env.stub.records_for("/agents/stats").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_absolute_cap_follows_the_injected_clock() {
    let clock = Clock::system();
    // The injected clock also drives idle expiry: an idle timeout longer than the steps
    // below keeps this test about the absolute cap.
    let cfg = ArcpConfig {
        idle_timeout: "59m".into(),
        ..ArcpConfig::default()
    };
    let env = Env::start_with_clock(cfg, clock.clone()).await;
    let fp = "fp-clock";
    let token = env.login(fp).await;
    let exp = claims_of(&token)["exp"].as_i64().unwrap();
    assert_eq!(env.get("/agents/stats", &token, fp).await.status, 200);

    clock.advance(1800);
    assert_eq!(env.get("/agents/stats", &token, fp).await.status, 200);
    // A refresh half-way keeps the session's cap.
    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&token), Some(fp))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let refreshed = resp.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&refreshed)["exp"].as_i64(), Some(exp));

    clock.advance(1801);
    for t in [&token, &refreshed] {
        let resp = env.get("/agents/stats", t, fp).await;
        assert_cap_expired(&resp, "/agents/stats", 3600);
        let resp = env
            .call(Method::POST, "/tokens/refresh", Some(t), Some(fp))
            .await;
        assert_cap_expired(&resp, "/tokens/refresh", 3600);
    }
    assert_eq!(env.stub.records_for("/agents/stats").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_kills_the_token_and_only_that_session() {
    let env = Env::start(ArcpConfig::default()).await;
    let token = env.login("fp-a").await;
    let other = env.login("fp-b").await;
    assert_eq!(env.get("/agents/stats", &token, "fp-a").await.status, 200);

    let resp = env
        .call(Method::POST, "/auth/logout", Some(&token), Some("fp-a"))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"status": "success", "message": "Logged out and session PIN cleared"})
    );

    let dead = "Session has been logged out - please re-authenticate";
    let resp = env.get("/agents/stats", &token, "fp-a").await;
    assert_session_invalid(&resp, "/agents/stats", &token, dead);
    let resp = env
        .call(Method::POST, "/auth/logout", Some(&token), Some("fp-a"))
        .await;
    assert_session_invalid(&resp, "/auth/logout", &token, dead);
    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&token), Some("fp-a"))
        .await;
    assert_session_invalid(&resp, "/tokens/refresh", &token, dead);

    assert_eq!(env.get("/agents/stats", &other, "fp-b").await.status, 200);
    assert!(env.stub.records_for("/auth/logout").is_empty());
    env.assert_upstream_never_saw(&token, "gateway token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_expires_old_tokens() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-restart";
    let token = env.login(fp).await;
    assert_eq!(env.get("/agents/stats", &token, fp).await.status, 200);

    let Env {
        stub,
        keys,
        cfg,
        gw,
    } = env;
    gw.shutdown(Duration::from_secs(15)).await;
    // Same configuration and keys, fresh process state.
    let gw = ClockedGateway::start(&keys.options(&stub.url(), &cfg), Clock::system()).await;
    stub.wait_for_logins(2, Duration::from_secs(20)).await;
    let env = Env {
        stub,
        keys,
        cfg,
        gw,
    };

    let resp = env.get("/agents/stats", &token, fp).await;
    assert_idle_expired(&resp, "/agents/stats", 600);
    let fresh = env.login(fp).await;
    assert_eq!(env.get("/agents/stats", &fresh, fp).await.status, 200);
    assert_eq!(env.stub.records_for("/agents/stats").len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Tokens the gateway must never forward.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_tokens_are_refused_and_never_reach_upstream() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-forgery";
    let real = env.login(fp).await;
    let claims = claims_of(&real);
    let now = now();

    let forged_signature = hs256(
        Some("main"),
        &claims,
        b"not-the-gateway-secret-0123456789abcdef",
    );
    let tampered = {
        let parts: Vec<&str> = real.split('.').collect();
        let mut c = claims.clone();
        c["sub"] = json!("root");
        let payload = assemble_jwt(&json!({}), &c, b"");
        let payload = payload.split('.').nth(1).unwrap().to_owned();
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let alg_none = assemble_jwt(
        &json!({"alg": "none", "typ": "JWT", "kid": "main"}),
        &claims,
        b"",
    );
    let alg_none_agent = assemble_jwt(
        &json!({"alg": "none", "typ": "JWT"}),
        &json!({"sub": "agent-1", "role": "agent", "iat": now, "exp": now + 600}),
        b"",
    );
    // HS256 "signed" with the EdDSA key's public material, under the EdDSA key's kid.
    let confused_pem = hs256(Some("ed"), &claims, env.keys.ed_public_pem.as_bytes());
    let confused_raw = hs256(Some("ed"), &claims, env.keys.ed25519.public_key_raw());
    let unknown_kid = hs256(Some("retired-2020"), &claims, GATEWAY_SECRET.as_bytes());
    let upstream_admin = hs256(
        None,
        &json!({"sub": "ARCP", "agent_id": "user_ARCP", "scopes": ["admin", "agent_management"],
                "role": "admin", "iat": now, "exp": now + 600}),
        UPSTREAM_SECRET.as_bytes(),
    );
    let expired_agent = hs256(
        None,
        &json!({"sub": "agent-1", "agent_id": "agent-1", "scopes": [], "role": "agent",
                "iat": now - 7200, "exp": now - 3600}),
        UPSTREAM_SECRET.as_bytes(),
    );
    let wrong_secret_agent = hs256(
        None,
        &json!({"sub": "agent-1", "role": "agent", "iat": now, "exp": now + 600}),
        b"not-the-upstream-secret-0123456789abcdef",
    );

    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "forged signature",
            forged_signature.as_str(),
            "TOKEN_INVALID",
        ),
        ("tampered payload", tampered.as_str(), "TOKEN_INVALID"),
        ("alg none (gateway kid)", alg_none.as_str(), "TOKEN_INVALID"),
        (
            "alg none (agent shape)",
            alg_none_agent.as_str(),
            "TOKEN_INVALID",
        ),
        (
            "HS256 with the EdDSA public key PEM",
            confused_pem.as_str(),
            "TOKEN_INVALID",
        ),
        (
            "HS256 with the raw EdDSA public key",
            confused_raw.as_str(),
            "TOKEN_INVALID",
        ),
        ("unknown kid", unknown_kid.as_str(), "TOKEN_INVALID"),
        (
            "admin token signed with the upstream secret",
            upstream_admin.as_str(),
            "TOKEN_INVALID",
        ),
        (
            "expired agent token",
            expired_agent.as_str(),
            "TOKEN_EXPIRED",
        ),
        (
            "agent token with a wrong secret",
            wrong_secret_agent.as_str(),
            "TOKEN_INVALID",
        ),
        ("garbage", "not-a-jwt", "TOKEN_INVALID"),
    ];
    for (what, token, code) in &cases {
        for path in ["/agents/stats", "/agents"] {
            let resp = env.get(path, token, fp).await;
            assert_eq!(resp.status, 401, "{what} on {path}: {}", resp.text());
            let v = assert_token_invalid(&resp, path, code);
            if *what == "admin token signed with the upstream secret" {
                assert_eq!(
                    v["detail"],
                    "Admin tokens are issued by the gateway; log in at /auth/login"
                );
            }
        }
    }

    // A correctly signed EdDSA token proves the key works: it is refused only because its
    // session does not exist, not because the signature check failed.
    let mut ed_claims = claims.clone();
    ed_claims["sid"] = json!(common::hex(&rand::random::<[u8; 16]>()));
    let signing_input = format!(
        "{}.{}",
        base64_url(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed"}).to_string()),
        base64_url(&ed_claims.to_string())
    );
    let signature = rcgen::SigningKey::sign(&env.keys.ed25519, signing_input.as_bytes()).unwrap();
    let genuine_ed = format!("{signing_input}.{}", base64_url_bytes(&signature));
    let resp = env.get("/agents/stats", &genuine_ed, fp).await;
    assert_idle_expired(&resp, "/agents/stats", 600);

    // A validly signed gateway token past its `exp`: the absolute cap.
    let mut old = claims.clone();
    old["iat"] = json!(now - 7200);
    old["exp"] = json!(now - 3600);
    let expired_gateway = hs256(Some("main"), &old, GATEWAY_SECRET.as_bytes());
    let resp = env.get("/agents/stats", &expired_gateway, fp).await;
    assert_cap_expired(&resp, "/agents/stats", 3600);

    // No credential at all.
    let resp = env.call(Method::GET, "/agents/stats", None, Some(fp)).await;
    let v = assert_problem(
        &resp,
        401,
        "authentication-failed",
        "INVALID_CREDENTIALS",
        "/agents/stats",
    );
    assert_eq!(v["detail"], "Authentication required for admin endpoint");
    assert_challenge(&resp);

    env.assert_upstream_saw_only_logins();
    assert_eq!(env.stub.logins(), 1);
    // The real session is untouched by all of this (upstream would have wiped it, §8.1).
    assert_eq!(env.get("/agents/stats", &real, fp).await.status, 200);
}

fn base64_url(text: &str) -> String {
    base64_url_bytes(text.as_bytes())
}

fn base64_url_bytes(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_pass_unchanged_to_agent_routes_and_are_refused_on_admin_routes() {
    let env = Env::start(ArcpConfig::default()).await;
    let token = agent_token("agent-007");
    let authorization = format!("Bearer {token}");

    let resp = env.call(Method::GET, "/agents", Some(&token), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["auth"], "agent");
    let seen = env.stub.records_for("/agents");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("authorization").unwrap().as_bytes(),
        authorization.as_bytes(),
        "the agent token is forwarded byte for byte"
    );

    let resp = env
        .call(Method::GET, "/agents/stats", Some(&token), None)
        .await;
    let v = assert_problem(
        &resp,
        403,
        "insufficient-permissions",
        "INSUFFICIENT_PERMISSIONS",
        "/agents/stats",
    );
    assert_eq!(
        v["detail"],
        "Access denied: agent role cannot access admin endpoint"
    );
    assert!(env.stub.records_for("/agents/stats").is_empty());

    // Agents unregister themselves without a PIN (the PIN guards admin sessions only).
    let resp = env
        .call(Method::DELETE, "/agents/agent-007", Some(&token), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = env.stub.records_for("/agents/agent-007");
    assert_eq!(
        seen[0].header("authorization"),
        Some(authorization.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// The brokered upstream session.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_client_sessions_share_one_upstream_login() {
    let env = Env::start(ArcpConfig::default()).await;
    let fingerprints: Vec<String> = (0..100).map(|i| format!("fp-client-{i:03}")).collect();
    // argon2id per login: a few in flight at a time keeps every login well inside the
    // client's per-request bound.
    let tokens: Vec<(String, String)> = stream::iter(fingerprints.iter().cloned())
        .map(|fp| {
            let env = &env;
            async move {
                let token = env.login(&fp).await;
                (fp, token)
            }
        })
        .buffer_unordered(3)
        .collect()
        .await;
    assert_eq!(tokens.len(), 100);
    let sids: HashSet<String> = tokens
        .iter()
        .map(|(_, t)| claims_of(t)["sid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sids.len(), 100, "one session per login");

    let calls = tokens.iter().map(|(fp, token)| {
        let env = &env;
        async move { env.get("/agents/stats", token, fp).await }
    });
    let responses = common::within(
        Duration::from_secs(60),
        "100 concurrent admin calls",
        futures_util::future::join_all(calls),
    )
    .await;
    for resp in &responses {
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(env.stub.logins(), 1, "exactly one upstream login");
    assert_eq!(env.stub.login_attempts(), 1);
    let upstream = env.stub.last_issued().unwrap();
    let seen = env.stub.records_for("/agents/stats");
    assert_eq!(seen.len(), 100);
    let authorization = format!("Bearer {}", upstream.token);
    for r in &seen {
        assert_eq!(r.header("authorization"), Some(authorization.as_str()));
        assert_eq!(
            r.header("x-client-fingerprint"),
            Some(upstream.fingerprint.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upstream_session_is_replaced_once_and_the_request_replayed() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-replay";
    let token = env.login(fp).await;
    assert_eq!(env.get("/agents/stats", &token, fp).await.status, 200);
    let first = env.stub.last_issued().unwrap();

    // GET: upstream forgot every session (restart without Redis).
    env.stub.drop_sessions();
    let resp = env.get("/agents/stats", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["auth"], "admin");
    assert_eq!(env.stub.logins(), 2, "exactly one re-login");
    let second = env.stub.last_issued().unwrap();
    assert_ne!(second.token, first.token);
    let seen = env.stub.records_for("/agents/stats");
    assert_eq!(seen.len(), 3, "ok, refused, replayed");
    let auth_of = |s: &StubSession| format!("Bearer {}", s.token);
    assert_eq!(
        seen[1].header("authorization"),
        Some(auth_of(&first).as_str())
    );
    assert_eq!(
        seen[2].header("authorization"),
        Some(auth_of(&second).as_str())
    );
    assert_eq!(env.get("/agents/stats", &token, fp).await.status, 200);
    assert_eq!(env.stub.logins(), 2, "the new session is reused");

    // POST with a small body: buffered and replayed byte for byte.
    env.stub.drop_sessions();
    let body = json!({"query": "weather in Oslo", "top_k": 3});
    let resp = env
        .send(api_request(
            Method::POST,
            "/agents/search",
            Some(&token),
            Some(fp),
            &[],
            Some(&body),
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["body"], body.to_string());
    assert_eq!(env.stub.logins(), 3, "exactly one re-login");
    let third = env.stub.last_issued().unwrap();
    let seen = env.stub.records_for("/agents/search");
    assert_eq!(seen.len(), 2, "refused, replayed");
    for r in &seen {
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.body, body.to_string().as_bytes());
    }
    assert_eq!(
        seen[0].header("authorization"),
        Some(auth_of(&second).as_str())
    );
    assert_eq!(
        seen[1].header("authorization"),
        Some(auth_of(&third).as_str())
    );
    env.assert_upstream_never_saw(&token, "gateway token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_after_an_upstream_restart_cause_one_relogin() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-herd";
    let token = env.login(fp).await;
    assert_eq!(env.get("/agents/stats", &token, fp).await.status, 200);
    env.stub.drop_sessions();
    let calls = (0..20).map(|_| env.get("/agents/stats", &token, fp));
    let responses = common::within(
        Duration::from_secs(60),
        "20 concurrent admin calls",
        futures_util::future::join_all(calls),
    )
    .await;
    for resp in &responses {
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(env.stub.logins(), 2, "single flight: one re-login, no herd");
    let newest = format!("Bearer {}", env.stub.last_issued().unwrap().token);
    let seen = env.stub.records_for("/agents/stats");
    let accepted = seen
        .iter()
        .filter(|r| r.header("authorization") == Some(newest.as_str()))
        .count();
    assert_eq!(
        accepted, 20,
        "every request was answered with the new session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_to_replay_gets_503_with_retry_after() {
    let cfg = ArcpConfig {
        replay_buffer_bytes: Some("1KiB".into()),
        ..ArcpConfig::default()
    };
    let env = Env::start(cfg).await;
    let fp = "fp-big";
    let token = env.login(fp).await;
    env.stub.drop_sessions();
    let big = json!({"query": "x".repeat(4096)});
    let post = || {
        api_request(
            Method::POST,
            "/agents/search",
            Some(&token),
            Some(fp),
            &[],
            Some(&big),
        )
    };
    let resp = env.send(post()).await;
    assert_problem(
        &resp,
        503,
        "endpoint-unreachable",
        "ENDPOINT_UNREACHABLE",
        "/agents/search",
    );
    let retry: u64 = resp
        .header("retry-after")
        .expect("503 carries Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // The session is renewed in the background; the retry goes through.
    env.stub.wait_for_logins(2, Duration::from_secs(20)).await;
    let resp = env.send(post()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(env.stub.logins(), 2);
    let seen = env.stub.records_for("/agents/search");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, big.to_string().as_bytes());
}

/// Wrong service credentials: readiness turns false, admin requests get 503 with
/// `Retry-After`, and the broker backs off instead of storming upstream with logins; it
/// recovers by itself once upstream accepts the credentials again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_service_credentials_mean_not_ready_503_and_back_off() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-service";
    let token = env.login(fp).await;
    let ready = env.call(Method::GET, "/gateway/ready", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    env.stub.refuse_logins(true);
    env.stub.drop_sessions();
    let attempts_before = env.stub.login_attempts();
    let started = Instant::now();
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let calls = (0..5).map(|_| env.get("/agents/stats", &token, fp));
        for resp in futures_util::future::join_all(calls).await {
            assert_problem(
                &resp,
                503,
                "endpoint-unreachable",
                "ENDPOINT_UNREACHABLE",
                "/agents/stats",
            );
            let retry: u64 = resp
                .header("retry-after")
                .expect("503 carries Retry-After")
                .parse()
                .unwrap();
            assert!(retry >= 1);
            refused += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let attempts = env.stub.login_attempts() - attempts_before;
    assert!(refused >= 20, "{refused} requests refused");
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} upstream logins for {refused} requests in 3 s: back-off expected"
    );
    let ready = env.call(Method::GET, "/gateway/ready", None, None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());

    env.stub.refuse_logins(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = env.get("/agents/stats", &token, fp).await;
        if resp.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            resp.text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ready = env.call(Method::GET, "/gateway/ready", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
}

/// docs/design.md §1: the brokered session is refreshed in the background before upstream's
/// absolute expiry, so no client request is ever refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_session_is_refreshed_before_it_expires() {
    // Upstream sessions live 12 s; the broker renews half-way.
    let env = Env::start_full(ArcpConfig::default(), Clock::system(), 12).await;
    let started = Instant::now();
    let fp = "fp-long";
    let token = env.login(fp).await;
    while started.elapsed() < Duration::from_secs(9) {
        let resp = env.get("/agents/stats", &token, fp).await;
        assert_eq!(
            resp.status,
            200,
            "at {:?}: {}",
            started.elapsed(),
            resp.text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(env.stub.logins(), 2, "one background refresh in 9 s");
    assert_eq!(
        env.stub.session_rejections(),
        0,
        "no request was refused upstream: the refresh came first"
    );
    let newest = format!("Bearer {}", env.stub.last_issued().unwrap().token);
    let last = env.stub.records_for("/agents/stats").pop().unwrap();
    assert_eq!(last.header("authorization"), Some(newest.as_str()));
}

// ---------------------------------------------------------------------------------------------
// PINs.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_set_verified_and_enforced_by_the_gateway() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-pin";
    let token = env.login(fp).await;
    let pin_body = |pin: &str| json!({ "pin": pin });
    let post = |path: &'static str, body: Value| {
        env.send(api_request(
            Method::POST,
            path,
            Some(&token),
            Some(fp),
            &[],
            Some(&body),
        ))
    };

    let resp = env.get("/auth/pin_status", &token, fp).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"pin_set": false}));
    let resp = env.get("/auth/session_status", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut keys = json_key_order(&resp.text());
    keys.sort();
    assert_eq!(
        keys,
        [
            "agent_id",
            "expires",
            "is_admin",
            "pin_set",
            "role",
            "session_exists",
            "user_id",
            "valid"
        ]
    );
    let status = resp.json();
    assert_eq!(status["valid"], true);
    assert_eq!(status["user_id"], "ARCP");
    assert_eq!(status["role"], "admin");
    assert_eq!(status["agent_id"], "user_ARCP");
    assert_eq!(status["expires"], claims_of(&token)["exp"]);
    assert_eq!(status["is_admin"], true);
    assert_eq!(status["session_exists"], true);
    assert_eq!(status["pin_set"], false);

    // Before a PIN exists.
    let resp = post("/auth/verify_pin", pin_body("4827")).await;
    let v = assert_problem(&resp, 400, "pin-not-set", "PIN_NOT_SET", "/auth/verify_pin");
    assert_eq!(v["detail"], "PIN not set for session");
    let resp = env
        .call(Method::DELETE, "/agents/agent-42", Some(&token), Some(fp))
        .await;
    assert_problem(
        &resp,
        400,
        "pin-required",
        "PIN_REQUIRED",
        "/agents/agent-42",
    );
    let resp = env
        .send(api_request(
            Method::DELETE,
            "/agents/agent-42",
            Some(&token),
            Some(fp),
            &[("X-Session-Pin", "4827")],
            None,
        ))
        .await;
    assert_problem(&resp, 400, "pin-not-set", "PIN_NOT_SET", "/agents/agent-42");

    // Setting it.
    let resp = post("/auth/set_pin", pin_body("1234")).await;
    assert_problem(
        &resp,
        422,
        "validation-failed",
        "VALIDATION_FAILED",
        "/auth/set_pin",
    );
    let resp = post("/auth/set_pin", pin_body("4827")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"status": "success", "message": "PIN set for session"})
    );
    let resp = post("/auth/set_pin", pin_body("4827")).await;
    let v = assert_problem(
        &resp,
        400,
        "pin-already-set",
        "PIN_ALREADY_SET",
        "/auth/set_pin",
    );
    assert_eq!(v["detail"], "PIN already set for this session");
    let resp = env.get("/auth/pin_status", &token, fp).await;
    assert_eq!(resp.json(), json!({"pin_set": true}));
    assert_eq!(
        env.get("/auth/session_status", &token, fp).await.json()["pin_set"],
        true
    );

    // Verifying it.
    let resp = post("/auth/verify_pin", pin_body("9482")).await;
    let v = assert_problem(
        &resp,
        401,
        "pin-incorrect",
        "PIN_INCORRECT",
        "/auth/verify_pin",
    );
    assert_eq!(v["detail"], "Incorrect PIN");
    assert_challenge(&resp);
    let resp = post("/auth/verify_pin", pin_body("4827")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"status": "success", "message": "PIN verified"})
    );

    // Enforced on the require_pin routes.
    let mint = json!({"user_id": "bot-1", "agent_id": "agent-42", "scopes": [], "role": "agent"});
    let ui = json!({"ui": {"theme": "dark"}});
    let routes: [(Method, &str, Option<&Value>); 3] = [
        (Method::DELETE, "/agents/agent-42", None),
        (Method::POST, "/tokens/mint", Some(&mint)),
        (Method::POST, "/dashboard/config", Some(&ui)),
    ];
    for (method, path, body) in routes {
        let with_pin = |pin: Option<&str>| {
            let extra: Vec<(&str, &str)> = pin.map(|p| ("X-Session-Pin", p)).into_iter().collect();
            api_request(method.clone(), path, Some(&token), Some(fp), &extra, body)
        };
        let resp = env.send(with_pin(None)).await;
        let v = assert_problem(&resp, 400, "pin-required", "PIN_REQUIRED", path);
        assert_eq!(
            v["detail"],
            "X-Session-Pin header is required for this operation"
        );
        let resp = env.send(with_pin(Some("0000-wrong"))).await;
        assert_problem(&resp, 401, "pin-incorrect", "PIN_INCORRECT", path);
        assert_challenge(&resp);
        assert!(
            env.stub.records_for(path).is_empty(),
            "{method} {path} reached the upstream without the right PIN"
        );
        let resp = env.send(with_pin(Some("4827"))).await;
        assert_eq!(resp.status, 200, "{method} {path}: {}", resp.text());
        assert_eq!(resp.json()["auth"], "admin");
        let seen = env.stub.records_for(path);
        assert_eq!(seen.len(), 1, "{method} {path}");
        assert_eq!(seen[0].method, method);
        assert!(
            seen[0].header("x-session-pin").is_none(),
            "X-Session-Pin is not forwarded"
        );
        if let Some(b) = body {
            assert_eq!(seen[0].body, b.to_string().as_bytes());
        }
    }

    // The PIN belongs to the session, not to the user.
    let other = env.login("fp-pin-2").await;
    assert_eq!(
        env.get("/auth/pin_status", &other, "fp-pin-2").await.json(),
        json!({"pin_set": false})
    );
    for path in [
        "/auth/set_pin",
        "/auth/verify_pin",
        "/auth/pin_status",
        "/auth/session_status",
    ] {
        assert!(
            env.stub.records_for(path).is_empty(),
            "{path} is gateway-owned"
        );
    }
    env.assert_upstream_never_saw("4827", "PIN");
}

// ---------------------------------------------------------------------------------------------
// Throttling.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_out_address_does_not_lock_out_other_addresses() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 3,
        lockout: "5m".into(),
        ..ArcpConfig::default()
    };
    let env = Env::start(cfg).await;
    let limit = Duration::from_secs(30);
    let bad = json!({"username": "ARCP", "password": "guess"}).to_string();
    for i in 0..3 {
        let resp = env
            .gw
            .send_from(LOCALHOST, login_request(&bad, Some("fp-attacker")), limit)
            .await;
        assert_eq!(resp.status, 401, "failure {i}: {}", resp.text());
    }
    // Locked: even the right password gets 429 from this address.
    let resp = env
        .gw
        .send_from(LOCALHOST, admin_login("fp-attacker"), limit)
        .await;
    let v = assert_problem(
        &resp,
        429,
        "rate-limit-exceeded",
        "RATE_LIMIT_EXCEEDED",
        "/auth/login",
    );
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("429 carries Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=300).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(v["retry_after"].as_u64(), Some(retry_after));

    // Another loopback address logs in and works.
    let resp = env
        .gw
        .send_from(OTHER_LOOPBACK, admin_login("fp-admin"), limit)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let token = resp.json()["access_token"].as_str().unwrap().to_owned();
    let resp = env
        .gw
        .send_from(
            OTHER_LOOPBACK,
            api_request(
                Method::GET,
                "/agents/stats",
                Some(&token),
                Some("fp-admin"),
                &[],
                None,
            ),
            limit,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = env.stub.records_for("/agents/stats");
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.2"));

    // Its success does not unlock the first address.
    let resp = env
        .gw
        .send_from(LOCALHOST, admin_login("fp-attacker"), limit)
        .await;
    assert_problem(
        &resp,
        429,
        "rate-limit-exceeded",
        "RATE_LIMIT_EXCEEDED",
        "/auth/login",
    );
}

// ---------------------------------------------------------------------------------------------
// /tokens/refresh and /tokens/validate.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_renews_gateway_tokens_and_validate_never_sees_them() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-refresh";
    let token = env.login(fp).await;

    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&token), Some(fp))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut keys = json_key_order(&resp.text());
    keys.sort();
    assert_eq!(keys, ["access_token", "token_type"]);
    let v = resp.json();
    assert_eq!(v["token_type"], "bearer");
    let renewed = v["access_token"].as_str().unwrap().to_owned();
    let (old, new) = (claims_of(&token), claims_of(&renewed));
    assert_eq!(new["sid"], old["sid"], "same session");
    assert_eq!(new["sub"], old["sub"]);
    assert_eq!(new["exp"], old["exp"], "never past the absolute cap");
    assert!(new["iat"].as_i64() >= old["iat"].as_i64());
    assert_eq!(header_of(&renewed)["kid"], "main");
    let resp = env.get("/agents/stats", &renewed, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&token), None)
        .await;
    assert_session_invalid(
        &resp,
        "/tokens/refresh",
        &token,
        "Session fingerprint missing - please re-authenticate",
    );
    let resp = env
        .call(
            Method::POST,
            "/tokens/refresh",
            Some(&token),
            Some("fp-other"),
        )
        .await;
    assert_session_invalid(
        &resp,
        "/tokens/refresh",
        &token,
        "Session fingerprint mismatch - please re-authenticate",
    );
    assert!(env.stub.records_for("/tokens/refresh").is_empty());

    // A verified agent token is upstream's business: forwarded unchanged.
    let agent = agent_token("agent-9");
    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&agent), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = env.stub.records_for("/tokens/refresh");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {agent}").as_str())
    );

    // The token oracle never receives a gateway token, in the header or the query: the
    // gateway refuses it or answers it itself (docs/design.md §5).
    let query = format!("/tokens/validate?token={token}");
    let attempts = [
        (
            "GET, gateway bearer",
            Method::GET,
            "/tokens/validate",
            Some(&token),
            Some(fp),
        ),
        (
            "POST, gateway token in the query",
            Method::POST,
            query.as_str(),
            None,
            None,
        ),
        (
            "POST, gateway token in both",
            Method::POST,
            query.as_str(),
            Some(&token),
            Some(fp),
        ),
        (
            "GET, agent bearer + gateway token in the query",
            Method::GET,
            query.as_str(),
            Some(&agent),
            None,
        ),
        (
            "POST, agent bearer + gateway token in the query",
            Method::POST,
            query.as_str(),
            Some(&agent),
            None,
        ),
    ];
    for (what, method, path, bearer, fingerprint) in attempts {
        let resp = env
            .call(method, path, bearer.map(String::as_str), fingerprint)
            .await;
        assert!(
            resp.status.is_success() || resp.status.is_client_error(),
            "{what}: {} {}",
            resp.status,
            resp.text()
        );
        for r in env.stub.records() {
            assert!(
                !r.contains(&token),
                "{what}: upstream saw the gateway token in {} {}{}",
                r.method,
                r.path,
                r.query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default()
            );
        }
    }
    let resp = env.call(Method::GET, "/tokens/validate", None, None).await;
    assert_eq!(resp.status, 401, "no token: {}", resp.text());
    // An agent token may ask the oracle, unchanged.
    let before = env.stub.records_for("/tokens/validate").len();
    let resp = env
        .call(Method::GET, "/tokens/validate", Some(&agent), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["stub"], "arcp", "answered by the upstream");
    let seen = env.stub.records_for("/tokens/validate");
    assert_eq!(seen.len(), before + 1);
    assert_eq!(
        seen.last().unwrap().header("authorization"),
        Some(format!("Bearer {agent}").as_str())
    );

    env.assert_upstream_never_saw(&token, "gateway token");
    env.assert_upstream_never_saw(&renewed, "refreshed gateway token");
}
