//! Session PINs, enforced by the gateway (ARCP stores them but never checks them).
//!
//! Rules are ARCP's `SetPinRequest`: 4 to 32 characters, and a list of weak PINs refused.
//! The PIN is kept as an argon2id hash in the session. Five wrong PINs in a row end the
//! session, so a stolen token cannot be used to guess the PIN.
//!
//! Everything a session's PIN goes through is here: setting it once, verifying it on
//! `/auth/verify_pin`, and checking `X-Session-Pin` on routes that demand it.

use crate::session::{Ended, Session, SessionStore};

/// Why a PIN operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("X-Session-Pin missing")]
    Required,
    #[error("no PIN set for the session")]
    NotSet,
    #[error("PIN already set")]
    AlreadySet,
    #[error("wrong PIN")]
    Incorrect,
    #[error("PIN rejected: {0}")]
    Invalid(&'static str),
    #[error("cannot hash the PIN")]
    Internal,
}

/// Consecutive wrong PINs that end the session.
pub const MAX_FAILURES: u32 = 5;

const WEAK: [&str; 16] = [
    "1234", "0000", "1111", "2222", "3333", "4444", "5555", "6666", "7777", "8888", "9999",
    "password", "admin", "12345", "123456", "00000",
];

/// Why a PIN cannot be set.
pub fn validate_new(pin: &str) -> Result<(), &'static str> {
    let len = pin.chars().count();
    if len < 4 {
        return Err("PIN must be at least 4 characters");
    }
    if len > 32 {
        return Err("PIN must be at most 32 characters");
    }
    if WEAK.iter().any(|w| w.eq_ignore_ascii_case(pin)) {
        return Err("PIN is too weak");
    }
    Ok(())
}

/// Hashes a PIN off the async threads.
pub async fn hash(pin: String) -> Option<String> {
    tokio::task::spawn_blocking(move || super::credentials::hash_password(&pin).ok())
        .await
        .ok()
        .flatten()
}

/// Verifies a PIN off the async threads.
pub async fn verify(pin: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || super::credentials::verify(&pin, Some(&phc), &phc))
        .await
        .unwrap_or(false)
}

/// Sets the session's PIN, once (once fleet-wide with a shared session store; a store
/// that cannot be reached is [`PinError::Internal`]).
pub async fn set(sessions: &SessionStore, session: &Session, pin: String) -> Result<(), PinError> {
    validate_new(&pin).map_err(PinError::Invalid)?;
    if session.pin().hash.is_some() {
        return Err(PinError::AlreadySet);
    }
    let hash = hash(pin).await.ok_or(PinError::Internal)?;
    match sessions.set_pin(session, hash).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(PinError::AlreadySet),
        Err(_) => Err(PinError::Internal),
    }
}

/// Checks a presented PIN (`X-Session-Pin`, or the body of `/auth/verify_pin`); a wrong
/// one counts towards [`MAX_FAILURES`], which end the session.
pub async fn check(
    sessions: &SessionStore,
    session: &Session,
    presented: Option<&str>,
) -> Result<(), PinError> {
    let presented = presented.ok_or(PinError::Required)?;
    let hash = session.pin().hash.ok_or(PinError::NotSet)?;
    if verify(presented.to_owned(), hash).await {
        // A reset that cannot be written leaves earlier failures counted: the safe side.
        let _ = sessions.pin_verified(session).await;
        Ok(())
    } else {
        register_failure(sessions, session).await;
        Err(PinError::Incorrect)
    }
}

/// Counts a wrong PIN; ends the session after [`MAX_FAILURES`] in a row (counted
/// fleet-wide with a shared session store; a count that cannot be kept ends the session).
async fn register_failure(sessions: &SessionStore, session: &Session) {
    let failures = sessions.pin_failed(session).await.unwrap_or(MAX_FAILURES);
    if failures >= MAX_FAILURES {
        tracing::warn!(user = %session.user, session = ?session.id, "too many wrong PINs; session ended");
        sessions.end(&session.id, Ended::LoggedOut).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(validate_new("4827").is_ok());
        assert!(validate_new("123").is_err());
        assert!(validate_new(&"7".repeat(33)).is_err());
        assert!(validate_new("1234").is_err());
        assert!(validate_new("PASSWORD").is_err());
    }
}
