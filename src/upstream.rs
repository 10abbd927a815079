//! The upstream side: the pooled HTTP client and the brokered upstream admin session.

pub mod client;

pub use client::{UpstreamClient, UpstreamError};
pub mod broker;

pub use broker::{Broker, BrokerError, UpstreamCredentials};
