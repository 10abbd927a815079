//! The life of a gateway session (docs/design.md §4, problem shapes §6): bound to the fingerprint it was issued
//! for, ended by idleness, by its absolute cap (decided against an injected clock), by logout
//! and by a gateway restart; refused requests are not activity.
//!
//! Every test runs the real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub
//! ([`common::session_env::Env`]). The idle tests wait in real time with short timeouts
//! (moka's time-to-idle reads the real clock).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use arcp_gateway::clock::Clock;
use http::Method;
use serde_json::json;

use common::arcp_profile::*;
use common::jwt::*;
use common::session_env::*;
use common::TestGateway;

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
    let gw = TestGateway::start(keys.options(&stub.url(), &cfg)).await;
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
