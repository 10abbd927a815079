//! Forwarding to the upstream: header hygiene, credential swap, streamed bodies.

pub mod forward;
pub mod headers;

pub use forward::{forward, upstream_request, ConnInfo, Credentials};
