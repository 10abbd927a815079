//! Micro-benchmarks of the per-request hot path and of login.
//!
//! `cargo bench --bench hot_path`. Each benchmark names the stage of the pipeline it covers;
//! `docs/performance.md` records results with the machine they came from.

// Benchmarks measure real time; the crate's clock rule is for the gateway itself.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request};

use arcp_gateway::auth::{credentials, Tokens};
use arcp_gateway::clock::Clock;
use arcp_gateway::config::{self, Settings};
use arcp_gateway::pipeline::admit::admit;
use arcp_gateway::pipeline::frame::normalise_path;
use arcp_gateway::pipeline::frame::request_id;
use arcp_gateway::policy::{Access, Route};
use arcp_gateway::problem::{Problem, ProblemKind};
use arcp_gateway::proxy::headers::strip_hop_by_hop_fields;
use arcp_gateway::proxy::{ConnInfo, Credentials, Proxied};
use arcp_gateway::server::h1::{accept, encode_head, BodySize};
use arcp_gateway::server::scan_in_pieces;
use arcp_gateway::session::SessionStore;
use arcp_gateway::upstream::codec::{encode_request, parse_response};
use bytes::BytesMut;

const UPSTREAM_SECRET: &str = "bench-upstream-jwt-secret-0123456789abcdef";

/// What admission needs: the snapshot's token keys and the session store.
struct Auth {
    tokens: Tokens,
    sessions: SessionStore,
}

