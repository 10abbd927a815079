//! A `wss://` client for the gateway: tokio-tungstenite over the harness's TLS client
//! ([`TlsClient::tls_connect`], trusting the test CA). It reads events (JSON, text, binary,
//! close, end) with a bound on every wait, and skips frames a test is not waiting for (the
//! dashboard's periodic `monitoring`). The stub on the other side is [`super::ws_stub`].

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::{within, Proto, TlsClient, STEP};

/// What a client read.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Ended,
}

/// A WebSocket through the gateway over TLS.
pub struct WsClient {
    ws: WebSocketStream<TlsStream<TcpStream>>,
}

impl WsClient {
    /// Opens `wss://localhost:<port><path_and_query>`; fails the test if the upgrade fails.
    pub async fn connect(client: &TlsClient, path_and_query: &str) -> WsClient {
        match WsClient::try_connect(client, path_and_query).await {
            Ok(ws) => ws,
            Err(e) => panic!("WebSocket upgrade of {path_and_query} failed: {e}"),
        }
    }

    /// Opens a socket; the handshake error (an HTTP refusal included) is returned.
    pub async fn try_connect(
        client: &TlsClient,
        path_and_query: &str,
    ) -> Result<WsClient, tungstenite::Error> {
        let tls = client.tls_connect(Proto::H1).await;
        let url = format!("wss://{}{path_and_query}", client.authority());
        let what = format!("WebSocket handshake for {path_and_query}");
        let (ws, response) = within(STEP, &what, tokio_tungstenite::client_async(url, tls)).await?;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        Ok(WsClient { ws })
    }

    pub async fn send(&mut self, m: Message) {
        within(STEP, "send a WebSocket message", self.ws.send(m))
            .await
            .unwrap();
    }

    /// Sends `m`; false if the socket failed or the send did not finish within `limit`.
    pub async fn try_send(&mut self, m: Message, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.ws.send(m)).await,
            Ok(Ok(()))
        )
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send(Message::text(v.to_string())).await;
    }

    /// The next event, waiting at most `limit`; fails the test after that.
    pub async fn next_event(&mut self, limit: Duration) -> WsEvent {
        match self.try_next_event(limit).await {
            Some(event) => event,
            None => panic!("timed out after {limit:?}: next WebSocket message"),
        }
    }

    /// The next event, or `None` if nothing arrived within `limit`.
    pub async fn try_next_event(&mut self, limit: Duration) -> Option<WsEvent> {
        let next = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let t = t.to_string();
                        break match serde_json::from_str(&t) {
                            Ok(v) => WsEvent::Json(v),
                            Err(_) => WsEvent::Text(t),
                        };
                    }
                    Some(Ok(Message::Binary(b))) => break WsEvent::Binary(b.to_vec()),
                    Some(Ok(Message::Close(f))) => {
                        break WsEvent::Close(f.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break WsEvent::Ended,
                }
            }
        };
        tokio::time::timeout(limit, next).await.ok()
    }

    /// The next JSON message for which `pred` holds, skipping others (periodic `monitoring`
    /// frames); fails the test on a close, the end of the connection, or after `limit`.
    pub async fn recv_json(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                WsEvent::Json(v) if pred(&v) => return v,
                WsEvent::Json(_) | WsEvent::Text(_) | WsEvent::Binary(_) => {}
                other => panic!("socket ended while waiting for a message: {other:?}"),
            }
        }
    }

    /// The next binary message, skipping text; fails the test on a close or after `limit`.
    pub async fn recv_binary(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                WsEvent::Binary(b) => return b,
                WsEvent::Json(_) | WsEvent::Text(_) => {}
                other => panic!("socket ended while waiting for a binary message: {other:?}"),
            }
        }
    }

    /// Reads until a close frame, skipping data; returns its code and when it arrived. Fails
    /// the test if the connection ends without a close frame or none arrives in `limit`.
    pub async fn expect_close(&mut self, limit: Duration) -> (Option<u16>, Instant) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next_event(left).await {
                Some(WsEvent::Close(code)) => return (code, Instant::now()),
                Some(WsEvent::Ended) => panic!("connection ended without a close frame"),
                Some(data) => skipped.push(data),
                None => panic!(
                    "no close frame within {limit:?}; the socket stayed open and relayed {} \
                     messages, the first: {:?}",
                    skipped.len(),
                    skipped.first()
                ),
            }
        }
    }
}
