//! The upstream side: the pooled HTTP client and the brokered upstream admin session.

mod client;
#[doc(hidden)]
pub mod codec;
mod conn;
mod pool;

pub use client::{UpstreamClient, UpstreamError};
pub use pool::{UpstreamBody, UpstreamBodyError};
mod broker;
mod shared;

pub use broker::{Broker, BrokerError, UpstreamCredentials};
pub use shared::SharedCredentials;

use std::time::Duration;

use http::Uri;
use rustls_pki_types::CertificateDer;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `http://` or `https://` with an authority and no path.
    pub url: Uri,
    /// Extra roots for an `https://` upstream; system roots when `None`.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub service_account: Option<ServiceAccount>,
    pub session_refresh_margin: Duration,
    pub replay_buffer_bytes: u64,
    pub login_backoff_max: Duration,
}

/// Credentials of the upstream admin account the gateway logs in with.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub username: String,
    pub password: Secret,
    pub fingerprint: Option<String>,
}
