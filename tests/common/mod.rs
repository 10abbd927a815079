//! Shared harness for the integration tests, a small library in three layers:
//!
//! * **The gateway**: in-process on `127.0.0.1:0`, optionally on an injected clock, or the
//!   binary as a subprocess ([`gateway`]), configured from typed values ([`config`]); for ARCP
//!   the profile, keys and requests ([`arcp_profile`]) and JWT helpers ([`jwt`]).
//! * **Clients**: HTTP/1.1, HTTP/2, raw bytes or a chosen source address ([`client`]) and
//!   `wss://` ([`ws_client`]), all on the one TLS configuration every suite uses ([`tls`]).
//! * **Stub upstreams** on one skeleton ([`server`]): a recording echo server ([`stub`]),
//!   ARCP's session rule ([`arcp_stub`]) and ARCP's WebSockets ([`ws_stub`]).
//!
//! Plus streamed test bodies ([`body`]), problem-document assertions ([`problem`]) and the
//! setups the session and WebSocket suites share ([`session_env`], [`ws_env`]).
//!
//! Everything runs on loopback with ephemeral ports. Every wait is bounded ([`within`],
//! [`server::Journal::wait_until`]); nothing sleeps to wait for something to happen. Large
//! bodies are generated and hashed on the fly, never held whole.
//!
//! Not every test file uses every helper, hence `dead_code` is allowed here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod arcp_profile;
pub mod arcp_stub;
pub mod body;
pub mod client;
pub mod config;
pub mod gateway;
pub mod jwt;
pub mod problem;
pub mod server;
pub mod session_env;
pub mod stub;
pub mod tls;
pub mod ws_client;
pub mod ws_env;
pub mod ws_stub;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use sha2::{Digest, Sha256};

pub use body::*;
pub use client::*;
pub use config::*;
pub use gateway::*;
pub use problem::*;
pub use stub::*;

/// Bound for ordinary network steps (connect, one small request).
pub const STEP: Duration = Duration::from_secs(10);

/// Error type of test bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body type the test client sends and the stub answers with.
pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// No body.
pub fn empty() -> TestBody {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A GET request for `path_and_query` (the client adds authority / `Host`).
pub fn get(path_and_query: &str) -> Request<TestBody> {
    Request::get(path_and_query).body(empty()).unwrap()
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
