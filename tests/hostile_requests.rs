//! Hostile requests: each class of request an attacker at the edge can
//! send, sent concretely, with the gateway's answer (status and problem `type`) and what the
//! upstream received asserted: nothing, or exactly the header the gateway rebuilt.
//!
//! * [`tokens`]: registration-phase tokens outside registration (HTTP and the agent socket),
//!   agent tokens acting on other agents, `Authorization` spellings and duplicates, tokens
//!   about to expire.
//! * [`edge`]: duplicate `token` query parameters, `Host`/`:authority`, repeated fingerprint
//!   mismatches.
//! * [`login`]: non-JSON bodies, lockouts that cannot lock the real admin out, atomic failure
//!   counts, bounded password verification, typed user names kept out of the logs.
//! * [`quirks`]: the upstream quirks of docs/arcp-upstream-contract.md §8 a client can
//!   trigger, each triggered through the gateway against the recording ARCP stub.
//! * [`real_arcp`]: the quirks the stub cannot model, against the real ARCP server (one test).
//!
//! Requests a client library would normalise or refuse (odd `Authorization` spellings,
//! duplicated fields, a forged `Host`) are written as raw bytes over TLS. The gateway runs
//! in-process on `127.0.0.1:0`; source addresses are picked from 127/8 where a test needs
//! several clients. docs/security.md lists every class with the test that covers it.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

// The end-to-end harness (real ARCP server, gateway binary, blocking client), used as is.
#[allow(dead_code)]
#[path = "e2e_arcp/client.rs"]
mod e2e_client;
#[allow(dead_code)]
#[path = "e2e_arcp/harness.rs"]
mod e2e_harness;

// The end-to-end client finds the TLS helper at `crate::tls`, as in tests/e2e_arcp.rs.
use common::tls;

#[path = "hostile_requests/edge.rs"]
mod edge;
#[path = "hostile_requests/login.rs"]
mod login;
#[path = "hostile_requests/quirks.rs"]
mod quirks;
#[path = "hostile_requests/real_arcp.rs"]
mod real_arcp;
#[path = "hostile_requests/tokens.rs"]
mod tokens;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use arcp_gateway::clock::Clock;
use http::Method;
use serde_json::{json, Value};

use common::arcp_profile::*;
use common::arcp_stub::*;
use common::jwt::*;
use common::{assert_problem, GatewayOptions, Proto, TestBody, TestGateway, TestResponse};

/// A stub upstream, the key material and one gateway in front of it.
pub struct Env {
    pub stub: ArcpStub,
    pub keys: Keys,
    pub gw: TestGateway,
}

impl Env {
    /// The ARCP profile with the test defaults.
    pub async fn start() -> Env {
        Env::start_with(ArcpConfig::default(), |_| {}).await
    }

    /// The ARCP profile with `cfg`, then `tweak` applied to the options (server keys,
    /// login settings …).
    pub async fn start_with(cfg: ArcpConfig, tweak: impl FnOnce(&mut GatewayOptions)) -> Env {
        let stub = ArcpStub::start().await;
        let keys = Keys::new();
        let mut opts = keys.options(&stub.url(), &cfg);
        tweak(&mut opts);
        let gw = TestGateway::start_with_clock(opts, Clock::system()).await;
        // The broker logs in upstream as soon as the gateway serves.
        stub.wait_for_logins(1, Duration::from_secs(20)).await;
        Env { stub, keys, gw }
    }

    pub async fn send(&self, req: http::Request<TestBody>) -> TestResponse {
        self.gw.client.send(Proto::H1, req).await
    }

    /// `method path` with an optional bearer token (spelled `Bearer <t>`) and no fingerprint.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>) -> TestResponse {
        self.send(api_request(method, path, token, None, &[], None))
            .await
    }

    /// Logs in as the seeds do and returns the gateway token.
    pub async fn login(&self, fingerprint: &str) -> String {
        let resp = self.send(admin_login(fingerprint)).await;
        assert_eq!(resp.status, 200, "login: {}", resp.text());
        resp.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// `request` written verbatim on a fresh HTTP/1.1 TLS connection.
    pub async fn raw(&self, request: &str) -> TestResponse {
        self.gw.client.raw(request.as_bytes()).await
    }

    /// Requests other than the broker's logins that reached the upstream, as `METHOD path`.
    pub fn upstream_requests(&self) -> Vec<String> {
        self.stub
            .non_login_records()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Fails unless nothing but the broker's logins reached the upstream.
    pub fn assert_upstream_saw_nothing(&self, what: &str) {
        let seen = self.upstream_requests();
        assert!(seen.is_empty(), "{what}: upstream received {seen:?}");
    }

    /// The one request upstream received for `path` since `before` records, with the
    /// `Authorization` it carried.
    pub fn forwarded_once(&self, path: &str, before: usize) -> Option<String> {
        let seen = self.stub.records_for(path);
        assert_eq!(
            seen.len(),
            before + 1,
            "{path} reached the upstream {} times",
            seen.len() - before
        );
        seen.last()
            .unwrap()
            .header("authorization")
            .map(str::to_owned)
    }
}

/// `127.0.<c>.<d>`: distinct loopback source addresses (Linux routes all of 127/8 locally).
pub const fn loopback(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, c, d))
}

/// Sets `keys` in the `auth.login` block of the options [`Keys::options`] writes (numbers as
/// numbers, anything else as text).
pub fn login_settings(opts: &mut GatewayOptions, keys: &[(&str, &str)]) {
    let login = opts
        .section_mut("auth")
        .and_then(|auth| auth.get_mut("login"))
        .and_then(Value::as_object_mut)
        .expect("the ARCP profile options have an auth.login block");
    for (k, v) in keys {
        let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
        login.insert((*k).to_owned(), value);
    }
}

/// An upstream-secret token with `claims` plus `iat`/`exp` (now, now + `ttl` seconds).
pub fn upstream_token(claims: Value, ttl: i64) -> String {
    let now = now();
    let mut claims = claims;
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + ttl);
    hs256(None, &claims, UPSTREAM_SECRET.as_bytes())
}

/// A temp token as `/auth/agent/request_temp_token` mints it for `agent_id` (contract §3.2).
pub fn temp_token(agent_id: &str) -> String {
    upstream_token(
        json!({"sub": format!("temp_{agent_id}"), "agent_id": agent_id, "scopes": [],
               "role": "agent", "temp_registration": true, "agent_type": "testing",
               "used_key": "e2e-agen...", "agent_key_hash": "0".repeat(64),
               "aud": "arcp:validate", "token_type": "temp"}),
        3600,
    )
}

/// A validated token as `/auth/agent/validation/{id}` mints it (contract §3.2).
pub fn validated_token(agent_id: &str) -> String {
    upstream_token(
        json!({"sub": agent_id, "agent_id": agent_id, "scopes": [], "role": "agent",
               "aud": "arcp:register", "token_type": "validated"}),
        3600,
    )
}

/// An agent access token for `agent_id` expiring `ttl` seconds from now (negative: past).
pub fn agent_token_expiring(agent_id: &str, ttl: i64) -> String {
    upstream_token(
        json!({"sub": agent_id, "agent_id": agent_id, "scopes": [], "role": "agent"}),
        ttl,
    )
}

/// A gateway problem: status, `type` slug and `error_code`, with `instance` = `path`; 401s
/// carry the Bearer challenge.
pub fn assert_refused(
    resp: &TestResponse,
    status: u16,
    slug: &str,
    code: &str,
    path: &str,
) -> Value {
    let v = assert_problem(resp, status, slug, code, path);
    if status == 401 {
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{v}");
    }
    v
}
