//! The admin login the gateway owns (`POST /auth/login`, docs/design.md §7).
//!
//! Upstream's order of checks is kept: throttling (429), malformed body (422), agent fields
//! (401), missing fingerprint (400), credentials (401). The caller reads the body (an HTTP
//! concern) between [`LoginThrottle::check_ip`] and [`login`]; everything after the body is
//! here. A success creates a session bound to the fingerprint and signs its token.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Tokens, Users};
use crate::ratelimit::{Busy, LoginThrottle, Refused, Throttled};
use crate::session::SessionStore;

/// What a login needs: the snapshot's users and keys, the session store and the throttle.
pub struct Login<'a> {
    pub users: &'a Users,
    pub tokens: &'a Tokens,
    pub sessions: &'a SessionStore,
    pub throttle: &'a LoginThrottle,
}

/// A successful login.
pub struct LoggedIn {
    pub user: String,
    pub access_token: String,
    pub expires_in: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("login throttled")]
    Throttled(#[source] Throttled),
    #[error("no password verification slot")]
    Busy(#[source] Busy),
    #[error("request body is not valid: {0}")]
    Invalid(String),
    #[error("direct agent login attempted")]
    AgentLogin,
    #[error("neither username/password nor agent fields")]
    NoCredentials,
    #[error("login without X-Client-Fingerprint")]
    FingerprintMissing,
    #[error("invalid admin credentials")]
    BadCredentials,
    #[error("cannot sign the session token")]
    Sign,
    #[error("session storage unreachable")]
    StoreUnavailable,
}

impl From<Refused> for LoginError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Throttled(t) => LoginError::Throttled(t),
            Refused::Unavailable => LoginError::StoreUnavailable,
        }
    }
}

/// Checks the fields of a login body and the password; creates the session. `user` is
/// set as soon as the body names a configured user (for the access log), success or not;
/// a name that is no user is never logged in clear.
pub async fn login(
    ctx: &Login<'_>,
    peer: IpAddr,
    fingerprint: Option<&str>,
    fields: &Map<String, Value>,
    user: &mut Option<Arc<str>>,
) -> Result<LoggedIn, LoginError> {
    let (username, password) = match credentials(fields) {
        Ok(pair) => pair,
        Err(e) => {
            ctx.throttle.record_failure(peer, None).await;
            return Err(e);
        }
    };
    // Counted under the name if it is a user, else under a keyed reference (never in clear).
    let name = ctx.users.log_name(&username);
    ctx.throttle.check_user(peer, &name).await?;
    let fingerprint = fingerprint.ok_or(LoginError::FingerprintMissing)?;
    if ctx.users.contains(&username) {
        *user = Some(Arc::from(username.as_str()));
    }
    // Past the per-user ceiling attempts are slowed, never refused.
    let delay = ctx.throttle.slowdown(&name).await?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Counted against the pair before the check, so parallel attempts see each other.
    let attempt = ctx.throttle.reserve(peer, &name).await?;
    // Settled in a task of its own: a client that goes away mid-check (a reset stream)
    // neither frees its verification slot early nor leaves its attempt unsettled.
    let check = {
        let (throttle, users) = (ctx.throttle.clone(), ctx.users.clone());
        let username = username.clone();
        tokio::spawn(async move {
            let slot = match throttle.verification_slot().await {
                Ok(slot) => slot,
                Err(busy) => {
                    throttle.cancel(attempt).await;
                    return Err(busy);
                }
            };
            let verified = users.verify_password(&username, &password, slot).await;
            if verified {
                throttle.right_password(attempt).await;
            } else {
                throttle.wrong_password(attempt).await;
            }
            Ok(verified)
        })
    };
    let verified = check.await.unwrap_or(Ok(false)).map_err(LoginError::Busy)?;
    if !verified {
        tracing::info!(user = %name, peer = %peer, "admin login failed");
        return Err(LoginError::BadCredentials);
    }
    let session = ctx
        .sessions
        .try_create(&username, fingerprint)
        .await
        .map_err(|_| LoginError::StoreUnavailable)?;
    let access_token = ctx
        .tokens
        .issue(&username, &session.id, session.expires_at)
        .map_err(|_| LoginError::Sign)?;
    let expires_in = (session.expires_at - ctx.tokens.clock().now()).max(0);
    tracing::info!(user = %username, session = ?session.id, "admin login");
    Ok(LoggedIn {
        user: username,
        access_token,
        expires_in,
    })
}

