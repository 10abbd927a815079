//! End-to-end: the real, unmodified ARCP 2.1.2 server behind the real `arcp-gateway` binary,
//! everything over TLS on 127.0.0.1 with ephemeral ports, driven by curl, the real Python
//! `ARCPClient` and a Rust HTTPS client. See tests/e2e/README.md for what each step shows.
//!
//! One test, because every step shares the upstream server (starting it costs seconds, and
//! step 5 restarts it). Two gateways sit in front of it: `main` (idle timeout 60 min) and
//! `idle` (`sessions.idle_timeout: 2s`) for the idle-expiry steps. Guards stop all processes
//! when the test ends or a step panics; the run directory under `target/e2e/` is kept when
//! the test fails. WebSockets are not exercised here.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_arcp/client.rs"]
mod client;
#[path = "e2e_arcp/harness.rs"]
mod harness;
#[path = "e2e_arcp/steps.rs"]
mod steps;
#[path = "e2e_arcp/steps_failures.rs"]
mod steps_failures;
#[path = "common/tls.rs"]
mod tls;

use std::path::PathBuf;

use harness::{random_hex, report, Env, Gateway, RunDir, Steps, Upstream};

/// The upstream's admin account: the gateway's service account and the forged token's `sub`.
const UPSTREAM_ADMIN: &str = "admin";
/// Failed logins from one address before the gateway locks it (written into the config).
const MAX_FAILURES_PER_IP: u32 = 5;
/// Idle timeout of the `idle` gateway, in seconds.
const SHORT_IDLE_SECS: u64 = 2;
/// AGENT_KEYS of the upstream: one for the Python flow, one for the Rust agent flow.
const AGENT_KEYS: [&str; 2] = ["e2e-agent-key-0001", "e2e-agent-key-0002"];

/// Everything the steps share.
/// Fields drop in order: the gateways stop before the upstream.
pub struct World {
    pub dir: PathBuf,
    pub python: PathBuf,
    pub main: Gateway,
    pub idle: Gateway,
    pub main_http: client::Client,
    pub idle_http: client::Client,
    pub upstream: Upstream,
}

#[test]
fn arcp_behind_the_gateway() {
    let mut run = RunDir::create();
    let mut steps = Steps::start();
    let mut world = steps.run("setup: upstream, venv, two gateways", || setup(&run.path));
    report(&format!(
        "upstream 127.0.0.1:{}, gateway main {}, gateway idle {}",
        world.upstream.port, world.main.addr, world.idle.addr
    ));

    steps.run("1 curl: seed login and GET /agents", || {
        steps::curl_seed(&world)
    });
    steps.run("2a python: arcp_client_flow.py through the gateway", || {
        steps::python_flow(&world, AGENT_KEYS[0])
    });
    steps.run(
        "2b python: session_manager_loop.py across an idle expiry",
        || steps::session_manager(&world, SHORT_IDLE_SECS),
    );
    let admin = steps.run(
        "3 agent flow: temp token, register, heartbeat, PIN unregister",
        || steps::agent_flow(&world, AGENT_KEYS[1]),
    );
    steps.run("4 session-invalid, session-expired, fresh login", || {
        steps_failures::session_problems(&world, SHORT_IDLE_SECS)
    });
    steps.run("5 upstream restart on the same port", || {
        steps_failures::upstream_restart(&mut world, &admin)
    });
    steps.run("6 forged admin token stopped at the gateway", || {
        steps_failures::forged_token(&world, &admin, UPSTREAM_ADMIN)
    });
    steps.run("7 login lockout per address, X-Forwarded-For", || {
        steps_failures::lockout_and_forwarded_for(&world, MAX_FAILURES_PER_IP)
    });

    drop(world); // stops both gateways and the upstream
    steps.summary();
    run.passed();
}

fn setup(dir: &std::path::Path) -> World {
    let admin_password = format!("e2e-admin-{}", random_hex(12));
    let jwt_secret = random_hex(32);
    // Only child processes get these: the test process's environment is left alone.
    let upstream_env: Env = vec![
        ("ADMIN_USERNAME".into(), UPSTREAM_ADMIN.into()),
        ("ADMIN_PASSWORD".into(), admin_password.clone()),
        ("JWT_SECRET".into(), jwt_secret.clone()),
        ("JWT_ALGORITHM".into(), "HS256".into()),
        ("AGENT_KEYS".into(), AGENT_KEYS.join(",")),
        ("ENVIRONMENT".into(), "development".into()),
    ];
    let upstream = Upstream::start(dir.join("arcp"), upstream_env);
    let python = harness::venv_python(dir);

    let gateway_env: Env = vec![
        ("E2E_ARCP_ADMIN_PASSWORD".into(), admin_password),
        ("E2E_ARCP_JWT_SECRET".into(), jwt_secret),
        ("E2E_GATEWAY_SIGNING_SECRET".into(), random_hex(48)),
    ];
    let hash = arcp_gateway::auth::credentials::hash_password("ARCP").expect("hash ARCP");
    let main_ca = dir.join("main-ca.pem");
    let idle_ca = dir.join("idle-ca.pem");
    let main_yaml = gateway_yaml(upstream.port, &main_ca, &hash, "60m");
    let idle_yaml = gateway_yaml(
        upstream.port,
        &idle_ca,
        &hash,
        &format!("{SHORT_IDLE_SECS}s"),
    );
    let main = Gateway::start(dir, "gateway-main", &main_yaml, main_ca, &gateway_env);
    let idle = Gateway::start(dir, "gateway-idle", &idle_yaml, idle_ca, &gateway_env);
    let main_http = client::Client::new(main.addr, &main.ca_file);
    let idle_http = client::Client::new(idle.addr, &idle.ca_file);
    World {
        dir: dir.to_owned(),
        python,
        main,
        idle,
        main_http,
        idle_http,
        upstream,
    }
}

/// The gateway configuration both instances use (they differ in CA file and idle timeout).
fn gateway_yaml(upstream_port: u16, ca_file: &std::path::Path, hash: &str, idle: &str) -> String {
    harness::real_arcp_gateway_yaml(
        "tests/e2e_arcp.rs",
        upstream_port,
        ca_file,
        hash,
        "E2E",
        &format!("  login:\n    max_failures_per_ip: {MAX_FAILURES_PER_IP}\n"),
        &format!("sessions:\n  idle_timeout: {idle}\n"),
    )
}