fn settings() -> Settings {
    // The bench process owns its environment; nothing else reads it concurrently.
    std::env::set_var(
        "BENCH_SIGNING_SECRET",
        "bench-signing-secret-0123456789abcdef0123",
    );
    std::env::set_var("BENCH_UPSTREAM_SECRET", UPSTREAM_SECRET);
    std::env::set_var("BENCH_ADMIN_PASSWORD", "x");
    let hash = credentials::hash_password("ARCP").unwrap_or_default();
    let yaml = format!(
        r#"
listeners: [{{address: "127.0.0.1:0", plain_http: true}}]
upstream:
  url: http://127.0.0.1:9
  service_account: {{username: admin, password_env: BENCH_ADMIN_PASSWORD}}
  token_verification: {{algorithm: HS256, secret_env: BENCH_UPSTREAM_SECRET}}
auth:
  signing_key: k
  keys: [{{kid: k, algorithm: HS256, secret_env: BENCH_SIGNING_SECRET}}]
  users: [{{name: ARCP, password_hash: "{hash}"}}]
"#
    );
    match config::from_str(&yaml, "bench.yaml", Path::new(".")) {
        Ok(s) => s,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn agent_token() -> String {
    let now = Clock::system().now();
    let claims = serde_json::json!({"sub":"agent-1","agent_id":"agent-1","role":"agent","scopes":[],"iat":now,"exp":now+3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(UPSTREAM_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let settings = settings();
    let auth = Auth {
        tokens: Tokens::new(&settings.auth, Clock::system()),
        sessions: SessionStore::new(&settings.sessions, Clock::system()),
    };
    let session = rt.block_on(
        auth.sessions
            .create("ARCP", "a61becc3-0ef3-4b85-8829-5e4f0ba0bb8a"),
    );
    let token = auth
        .tokens
        .issue("ARCP", &session.id, session.expires_at)
        .unwrap_or_default();

    let mut admin_headers = Request::new(());
    admin_headers.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static("")),
    );
    admin_headers.headers_mut().insert(
        "x-client-fingerprint",
        HeaderValue::from_static("a61becc3-0ef3-4b85-8829-5e4f0ba0bb8a"),
    );
    let admin_route = Route::new("agent_stats", Access::Admin);
    c.bench_function("admit/admin_session (token + session + fingerprint)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                admit(
                    &auth.tokens,
                    &auth.sessions,
                    &admin_route,
                    "/agents/stats",
                    &admin_headers,
                )
                .await
                .is_ok(),
            )
        })
    });

    let mut agent_headers = Request::new(());
    agent_headers.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", agent_token()))
            .unwrap_or(HeaderValue::from_static("")),
    );
    let agent_route = Route::new("agents_list", Access::Agent);
    c.bench_function("admit/agent_token (upstream HS256)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                admit(
                    &auth.tokens,
                    &auth.sessions,
                    &agent_route,
                    "/agents",
                    &agent_headers,
                )
                .await
                .is_ok(),
            )
        })
    });

    c.bench_function("problem/render session-invalid", |b| {
        b.iter(|| {
            let p = Problem::new(
                ProblemKind::SessionInvalid,
                "Session fingerprint mismatch - please re-authenticate",
            )
            .with_extension("session_id", "sess_0123456789ab");
            black_box(p.into_response("/agents/stats", "req_0123456789abcdef01234567"))
        })
    });

    let mut client_headers = HeaderMap::new();
    for (k, v) in [
        ("host", "gw.example"),
        ("user-agent", "ARCPClient/2.1.2"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        (
            "x-client-fingerprint",
            "a61becc3-0ef3-4b85-8829-5e4f0ba0bb8a",
        ),
        ("authorization", "Bearer x.y.z"),
        ("x-forwarded-for", "6.6.6.6"),
    ] {
        client_headers.insert(k, HeaderValue::from_static(v));
    }
    let peer = "127.0.0.1"
        .parse()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    c.bench_function(
        "upstream/head (hygiene, forwarded, credential swap, written in one pass)",
        |b| {
            // Formatted once per connection, made once per request, decided once per session.
            let conn = ConnInfo::new(std::net::SocketAddr::new(peer, 40000), true);
            let (parts, ()) = {
                let mut req = Request::new(());
                *req.headers_mut() = client_headers.clone();
                req.into_parts()
            };
            let request_id = request_id(&parts.headers);
            let target = PathAndQuery::from_static("/agents/stats");
            let swap = Credentials::Swap {
                authorization: HeaderValue::from_static("Bearer upstream.jwt.token"),
                fingerprint: HeaderValue::from_static("gateway-fingerprint"),
            };
            let default_host = HeaderValue::from_static("127.0.0.1:8001");
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                out.clear();
                let head = Proxied::new(&conn, &parts, &target, &swap, &request_id);
                black_box(encode_request(
                    &mut out,
                    &head,
                    &default_host,
                    true,
                    Some(0),
                ));
                black_box(&out);
            })
        },
    );

    // The framing reader on an admin request head as clients send it (token ~300 bytes).
    let raw_head = format!(
        "GET /agents/stats HTTP/1.1\r\nHost: gateway.example:8443\r\nUser-Agent: curl/8.5.0\r\n\
         Accept: */*\r\nAuthorization: Bearer {}\r\nX-Client-Fingerprint: fp-0123456789abcdef\r\n\r\n",
        "a".repeat(300)
    );
    c.bench_function("framing/scan (strict HTTP/1.1 framing of one head)", |b| {
        b.iter(|| black_box(scan_in_pieces(black_box(raw_head.as_bytes()), &[]).1))
    });

    c.bench_function(
        "h1/accept (own loop: framing check and parse of one head)",
        |b| b.iter(|| black_box(accept(black_box(raw_head.as_bytes())).is_some())),
    );
    // The stub's response head, as the upstream connection reads it.
    const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 22:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 616\r\nConnection: keep-alive\r\n\r\n";
    c.bench_function(
        "upstream/parse_response and hop-by-hop removal (one response head)",
        |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(RESPONSE_HEAD));
                let mut head = parse_response(&mut buf, false).ok().flatten();
                if let Some(head) = &mut head {
                    strip_hop_by_hop_fields(&mut head.fields);
                }
                black_box(head)
            })
        },
    );
    let mut upstream = parse_response(&mut BytesMut::from(RESPONSE_HEAD), false)
        .ok()
        .flatten()
        .map(|head| head.fields)
        .unwrap_or_default();
    strip_hop_by_hop_fields(&mut upstream);
    let mut own = HeaderMap::new();
    own.insert(
        "x-request-id",
        HeaderValue::from_static("req_0123456789abcdef01234567"),
    );
    let mut out = Vec::with_capacity(1024);
    c.bench_function("h1/encode_head (own loop: one response head)", |b| {
        b.iter(|| {
            out.clear();
            let status = http::StatusCode::OK;
            let size = BodySize::Known(616);
            black_box(encode_head(
                &mut out,
                status,
                &own,
                Some(&upstream),
                None,
                false,
                size,
                false,
                b"Thu, 03 Dec 2026 22:00:00 GMT",
            ));
        })
    });

    c.bench_function("frame/normalise_path clean", |b| {
        b.iter(|| black_box(normalise_path(black_box("/agents/agent-1/heartbeat")).is_ok()))
    });
    c.bench_function("frame/normalise_path rewritten", |b| {
        b.iter(|| black_box(normalise_path(black_box("//agent%73//agent-1/heartbeat")).is_ok()))
    });

    let policy = settings.policy.clone();
    c.bench_function("policy/route (ARCP profile, deep match)", |b| {
        b.iter(|| {
            black_box(
                policy
                    .route(&Method::GET, black_box("/security/attestation/status/a1"))
                    .access,
            )
        })
    });

    let phc = credentials::hash_password("ARCP").unwrap_or_default();
    let mut login = c.benchmark_group("login");
    login.sample_size(20);
    login.bench_function("argon2id verify, right password (m=19456,t=2,p=1)", |b| {
        b.iter(|| black_box(credentials::verify("ARCP", Some(&phc), &phc)))
    });
    login.bench_function("argon2id verify, wrong password", |b| {
        b.iter(|| black_box(credentials::verify("wrong", Some(&phc), &phc)))
    });
    login.bench_function("argon2id verify, unknown user (dummy hash)", |b| {
        b.iter(|| black_box(credentials::verify("ARCP", None, &phc)))
    });
    login.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
