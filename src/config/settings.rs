//! Typed settings, valid by construction (step 2 of loading).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Spanned;

use super::raw::{self, LogFormat, RawConfig, Role};
use super::secret::{Secret, SecretRef};
use super::{ConfigError, Ctx};
use crate::policy::{Access, Policy, Rule};

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
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    /// `None` is a plain-HTTP listener (behind a TLS-terminating load balancer).
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone)]
pub enum TlsSettings {
    /// A certificate chain and key from PEM files.
    Files {
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
    },
    /// A development CA and leaf made at start (rcgen).
    Development {
        write_ca_to: Option<PathBuf>,
        names: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub handshake_timeout: Duration,
    /// Deadline for a complete request head: from the end of the TLS handshake for the first
    /// request (protocol detection and the HTTP/2 preface included), and for every HTTP/1.1 head.
    pub header_read_timeout: Duration,
    pub max_connections: u32,
    pub drain_timeout: Duration,
    /// Concurrent connections from one client address (an IPv6 /64 counts as one).
    pub max_connections_per_address: u32,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Bodies the gateway reads itself: the time they may lag behind `body_min_rate`.
    pub body_read_timeout: Duration,
    /// Bodies the gateway reads itself: bytes per second they must average after the grace.
    pub body_min_rate: u64,
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 PING interval on a connection (dead peers are found while streams are open).
    pub http2_keep_alive_interval: Duration,
    /// A PING unanswered for this long closes the connection.
    pub http2_keep_alive_timeout: Duration,
}

impl ServerSettings {
    /// The pace bodies the gateway reads itself must keep.
    pub fn body_pace(&self) -> crate::body::Pace {
        crate::body::Pace {
            grace: self.body_read_timeout,
            min_rate: self.body_min_rate,
        }
    }
}

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
    pub token_verification: Option<UpstreamTokens>,
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

/// How upstream-minted agent and temp tokens are verified.
#[derive(Clone)]
pub struct UpstreamTokens {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    pub leeway: Duration,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("algorithm", &self.algorithm)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sum of name and value lengths of the request headers (as upstream counts them).
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub issuer: String,
    /// Verification keys; the signing key is among them.
    pub keys: Vec<GatewayKey>,
    pub signing_kid: String,
    pub users: Vec<UserSettings>,
    pub login: LoginSettings,
}

/// A gateway token key with its `kid`.
#[derive(Clone)]
pub struct GatewayKey {
    pub kid: String,
    pub algorithm: Algorithm,
    /// `None` for verification-only keys (kept during a rotation).
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    /// The HMAC secret of an HS256 key (for the allocation-free verification path).
    pub hmac_secret: Option<Secret>,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.encoding.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct UserSettings {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub max_failures_per_ip: u32,
    pub max_failures_per_user: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    pub attempts_per_minute_per_ip: u32,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub max_per_user: u32,
    pub capacity: u64,
}

const DEFAULT_DEV_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

fn dur(v: Option<raw::DurationValue>, default: Duration) -> Duration {
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

    let server = ServerSettings {
        handshake_timeout: dur(raw.server.handshake_timeout, Duration::from_secs(10)),
        header_read_timeout: dur(raw.server.header_read_timeout, Duration::from_secs(30)),
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
        idle_timeout: dur(raw.server.idle_timeout, Duration::from_secs(60)),
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
            tracing_subscriber::EnvFilter::try_new(&l.value).map_err(|e| {
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
    let auth = auth(raw.auth.as_ref(), ctx)?;
    let sessions = SessionSettings {
        idle_timeout: dur(raw.sessions.idle_timeout, Duration::from_secs(60 * 60)),
        absolute_timeout: raw
            .sessions
            .absolute_timeout
            .as_ref()
            .map_or(Duration::from_secs(12 * 3600), |d| d.value.0),
        max_per_user: raw.sessions.max_per_user.as_ref().map_or(5, |m| m.value),
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
    let policy = policy(&raw.routes, ctx)?;
    Ok(Settings {
        listeners,
        server,
        upstream,
        limits,
        logging,
        auth,
        sessions,
        policy,
    })
}

fn listener(
    l: &Spanned<raw::RawListener>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<ListenerSettings, ConfigError> {
    let tls = match (&l.value.tls, l.value.plain_http) {
        (Some(_), true) => {
            return Err(ctx.err(
                l.referenced,
                path,
                "a listener has either `tls` or `plain_http: true`, not both",
                None,
            ))
        }
        (None, false) => {
            return Err(ctx.err(
                l.referenced,
                path,
                "listener has no `tls` block",
                Some("add `tls:` with `cert_file`/`key_file` (or `development: {}`), or set `plain_http: true` behind a TLS load balancer"),
            ))
        }
        (None, true) => None,
        (Some(tls), false) => Some(tls_settings(tls, &format!("{path}.tls"), ctx)?),
    };
    Ok(ListenerSettings {
        address: l.value.address.value,
        tls,
    })
}

fn tls_settings(
    tls: &Spanned<raw::RawTls>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<TlsSettings, ConfigError> {
    let t = &tls.value;
    match (&t.cert_file, &t.key_file, &t.development) {
        (Some(cert), Some(key), None) => {
            let cert_path = ctx.resolve(cert);
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ctx.err(
                        tls.referenced,
                        format!("{path}.cert_file"),
                        format!(
                            "cannot read certificates from `{}`: {e}",
                            cert_path.display()
                        ),
                        Some("a PEM file with the leaf certificate first, then intermediates"),
                    )
                })?;
            if chain.is_empty() {
                return Err(ctx.err(
                    tls.referenced,
                    format!("{path}.cert_file"),
                    format!("`{}` holds no certificate", cert_path.display()),
                    None,
                ));
            }
            let key_path = ctx.resolve(key);
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                ctx.err(
                    tls.referenced,
                    format!("{path}.key_file"),
                    format!(
                        "cannot read a private key from `{}`: {e}",
                        key_path.display()
                    ),
                    Some("a PEM file with one PKCS#8, PKCS#1 or SEC1 private key"),
                )
            })?;
            Ok(TlsSettings::Files {
                chain,
                key: Arc::new(key),
            })
        }
        (None, None, Some(dev)) => Ok(TlsSettings::Development {
            write_ca_to: dev.write_ca_to.as_deref().map(|p| ctx.resolve(p)),
            names: dev
                .names
                .clone()
                .unwrap_or_else(|| DEFAULT_DEV_NAMES.iter().map(|s| (*s).to_owned()).collect()),
        }),
        _ => Err(ctx.err(
            tls.referenced,
            path,
            "give `cert_file` and `key_file`, or `development`",
            Some("`development: {write_ca_to: target/dev-ca.pem}` makes a self-signed CA at start"),
        )),
    }
}

impl UpstreamSettings {
    /// Replaces the upstream URL (command-line override), with the same rules as the file.
    pub fn set_url(&mut self, text: &str) -> Result<(), String> {
        self.url = parse_upstream_url(text)?;
        Ok(())
    }
}

/// `http://` or `https://`, with a host and no path.
fn parse_upstream_url(text: &str) -> Result<Uri, String> {
    // The text is not echoed: it could carry credentials.
    let url: Uri = text
        .parse()
        .map_err(|e| format!("the value is not a URL: {e}"))?;
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("the URL must not hold credentials (`user:password@`)".into());
    }
    match url.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("the scheme must be `http` or `https`".into()),
    }
    if url.authority().is_none() {
        return Err("the URL has no host".into());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(
            "the URL must not have a path: ARCP and its clients live at `/` (contract §5)".into(),
        );
    }
    Ok(url)
}

fn upstream(u: &Spanned<raw::RawUpstream>, ctx: &Ctx<'_>) -> Result<UpstreamSettings, ConfigError> {
    let raw = &u.value;
    let url_err = |msg: String| {
        ctx.err(
            raw.url.referenced,
            "upstream.url",
            msg,
            Some("for example `http://127.0.0.1:8001`"),
        )
    };
    let url = parse_upstream_url(&raw.url.value).map_err(url_err)?;
    let ca = match &raw.ca_file {
        None => None,
        Some(file) => {
            let p = ctx.resolve(file);
            let certs = CertificateDer::pem_file_iter(&p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ctx.err(
                        u.referenced,
                        "upstream.ca_file",
                        format!("cannot read CA certificates from `{}`: {e}", p.display()),
                        None,
                    )
                })?;
            Some(certs)
        }
    };
    let service_account = match &raw.service_account {
        None => None,
        Some(sa) => {
            let secret = secret(
                ctx,
                sa.referenced,
                "upstream.service_account",
                "password",
                sa.value.password_env.as_ref(),
                sa.value.password_file.as_ref(),
            )?;
            Some(ServiceAccount {
                username: sa.value.username.clone(),
                password: secret,
                fingerprint: sa.value.fingerprint.clone(),
            })
        }
    };
    let token_verification = match &raw.token_verification {
        None => None,
        Some(tv) => {
            let path = "upstream.token_verification";
            let algorithm = match tv.value.algorithm.value.as_str() {
                "HS256" => Algorithm::HS256,
                "HS384" => Algorithm::HS384,
                "HS512" => Algorithm::HS512,
                other => {
                    return Err(ctx.err(
                        tv.value.algorithm.referenced,
                        format!("{path}.algorithm"),
                        format!("unsupported algorithm `{other}`"),
                        Some("ARCP signs agent tokens with JWT_ALGORITHM: HS256, HS384 or HS512"),
                    ))
                }
            };
            let secret = secret(
                ctx,
                tv.referenced,
                path,
                "secret",
                tv.value.secret_env.as_ref(),
                tv.value.secret_file.as_ref(),
            )?;
            let leeway = match &tv.value.leeway {
                None => Duration::from_secs(60),
                Some(l) if l.value.0 > Duration::from_secs(60) => {
                    return Err(ctx.err(
                        l.referenced,
                        format!("{path}.leeway"),
                        "must be at most 60s (ARCP itself allows 60s)",
                        Some("a longer leeway would forward tokens ARCP refuses, and ARCP then wipes the user's sessions"),
                    ))
                }
                Some(l) => l.value.0,
            };
            Some(UpstreamTokens {
                algorithm,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
                leeway,
            })
        }
    };
    Ok(UpstreamSettings {
        url,
        ca,
        connect_timeout: dur(raw.connect_timeout, Duration::from_secs(5)),
        response_timeout: dur(raw.response_timeout, Duration::from_secs(60)),
        pool_idle_timeout: dur(raw.pool_idle_timeout, Duration::from_secs(90)),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(256),
        service_account,
        token_verification,
        session_refresh_margin: dur(raw.session_refresh_margin, Duration::from_secs(120)),
        replay_buffer_bytes: raw.replay_buffer_bytes.map_or(64 << 10, |b| b.0),
        login_backoff_max: dur(raw.login_backoff_max, Duration::from_secs(60)),
    })
}

fn auth(a: Option<&Spanned<raw::RawAuth>>, ctx: &Ctx<'_>) -> Result<AuthSettings, ConfigError> {
    let login_defaults = |l: &raw::RawLogin| LoginSettings {
        max_failures_per_ip: l.max_failures_per_ip.unwrap_or(5).max(1),
        max_failures_per_user: l.max_failures_per_user.unwrap_or(20).max(1),
        failure_window: dur(l.failure_window, Duration::from_secs(15 * 60)),
        lockout: dur(l.lockout, Duration::from_secs(5 * 60)),
        attempts_per_minute_per_ip: l.attempts_per_minute_per_ip.unwrap_or(30).max(1),
    };
    let Some(a) = a else {
        // No `auth` block: nobody can log in. An ephemeral key keeps the types simple;
        // it never signs anything because there are no users.
        let secret: [u8; 32] = rand::random();
        return Ok(AuthSettings {
            issuer: "arcp-gateway".into(),
            keys: vec![GatewayKey {
                kid: "ephemeral".into(),
                algorithm: Algorithm::HS256,
                encoding: Some(EncodingKey::from_secret(&secret)),
                decoding: DecodingKey::from_secret(&secret),
                hmac_secret: None,
            }],
            signing_kid: "ephemeral".into(),
            users: Vec::new(),
            login: login_defaults(&raw::RawLogin::default()),
        });
    };
    let raw = &a.value;
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.iter().enumerate() {
        let path = format!("auth.keys[{i}]");
        if keys.iter().any(|o: &GatewayKey| o.kid == k.value.kid) {
            return Err(ctx.err(
                k.referenced,
                format!("{path}.kid"),
                format!("duplicate kid `{}`", k.value.kid),
                None,
            ));
        }
        keys.push(gateway_key(k, &path, ctx)?);
    }
    let signing = keys.iter().find(|k| k.kid == raw.signing_key.value);
    match signing {
        None => {
            return Err(ctx.err(
                raw.signing_key.referenced,
                "auth.signing_key",
                format!("no key with kid `{}` in auth.keys", raw.signing_key.value),
                None,
            ))
        }
        Some(k) if k.encoding.is_none() => {
            return Err(ctx.err(
                raw.signing_key.referenced,
                "auth.signing_key",
                format!("key `{}` is verification-only and cannot sign", k.kid),
                Some("give the key a secret or a private_key_file"),
            ))
        }
        Some(_) => {}
    }
    let mut users = Vec::with_capacity(raw.users.len());
    for (i, u) in raw.users.iter().enumerate() {
        let path = format!("auth.users[{i}]");
        if users.iter().any(|o: &UserSettings| o.name == u.value.name) {
            return Err(ctx.err(
                u.referenced,
                format!("{path}.name"),
                format!("duplicate user `{}`", u.value.name),
                None,
            ));
        }
        if u.value.name.is_empty() || u.value.name.len() > 255 {
            return Err(ctx.err(
                u.referenced,
                format!("{path}.name"),
                "a user name has 1 to 255 characters",
                None,
            ));
        }
        let hash = &u.value.password_hash;
        crate::auth::credentials::check_phc(&hash.value).map_err(|m| {
            ctx.err(
                hash.referenced,
                format!("{path}.password_hash"),
                m,
                Some("make one with `arcp-gateway hash-password`"),
            )
        })?;
        users.push(UserSettings {
            name: u.value.name.clone(),
            password_hash: hash.value.clone(),
            role: u.value.role,
        });
    }
    Ok(AuthSettings {
        issuer: raw.issuer.clone().unwrap_or_else(|| "arcp-gateway".into()),
        keys,
        signing_kid: raw.signing_key.value.clone(),
        users,
        login: login_defaults(&raw.login),
    })
}

fn gateway_key(
    k: &Spanned<raw::RawKey>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<GatewayKey, ConfigError> {
    let raw = &k.value;
    let at = k.referenced;
    let read = |file: &str, what: &str| {
        let p = ctx.resolve(file);
        std::fs::read(&p).map_err(|e| {
            ctx.err(
                at,
                format!("{path}.{what}"),
                format!("cannot read `{}`: {e}", p.display()),
                None,
            )
        })
    };
    match raw.algorithm.value.as_str() {
        "HS256" => {
            if raw.private_key_file.is_some() || raw.public_key_file.is_some() {
                return Err(ctx.err(at, path, "an HS256 key has a secret, not key files", None));
            }
            let secret = secret(
                ctx,
                at,
                path,
                "secret",
                raw.secret_env.as_ref(),
                raw.secret_file.as_ref(),
            )?;
            if secret.expose().len() < 32 {
                let source = raw
                    .secret_env
                    .as_ref()
                    .map(|e| ("secret_env", e))
                    .or(raw.secret_file.as_ref().map(|f| ("secret_file", f)));
                let (key, at, name) = source.map_or(("secret", at, ""), |(k, s)| {
                    (k, s.referenced, s.value.as_str())
                });
                return Err(ctx.err(
                    at,
                    format!("{path}.{key}"),
                    format!("an HS256 secret needs at least 32 bytes; `{name}` has fewer"),
                    Some("generate one with `openssl rand -base64 48`"),
                ));
            }
            Ok(GatewayKey {
                kid: raw.kid.clone(),
                algorithm: Algorithm::HS256,
                encoding: Some(EncodingKey::from_secret(secret.expose().as_bytes())),
                decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
                hmac_secret: Some(secret),
            })
        }
        "EdDSA" => {
            if raw.secret_env.is_some() || raw.secret_file.is_some() {
                return Err(ctx.err(at, path, "an EdDSA key uses key files, not a secret", None));
            }
            let public = match &raw.public_key_file {
                Some(f) => read(f, "public_key_file")?,
                None => {
                    return Err(ctx.err(
                        at,
                        path,
                        "an EdDSA key needs `public_key_file` (and `private_key_file` to sign)",
                        None,
                    ))
                }
            };
            let decoding = DecodingKey::from_ed_pem(&public).map_err(|e| {
                ctx.err(
                    at,
                    format!("{path}.public_key_file"),
                    format!("not an Ed25519 public key in PEM: {e}"),
                    None,
                )
            })?;
            let encoding = match &raw.private_key_file {
                None => None,
                Some(f) => Some(
                    EncodingKey::from_ed_pem(&read(f, "private_key_file")?).map_err(|e| {
                        ctx.err(
                            at,
                            format!("{path}.private_key_file"),
                            format!("not an Ed25519 private key in PKCS#8 PEM: {e}"),
                            None,
                        )
                    })?,
                ),
            };
            Ok(GatewayKey {
                kid: raw.kid.clone(),
                algorithm: Algorithm::EdDSA,
                encoding,
                decoding,
                hmac_secret: None,
            })
        }
        other => Err(ctx.err(
            raw.algorithm.referenced,
            format!("{path}.algorithm"),
            format!("unsupported algorithm `{other}`"),
            Some("use `HS256` (default, fastest) or `EdDSA`"),
        )),
    }
}

/// Reads a secret given by `<field>_env` or `<field>_file`; errors point at the reference
/// (or at the parent mapping when neither is given) and never contain the value.
fn secret(
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
    reference.resolve().map_err(|m| {
        let (key, at) = match (env, file) {
            (Some(e), _) => (format!("{field}_env"), e.referenced),
            (_, Some(f)) => (format!("{field}_file"), f.referenced),
            _ => (String::new(), parent),
        };
        ctx.err(at, format!("{parent_path}.{key}"), m, None)
    })
}

/// Rules of a routes file (the shipped profile has this shape).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    rules: Vec<Spanned<raw::RawRule>>,
}

fn rules(
    raw: &[Spanned<raw::RawRule>],
    prefix: &str,
    ctx: &Ctx<'_>,
) -> Result<Vec<Rule>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("{prefix}[{i}]");
        let mut methods = Vec::with_capacity(r.value.methods.len());
        for (j, m) in r.value.methods.iter().enumerate() {
            let method =
                Method::from_bytes(m.value.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ctx.err(
                        m.referenced,
                        format!("{path}.methods[{j}]"),
                        format!("`{}` is not an HTTP method", m.value),
                        None,
                    )
                })?;
            methods.push(method);
        }
        let require_pin = r.value.require_pin.as_ref().is_some_and(|p| p.value);
        if let Some(pin) = r.value.require_pin.as_ref().filter(|p| p.value) {
            if !matches!(r.value.access, Access::Admin | Access::Agent) {
                return Err(ctx.err(
                    pin.referenced,
                    format!("{path}.require_pin"),
                    format!(
                        "`require_pin` needs an admin session; access `{}` has none",
                        r.value.access.as_str()
                    ),
                    Some("use it on `admin` or `agent` routes"),
                ));
            }
        }
        let rule = Rule::new(
            r.value.name.clone(),
            &r.value.path.value,
            methods,
            r.value.access,
            require_pin,
        )
        .map_err(|m| ctx.err(r.value.path.referenced, format!("{path}.path"), m, None))?;
        out.push(rule);
    }
    Ok(out)
}

fn policy(raw: &raw::RawRoutes, ctx: &Ctx<'_>) -> Result<Policy, ConfigError> {
    let mut all = rules(&raw.rules, "routes.rules", ctx)?;
    let profile = raw.profile.as_ref().map_or("arcp", |p| p.value.as_str());
    match profile {
        "arcp" => {
            let file: RoutesFile =
                super::parse_yaml(super::ARCP_PROFILE, "config/routes/arcp.yaml")?;
            let profile_ctx = Ctx {
                file: "config/routes/arcp.yaml",
                base: ctx.base,
            };
            all.extend(rules(&file.rules, "rules", &profile_ctx)?);
        }
        "none" => {}
        other => {
            let at = raw
                .profile
                .as_ref()
                .map_or(serde_saphyr::Location::UNKNOWN, |p| p.referenced);
            return Err(ctx.err(
                at,
                "routes.profile",
                format!("unknown profile `{other}`"),
                Some("use `arcp` (the built-in ARCP 2.1.2 table) or `none`"),
            ));
        }
    }
    Ok(Policy::new(
        all,
        raw.default_access.unwrap_or(Access::Admin),
    ))
}