/// The user name and password of a login body, in upstream's order of checks.
fn credentials(fields: &Map<String, Value>) -> Result<(String, String), LoginError> {
    let text = |name: &str| -> Result<Option<String>, LoginError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(LoginError::Invalid(format!("{name} must be a string"))),
        }
    };
    let username = text("username")?.map(|u| u.trim().to_owned());
    let password = text("password")?;
    if username.as_ref().is_some_and(|u| u.chars().count() > 255) {
        return Err(LoginError::Invalid(
            "username must have at most 255 characters".into(),
        ));
    }
    match &password {
        Some(p) if p.is_empty() => {
            return Err(LoginError::Invalid("password must not be empty".into()))
        }
        Some(p) if p.chars().count() > 1024 => {
            return Err(LoginError::Invalid(
                "password must have at most 1024 characters".into(),
            ))
        }
        _ => {}
    }
    let (agent_id, agent_type) = (text("agent_id")?, text("agent_type")?);
    if agent_id.is_some() && agent_type.is_some() {
        return Err(LoginError::AgentLogin);
    }
    match (username.filter(|u| !u.is_empty()), password) {
        (Some(username), Some(password)) => Ok((username, password)),
        _ => Err(LoginError::NoCredentials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn body_checks_keep_upstream_order() {
        let ok = credentials(&fields(json!({"username": " ARCP ", "password": "x"})));
        assert_eq!(ok.unwrap(), ("ARCP".to_owned(), "x".to_owned()));
        assert!(matches!(
            credentials(&fields(
                json!({"username": 1, "agent_id": "a", "agent_type": "b"})
            )),
            Err(LoginError::Invalid(_))
        ));
        assert!(matches!(
            credentials(&fields(json!({"agent_id": "a", "agent_type": "b"}))),
            Err(LoginError::AgentLogin)
        ));
        assert!(matches!(
            credentials(&fields(json!({"username": "ARCP"}))),
            Err(LoginError::NoCredentials)
        ));
        assert!(matches!(
            credentials(&fields(json!({"username": "ARCP", "password": ""}))),
            Err(LoginError::Invalid(_))
        ));
    }

    /// A client that stops waiting (a reset stream drops its request) does not free its
    /// verification slot: the blocking check holds it until the work is done, so resets
    /// cannot run more argon2 checks at once than `max_concurrent_verifications`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_check_keeps_its_slot_until_the_work_ends() {
        use crate::auth::{Role, UserSettings};
        use std::sync::Arc;
        use tokio::sync::Semaphore;
        // A costly hash (about a second even in an optimised build), so the check is
        // certainly running when the waiter is dropped, and certainly not yet done.
        use argon2::{password_hash::SaltString, Algorithm, Argon2, Params, PasswordHasher};
        let params = Params::new(64 * 1024, 24, 1, None).unwrap();
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"the-right-one", &salt)
            .unwrap()
            .to_string();
        let user = UserSettings::new("ARCP", &hash, Role::Admin).unwrap();
        let users = Users::new(&[user], None);
        let slots = Arc::new(Semaphore::new(1));
        let slot = slots.clone().acquire_owned().await.unwrap();
        let check = tokio::spawn(async move { users.verify_password("ARCP", "wrong", slot).await });
        // Let the blocking check start, then drop the waiter.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        check.abort();
        let _ = check.await;
        assert_eq!(
            slots.available_permits(),
            0,
            "the check still holds its slot"
        );
        let freed = tokio::time::timeout(std::time::Duration::from_secs(60), slots.acquire()).await;
        assert!(freed.is_ok(), "the slot comes back when the check ends");
    }
}
