//! `auth:`: gateway token keys, users and login throttling.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_saphyr::Spanned;

use super::super::raw;
use super::super::{ConfigError, Ctx};
use super::{dur, secret};
use crate::auth::token::{GatewayKey, UpstreamTokens};
use crate::auth::{AuthSettings, UserSettings};
use crate::ratelimit::LoginSettings;

pub(super) fn auth(
    a: Option<&Spanned<raw::RawAuth>>,
    upstream_tokens: Option<UpstreamTokens>,
    ctx: &Ctx<'_>,
) -> Result<AuthSettings, ConfigError> {
    let login_defaults = |l: &raw::RawLogin| LoginSettings {
        max_failures_per_ip: l.max_failures_per_ip.unwrap_or(5).max(1),
        max_failures_per_user: l.max_failures_per_user.unwrap_or(20).max(1),
        failure_window: dur(l.failure_window, Duration::from_secs(15 * 60)),
        lockout: dur(l.lockout, Duration::from_secs(5 * 60)),
        attempts_per_minute_per_ip: l.attempts_per_minute_per_ip.unwrap_or(30).max(1),
        max_failures_per_address: l.max_failures_per_address.unwrap_or(50).max(1),
        slowdown_max: dur(l.slowdown_max, Duration::from_secs(5)),
        max_concurrent_verifications: l.max_concurrent_verifications.unwrap_or(4).max(1),
        verification_queue_timeout: dur(l.verification_queue_timeout, Duration::from_secs(2)),
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
            upstream_tokens,
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
        let user = UserSettings::new(&u.value.name, &hash.value, u.value.role).map_err(|m| {
            ctx.err(
                hash.referenced,
                format!("{path}.password_hash"),
                m,
                Some("make one with `arcp-gateway hash-password`"),
            )
        })?;
        users.push(user);
    }
    Ok(AuthSettings {
        issuer: raw.issuer.clone().unwrap_or_else(|| "arcp-gateway".into()),
        keys,
        signing_kid: raw.signing_key.value.clone(),
        users,
        login: login_defaults(&raw.login),
        upstream_tokens,
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
                Some(_) if ctx.structure_only => {
                    return Ok(GatewayKey {
                        kid: raw.kid.clone(),
                        algorithm: Algorithm::EdDSA,
                        encoding: raw
                            .private_key_file
                            .as_ref()
                            .map(|_| EncodingKey::from_secret(&[])),
                        decoding: DecodingKey::from_secret(&[]),
                        hmac_secret: None,
                    })
                }
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
