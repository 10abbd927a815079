//! Integration tests of the foundation: TLS listeners serving HTTP/1.1 and HTTP/2, streamed
//! proxying with bounded memory, header hygiene, upstream failure problems and graceful
//! shutdown (request limits are `tests/limits.rs`). The real gateway runs on loopback
//! (in-process, or the binary as a subprocess where memory or signals are measured) in front
//! of a recording stub upstream.
//! Every route is public here (`routes: {profile: none, default_access: public}`); auth is
//! tested elsewhere.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::header::CONTENT_TYPE;
use http::{Request, StatusCode, Version};

const MIB: u64 = 1 << 20;

/// Headers that must never reach the upstream when a client sends them (RFC 9110 §7.6.1
/// hop-by-hop fields, the one the client listed in `Connection`, and spoofable origin /
/// client-certificate fields).
const NEVER_FORWARDED: [&str; 15] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "x-custom-hop",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
    "x-client-cert",
    "x-ssl-client-cert",
    "x-forwarded-client-cert",
    "x-client-certificate",
    "transfer-encoding",
];

// ---------------------------------------------------------------------------------------------
// 1. HTTP/1.1 and HTTP/2 clients
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_clients_are_proxied() {
    let stub = Stub::start().await;
    let gw = TestGateway::start(GatewayOptions::new(stub.url())).await;

    for (i, proto) in [Proto::H1, Proto::H2].into_iter().enumerate() {
        let mut conn = gw.client.connect(proto).await;
        assert_eq!(
            conn.alpn.as_deref(),
            Some(proto.alpn()),
            "ALPN negotiated for {proto:?}"
        );
        let req = Request::post("/echo/thing?x=1")
            .header(CONTENT_TYPE, "text/plain")
            .body(full("hello"))
            .unwrap();
        let resp = conn.send(req).await;
        assert_eq!(resp.status, StatusCode::OK, "{proto:?}: {}", resp.text());
        assert_eq!(resp.version, proto.version(), "response version");
        assert_eq!(resp.header("content-type"), Some("application/json"));

        // The body is the stub's own echo: the request really went through.
        let echo = resp.json();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["uri"], "/echo/thing?x=1");
        assert_eq!(echo["body_len"], 5);
        assert_eq!(echo["body_sha256"], sha256_hex(b"hello"));

        let records = stub.records();
        assert_eq!(records.len(), i + 1);
        let rec = &records[i];
        assert_eq!(
            rec.version,
            Version::HTTP_11,
            "upstream is spoken to in 1.1"
        );
        assert_eq!(rec.body_sha256, sha256_hex(b"hello"));
        assert_eq!(rec.header("host"), Some(gw.client.authority().as_str()));
        assert_eq!(
            rec.header("x-forwarded-host"),
            Some(gw.client.authority().as_str())
        );
        assert_eq!(rec.header("x-forwarded-proto"), Some("https"));
        assert_eq!(rec.header("x-request-id"), resp.header("x-request-id"));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. 64 MiB each way, byte-identical, bounded gateway memory (subprocess)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_bodies_stream_byte_identical_with_bounded_memory() {
    const SIZE: u64 = 64 * MIB;
    const BIG: Duration = Duration::from_secs(180);
    let stub = Stub::start().await;
    let gw = GatewayProcess::start(
        GatewayOptions::new(stub.url())
            .limit("max_body_bytes", "80MiB")
            .upstream("response_timeout", "120s"),
    )
    .await;
    let expected = pattern_sha256(SIZE);

    let mut conn = gw.client.connect(Proto::H1).await;
    // Warm up: TLS, the upstream pool and the allocator's first arenas.
    let warm = conn.send(get("/warmup")).await;
    assert_eq!(warm.status, StatusCode::OK);
    // Start-up may have peaked higher than the steady state; measure this phase's peak only.
    let peak_reset = gw.reset_peak_memory();
    let before = gw.memory();

    // Upload: generated on the fly, hashed by the stub as it arrives.
    let upload = Request::post("/upload")
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(PatternBody::boxed(SIZE))
        .unwrap();
    let resp = within(BIG, "64 MiB upload", conn.send(upload)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let echo = resp.json();
    assert_eq!(echo["body_len"], SIZE);
    assert_eq!(echo["body_sha256"], expected.as_str());
    let rec = stub.records().pop().unwrap();
    assert_eq!(rec.uri.path(), "/upload");
    assert_eq!(
        (rec.body_len, rec.body_sha256.as_str()),
        (SIZE, expected.as_str())
    );

    // Download: generated by the stub, hashed by the client as it arrives.
    let resp = conn.send_streaming(get(&format!("/stream/{SIZE}"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (len, sha) = within(BIG, "64 MiB download", hash_body(resp.into_body()))
        .await
        .expect("download body");
    assert_eq!((len, sha.as_str()), (SIZE, expected.as_str()));

    let after = gw.memory();
    let peak_growth = match peak_reset {
        Ok(()) => after.hwm.saturating_sub(before.rss),
        // Without a reset only a new peak is visible; an old higher one hides the phase.
        Err(e) => {
            eprintln!("cannot reset VmHWM ({e}); comparing against the start-up peak");
            after.hwm.saturating_sub(before.hwm.max(before.rss))
        }
    };
    let rss_growth = after.rss.saturating_sub(before.rss);
    eprintln!(
        "gateway memory: before rss {} KiB hwm {} KiB; after rss {} KiB hwm {} KiB",
        before.rss / 1024,
        before.hwm / 1024,
        after.rss / 1024,
        after.hwm / 1024
    );
    assert!(
        peak_growth < 16 * MIB,
        "gateway peak RSS grew by {} KiB while streaming 2 x 64 MiB",
        peak_growth / 1024
    );
    assert!(
        rss_growth < 16 * MIB,
        "gateway RSS grew by {} KiB",
        rss_growth / 1024
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Header hygiene
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_spoofed_headers_never_cross_the_gateway() {
    let stub = Stub::start().await;
    let gw = TestGateway::start(GatewayOptions::new(stub.url())).await;
    let host = "gw.example.test:8443";
    // Raw bytes: client libraries refuse or rewrite several of these fields.
    let request = format!(
        "GET /hop-headers?q=1 HTTP/1.1\r\n\
         Host: {host}\r\n\
         Connection: keep-alive, X-Custom-Hop\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: trailers\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: example-proto/1\r\n\
         Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\n\
         X-Custom-Hop: must-not-pass\r\n\
         X-Forwarded-For: 6.6.6.6\r\n\
         X-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: evil.example\r\n\
         X-Forwarded-Port: 1\r\n\
         Forwarded: for=6.6.6.6;proto=http;host=evil.example\r\n\
         X-Real-IP: 6.6.6.6\r\n\
         X-Client-Cert: -----BEGIN%20CERTIFICATE-----forged\r\n\
         X-SSL-Client-Cert: forged\r\n\
         X-Forwarded-Client-Cert: Hash=forged;Subject=\"CN=admin\"\r\n\
         X-Client-Certificate: forged\r\n\
         X-End-To-End: kept\r\n\
         \r\n"
    );
    let resp = gw.client.raw(request.as_bytes()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    let records = stub.records();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    for name in NEVER_FORWARDED {
        assert!(
            !rec.headers.contains_key(name),
            "{name} reached the upstream: {:?}",
            rec.headers.get_all(name).iter().collect::<Vec<_>>()
        );
    }
    // Set from facts, exactly once each.
    assert_eq!(rec.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(rec.header("x-forwarded-proto"), Some("https"));
    assert_eq!(rec.header("x-forwarded-host"), Some(host));
    assert_eq!(rec.header("host"), Some(host), "Host is preserved");
    assert_eq!(
        rec.uri.to_string(),
        "/hop-headers?q=1",
        "path and query kept"
    );
    assert_eq!(rec.header("x-end-to-end"), Some("kept"));
    let id = rec.header("x-request-id").expect("X-Request-ID forwarded");
    assert!(is_generated_request_id(id), "generated id {id:?}");
    assert_eq!(
        resp.header("x-request-id"),
        Some(id),
        "same id to the client"
    );

    // The stub's own hop-by-hop response fields stop at the gateway too.
    assert_eq!(resp.header("x-stub-visible"), Some("yes"), "control field");
    for name in [
        "keep-alive",
        "x-stub-hop",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !resp.headers.contains_key(name),
            "{name} reached the client: {:?}",
            resp.headers.get_all(name).iter().collect::<Vec<_>>()
        );
    }
    // The gateway may speak for its own hop (`Connection: close`), never relay the stub's.
    for v in resp.headers.get_all("connection") {
        let v = v.to_str().unwrap().to_ascii_lowercase();
        assert!(!v.contains("x-stub-hop"), "stub's Connection relayed: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_or_kept() {
    let stub = Stub::start().await;
    let gw = TestGateway::start(GatewayOptions::new(stub.url())).await;
    let mut conn = gw.client.connect(Proto::H1).await;

    // None sent: a fresh `req_…`, the same upstream and back.
    let resp = conn.send(get("/a")).await;
    let generated = resp.header("x-request-id").unwrap().to_owned();
    assert!(is_generated_request_id(&generated), "{generated:?}");
    // A valid one: kept as is.
    let client_id = "client-id_1.2:3";
    let req = Request::get("/b")
        .header("x-request-id", client_id)
        .body(empty())
        .unwrap();
    let resp = conn.send(req).await;
    assert_eq!(resp.header("x-request-id"), Some(client_id));
    // An unusable one: replaced.
    let req = Request::get("/c")
        .header("x-request-id", "has spaces/and slashes")
        .body(empty())
        .unwrap();
    let resp = conn.send(req).await;
    let replaced = resp.header("x-request-id").unwrap().to_owned();
    assert!(is_generated_request_id(&replaced), "{replaced:?}");
    assert_ne!(replaced, generated, "ids are not reused");

    let records = stub.records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].header("x-request-id"), Some(generated.as_str()));
    assert_eq!(records[1].header("x-request-id"), Some(client_id));
    assert_eq!(records[2].header("x-request-id"), Some(replaced.as_str()));
}

// ---------------------------------------------------------------------------------------------
// 4. Upstream down / silent
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_502_problem_with_fixed_member_order() {
    let gw = TestGateway::start(
        GatewayOptions::new(dead_upstream_url()).upstream("connect_timeout", "2s"),
    )
    .await;
    let resp = gw
        .client
        .send(Proto::H1, get("/public/agents?token=secret"))
        .await;
    let v = assert_problem(
        &resp,
        502,
        "endpoint-unreachable",
        "ENDPOINT_UNREACHABLE",
        "/public/agents",
    );
    assert_eq!(
        json_key_order(&resp.text()),
        [
            "type",
            "title",
            "status",
            "detail",
            "instance",
            "timestamp",
            "request_id",
            "error_code"
        ],
        "exact members in exact order"
    );
    assert_eq!(v["title"], "Endpoint Unreachable");
    assert!(is_generated_request_id(v["request_id"].as_str().unwrap()));
    assert!(
        !resp.text().contains("secret"),
        "query string leaked: {}",
        resp.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_a_504_problem_after_the_response_timeout() {
    let stub = Stub::start().await;
    let gw =
        TestGateway::start(GatewayOptions::new(stub.url()).upstream("response_timeout", "500ms"))
            .await;
    let started = Instant::now();
    let resp = gw.client.send(Proto::H1, get("/hang/forever")).await;
    let elapsed = started.elapsed();
    let v = assert_problem(
        &resp,
        504,
        "connection-timeout",
        "CONNECTION_TIMEOUT",
        "/hang/forever",
    );
    assert_eq!(v["title"], "Connection Timeout");
    assert!(
        elapsed < Duration::from_secs(5),
        "504 took {elapsed:?} with a 500ms response timeout"
    );
    assert_eq!(
        stub.records().len(),
        1,
        "the request did reach the upstream"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM drains in-flight requests (subprocess)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_zero() {
    let stub = Stub::start().await;
    let mut gw =
        GatewayProcess::start(GatewayOptions::new(stub.url()).server("drain_timeout", "10s")).await;

    let mut conn = gw.client.connect(Proto::H1).await;
    let in_flight = tokio::spawn(async move { conn.send(get("/delay/1500")).await });
    // The request is in flight once the stub has it (and sits on it for 1.5 s).
    stub.wait_for_records(1, STEP).await;

    gw.terminate();
    let addr = gw.addr;
    within(STEP, "the listener to close after SIGTERM", async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                // Refused, or reset when the attempt landed in the backlog of the listener
                // being closed: either way the new connection is not served.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    break
                }
                Err(e) => panic!("unexpected connect error: {e}"),
                // Signal not handled yet: try again shortly.
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the slow request finished before the listener closed; the test proves nothing"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway exited instead of draining"
    );

    let resp = within(STEP, "in-flight request", in_flight).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["uri"], "/delay/1500");

    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}:\n{}", gw.log());
}

// ---------------------------------------------------------------------------------------------
// Harness self-checks
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_key_order_and_timestamps() {
    assert_eq!(
        json_key_order(r#"{"b":1,"a":{"z":2},"c":[1]}"#),
        ["b", "a", "c"]
    );
    assert!(is_rfc3339_utc("2026-01-01T00:00:00Z"));
    assert!(is_rfc3339_utc("2026-11-22T13:12:19.346376Z"));
    assert!(!is_rfc3339_utc("2026-11-22T13:12:19.346376+00:00"));
    assert!(!is_rfc3339_utc("2026-13-22T13:12:19Z"));
    assert!(!is_rfc3339_utc("2026-11-22 13:12:19Z"));
    assert!(is_generated_request_id("req_0123456789abcdef01234567"));
    assert!(!is_generated_request_id("client-id"));
}

#[tokio::test]
async fn harness_pattern_body_hash_matches_streamed_hash() {
    let len = 3 * 64 * 1024 + 17;
    let (got_len, sha) = hash_body(PatternBody::new(len)).await.unwrap();
    assert_eq!(got_len, len);
    assert_eq!(sha, pattern_sha256(len));
    assert_ne!(pattern_sha256(len), pattern_sha256(len - 1));
}
