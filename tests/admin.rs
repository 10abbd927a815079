//! The admin listener (`admin: {address}`) and `arcp-gateway healthcheck`: `/healthz` answers
//! while the process runs, `/readyz` follows the brokered upstream admin session (the ARCP
//! stub refuses or accepts the gateway's login), `/metrics` counts the traffic of the client
//! listener, nothing else is served there, and the config refuses an admin address that is a
//! client listener's.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use arcp_gateway::pipeline::State;
use bytes::Bytes;
use common::arcp_profile::{admin_login, api_request, ArcpConfig, Keys};
use common::arcp_stub::ArcpStub;
use common::{within, Proto, TestGateway, TlsClient, STEP};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

/// The real gateway (ARCP profile) with an admin listener on `127.0.0.1:0`, served from this
/// test.
struct AdminGateway {
    admin: SocketAddr,
    /// A client of the gateway's TLS listener.
    client: TlsClient,
    state: Arc<State>,
    gw: TestGateway,
}

impl AdminGateway {
    async fn start(stub: &ArcpStub, keys: &Keys) -> AdminGateway {
        let opts = keys
            .options(&stub.url(), &ArcpConfig::default())
            .section("admin", json!({"address": "127.0.0.1:0"}));
        let gw = TestGateway::start(opts).await;
        AdminGateway {
            admin: gw.admin.expect("an admin listener"),
            client: gw.client.clone(),
            state: gw.state.clone(),
            gw,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    async fn stop(self) {
        self.gw.shutdown(STEP).await;
    }
}

/// One plain HTTP/1.1 request to the admin listener: status, `Content-Type`, body.
async fn admin_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
) -> (StatusCode, String, String) {
    within(STEP, "admin request", async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    })
    .await
}

