//! Forwarding to the upstream: header hygiene, credential swap, streamed bodies, and the
//! WebSocket relay.

pub mod forward;
pub mod headers;
pub mod websocket;

pub use forward::{forward, upstream_request, ConnInfo, Credentials};
