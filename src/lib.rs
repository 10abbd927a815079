//! arcp-gateway: a TLS-terminating authentication gateway for ARCP servers.
//!
//! ```text
//! accept ─► TLS handshake (deadline) ─► hyper-util auto (h1/h2) ─► per request:
//!   1. frame     request id, header/body limits, path normalisation
//!   2. route     policy table → Route { access, require_pin }
//!   3. admit     the credential the route demands → Principal
//!   4. answer    gateway-owned endpoints (login, logout, PIN, session status, refresh)
//!      forward   header hygiene + credential swap → pooled upstream client → stream back
//!   errors from any stage ─► one place ─► RFC 9457 problem; one access-log event
//! ```
//!
//! Embedding: `Gateway::bind(settings)` opens the listeners (port 0 works; see
//! `local_addrs`), `serve(shutdown)` runs until the future resolves and then drains.

pub mod admin;
pub(crate) mod arcp;
pub mod audit;
pub mod auth;
pub(crate) mod body;
pub mod clock;
pub mod config;
pub mod fleet;
pub mod metrics;
pub mod observability;
pub(crate) mod per_address;
pub mod pipeline;
pub mod policy;
pub mod problem;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub(crate) mod secret;
pub mod server;
pub mod session;
pub mod tls;
pub mod upstream;

pub use reload::Reloader;
pub use server::{Gateway, ServerError};
