//! Logging in at the gateway (docs/design.md §7) and throttling failed logins per client
//! address: the gateway's own `POST /auth/login` issues gateway tokens, answers refusals in
//! upstream's order and shapes without asking upstream, and a locked-out address does not lock
//! out others.
//!
//! Every test runs the real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub
//! ([`common::session_env::Env`]).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::net::IpAddr;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use common::arcp_profile::*;
use common::arcp_stub::*;
use common::jwt::*;
use common::session_env::*;
use common::{assert_problem, json_key_order};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const OTHER_LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

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
