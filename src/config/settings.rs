//! Typed settings, valid by construction (step 2 of loading).

mod auth;
mod listeners;
mod routes;
mod store;
mod upstream;
mod websocket;

use std::time::Duration;

use serde_saphyr::Spanned;

use super::raw::{self, RawConfig};
use super::secret::SecretRef;
use super::{ConfigError, Ctx};
use crate::auth::AuthSettings;
use crate::observability::LoggingSettings;
use crate::pipeline::{Limits, WebSocketSettings};
use crate::policy::Policy;
use crate::secret::Secret;
use crate::server::{ListenerSettings, ServerSettings};
use crate::session::SessionSettings;
use crate::upstream::UpstreamSettings;
use auth::auth;
use listeners::listener;
use routes::policy;
use upstream::{upstream, upstream_tokens};
use websocket::websocket;

/// Everything the gateway needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listeners: Vec<ListenerSettings>,
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub limits: Limits,
    pub logging: LoggingSettings,
    pub auth: AuthSettings,
    pub sessions: SessionSettings,
    pub websocket: WebSocketSettings,
    /// `sessions.store`: the Redis several replicas share; `None` keeps sessions in memory.
    pub session_store: Option<crate::fleet::RedisSettings>,
    pub policy: Policy,
    /// The optional admin listener (health endpoints, metrics).
    pub admin: Option<crate::admin::AdminSettings>,
    pub audit: crate::audit::AuditSettings,
    /// Where keys were written, for errors found after loading (a refused reload).
    pub origin: Origin,
}

/// The file settings came from and the location of the keys a reload may refuse to change.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub file: String,
    spans: Vec<(String, serde_saphyr::Location)>,
}

impl Origin {
    /// An error at `path` (or at its nearest recorded parent, or the file itself).
    pub fn error(&self, path: &str, message: String, hint: Option<&str>) -> ConfigError {
        let mut probe = path;
        let at = loop {
            if let Some((_, at)) = self.spans.iter().find(|(p, _)| p == probe) {
                break *at;
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe = &probe[..i],
                None => break serde_saphyr::Location::UNKNOWN,
            }
        };
        ConfigError {
            file: self.file.clone(),
            line: at.line(),
            column: at.column(),
            path: path.to_owned(),
            message,
            hint: hint.map(str::to_owned),
        }
    }

    fn note(&mut self, path: impl Into<String>, at: serde_saphyr::Location) {
        if at != serde_saphyr::Location::UNKNOWN {
            self.spans.push((path.into(), at));
        }
    }
}

/// Stands in for every secret in `--structure-only` mode (long enough for every length rule).
const STRUCTURE_ONLY_PLACEHOLDER: &str = "structure-only-placeholder-never-used-0123456789";

pub(super) fn dur(v: Option<raw::DurationValue>, default: Duration) -> Duration {
    v.map_or(default, |d| d.0)
}

