//! The brokered upstream session (docs/design.md §1): every client session shares one upstream
//! login; a lost upstream session is replaced once (single flight) and the request replayed
//! when its body fits the replay buffer; wrong service credentials turn readiness off and back
//! off; the session is refreshed before upstream expires it.
//!
//! Every test runs the real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub
//! ([`common::session_env::Env`]), which can forget its sessions, refuse logins and shorten
//! its session lifetime.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arcp_gateway::clock::Clock;
use futures_util::stream::{self, StreamExt};
use http::Method;
use serde_json::json;

use common::arcp_profile::*;
use common::arcp_stub::*;
use common::assert_problem;
use common::jwt::*;
use common::session_env::*;

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
    // The session is renewed in the background; the retry goes through. Upstream serving the
    // login does not mean the gateway holds its answer yet: a replayable admin request waits
    // for the renewal in flight (it joins it, starting no login of its own), so once it is
    // answered the renewed session is in place.
    env.stub.wait_for_logins(2, Duration::from_secs(20)).await;
    let barrier = env.get("/agents/stats", &token, fp).await;
    assert_eq!(barrier.status, 200, "{}", barrier.text());
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
