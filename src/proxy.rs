//! Forwarding to the upstream: header hygiene, credential swap, streamed bodies, and the
//! WebSocket relay.

pub(crate) mod forward;
pub mod headers;
pub(crate) mod websocket;

pub(crate) use forward::forward;
pub use forward::{ConnInfo, Credentials, Proxied};
