//! Several gateway replicas on one Redis (`sessions.store.redis`, docs/design.md §4): sessions,
//! ends, idle expiry, the per-user limit, the fingerprint-mismatch count and the upstream admin
//! session are fleet-wide; a dead Redis fails closed and recovery needs no restart; a restarted
//! replica keeps its sessions.
//!
//! Every test starts a real `redis-server` on a free loopback port (no persistence) and two
//! in-process gateways over TLS in front of [`WsStub`] (ARCP's HTTP rules and sockets).
//! Waits are bounded; the only polling is for outcomes that have no event to await (a
//! killed Redis noticed by the gateways).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;
#[path = "fleet/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use arcp_gateway::clock::Clock;
use http::Method;
use serde_json::{json, Value};

use common::arcp_profile::*;
use common::jwt::claims_of;
use common::ws_client::WsClient;
use common::ws_stub::WsStub;
use common::{GatewayOptions, Proto, TestGateway, TestResponse};
use redis_server::RedisServer;

const SETTLE: Duration = Duration::from_secs(5);

/// Redis, the upstream stub, the key material and two replicas sharing them.
struct Fleet {
    redis: RedisServer,
    stub: WsStub,
    /// The secret files the options name; kept for replicas started later.
    keys: Keys,
    /// What every replica of the test is started with.
    opts: GatewayOptions,
    clock: Clock,
    a: TestGateway,
    b: TestGateway,
}

impl Fleet {
    async fn start(cfg: ArcpConfig) -> Fleet {
        Fleet::start_with(cfg, |_| {}).await
    }

    /// The ARCP profile with `cfg` and the Redis store, then `tweak` applied to the options.
    async fn start_with(cfg: ArcpConfig, tweak: impl FnOnce(&mut GatewayOptions)) -> Fleet {
        let redis = RedisServer::start();
        let stub = WsStub::start().await;
        let keys = Keys::new();
        let mut opts = keys.options(&stub.url(), &cfg);
        sessions_mut(&mut opts).insert(
            "store".to_owned(),
            json!({"redis": {
                "url": redis.url(),
                "key_prefix": "test:",
                "command_timeout": "300ms",
                "connect_timeout": "300ms",
            }}),
        );
        opts = opts.section("admin", json!({"address": "127.0.0.1:0"}));
        tweak(&mut opts);
        let clock = Clock::system();
        let a = replica(&opts, &clock).await;
        let b = replica(&opts, &clock).await;
        stub.arcp.wait_for_logins(1, Duration::from_secs(20)).await;
        Fleet {
            redis,
            stub,
            keys,
            opts,
            clock,
            a,
            b,
        }
    }

    async fn call(
        gw: &TestGateway,
        method: Method,
        path: &str,
        token: &str,
        fp: &str,
    ) -> TestResponse {
        let req = api_request(method, path, Some(token), Some(fp), &[], None);
        gw.client.send(Proto::H1, req).await
    }

    async fn get(gw: &TestGateway, token: &str, fp: &str) -> TestResponse {
        Fleet::call(gw, Method::GET, "/agents/stats", token, fp).await
    }
}

/// The `sessions:` block of the options [`Keys::options`] writes.
fn sessions_mut(opts: &mut GatewayOptions) -> &mut serde_json::Map<String, Value> {
    opts.section_mut("sessions")
        .and_then(Value::as_object_mut)
        .expect("the ARCP profile options have a sessions block")
}

/// One replica with `opts` (naming the test's Redis), deciding time by `clock` (shared by
/// the replicas of a test).
async fn replica(opts: &GatewayOptions, clock: &Clock) -> TestGateway {
    TestGateway::start_with_clock(opts.clone(), clock.clone()).await
}

async fn login(gw: &TestGateway, fp: &str) -> String {
    let resp = gw.client.send(Proto::H1, admin_login(fp)).await;
    assert_eq!(resp.status, 200, "login: {}", resp.text());
    resp.json()["access_token"].as_str().unwrap().to_owned()
}

/// `GET /readyz` on a replica's admin listener: the status line and body.
async fn readyz(gw: &TestGateway) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw
        .admin
        .expect("the fleet's replicas have an admin listener");
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    tokio::time::timeout(SETTLE, exchange)
        .await
        .expect("/readyz answers")
}