pub(crate) fn build(raw: RawConfig, ctx: &Ctx<'_>) -> Result<Settings, ConfigError> {
    if raw.listeners.is_empty() {
        return Err(ctx.err(
            serde_saphyr::Location::UNKNOWN,
            "listeners",
            "at least one listener is required",
            Some("add `- address: 127.0.0.1:8443` with a `tls:` block"),
        ));
    }
    let mut listeners = Vec::with_capacity(raw.listeners.len());
    for (i, l) in raw.listeners.iter().enumerate() {
        listeners.push(listener(l, &format!("listeners[{i}]"), ctx)?);
    }
    for (i, l) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|o| o.address == l.address) {
            return Err(ctx.err(
                raw.listeners[i].value.address.referenced,
                format!("listeners[{i}].address"),
                format!("address {} is used by an earlier listener", l.address),
                None,
            ));
        }
    }

    // A connection's deadlines: zero would close every connection at once.
    for (value, path) in [
        (&raw.server.handshake_timeout, "server.handshake_timeout"),
        (
            &raw.server.header_read_timeout,
            "server.header_read_timeout",
        ),
        (&raw.server.idle_timeout, "server.idle_timeout"),
        (&raw.server.send_timeout, "server.send_timeout"),
    ] {
        if let Some(d) = value.as_ref().filter(|d| d.value.0.is_zero()) {
            return Err(ctx.err(d.referenced, path, "must be longer than 0", None));
        }
    }
    let spanned = |v: &Option<Spanned<raw::DurationValue>>, default| {
        dur(v.as_ref().map(|s| s.value), default)
    };
    let server = ServerSettings {
        handshake_timeout: spanned(&raw.server.handshake_timeout, Duration::from_secs(10)),
        header_read_timeout: spanned(&raw.server.header_read_timeout, Duration::from_secs(30)),
        max_connections: raw
            .server
            .max_connections
            .as_ref()
            .map_or(10_000, |m| m.value),
        drain_timeout: dur(raw.server.drain_timeout, Duration::from_secs(30)),
        max_connections_per_address: raw
            .server
            .max_connections_per_address
            .as_ref()
            .map_or(256, |m| m.value),
        idle_timeout: spanned(&raw.server.idle_timeout, Duration::from_secs(60)),
        send_timeout: spanned(&raw.server.send_timeout, Duration::from_secs(60)),
        body_read_timeout: dur(raw.server.body_read_timeout, Duration::from_secs(20)),
        body_min_rate: raw.server.body_min_rate.as_ref().map_or(500, |b| b.value.0),
        http2_max_concurrent_streams: raw
            .server
            .http2_max_concurrent_streams
            .as_ref()
            .map_or(256, |m| m.value),
        http2_keep_alive_interval: dur(
            raw.server.http2_keep_alive_interval,
            Duration::from_secs(30),
        ),
        http2_keep_alive_timeout: dur(raw.server.http2_keep_alive_timeout, Duration::from_secs(20)),
        server_names: raw.server.server_names.clone().unwrap_or_default(),
        workers: raw.server.workers.as_ref().map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |w| w.value as usize,
        ),
    };
    for (value, path) in [
        (&raw.server.max_connections, "server.max_connections"),
        (
            &raw.server.max_connections_per_address,
            "server.max_connections_per_address",
        ),
        (
            &raw.server.http2_max_concurrent_streams,
            "server.http2_max_concurrent_streams",
        ),
        (&raw.server.workers, "server.workers"),
    ] {
        if let Some(m) = value.as_ref().filter(|m| m.value == 0) {
            return Err(ctx.err(m.referenced, path, "must be at least 1", None));
        }
    }
    if let Some(m) = raw.server.body_min_rate.as_ref().filter(|m| m.value.0 == 0) {
        return Err(ctx.err(
            m.referenced,
            "server.body_min_rate",
            "must be at least 1 (bytes per second)",
            Some("for example `500` or `1KiB`"),
        ));
    }

    let upstream = upstream(&raw.upstream, ctx)?;
    let limits = Limits {
        max_header_bytes: raw.limits.max_header_bytes.map_or(7680, |b| b.0 as usize),
        max_uri_bytes: raw.limits.max_uri_bytes.map_or(8192, |b| b.0 as usize),
        max_body_bytes: raw.limits.max_body_bytes.map_or(8 << 20, |b| b.0),
    };
    let level = match &raw.logging.level {
        None => "info".to_owned(),
        Some(l) => {
            crate::observability::log_filter(&l.value).map_err(|e| {
                ctx.err(
                    l.referenced,
                    "logging.level",
                    format!("`{}` is not a valid log filter: {e}", l.value),
                    Some("for example `info`, `debug` or `info,arcp_gateway=debug`"),
                )
            })?;
            l.value.clone()
        }
    };
    let logging = LoggingSettings {
        format: raw.logging.format.unwrap_or_default(),
        level,
    };
    let upstream_tokens = upstream_tokens(&raw.upstream, ctx)?;
    let auth = auth(raw.auth.as_ref(), upstream_tokens, ctx)?;
    let sessions = SessionSettings {
        idle_timeout: dur(raw.sessions.idle_timeout, Duration::from_secs(60 * 60)),
        absolute_timeout: raw
            .sessions
            .absolute_timeout
            .as_ref()
            .map_or(Duration::from_secs(12 * 3600), |d| d.value.0),
        max_per_user: raw.sessions.max_per_user.as_ref().map_or(5, |m| m.value),
        max_fingerprint_mismatches: raw.sessions.max_fingerprint_mismatches.unwrap_or(5).max(1),
        capacity: raw.sessions.capacity.unwrap_or(100_000).max(1),
    };
    if let Some(m) = raw.sessions.max_per_user.as_ref().filter(|m| m.value == 0) {
        return Err(ctx.err(
            m.referenced,
            "sessions.max_per_user",
            "must be at least 1",
            None,
        ));
    }
    if sessions.absolute_timeout < sessions.idle_timeout {
        return Err(ctx.err(
            raw.sessions
                .absolute_timeout
                .as_ref()
                .map_or(serde_saphyr::Location::UNKNOWN, |d| d.referenced),
            "sessions.absolute_timeout",
            "must not be shorter than sessions.idle_timeout",
            None,
        ));
    }
    let websocket = websocket(&raw.websocket, server.send_timeout, ctx)?;
    let session_store = store::store(&raw, &auth, ctx)?;
    let policy = policy(&raw.routes, ctx)?;
    let admin = admin(raw.admin.as_ref(), &listeners, ctx)?;
    let audit = crate::audit::AuditSettings {
        file: raw
            .audit
            .as_ref()
            .and_then(|a| a.value.file.as_deref())
            .map(|f| ctx.resolve(f)),
    };
    let origin = origin(&raw, ctx);
    Ok(Settings {
        listeners,
        server,
        upstream,
        limits,
        logging,
        auth,
        sessions,
        websocket,
        session_store,
        policy,
        admin,
        audit,
        origin,
    })
}

