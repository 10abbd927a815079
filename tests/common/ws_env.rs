//! What the WebSocket suites (`tests/websocket_*.rs`) start from: [`WsStub`] (ARCP's three
//! sockets, recording every upgrade and frame, with the ARCP stub behind it for HTTP), the key
//! material and one gateway in front of it ([`Env`]), and the small steps those tests repeat
//! (log in, the dashboard's auth frame, an echo round trip, the headers every upstream upgrade
//! carries).

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use super::arcp_profile::{admin_login, api_request, ArcpConfig, Keys};
use super::arcp_stub::StubSession;
use super::ws_client::WsClient;
use super::ws_stub::{WsConnection, WsStub};
use super::{Proto, TestBody, TestGateway, TestResponse, TlsClient};

/// Bound for a socket to close or a recorded effect to show up.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The WebSocket stub, the key material and one gateway in front of it.
pub struct Env {
    pub stub: WsStub,
    _keys: Keys,
    pub gw: TestGateway,
}

impl Env {
    pub async fn start(cfg: ArcpConfig) -> Env {
        let stub = WsStub::start().await;
        let keys = Keys::new();
        let gw = TestGateway::start(keys.options(&stub.url(), &cfg)).await;
        // The broker logs in upstream as soon as the gateway serves.
        stub.arcp.wait_for_logins(1, Duration::from_secs(20)).await;
        Env {
            stub,
            _keys: keys,
            gw,
        }
    }

    pub async fn send(&self, req: http::Request<TestBody>) -> TestResponse {
        self.gw.client.send(Proto::H1, req).await
    }

    /// Logs in as the seeds do and returns the gateway token.
    pub async fn login(&self, fingerprint: &str) -> String {
        login(&self.gw.client, fingerprint).await
    }

    pub async fn call(&self, method: Method, path: &str, token: &str, fp: &str) -> TestResponse {
        self.send(api_request(method, path, Some(token), Some(fp), &[], None))
            .await
    }

    /// The brokered upstream login (token and fingerprint).
    pub fn broker(&self) -> StubSession {
        self.stub.arcp.last_issued().expect("the broker logged in")
    }

    pub async fn ws(&self, path_and_query: &str) -> WsClient {
        WsClient::connect(&self.gw.client, path_and_query).await
    }
}

pub async fn login(client: &TlsClient, fingerprint: &str) -> String {
    let resp = client.send(Proto::H1, admin_login(fingerprint)).await;
    assert_eq!(resp.status, 200, "login: {}", resp.text());
    resp.json()["access_token"].as_str().unwrap().to_owned()
}

pub fn auth_frame(token: &str, fingerprint: &str) -> Value {
    json!({"type": "auth", "token": token, "fingerprint": fingerprint})
}

pub fn is_type(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}

/// Sends `msg` and waits for the stub's echo of it.
pub async fn echo_round_trip(ws: &mut WsClient, msg: &Value) {
    ws.send_json(msg).await;
    let want = msg.clone();
    ws.recv_json(SETTLE, move |v| v["type"] == "echo" && v["data"] == want)
        .await;
}

/// Headers the gateway sets on every upgrade it makes upstream, from facts.
pub fn assert_forwarded_facts(conn: &WsConnection) {
    assert_eq!(conn.header("x-forwarded-proto"), Some("https"), "{conn:?}");
    assert_eq!(
        conn.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{conn:?}"
    );
    assert!(
        conn.header("x-request-id")
            .is_some_and(|v| v.starts_with("req_")),
        "{conn:?}"
    );
    for never in ["authorization", "cookie", "x-client-fingerprint"] {
        assert_eq!(
            conn.header(never),
            None,
            "{never} reached upstream: {conn:?}"
        );
    }
}
