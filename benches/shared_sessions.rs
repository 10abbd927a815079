//! Admission with the shared session store (`sessions.store.redis`), against a real
//! `redis-server` the bench starts on a free loopback port (no persistence):
//!
//! * `admit/shared L1 hit`: token + session + fingerprint with the session in the L1
//!   (no Redis round trip; the touch write is due once a minute);
//! * `admit/shared L1 miss`: the L1 dropped before each admission (one `HGETALL`).
//!
//! With `cargo bench --bench shared_sessions` it then runs a steady load (20 sessions, each
//! admitted every 10 ms for 15 s, idle timeout 60 min) and prints the Redis commands per
//! admitted request from `INFO commandstats` before and after (docs/performance.md).

// Benchmarks measure real time; the crate's clock rule is for the gateway itself.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arcp_gateway::auth::{credentials, Tokens};
use arcp_gateway::clock::Clock;
use arcp_gateway::config::{self, Settings};
use arcp_gateway::fleet::Fleet;
use arcp_gateway::pipeline::admit::admit;
use arcp_gateway::policy::{Access, Route};
use arcp_gateway::session::SessionStore;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request};
use std::hint::black_box;

struct Redis {
    port: u16,
    child: Child,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0);
    let child = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("redis-server (apt-get install redis-server): {e}"),
    };
    let redis = Redis { port, child };
    // Bounded: readiness is a successful PING.
    for _ in 0..200 {
        if redis_cli(port, &["PING"]).contains("PONG") {
            return redis;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not start");
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Total calls over every command in `INFO commandstats`.
fn total_calls(port: u16) -> (u64, String) {
    let info = redis_cli(port, &["INFO", "commandstats"]);
    let mut total = 0;
    let mut lines = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let calls = line
            .split(['=', ','])
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        total += calls;
        lines.push(line.trim().to_owned());
    }
    (total, lines.join("\n"))
}

fn settings(port: u16) -> Settings {
    std::env::set_var(
        "SHARED_SIGNING_SECRET",
        "shared-signing-secret-0123456789abcdef0123",
    );
    let hash = credentials::hash_password("x").unwrap_or_default();
    let yaml = format!(
        r#"
listeners: [{{address: "127.0.0.1:0", plain_http: true}}]
upstream: {{url: "http://127.0.0.1:9"}}
sessions:
  idle_timeout: 60m
  store: {{redis: {{url: "redis://127.0.0.1:{port}/0", key_prefix: "bench:"}}}}
auth:
  signing_key: k
  keys: [{{kid: k, algorithm: HS256, secret_env: SHARED_SIGNING_SECRET}}]
  users: [{{name: u, password_hash: "{hash}"}}]
"#
    );
    match config::from_str(&yaml, "bench.yaml", Path::new(".")) {
        Ok(s) => s,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn request(token: &str, fp: &str) -> Request<()> {
    let mut req = Request::new(());
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        req.headers_mut().insert("authorization", v);
    }
    if let Ok(v) = HeaderValue::from_str(fp) {
        req.headers_mut().insert("x-client-fingerprint", v);
    }
    req
}

fn route() -> Route<'static> {
    Route::new("agent_stats", Access::Admin)
}

const PATH: &str = "/agents/stats";

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let redis = start_redis();
    let settings = settings(redis.port);
    let Some(store_settings) = settings.session_store.as_ref() else {
        panic!("no sessions.store in the bench config");
    };
    let fleet = match rt.block_on(async { Fleet::new(store_settings) }) {
        Ok(f) => f,
        Err(e) => panic!("fleet: {e}"),
    };
    let tokens = Tokens::new(&settings.auth, Clock::system());
    let sessions = rt.block_on(async {
        SessionStore::with_fleet(&settings.sessions, fleet.clone(), Clock::system())
    });
    let fp = "a61becc3-0ef3-4b85-8829-5e4f0ba0bb8a";
    let session = rt.block_on(sessions.create("u", fp));
    let token = tokens
        .issue("u", &session.id, session.expires_at)
        .unwrap_or_default();
    let req = request(&token, fp);
    let route = route();

    c.bench_function("admit/shared L1 hit (0 Redis round trips)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(admit(&tokens, &sessions, &route, PATH, &req).await.is_ok())
        })
    });
    c.bench_function("admit/shared L1 miss (one HGETALL)", |b| {
        b.to_async(&rt).iter(|| async {
            sessions.clear_local_cache();
            black_box(admit(&tokens, &sessions, &route, PATH, &req).await.is_ok())
        })
    });

    if std::env::args().any(|a| a == "--bench") {
        steady_load(&rt, &redis, &tokens, &sessions);
    }
}

/// 20 sessions, each admitted every 10 ms for 15 s; Redis commands per admitted request.
fn steady_load(rt: &tokio::runtime::Runtime, redis: &Redis, tokens: &Tokens, store: &SessionStore) {
    let users: Vec<(String, Request<()>)> = (0..20)
        .map(|i| {
            let fp = format!("steady-fp-{i}");
            let s = rt.block_on(store.create(&format!("user{i}"), &fp));
            let t = tokens.issue("u", &s.id, s.expires_at).unwrap_or_default();
            (fp.clone(), request(&t, &fp))
        })
        .collect();
    let route = route();
    let (before, _) = total_calls(redis.port);
    let started = Instant::now();
    let admitted = rt.block_on(async {
        let mut total = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while started.elapsed() < Duration::from_secs(15) {
            tick.tick().await;
            for (_, req) in &users {
                if admit(tokens, store, &route, PATH, req).await.is_ok() {
                    total += 1;
                }
            }
        }
        total
    });
    let (after, detail) = total_calls(redis.port);
    // The two INFO calls themselves are counted by Redis: leave them out.
    let commands = after.saturating_sub(before).saturating_sub(1);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "steady load: {} sessions, {admitted} admitted requests in {secs:.1} s, {commands} Redis \
         commands = {:.4} per admitted request ({:.3} per session per second)\n{detail}",
        users.len(),
        commands as f64 / admitted.max(1) as f64,
        commands as f64 / users.len() as f64 / secs,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
