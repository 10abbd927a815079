//! The raw serde mirror of the YAML file.
//!
//! Every struct rejects unknown keys, so a typo is an error with a location instead of a
//! silently ignored setting. Values with units parse here ([`DurationValue`], [`ByteSize`]),
//! so their errors carry the YAML location and dotted path like any other type error.
//! Rules that span several fields are checked when these are turned into typed
//! [`Settings`](super::Settings); the structs they need a location for are [`Spanned`].

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::units::{parse_bytes, parse_duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listeners: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub server: RawServer,
    pub upstream: Spanned<RawUpstream>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub logging: RawLogging,
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub routes: RawRoutes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Spanned<SocketAddr>,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub plain_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub development: Option<RawDevTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevTls {
    pub write_ca_to: Option<String>,
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub handshake_timeout: Option<DurationValue>,
    pub header_read_timeout: Option<DurationValue>,
    pub max_connections: Option<Spanned<u32>>,
    pub drain_timeout: Option<DurationValue>,
    pub max_connections_per_address: Option<Spanned<u32>>,
    pub idle_timeout: Option<DurationValue>,
    pub body_read_timeout: Option<DurationValue>,
    pub body_min_rate: Option<Spanned<ByteSize>>,
    pub http2_max_concurrent_streams: Option<Spanned<u32>>,
    pub http2_keep_alive_interval: Option<DurationValue>,
    pub http2_keep_alive_timeout: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Spanned<String>,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<DurationValue>,
    pub response_timeout: Option<DurationValue>,
    pub pool_idle_timeout: Option<DurationValue>,
    pub pool_max_idle_per_host: Option<usize>,
    pub service_account: Option<Spanned<RawServiceAccount>>,
    pub token_verification: Option<Spanned<RawTokenVerification>>,
    pub session_refresh_margin: Option<DurationValue>,
    pub replay_buffer_bytes: Option<ByteSize>,
    pub login_backoff_max: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceAccount {
    pub username: String,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenVerification {
    pub algorithm: Spanned<String>,
    pub secret_env: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub leeway: Option<Spanned<DurationValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<ByteSize>,
    pub max_uri_bytes: Option<ByteSize>,
    pub max_body_bytes: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub format: Option<LogFormat>,
    pub level: Option<Spanned<String>>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (for collectors).
    #[default]
    Json,
    /// Human-readable lines (for terminals).
    Pretty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuer: Option<String>,
    pub signing_key: Spanned<String>,
    pub keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub login: RawLogin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub kid: String,
    pub algorithm: Spanned<String>,
    pub secret_env: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub private_key_file: Option<String>,
    pub public_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password_hash: Spanned<String>,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_role() -> Role {
    Role::Admin
}

/// Role of a gateway user. ARCP knows one human role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub max_failures_per_ip: Option<u32>,
    pub max_failures_per_user: Option<u32>,
    pub failure_window: Option<DurationValue>,
    pub lockout: Option<DurationValue>,
    pub attempts_per_minute_per_ip: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub idle_timeout: Option<DurationValue>,
    pub absolute_timeout: Option<Spanned<DurationValue>>,
    pub max_per_user: Option<Spanned<u32>>,
    pub capacity: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoutes {
    /// `arcp` (the built-in profile, the default) or `none`.
    pub profile: Option<Spanned<String>>,
    /// Rules checked before the profile's.
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
    /// Access kind for paths no rule matches (default `admin`).
    pub default_access: Option<crate::policy::Access>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    pub access: crate::policy::Access,
    #[serde(default)]
    pub require_pin: Option<Spanned<bool>>,
}

/// A duration written as `30s`, `5m`, `250ms`.
#[derive(Debug, Clone, Copy)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as `30s`, `5m` or `250ms`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit; write `{v}s` for seconds"
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A byte size written as an integer or with a unit (`64KiB`, `8MiB`).
#[derive(Debug, Clone, Copy)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte size such as `8192` or `8KiB`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a byte size cannot be negative"))
            }
        }
        deserializer.deserialize_any(V)
    }
}
