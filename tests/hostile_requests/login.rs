//! Login (docs/design.md §7): nobody elsewhere can lock the real admin out, no
//! burst of logins can flood the CPU, and what a client types as a user name stays out of the
//! logs. Each client is a distinct loopback source address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use serde_json::json;

use super::common::arcp_profile::*;
use super::common::arcp_stub::*;
use super::common::{full, GatewayProcess, TestResponse};
use super::{assert_refused, login_settings, loopback, Env};

/// Bound for one login exchange (slowed logins wait up to `slowdown_max` first).
const LOGIN: Duration = Duration::from_secs(60);

fn wrong_password() -> Request<super::TestBody> {
    login_request(
        &json!({"username": ADMIN_USER, "password": "not-the-password"}).to_string(),
        Some("fp-attacker"),
    )
}

fn login_with_type(content_type: Option<&str>, body: &str) -> Request<super::TestBody> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/auth/login")
        .header("X-Client-Fingerprint", "fp-form");
    if let Some(ct) = content_type {
        b = b.header(CONTENT_TYPE, ct);
    }
    b.body(full(body.to_owned())).unwrap()
}

async fn login_from(env: &Env, ip: IpAddr, req: Request<super::TestBody>) -> TestResponse {
    env.gw.send_from(ip, req, LOGIN).await
}

fn assert_throttled(resp: &TestResponse) -> u64 {
    let v = assert_refused(
        resp,
        429,
        "rate-limit-exceeded",
        "RATE_LIMIT_EXCEEDED",
        "/auth/login",
    );
    let retry: u64 = resp
        .header("retry-after")
        .expect("429 carries Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(v["retry_after"].as_u64(), Some(retry));
    retry
}

/// `POST /auth/login` with a body that is not declared JSON (what a cross-site HTML form or
/// `fetch` without preflight can send) is 415, and counts as a failed attempt of the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_login_bodies_are_415_and_count_as_failures() {
    let env = Env::start_with(ArcpConfig::default(), |o| {
        login_settings(o, &[("max_failures_per_address", "3")]);
    })
    .await;
    let attacker = loopback(3, 1);
    let json_body = json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}).to_string();
    let forms = [
        (
            Some("application/x-www-form-urlencoded"),
            "username=ARCP&password=ARCP".to_owned(),
        ),
        (Some("text/plain"), json_body.clone()),
        (None, json_body.clone()),
    ];
    for (content_type, body) in forms {
        let resp = login_from(&env, attacker, login_with_type(content_type, &body)).await;
        let v = assert_refused(
            &resp,
            415,
            "validation-failed",
            "VALIDATION_FAILED",
            "/auth/login",
        );
        assert_eq!(
            v["detail"], "Input validation failed: the body must be sent as application/json",
            "{content_type:?}"
        );
    }
    // Three failures locked the address: even the right password is throttled there.
    let resp = login_from(&env, attacker, admin_login("fp-form")).await;
    assert_throttled(&resp);
    // The same body declared as JSON logs in from elsewhere.
    let resp = login_from(
        &env,
        loopback(3, 2),
        login_with_type(Some("application/json; charset=utf-8"), &json_body),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        env.stub.login_attempts(),
        1,
        "only the broker logged in upstream"
    );
    env.assert_upstream_saw_nothing("logins");
}

/// After 4 addresses × 5 wrong passwords for one user, the right
/// password from a fresh address logs in (slowed by the per-user ceiling, never blocked),
/// while each attacking address stays locked for that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_addresses_times_five_wrong_passwords_do_not_lock_the_admin_out() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 5,
        max_failures_per_user: 15,
        lockout: "5m".into(),
        ..ArcpConfig::default()
    };
    let env = Env::start_with(cfg, |o| login_settings(o, &[("slowdown_max", "1s")])).await;
    let attackers: Vec<IpAddr> = (2..=5).map(|d| loopback(0, d)).collect();
    for ip in &attackers {
        for i in 0..5 {
            let resp = login_from(&env, *ip, wrong_password()).await;
            let v = assert_refused(
                &resp,
                401,
                "authentication-failed",
                "INVALID_CREDENTIALS",
                "/auth/login",
            );
            assert_eq!(
                v["detail"], "Authentication failed: Invalid admin credentials",
                "{ip} attempt {i}"
            );
        }
    }
    // Each attacking address is locked for the user, the right password included.
    for ip in &attackers {
        let resp = login_from(&env, *ip, admin_login("fp-attacker")).await;
        assert_throttled(&resp);
    }
    // The admin at a fresh address: 20 failures are past the ceiling of 15, so the attempt is
    // slowed (by `slowdown_max`, 1 s), then logs in.
    let admin = loopback(0, 6);
    let started = Instant::now();
    let resp = login_from(&env, admin, admin_login("fp-admin")).await;
    let took = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(took >= Duration::from_millis(950), "slowed: {took:?}");
    let token = resp.json()["access_token"].as_str().unwrap().to_owned();
    let resp = env
        .gw
        .send_from(
            admin,
            api_request(
                Method::GET,
                "/agents/stats",
                Some(&token),
                Some("fp-admin"),
                &[],
                None,
            ),
            LOGIN,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Its success cleared the user's count, not the attackers' locks.
    let resp = login_from(&env, attackers[0], admin_login("fp-attacker")).await;
    assert_throttled(&resp);
    assert_eq!(env.stub.login_attempts(), 1, "no login reached upstream");
}

