//! `sessions.store`: the shared session storage (`crate::fleet::RedisSettings`).

use std::time::Duration;

use serde_saphyr::Spanned;

use super::super::raw::{self, RawConfig};
use super::super::{ConfigError, Ctx};
use super::{dur, secret};
use crate::auth::AuthSettings;
use crate::fleet::RedisSettings;
use crate::secret::Secret;

/// `None` without `sessions.store` (sessions stay in this process).
pub(super) fn store(
    raw: &RawConfig,
    auth: &AuthSettings,
    ctx: &Ctx<'_>,
) -> Result<Option<RedisSettings>, ConfigError> {
    let Some(store) = &raw.sessions.store else {
        return Ok(None);
    };
    let r: &Spanned<raw::RawRedis> = &store.value.redis;
    let path = "sessions.store.redis";
    let url = match (&r.value.url, &r.value.url_env, &r.value.url_file) {
        (Some(u), None, None) => Secret::new(u.value.clone()),
        (None, env, file) => secret(ctx, r.referenced, path, "url", env.as_ref(), file.as_ref())?,
        _ => {
            return Err(ctx.err(
                r.referenced,
                path,
                "give one of `url`, `url_env` or `url_file`",
                None,
            ))
        }
    };
    let text = url.expose();
    let scheme_ok = text.starts_with("redis://") || text.starts_with("rediss://");
    if !(ctx.structure_only || scheme_ok) {
        // The value may hold a password: name the rule, not the value.
        return Err(ctx.err(
            r.referenced,
            format!("{path}.url"),
            "the URL must start with redis:// or rediss://",
            Some("for example redis://127.0.0.1:6379/0"),
        ));
    }
    let ca_pem = match &r.value.ca_file {
        None => None,
        Some(f) if ctx.structure_only => Some(f.clone().into_bytes()),
        Some(f) => {
            let p = ctx.resolve(f);
            Some(std::fs::read(&p).map_err(|e| {
                ctx.err(
                    r.referenced,
                    format!("{path}.ca_file"),
                    format!("cannot read `{}`: {e}", p.display()),
                    None,
                )
            })?)
        }
    };
    Ok(Some(RedisSettings {
        url,
        key_prefix: r
            .value
            .key_prefix
            .clone()
            .unwrap_or_else(|| "arcp-gw:".into()),
        ca_pem,
        connect_timeout: dur(r.value.connect_timeout, Duration::from_secs(2)),
        command_timeout: dur(r.value.command_timeout, Duration::from_millis(500)),
        signing_secret: signing_material(raw, auth, ctx)?,
    }))
}

/// The gateway's signing secret (HS256) or signing key file (EdDSA): the key material the
/// upstream credentials are encrypted with in Redis, so every replica with the same
/// signing key can read them and nothing else can.
fn signing_material(
    raw: &RawConfig,
    auth: &AuthSettings,
    ctx: &Ctx<'_>,
) -> Result<Secret, ConfigError> {
    let key = auth.keys.iter().find(|k| k.kid == auth.signing_kid);
    if let Some(secret) = key.and_then(|k| k.hmac_secret.clone()) {
        return Ok(secret);
    }
    let file = raw.auth.as_ref().and_then(|a| {
        a.value
            .keys
            .iter()
            .find(|k| k.value.kid == auth.signing_kid)
            .and_then(|k| k.value.private_key_file.clone())
    });
    match file {
        Some(f) if !ctx.structure_only => std::fs::read_to_string(ctx.resolve(&f))
            .map(Secret::new)
            .map_err(|e| {
                ctx.err(
                    serde_saphyr::Location::UNKNOWN,
                    "auth.keys",
                    format!("cannot read the signing key file: {e}"),
                    None,
                )
            }),
        // No `auth` block (nobody logs in) or structure-only: a per-process key; replicas
        // then cannot share upstream credentials and each logs in on its own.
        _ => Ok(Secret::new(format!("{:032x}", rand::random::<u128>()))),
    }
}
