//! End-to-end scale-out: the real, unmodified ARCP 2.1.2 server behind two `arcp-gateway`
//! binaries sharing one real `redis-server` (`sessions.store.redis`). 200 admin requests
//! alternate between the replicas with one gateway session; ARCP's own access log must then
//! show exactly one upstream login (docs/design.md §4, "Upstream session").
//!
//! Reuses the end-to-end harness of tests/e2e_arcp.rs (ARCP via scripts/arcp-upstream.sh).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "e2e_arcp/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "e2e_arcp/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "fleet/redis_server.rs"]
mod redis_server;
#[path = "common/tls.rs"]
mod tls;

use harness::{random_hex, report, Env, Gateway, RunDir, Upstream};
use redis_server::RedisServer;

#[test]
fn two_replicas_make_one_upstream_login_for_200_alternating_admin_requests() {
    let mut run = RunDir::create();
    let admin_password = format!("e2e-admin-{}", random_hex(12));
    let jwt_secret = random_hex(32);
    let upstream_env: Env = vec![
        ("ADMIN_USERNAME".into(), "admin".into()),
        ("ADMIN_PASSWORD".into(), admin_password.clone()),
        ("JWT_SECRET".into(), jwt_secret.clone()),
        ("JWT_ALGORITHM".into(), "HS256".into()),
        ("AGENT_KEYS".into(), "e2e-fleet-agent-key-01".into()),
        ("ENVIRONMENT".into(), "development".into()),
    ];
    let upstream = Upstream::start(run.path.join("arcp"), upstream_env);
    let redis = RedisServer::start();
    let gateway_env: Env = vec![
        ("E2E_ARCP_ADMIN_PASSWORD".into(), admin_password),
        ("E2E_ARCP_JWT_SECRET".into(), jwt_secret),
        ("E2E_GATEWAY_SIGNING_SECRET".into(), random_hex(48)),
        ("E2E_REDIS_URL".into(), redis.url()),
    ];
    let hash = arcp_gateway::auth::credentials::hash_password("ARCP").expect("hash ARCP");
    let start = |name: &str| {
        let ca = run.path.join(format!("{name}-ca.pem"));
        let yaml = harness::real_arcp_gateway_yaml(
            "tests/e2e_fleet.rs",
            upstream.port,
            &ca,
            &hash,
            "E2E",
            "",
            "sessions:\n  store:\n    redis:\n      url_env: E2E_REDIS_URL\n      key_prefix: \"e2e-fleet:\"\n",
        );
        Gateway::start(&run.path, name, &yaml, ca, &gateway_env)
    };
    let a = start("replica-a");
    let b = start("replica-b");
    let http = [
        client::Client::new(a.addr, &a.ca_file),
        client::Client::new(b.addr, &b.ca_file),
    ];
    report(&format!(
        "upstream 127.0.0.1:{}, redis {}, replicas {} and {}",
        upstream.port, redis.port, a.addr, b.addr
    ));

    let fp = format!("e2e-fleet-{}", random_hex(4));
    let token = http[0].login_token(&fp, None);
    for i in 0..200 {
        http[i % 2]
            .get("/agents/stats")
            .admin(&token, &fp)
            .send()
            .expect_json(200, &format!("admin request {i} on replica {}", i % 2));
    }
    let logins = upstream
        .log()
        .matches("\"POST /auth/login HTTP/1.1\"")
        .count();
    assert_eq!(logins, 1, "upstream logins; log:\n{}", upstream.log());
    report("200 admin requests over two replicas: 1 upstream login");
    drop((a, b));
    run.passed();
}
