//! Session PINs, enforced by the gateway (ARCP stores them but never checks them).
//!
//! Rules are ARCP's `SetPinRequest`: 4 to 32 characters, and a list of weak PINs refused.
//! The PIN is kept as an argon2id hash in the session. Five wrong PINs in a row end the
//! session, so a stolen token cannot be used to guess the PIN.

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
