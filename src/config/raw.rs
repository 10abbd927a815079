//! The raw serde mirror of the YAML file.
//!
//! Every struct rejects unknown keys, so a typo is an error with a location instead of a
//! silently ignored setting. Values with units parse here ([`DurationValue`], [`ByteSize`]),
//! so their errors carry the YAML location and dotted path like any other type error.
//! Rules that span several fields are checked when these are turned into typed
//! [`Settings`](super::Settings); the structs they need a location for are [`Spanned`].

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

mod access;

pub use access::RawAccess;

use super::units::{parse_bytes, parse_duration};
use crate::auth::Role;
pub use crate::observability::LogFormat;

/// arcp-gateway configuration
///
/// The YAML file `arcp-gateway run --config` reads; `arcp-gateway check-config` checks it
/// (this schema covers its shape, not rules across fields or secrets).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "arcp-gateway configuration")]
pub struct RawConfig {
    #[schemars(with = "Vec<RawListener>")]
    pub listeners: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub server: RawServer,
    #[schemars(with = "RawUpstream")]
    pub upstream: Spanned<RawUpstream>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub logging: RawLogging,
    #[schemars(with = "Option<RawAuth>")]
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub sessions: RawSessions,
    /// Relayed WebSockets: message sizes, timeouts and caps.
    #[serde(default)]
    pub websocket: RawWebSocket,
    #[serde(default)]
    pub routes: RawRoutes,
    /// Optional admin listener (plain HTTP, its own address): `/healthz`, `/readyz`.
    #[schemars(with = "Option<RawAdmin>")]
    pub admin: Option<Spanned<RawAdmin>>,
    /// Optional per-person audit trail of state-changing admin requests and WebSockets.
    #[schemars(with = "Option<RawAudit>")]
    pub audit: Option<Spanned<RawAudit>>,
}

/// The audit trail: JSON lines in a file, or log events with target `audit` without one.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// File the events are appended to (relative to the config file); omit it to send
    /// them to the log stream.
    pub file: Option<String>,
}