fn assert_session_invalid(resp: &TestResponse, detail: &str) {
    assert_eq!(resp.status, 401, "{}", resp.text());
    let body = resp.json();
    assert_eq!(
        body["type"], "https://arcp.0x001.tech/docs/problems/session-invalid",
        "{body}"
    );
    assert_eq!(body["detail"], detail, "{body}");
    assert_eq!(body["error_code"], "SESSION_INVALID", "{body}");
}

fn assert_session_expired(resp: &TestResponse) {
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(
        resp.json()["type"],
        "https://arcp.0x001.tech/docs/problems/session-expired",
        "{}",
        resp.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_a_works_on_b_and_a_logout_on_a_ends_it_on_b_within_100ms() {
    let fleet = Fleet::start(ArcpConfig::default()).await;
    let fp = "fp-fleet";
    let token = login(&fleet.a, fp).await;
    for gw in [&fleet.b, &fleet.a, &fleet.b] {
        let resp = Fleet::get(gw, &token, fp).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }

    // A dashboard socket on B, closed by a logout on A.
    let mut ws = WsClient::connect(&fleet.b.client, &format!("/dashboard/ws?token={token}")).await;
    ws.send_json(&json!({"type": "auth", "token": token, "fingerprint": fp}))
        .await;
    ws.recv_json(SETTLE, |v| v["type"] == "monitoring").await;

    let resp = Fleet::call(&fleet.a, Method::POST, "/auth/logout", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let logged_out = Instant::now();
    let resp = Fleet::get(&fleet.b, &token, fp).await;
    assert_session_invalid(
        &resp,
        "Session has been logged out - please re-authenticate",
    );
    let answered = logged_out.elapsed();
    assert!(
        answered < Duration::from_millis(100),
        "B answered after {answered:?}"
    );
    let (code, at) = ws.expect_close(SETTLE).await;
    assert_eq!(code, Some(4001));
    let closed = at.saturating_duration_since(logged_out);
    assert!(
        closed < Duration::from_millis(100),
        "B closed the socket {closed:?} after the logout"
    );
    // One upstream login for the whole fleet.
    assert_eq!(fleet.stub.arcp.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_on_a_keeps_the_session_alive_on_b_and_none_ends_it_on_both() {
    let cfg = ArcpConfig {
        idle_timeout: "10s".into(),
        ..ArcpConfig::default()
    };
    let fleet = Fleet::start(cfg).await;
    let fp = "fp-idle";
    let token = login(&fleet.a, fp).await;
    assert_eq!(Fleet::get(&fleet.b, &token, fp).await.status, 200);
    // 16 s of injected time with activity on A only, every 4 s (idle timeout 10 s).
    for _ in 0..4 {
        fleet.clock.advance(4);
        let resp = Fleet::get(&fleet.a, &token, fp).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let resp = Fleet::get(&fleet.b, &token, fp).await;
    assert_eq!(resp.status, 200, "B after activity on A: {}", resp.text());
    // No activity for longer than the idle timeout: gone on both.
    fleet.clock.advance(11);
    assert_session_expired(&Fleet::get(&fleet.b, &token, fp).await);
    assert_session_expired(&Fleet::get(&fleet.a, &token, fp).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_counts_sessions_made_on_both_replicas() {
    let cfg = ArcpConfig {
        max_per_user: 2,
        ..ArcpConfig::default()
    };
    let fleet = Fleet::start(cfg).await;
    let first = login(&fleet.a, "fp-1").await;
    let second = login(&fleet.b, "fp-2").await;
    assert_eq!(Fleet::get(&fleet.b, &first, "fp-1").await.status, 200);
    let third = login(&fleet.a, "fp-3").await;
    for gw in [&fleet.a, &fleet.b] {
        assert_session_invalid(
            &Fleet::get(gw, &first, "fp-1").await,
            "Session was ended by a newer login of the same user - please re-authenticate",
        );
        assert_eq!(Fleet::get(gw, &second, "fp-2").await.status, 200);
        assert_eq!(Fleet::get(gw, &third, "fp-3").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_closed_and_recovery_needs_no_restart() {
    let mut fleet = Fleet::start(ArcpConfig::default()).await;
    let fp = "fp-outage";
    let token = login(&fleet.a, fp).await;
    assert_eq!(Fleet::get(&fleet.b, &token, fp).await.status, 200);
    let ready = Fleet::call(&fleet.a, Method::GET, "/gateway/ready", &token, fp).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(readyz(&fleet.a).await.starts_with("HTTP/1.1 200"));

    let port = fleet.redis.port;
    fleet.redis.kill();
    // An L1 copy may serve until the replica notices (its subscription drops at once; the
    // L1 lifetime bounds it otherwise): poll, bounded by that lifetime and a margin.
    let deadline = Instant::now() + arcp_gateway::session::L1_LIFETIME_MAX + SETTLE;
    for gw in [&fleet.a, &fleet.b] {
        loop {
            let resp = Fleet::get(gw, &token, fp).await;
            if resp.status == 401 {
                assert_session_invalid(&resp, "session storage system is unavailable");
                break;
            }
            assert_eq!(resp.status, 200, "{}", resp.text());
            assert!(Instant::now() < deadline, "still served from the L1");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let resp = fleet.b.client.send(Proto::H1, admin_login("fp-new")).await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    let ready = Fleet::call(&fleet.b, Method::GET, "/gateway/ready", &token, fp).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    // The admin listener's probe too, so load balancers take the replica out.
    let probe = readyz(&fleet.a).await;
    assert!(probe.starts_with("HTTP/1.1 503"), "{probe}");
    assert!(
        probe.contains(r#""reason":"session storage unavailable""#),
        "{probe}"
    );

    // Redis back (empty: no persistence): the replicas reconnect by themselves.
    fleet.redis = RedisServer::start_on(port);
    let deadline = Instant::now() + SETTLE;
    let fresh = loop {
        let resp = fleet.a.client.send(Proto::H1, admin_login("fp-new")).await;
        if resp.status == 200 {
            break resp.json()["access_token"].as_str().unwrap().to_owned();
        }
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert!(Instant::now() < deadline, "no recovery: {}", resp.text());
    };
    for gw in [&fleet.b, &fleet.a] {
        let resp = Fleet::get(gw, &fresh, "fp-new").await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let ready = Fleet::call(gw, Method::GET, "/gateway/ready", &fresh, "fp-new").await;
        assert_eq!(ready.status, 200, "{}", ready.text());
        let probe = readyz(gw).await;
        assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    }
    // The old session was in the Redis that died: it reads as expired, not as valid.
    assert_session_expired(&Fleet::get(&fleet.b, &token, fp).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_serves_the_same_sessions() {
    let fleet = Fleet::start(ArcpConfig::default()).await;
    let Fleet {
        redis,
        stub,
        keys: _keys,
        opts,
        clock,
        a,
        b,
    } = fleet;
    let fp = "fp-restart";
    let token = login(&a, fp).await;
    a.shutdown(SETTLE).await;
    b.shutdown(SETTLE).await;
    let a = replica(&opts, &clock).await;
    let resp = Fleet::get(&a, &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The restarted replica adopted the fleet's upstream session instead of logging in.
    assert_eq!(stub.arcp.logins(), 1);
    // That session is stored sealed: neither the token nor the fingerprint in clear.
    let issued = stub.arcp.last_issued().unwrap();
    let stored = redis.cli(&["GET", "test:upstream:creds"]);
    assert!(!stored.trim().is_empty(), "no shared credentials");
    assert!(!stored.contains(&issued.token), "token stored in clear");
    assert!(
        !stored.contains(&issued.fingerprint),
        "fingerprint stored in clear"
    );
}

/// A stolen token used with wrong fingerprints on both replicas: the mismatches are counted
/// in Redis (field `m` of the record), so the fifth in total ends the session, although no
/// replica saw five; then both refuse it even with the right fingerprint (tombstone
/// `fingerprint`). Four in total leave it alive on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_mismatches_are_counted_fleet_wide() {
    let fleet = Fleet::start_with(ArcpConfig::default(), |opts| {
        sessions_mut(opts).insert("max_fingerprint_mismatches".to_owned(), json!(5));
    })
    .await;
    let replicas = [&fleet.a, &fleet.b];
    let mismatch = "Session fingerprint mismatch - please re-authenticate";
    let sid = |token: &str| claims_of(token)["sid"].as_str().unwrap().to_owned();

    // Four mismatches, two on each replica: the session lives on everywhere.
    let survivor = login(&fleet.a, "fp-owner-1").await;
    for gw in replicas {
        let resp = Fleet::get(gw, &survivor, "fp-owner-1").await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    for i in 0..4 {
        let resp = Fleet::get(replicas[i % 2], &survivor, &format!("fp-thief-{i}")).await;
        assert_session_invalid(&resp, mismatch);
    }
    let count = fleet
        .redis
        .cli(&["HGET", &format!("test:s:{}", sid(&survivor)), "m"]);
    assert_eq!(count.trim(), "4", "mismatches counted in Redis");
    for gw in replicas {
        let resp = Fleet::get(gw, &survivor, "fp-owner-1").await;
        assert_eq!(
            resp.status,
            200,
            "four mismatches do not end it: {}",
            resp.text()
        );
    }

    // Five mismatches, alternating from A (three on A, two on B): the fifth ends it.
    let victim = login(&fleet.b, "fp-owner-2").await;
    for gw in replicas {
        let resp = Fleet::get(gw, &victim, "fp-owner-2").await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    for i in 0..5 {
        let resp = Fleet::get(replicas[i % 2], &victim, &format!("fp-thief-{i}")).await;
        assert_session_invalid(&resp, mismatch);
    }
    let victim_sid = sid(&victim);
    let tombstone = fleet.redis.cli(&["GET", &format!("test:t:{victim_sid}")]);
    assert_eq!(tombstone.trim(), "fingerprint");
    let record = fleet
        .redis
        .cli(&["EXISTS", &format!("test:s:{victim_sid}")]);
    assert_eq!(record.trim(), "0", "the record is deleted");
    // B first: it holds an L1 copy that only the published end removes.
    for gw in [&fleet.b, &fleet.a] {
        assert_session_invalid(
            &Fleet::get(gw, &victim, "fp-owner-2").await,
            "Session was ended after repeated fingerprint mismatches - please re-authenticate",
        );
    }
    assert_eq!(
        fleet.stub.arcp.records_for("/agents/stats").len(),
        6,
        "only the admitted requests reached upstream"
    );
}

/// Login throttling is fleet-wide: wrong passwords for one user from one address, spread
/// over the replicas (A, B, A), lock that pair on both (counted per replica, A's two and B's
/// one would lock nothing); the count and the lock are in Redis; another address still
/// logs in, and the locked one gets 429 with `Retry-After` even with the right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttling_is_counted_fleet_wide() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 3,
        ..ArcpConfig::default()
    };
    let fleet = Fleet::start(cfg).await;
    let wrong = || {
        let body = json!({"username": ADMIN_USER, "password": "not-the-password"});
        login_request(&body.to_string(), Some("fp-t"))
    };
    for gw in [&fleet.a, &fleet.b, &fleet.a] {
        let resp = gw.client.send(Proto::H1, wrong()).await;
        assert_eq!(resp.status, 401, "{}", resp.text());
    }
    let locks = fleet.redis.cli(&["KEYS", "test:l:x:p:*"]);
    assert!(locks.trim().ends_with(&format!(":{ADMIN_USER}")), "{locks}");
    for gw in [&fleet.b, &fleet.a] {
        let resp = gw.client.send(Proto::H1, admin_login("fp-t")).await;
        assert_eq!(resp.status, 429, "{}", resp.text());
        assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    }
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let resp = fleet
        .b
        .client
        .send_from(other, admin_login("fp-t2"), SETTLE)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        fleet.stub.arcp.records_for("/auth/login").len() <= 1,
        "logins never reach upstream (only the broker's)"
    );
}

/// A name that is no user is counted fleet-wide under one keyed reference, so it locks
/// exactly like a real name (three failures over A, B, A; the fourth attempt is refused on
/// either replica). Were it counted per replica, the lock showing up only for real names
/// would tell an attacker which names exist. The name is in Redis only as that reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_no_user_lock_like_real_ones() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 3,
        ..ArcpConfig::default()
    };
    let fleet = Fleet::start(cfg).await;
    let attempt = |user: &str| {
        let body = json!({"username": user, "password": "not-the-password"});
        login_request(&body.to_string(), Some("fp-u"))
    };
    let mut outcomes = Vec::new();
    for (user, from) in [(ADMIN_USER, "127.0.0.2"), ("nobody-here", "127.0.0.3")] {
        let from: std::net::IpAddr = from.parse().unwrap();
        let mut statuses = Vec::new();
        for gw in [&fleet.a, &fleet.b, &fleet.a, &fleet.b, &fleet.a] {
            let resp = gw.client.send_from(from, attempt(user), SETTLE).await;
            statuses.push(resp.status);
        }
        outcomes.push(statuses);
    }
    assert_eq!(outcomes[0], [401, 401, 401, 429, 429], "a real name");
    assert_eq!(outcomes[1], outcomes[0], "a name that is no user");
    let keys = fleet.redis.cli(&["KEYS", "test:l:*"]);
    assert!(!keys.contains("nobody-here"), "{keys}");
    assert!(keys.contains(":unknown-"), "{keys}");
}

/// Twelve wrong guesses sent at once, half to each replica: each is counted against its
/// pair before its password is checked, so exactly `max_failures_per_ip` (3) are checked
/// and answered 401; the other nine are refused with 429 unchecked, and the pair is locked
/// on both replicas afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_of_guesses_is_checked_at_most_max_times() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 3,
        ..ArcpConfig::default()
    };
    let fleet = Fleet::start(cfg).await;
    let from: std::net::IpAddr = "127.0.0.4".parse().unwrap();
    let wrong = || {
        let body = json!({"username": ADMIN_USER, "password": "not-the-password"});
        login_request(&body.to_string(), Some("fp-burst"))
    };
    let statuses = at_once_over_both(&fleet, from, (0..12).map(|_| wrong())).await;
    let mut expected = vec![401; 3];
    expected.extend([429; 9]);
    assert_eq!(statuses, expected);
    assert_locked_on_both(&fleet, from, "fp-burst").await;
}

/// Sends `requests` all at once from `from`, alternating the replicas; their statuses, sorted.
async fn at_once_over_both(
    fleet: &Fleet,
    from: std::net::IpAddr,
    requests: impl Iterator<Item = http::Request<common::TestBody>>,
) -> Vec<u16> {
    let sent = requests.enumerate().map(|(i, req)| {
        let gw = if i % 2 == 0 { &fleet.a } else { &fleet.b };
        gw.client.send_from(from, req, SETTLE)
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(sent)
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    statuses.sort_unstable();
    statuses
}

/// The right password from `from` is refused (429) on both replicas.
async fn assert_locked_on_both(fleet: &Fleet, from: std::net::IpAddr, fingerprint: &str) {
    for gw in [&fleet.a, &fleet.b] {
        let resp = gw
            .client
            .send_from(from, admin_login(fingerprint), SETTLE)
            .await;
        assert_eq!(resp.status, 429, "locked: {}", resp.text());
    }
}

/// Sixteen guesses at once from one address, each for another name and half to each
/// replica: the address counts each before its password is checked, so exactly
/// `max_failures_per_address` (6) are checked (401) and ten are refused unchecked (429);
/// the address is then locked on both replicas, even for the real user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_spray_of_names_is_checked_at_most_max_per_address_times() {
    let cfg = ArcpConfig {
        max_failures_per_address: 6,
        ..ArcpConfig::default()
    };
    let fleet = Fleet::start(cfg).await;
    let from: std::net::IpAddr = "127.0.0.5".parse().unwrap();
    let spray = (0..16).map(|i| {
        let body = json!({"username": format!("name-{i}"), "password": "guess"});
        login_request(&body.to_string(), Some("fp-spray"))
    });
    let statuses = at_once_over_both(&fleet, from, spray).await;
    let mut expected = vec![401; 6];
    expected.extend([429; 10]);
    assert_eq!(statuses, expected);
    assert_locked_on_both(&fleet, from, "fp-spray").await;
}
