//! Forwarding to the upstream: header hygiene, credential swap, streamed bodies, and the
//! WebSocket relay.

pub(crate) mod forward;
pub mod headers;
pub(crate) mod websocket;

pub use forward::ConnInfo;
pub(crate) use forward::{forward, upstream_request, Credentials};