/// The admin listener: health endpoints for probes, on an address of its own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Plain HTTP; keep it on loopback or a network only probes and scrapers reach.
    #[schemars(with = "SocketAddr")]
    pub address: Spanned<SocketAddr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    #[schemars(with = "SocketAddr")]
    pub address: Spanned<SocketAddr>,
    #[schemars(with = "Option<RawTls>")]
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub plain_http: bool,
    /// Connections from these load balancers start with a PROXY protocol header naming
    /// the client's address.
    #[schemars(with = "Option<RawProxyProtocol>")]
    pub proxy_protocol: Option<Spanned<RawProxyProtocol>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProxyProtocol {
    /// Addresses or CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`) of the load balancers
    /// that send the header (v1 or v2); their connections must start with one, others are
    /// served as direct clients.
    #[schemars(with = "Vec<String>")]
    pub trusted: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub development: Option<RawDevTls>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDevTls {
    pub write_ca_to: Option<String>,
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[schemars(with = "Option<DurationValue>")]
    pub handshake_timeout: Option<Spanned<DurationValue>>,
    #[schemars(with = "Option<DurationValue>")]
    pub header_read_timeout: Option<Spanned<DurationValue>>,
    #[schemars(with = "Option<u32>")]
    pub max_connections: Option<Spanned<u32>>,
    pub drain_timeout: Option<DurationValue>,
    #[schemars(with = "Option<u32>")]
    pub max_connections_per_address: Option<Spanned<u32>>,
    #[schemars(with = "Option<DurationValue>")]
    pub idle_timeout: Option<Spanned<DurationValue>>,
    /// A response write that waits this long for the client to read drops the connection (and
    /// ends a WebSocket).
    #[schemars(with = "Option<DurationValue>")]
    pub send_timeout: Option<Spanned<DurationValue>>,
    pub body_read_timeout: Option<DurationValue>,
    #[schemars(with = "Option<ByteSize>")]
    pub body_min_rate: Option<Spanned<ByteSize>>,
    #[schemars(with = "Option<u32>")]
    pub http2_max_concurrent_streams: Option<Spanned<u32>>,
    pub http2_keep_alive_interval: Option<DurationValue>,
    pub http2_keep_alive_timeout: Option<DurationValue>,
    /// Host names requests may name in `Host`/`:authority` (421 otherwise).
    pub server_names: Option<Vec<String>>,
    /// Worker threads serving connections (default: the available cores).
    #[schemars(with = "Option<u32>")]
    pub workers: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<DurationValue>,
    pub response_timeout: Option<DurationValue>,
    pub pool_idle_timeout: Option<DurationValue>,
    pub pool_max_idle_per_host: Option<usize>,
    #[schemars(with = "Option<RawServiceAccount>")]
    pub service_account: Option<Spanned<RawServiceAccount>>,
    #[schemars(with = "Option<RawTokenVerification>")]
    pub token_verification: Option<Spanned<RawTokenVerification>>,
    pub session_refresh_margin: Option<DurationValue>,
    pub replay_buffer_bytes: Option<ByteSize>,
    pub login_backoff_max: Option<DurationValue>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServiceAccount {
    pub username: String,
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub password_file: Option<Spanned<String>>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenVerification {
    #[schemars(with = "String", extend("enum" = ["HS256", "HS384", "HS512"]))]
    pub algorithm: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub secret_file: Option<Spanned<String>>,
    #[schemars(with = "Option<DurationValue>")]
    pub leeway: Option<Spanned<DurationValue>>,
    #[schemars(with = "Option<DurationValue>")]
    pub expiry_margin: Option<Spanned<DurationValue>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<ByteSize>,
    pub max_uri_bytes: Option<ByteSize>,
    pub max_body_bytes: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub format: Option<LogFormat>,
    #[schemars(with = "Option<String>")]
    pub level: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuer: Option<String>,
    #[schemars(with = "String")]
    pub signing_key: Spanned<String>,
    #[schemars(with = "Vec<RawKey>")]
    pub keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawUser>")]
    pub users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub login: RawLogin,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub kid: String,
    #[schemars(with = "String", extend("enum" = ["HS256", "EdDSA"]))]
    pub algorithm: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub secret_file: Option<Spanned<String>>,
    pub private_key_file: Option<String>,
    pub public_key_file: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    #[schemars(with = "String")]
    pub password_hash: Spanned<String>,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_role() -> Role {
    Role::Admin
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub max_failures_per_ip: Option<u32>,
    pub max_failures_per_address: Option<u32>,
    pub slowdown_max: Option<DurationValue>,
    pub max_concurrent_verifications: Option<u32>,
    pub verification_queue_timeout: Option<DurationValue>,
    pub max_failures_per_user: Option<u32>,
    pub failure_window: Option<DurationValue>,
    pub lockout: Option<DurationValue>,
    pub attempts_per_minute_per_ip: Option<u32>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub idle_timeout: Option<DurationValue>,
    /// Requests with a session's token and another fingerprint that end the session.
    pub max_fingerprint_mismatches: Option<u32>,
    #[schemars(with = "Option<DurationValue>")]
    pub absolute_timeout: Option<Spanned<DurationValue>>,
    #[schemars(with = "Option<u32>")]
    pub max_per_user: Option<Spanned<u32>>,
    pub capacity: Option<u64>,
    /// Where sessions live; absent: in this process only.
    #[schemars(with = "Option<RawSessionStore>")]
    pub store: Option<Spanned<RawSessionStore>>,
}

/// `sessions.store`: shared session storage for several replicas.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSessionStore {
    #[schemars(with = "RawRedis")]
    pub redis: Spanned<RawRedis>,
}

/// `sessions.store.redis`: a Redis or Valkey server (one primary; no Cluster).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port/db` or `rediss://…` (TLS); may hold a password, so prefer
    /// `url_env` or `url_file`.
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub url_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub url_file: Option<Spanned<String>>,
    /// Prefix of every key and of the event channel (default `arcp-gw:`).
    pub key_prefix: Option<String>,
    /// PEM roots for `rediss://` (default: the system's).
    pub ca_file: Option<String>,
    pub connect_timeout: Option<DurationValue>,
    pub command_timeout: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    /// Largest message (and frame) a client may send on an open socket; 1009 beyond.
    #[schemars(with = "Option<ByteSize>")]
    pub max_message_bytes: Option<Spanned<ByteSize>>,
    /// Largest first frame (the authentication frame) of dashboard and agent sockets.
    #[schemars(with = "Option<ByteSize>")]
    pub max_first_frame_bytes: Option<Spanned<ByteSize>>,
    /// Time a client has to send its authentication frame.
    #[schemars(with = "Option<DurationValue>")]
    pub auth_timeout: Option<Spanned<DurationValue>>,
    /// A socket with no data frame either way for this long is closed (1001).
    #[schemars(with = "Option<DurationValue>")]
    pub idle_timeout: Option<Spanned<DurationValue>>,
    /// Sockets one client address (an IPv6 /64) may hold open.
    #[schemars(with = "Option<u32>")]
    pub max_per_address: Option<Spanned<u32>>,
    /// Public sockets open at once, all clients together.
    #[schemars(with = "Option<u32>")]
    pub max_public: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoutes {
    /// `arcp` (the built-in profile, the default) or `none`.
    #[schemars(with = "Option<String>", extend("enum" = ["arcp", "none"]))]
    pub profile: Option<Spanned<String>>,
    /// Rules checked before the profile's.
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub rules: Vec<Spanned<RawRule>>,
    /// Access kind for paths no rule matches (default `admin`).
    #[schemars(with = "Option<RawAccess>")]
    pub default_access: Option<Spanned<RawAccess>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub methods: Vec<Spanned<String>>,
    #[schemars(with = "RawAccess")]
    pub access: Spanned<RawAccess>,
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub require_pin: Option<Spanned<bool>>,
    /// Registration-phase tokens (temp, validated) are accepted (agent routes only).
    #[serde(default)]
    pub registration: bool,
    /// The segment the first `*` matches names an agent; agent tokens act on their own only.
    #[serde(default)]
    pub own_agent: bool,
}

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

// JSON Schema of the unit types: what a YAML editor can check before the gateway parses
// the text (the parsers in `units` stay the authority).

/// A duration written as `30s`, `5m`, `250ms`.
impl JsonSchema for DurationValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration with a unit: `250ms`, `30s`, `5m`, `1h 30m` (humantime syntax).",
            "type": "string",
            "pattern": r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$"
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A byte size: an integer, or a number with `B`, `KiB`, `MiB`, `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9]+\s*(B|KiB|MiB|GiB|KB|kB|MB|GB)?\s*$"}
            ]
        })
    }
}
