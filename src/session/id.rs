//! Session ids: 128 random bits, redacted in logs.

use std::fmt;

/// A session id. `Debug` shows only a short reference; the full value appears only inside
/// signed tokens (claim `sid`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    pub fn random() -> Self {
        SessionId(rand::random())
    }

    /// Full hex form, for the `sid` claim.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(SessionId(out))
    }

    /// The client-facing reference: `sess_` and the first 12 hex digits.
    pub fn public_ref(&self) -> String {
        let hex = self.to_hex();
        format!("sess_{}", &hex[..12])
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.public_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_redaction() {
        let id = SessionId::random();
        assert_eq!(SessionId::from_hex(&id.to_hex()), Some(id));
        assert!(SessionId::from_hex("zz").is_none());
        let debug = format!("{id:?}");
        assert!(!debug.contains(&id.to_hex()));
        assert!(id.public_ref().starts_with("sess_"));
    }
}
