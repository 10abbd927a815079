//! `upstream:`: where ARCP is, the service account, and how its tokens are verified.

use std::time::Duration;

use http::Uri;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_saphyr::Spanned;

use super::super::raw;
use super::super::{ConfigError, Ctx};
use super::{dur, secret};
use crate::auth::token::UpstreamTokens;
use crate::upstream::{ServiceAccount, UpstreamSettings};

impl UpstreamSettings {
    /// Replaces the upstream URL (command-line override), with the same rules as the file.
    pub fn set_url(&mut self, text: &str) -> Result<(), String> {
        self.url = parse_upstream_url(text)?;
        Ok(())
    }

    /// Replaces the service account's user name (command-line override).
    pub fn set_service_username(&mut self, name: &str) -> Result<(), String> {
        if name.is_empty() {
            return Err("the user name is empty".into());
        }
        match &mut self.service_account {
            Some(account) => {
                account.username = name.to_owned();
                Ok(())
            }
            None => Err("the configuration has no `upstream.service_account`".into()),
        }
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

pub(super) fn upstream(
    u: &Spanned<raw::RawUpstream>,
    ctx: &Ctx<'_>,
) -> Result<UpstreamSettings, ConfigError> {
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
        Some(_) if ctx.structure_only => Some(Vec::new()),
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
    Ok(UpstreamSettings {
        url,
        ca,
        connect_timeout: dur(raw.connect_timeout, Duration::from_secs(5)),
        response_timeout: dur(raw.response_timeout, Duration::from_secs(60)),
        pool_idle_timeout: dur(raw.pool_idle_timeout, Duration::from_secs(90)),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(256),
        service_account,
        session_refresh_margin: dur(raw.session_refresh_margin, Duration::from_secs(120)),
        replay_buffer_bytes: raw.replay_buffer_bytes.map_or(64 << 10, |b| b.0),
        login_backoff_max: dur(raw.login_backoff_max, Duration::from_secs(60)),
    })
}

/// `upstream.token_verification`: how agent and temp tokens minted upstream are verified.
pub(super) fn upstream_tokens(
    u: &Spanned<raw::RawUpstream>,
    ctx: &Ctx<'_>,
) -> Result<Option<UpstreamTokens>, ConfigError> {
    Ok(match &u.value.token_verification {
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
                expiry_margin: tv
                    .value
                    .expiry_margin
                    .as_ref()
                    .map_or(Duration::from_secs(10), |m| m.value.0),
            })
        }
    })
}