/// Locations of the keys a running gateway cannot change (see `crate::reload`).
fn origin(raw: &RawConfig, ctx: &Ctx<'_>) -> Origin {
    let mut o = Origin {
        file: ctx.file.to_owned(),
        spans: Vec::new(),
    };
    for (i, l) in raw.listeners.iter().enumerate() {
        o.note(format!("listeners[{i}]"), l.referenced);
        o.note(
            format!("listeners[{i}].address"),
            l.value.address.referenced,
        );
        if let Some(tls) = &l.value.tls {
            o.note(format!("listeners[{i}].tls"), tls.referenced);
        }
        if let Some(p) = &l.value.proxy_protocol {
            o.note(format!("listeners[{i}].proxy_protocol"), p.referenced);
        }
    }
    if let Some(a) = &raw.admin {
        o.note("admin", a.referenced);
        o.note("admin.address", a.value.address.referenced);
    }
    if let Some(a) = &raw.audit {
        o.note("audit", a.referenced);
    }
    o.note("upstream", raw.upstream.referenced);
    o.note("upstream.url", raw.upstream.value.url.referenced);
    if let Some(sa) = &raw.upstream.value.service_account {
        o.note("upstream.service_account", sa.referenced);
    }
    if let Some(a) = &raw.auth {
        o.note("auth", a.referenced);
    }
    let s = &raw.sessions;
    if let Some(v) = &s.absolute_timeout {
        o.note("sessions.absolute_timeout", v.referenced);
    }
    if let Some(v) = &s.max_per_user {
        o.note("sessions.max_per_user", v.referenced);
    }
    let sv = &raw.server;
    for (path, at) in [
        (
            "server.max_connections",
            sv.max_connections.as_ref().map(|v| v.referenced),
        ),
        (
            "server.max_connections_per_address",
            sv.max_connections_per_address
                .as_ref()
                .map(|v| v.referenced),
        ),
        (
            "server.http2_max_concurrent_streams",
            sv.http2_max_concurrent_streams
                .as_ref()
                .map(|v| v.referenced),
        ),
        ("server.workers", sv.workers.as_ref().map(|v| v.referenced)),
        (
            "logging.level",
            raw.logging.level.as_ref().map(|v| v.referenced),
        ),
    ] {
        if let Some(at) = at {
            o.note(path, at);
        }
    }
    o
}

/// `admin:` — its own address, never one of the client listeners'.
fn admin(
    raw: Option<&Spanned<raw::RawAdmin>>,
    listeners: &[ListenerSettings],
    ctx: &Ctx<'_>,
) -> Result<Option<crate::admin::AdminSettings>, ConfigError> {
    let Some(a) = raw else { return Ok(None) };
    let address = &a.value.address;
    let clash = address.value.port() != 0
        && listeners.iter().any(|l| {
            l.address.port() == address.value.port()
                && (l.address.ip() == address.value.ip()
                    || l.address.ip().is_unspecified()
                    || address.value.ip().is_unspecified())
        });
    if clash {
        return Err(ctx.err(
            address.referenced,
            "admin.address",
            format!(
                "{} is (or overlaps) a client listener's address",
                address.value
            ),
            Some("the admin listener needs a port of its own, e.g. 127.0.0.1:9901"),
        ));
    }
    Ok(Some(crate::admin::AdminSettings {
        address: address.value,
    }))
}

/// Reads a secret given by `<field>_env` or `<field>_file`; errors point at the reference
/// (or at the parent mapping when neither is given) and never contain the value.
pub(super) fn secret(
    ctx: &Ctx<'_>,
    parent: serde_saphyr::Location,
    parent_path: &str,
    field: &str,
    env: Option<&Spanned<String>>,
    file: Option<&Spanned<String>>,
) -> Result<Secret, ConfigError> {
    let resolved_file = file.map(|f| ctx.resolve(&f.value).display().to_string());
    let reference = SecretRef::from_pair(
        field,
        env.map(|e| e.value.as_str()),
        resolved_file.as_deref(),
    )
    .map_err(|m| ctx.err(parent, parent_path, m, None))?;
    if ctx.structure_only {
        return Ok(Secret::new(STRUCTURE_ONLY_PLACEHOLDER));
    }
    reference.resolve().map_err(|m| {
        let (key, at) = match (env, file) {
            (Some(e), _) => (format!("{field}_env"), e.referenced),
            (_, Some(f)) => (format!("{field}_file"), f.referenced),
            _ => (String::new(), parent),
        };
        ctx.err(at, format!("{parent_path}.{key}"), m, None)
    })
}
