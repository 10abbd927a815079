//! Session scale: resident memory per live session and admission latency with 10 k, 100 k
//! and 1 M sessions.
//!
//! `cargo bench --bench session_scale` (or `-- --sizes 10000,100000` to choose). For each
//! size a fresh store is filled with sessions of `size / 5` users (five each, the default
//! `max_per_user`), each with its own token and fingerprint; resident memory is read from
//! `/proc/self/status` before and after. Then admission (gateway token verification,
//! session lookup, fingerprint comparison, touch) runs on random sessions and its latency
//! distribution is printed. Prints one table; asserts nothing.

// Benchmarks measure real time; the crate's clock rule is for the gateway itself.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use arcp_gateway::auth::{credentials, Tokens};
use arcp_gateway::clock::Clock;
use arcp_gateway::config;
use arcp_gateway::pipeline::admit::admit;
use arcp_gateway::policy::{Access, Route};
use arcp_gateway::session::SessionStore;
use http::{HeaderValue, Request};

/// What admission needs: the snapshot's token keys and the session store.
struct Auth {
    tokens: Tokens,
    sessions: SessionStore,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn auth(capacity: usize) -> Auth {
    std::env::set_var(
        "SCALE_SIGNING_SECRET",
        "scale-signing-secret-0123456789abcdef0123",
    );
    let hash = credentials::hash_password("x").unwrap_or_default();
    let yaml = format!(
        r#"
listeners: [{{address: "127.0.0.1:0", plain_http: true}}]
upstream: {{url: "http://127.0.0.1:9"}}
sessions: {{idle_timeout: 60m, absolute_timeout: 12h, max_per_user: 5, capacity: {cap}}}
auth:
  signing_key: k
  keys: [{{kid: k, algorithm: HS256, secret_env: SCALE_SIGNING_SECRET}}]
  users: [{{name: u, password_hash: "{hash}"}}]
"#,
        cap = capacity * 2
    );
    let settings = match config::from_str(&yaml, "scale.yaml", Path::new(".")) {
        Ok(s) => s,
        Err(e) => panic!("config: {e}"),
    };
    Auth {
        tokens: Tokens::new(&settings.auth, Clock::system()),
        sessions: SessionStore::new(&settings.sessions, Clock::system()),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The allocator the `arcp-gateway` binary runs with, so that memory per session is the
/// binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then a small
    // size only checks that the benchmark still runs.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::args()
        .skip_while(|a| a != "--sizes")
        .nth(1)
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| {
            if benching {
                vec![10_000, 100_000, 1_000_000]
            } else {
                vec![1_000]
            }
        });
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    println!("| live sessions | RSS added | bytes/session | fill time | admit p50 | admit p99 | admit mean |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        rt.block_on(async {
            let before = rss_kib();
            let auth = auth(size);
            let started = Instant::now();
            // Tokens and fingerprints of a sample, to admit with afterwards.
            let mut sample = Vec::new();
            let stride = (size / 10_000).max(1);
            for i in 0..size {
                let user = format!("user{}", i / 5);
                let fp = format!("fp-{i:08x}");
                let s = auth.sessions.create(&user, &fp).await;
                if i % stride == 0 {
                    let token = auth
                        .tokens
                        .issue(&user, &s.id, s.expires_at)
                        .unwrap_or_default();
                    sample.push((token, fp));
                }
            }
            auth.sessions.run_pending_tasks().await;
            let fill = started.elapsed();
            let added = rss_kib().saturating_sub(before) * 1024;
            let live = auth.sessions.len().max(1);

            let route = Route::new("agent_stats", Access::Admin);
            let headers: Vec<Request<()>> = sample
                .iter()
                .map(|(token, fp)| {
                    let mut h = Request::new(());
                    if let (Ok(a), Ok(f)) = (
                        HeaderValue::from_str(&format!("Bearer {token}")),
                        HeaderValue::from_str(fp),
                    ) {
                        h.headers_mut().insert("authorization", a);
                        h.headers_mut().insert("x-client-fingerprint", f);
                    }
                    h
                })
                .collect();
            let rounds = if benching { 200_000 } else { 1_000 };
            let mut times = Vec::with_capacity(rounds);
            let mut ok = 0usize;
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..rounds {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let h = &headers[(state % headers.len() as u64) as usize];
                let t = Instant::now();
                let admitted = admit(&auth.tokens, &auth.sessions, &route, "/agents/stats", h)
                    .await
                    .is_ok();
                times.push(t.elapsed());
                ok += usize::from(admitted);
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            println!(
                "| {live} | {:.1} MiB | {} | {:.1} s | {:.2} µs | {:.2} µs | {:.2} µs |",
                added as f64 / (1 << 20) as f64,
                added / live,
                fill.as_secs_f64(),
                percentile(&times, 0.5).as_secs_f64() * 1e6,
                percentile(&times, 0.99).as_secs_f64() * 1e6,
                mean.as_secs_f64() * 1e6,
            );
            if ok != times.len() {
                eprintln!(
                    "warning: {} of {} admissions failed",
                    times.len() - ok,
                    times.len()
                );
            }
        });
    }
}