/// 64 wrong guesses for one user at once, from 64 addresses, count 64: the per-user slowdown
/// that follows (ceiling 60, delay 250 ms · 2^(failures − 60)) is 4 s, where a lost update
/// would show as 2 s or less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parallel_wrong_guesses_all_count() {
    let cfg = ArcpConfig {
        max_failures_per_user: 60,
        ..ArcpConfig::default()
    };
    let env = Env::start_with(cfg, |o| {
        login_settings(
            o,
            &[
                ("slowdown_max", "30s"),
                ("max_concurrent_verifications", "4"),
                ("verification_queue_timeout", "60s"),
            ],
        );
    })
    .await;
    let guesses = (1..=64u8).map(|d| login_from(&env, loopback(4, d), wrong_password()));
    let answers = join_all(guesses).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");

    let started = Instant::now();
    let resp = login_from(&env, loopback(5, 1), admin_login("fp-admin")).await;
    let took = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        took >= Duration::from_millis(3950) && took < Duration::from_millis(7500),
        "a slowdown of 4 s means 64 failures were counted; took {took:?}"
    );
}

/// With one verification slot and a 10 ms queue, a burst of logins gets 429 with
/// `Retry-After` for all but the few that found the slot free; the slot is free again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_burst_beyond_the_slots_is_429_with_retry_after() {
    let env = Env::start_with(ArcpConfig::default(), |o| {
        login_settings(
            o,
            &[
                ("max_concurrent_verifications", "1"),
                ("verification_queue_timeout", "10ms"),
            ],
        );
    })
    .await;
    let burst = (1..=24u8).map(|d| login_from(&env, loopback(6, d), wrong_password()));
    let answers = join_all(burst).await;
    let mut busy = 0;
    for resp in &answers {
        match resp.status.as_u16() {
            401 => {}
            429 => {
                busy += 1;
                assert_throttled(resp);
                assert_eq!(
                    resp.json()["detail"],
                    "Too many logins are being checked right now; try again shortly"
                );
            }
            other => panic!("unexpected {other}: {}", resp.text()),
        }
    }
    assert!(busy > 0, "no login was refused for want of a slot");
    assert!(busy < answers.len(), "at least one login was checked");
    let resp = login_from(&env, loopback(6, 100), admin_login("fp-admin")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A failed login for a name that is no user is logged as a keyed reference, never as typed
/// (people type passwords into the user field); a configured user's name is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_name_never_reaches_the_log() {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let opts = keys
        .options(&stub.url(), &ArcpConfig::default())
        .logging("level", "info");
    let mut gw = GatewayProcess::start(opts).await;
    stub.wait_for_logins(1, Duration::from_secs(20)).await;
    let typed = "Tr0ub4dor-typed-in-the-user-field-5c1e";
    let password = "correct-horse-battery-staple-9a7b";
    for (user, what) in [(typed, "unknown user"), (ADMIN_USER, "known user")] {
        let body = json!({"username": user, "password": password}).to_string();
        let resp = gw
            .client
            .send(super::Proto::H1, login_request(&body, Some("fp-log")))
            .await;
        assert_eq!(resp.status, 401, "{what}: {}", resp.text());
    }
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(20)).await.success());
    let log = gw.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("admin login failed"))
        .collect();
    assert_eq!(failures.len(), 2, "both failures are logged:\n{log}");
    // Each worker flushes its own batch of lines, so the two may come out in either order.
    let unknown = failures.iter().filter(|l| l.contains("unknown-")).count();
    let known = failures
        .iter()
        .filter(|l| l.contains(&format!("\"user\":\"{ADMIN_USER}\"")))
        .count();
    assert_eq!(
        (unknown, known),
        (1, 1),
        "a keyed reference and the user's name: {failures:?}"
    );
    for (what, secret) in [("typed user name", typed), ("password", password)] {
        assert!(
            !log.contains(secret),
            "the {what} is in the gateway's log:\n{log}"
        );
    }
    assert!(stub.non_login_records().is_empty());
}