/// `arcp-gateway healthcheck --url URL` (blocking; the binary has its own runtime).
async fn healthcheck(url: String) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
            .args(["healthcheck", "--url", &url])
            .output()
            .expect("run arcp-gateway healthcheck")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn not_ready_while_the_upstream_refuses_the_service_login() {
    let stub = ArcpStub::start().await;
    stub.refuse_logins(true);
    let keys = Keys::new();
    let gw = AdminGateway::start(&stub, &keys).await;

    let (status, content_type, body) = admin_request(gw.admin, Method::GET, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, r#"{"status":"alive"}"#);

    let (status, _, body) = admin_request(gw.admin, Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        r#"{"status":"not ready","reason":"no upstream admin session"}"#
    );

    let out = healthcheck(gw.url("/readyz")).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered 503"), "stderr: {stderr}");

    // Liveness is not readiness: the healthz URL answers 200 all along.
    let out = healthcheck(gw.url("/healthz")).await;
    assert_eq!(out.status.code(), Some(0));
    gw.stop().await;
}

#[tokio::test]
async fn ready_once_the_upstream_admin_session_is_held() {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let gw = AdminGateway::start(&stub, &keys).await;

    // The broker's login completes before this returns; readiness follows it.
    within(
        STEP,
        "upstream login",
        gw.state.handles.broker.credentials(),
    )
    .await
    .expect("the stub accepts the service login");
    let (status, _, body) = admin_request(gw.admin, Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ready"}"#);

    let (status, _, body) = admin_request(gw.admin, Method::HEAD, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "", "HEAD has no body");

    let out = healthcheck(gw.url("/readyz")).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.stop().await;
}

#[tokio::test]
async fn only_the_health_endpoints_are_served() {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let gw = AdminGateway::start(&stub, &keys).await;

    for path in ["/", "/agents", "/gateway/ready", "/healthz/x", "/metrics/x"] {
        let (status, _, _) = admin_request(gw.admin, Method::GET, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _, _) = admin_request(gw.admin, Method::POST, "/healthz").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // The admin listener never reaches the upstream.
    assert!(stub.non_login_records().is_empty());
    gw.stop().await;
}

/// The value of the sample `name` (labels included) in a metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_of_the_client_listener() {
    let stub = ArcpStub::start().await;
    let keys = Keys::new();
    let gw = AdminGateway::start(&stub, &keys).await;
    within(
        STEP,
        "upstream login",
        gw.state.handles.broker.credentials(),
    )
    .await
    .unwrap();

    let (status, content_type, before) = admin_request(gw.admin, Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert_eq!(sample(&before, "arcp_gateway_sessions_live"), 0.0);

    let fp = "fp-metrics";
    let resp = gw.client.send(Proto::H1, admin_login(fp)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let token = resp.json()["access_token"].as_str().unwrap().to_owned();
    let resp = gw
        .client
        .send(
            Proto::H1,
            api_request(
                Method::GET,
                "/agents/stats",
                Some(&token),
                Some(fp),
                &[],
                None,
            ),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = gw
        .client
        .send(
            Proto::H1,
            api_request(Method::GET, "/agents/stats", None, None, &[], None),
        )
        .await;
    assert_eq!(resp.status, 401);
    let refused = resp.json()["type"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    let (_, _, text) = admin_request(gw.admin, Method::GET, "/metrics").await;
    for (name, want) in [
        (
            r#"arcp_gateway_requests_total{route_kind="gateway",status_class="2xx"}"#,
            1.0,
        ),
        (
            r#"arcp_gateway_requests_total{route_kind="admin",status_class="2xx"}"#,
            1.0,
        ),
        (
            r#"arcp_gateway_requests_total{route_kind="admin",status_class="4xx"}"#,
            1.0,
        ),
        (r#"arcp_gateway_admission_total{outcome="admitted"}"#, 2.0),
        (
            &format!(r#"arcp_gateway_admission_total{{outcome="{refused}"}}"#),
            1.0,
        ),
        (
            &format!(r#"arcp_gateway_problems_total{{type="{refused}"}}"#),
            1.0,
        ),
        (r#"arcp_gateway_logins_total{outcome="success"}"#, 1.0),
        (
            r#"arcp_gateway_logins_total{outcome="invalid_credentials"}"#,
            0.0,
        ),
        (
            r#"arcp_gateway_upstream_logins_total{kind="login",result="ok"}"#,
            1.0,
        ),
        ("arcp_gateway_sessions_live", 1.0),
        ("arcp_gateway_upstream_response_seconds_count", 1.0),
        ("arcp_gateway_websockets_open", 0.0),
        (r#"arcp_gateway_reloads_total{result="ok"}"#, 0.0),
        ("arcp_gateway_redis_errors_total", 0.0),
    ] {
        assert_eq!(sample(&text, name), want, "{name}\n{text}");
    }
    // Nothing secret in the labels.
    assert!(!text.contains(&token) && !text.contains(fp));
    gw.stop().await;
}

#[tokio::test]
async fn healthcheck_fails_when_nothing_answers_or_the_url_is_not_plain_http() {
    let closed = common::free_port();
    let out = healthcheck(format!("http://127.0.0.1:{closed}/readyz")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));

    let out = healthcheck("https://127.0.0.1:9901/readyz".into()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a plain http:// URL"));
}

#[test]
fn the_admin_address_must_not_be_a_client_listener() {
    for (listener, admin) in [
        ("127.0.0.1:18443", "127.0.0.1:18443"),
        ("0.0.0.0:18443", "127.0.0.1:18443"),
        ("127.0.0.1:18443", "0.0.0.0:18443"),
    ] {
        // `admin.address` is on line 6.
        let yaml = format!(
            r#"listeners:
  - {{address: "{listener}", plain_http: true}}
upstream:
  url: http://127.0.0.1:8001
admin:
  address: "{admin}"
"#
        );
        let err = arcp_gateway::config::from_str(&yaml, "admin.yaml", std::path::Path::new("."))
            .expect_err("an admin address on a client listener's port");
        assert_eq!((err.line, err.path.as_str()), (6, "admin.address"), "{err}");
        assert!(err.to_string().contains("a client listener"), "{err}");
    }
    let yaml = r#"listeners:
  - {address: "127.0.0.1:18443", plain_http: true}
upstream:
  url: http://127.0.0.1:8001
admin:
  address: "127.0.0.1:19901"
"#;
    let settings =
        arcp_gateway::config::from_str(yaml, "admin.yaml", std::path::Path::new(".")).unwrap();
    assert_eq!(
        settings.admin.map(|a| a.address),
        Some("127.0.0.1:19901".parse().unwrap())
    );
}
