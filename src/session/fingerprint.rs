//! Client fingerprints: stored hashed, compared in constant time.
//!
//! `X-Client-Fingerprint` is a client-chosen string (a uuid4 from `ARCPClient`, an 8-hex
//! browser hash from the dashboard). The session keeps only its SHA-256, so a memory dump or
//! a log never shows the value, and comparison does not leak how much of it matched.

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(value: &str) -> Self {
        Fingerprint(Sha256::digest(value.as_bytes()).into())
    }

    /// The hash in hex, for the shared session record (the value itself is never stored).
    pub(crate) fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The inverse of [`Fingerprint::to_hex`].
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Fingerprint(out))
    }

    /// Constant-time comparison with a presented header value.
    pub fn matches(&self, presented: &str) -> bool {
        self.same(&Self::of(presented))
    }

    /// Constant-time comparison of two hashes.
    fn same(&self, other: &Fingerprint) -> bool {
        crate::secret::same_bytes(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint([hashed])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_value() {
        let fp = Fingerprint::of("a61becc3-0ef3-4b85-8829-5e4f0ba0bb8a");
        assert!(fp.matches("a61becc3-0ef3-4b85-8829-5e4f0ba0bb8a"));
        assert!(!fp.matches("a61becc3-0ef3-4b85-8829-5e4f0ba0bb8b"));
        assert!(!fp.matches(""));
    }

    #[test]
    fn every_bit_of_the_hash_counts() {
        let fp = Fingerprint::of("x");
        assert!(fp.same(&fp));
        for i in 0..32 {
            for bit in 0..8 {
                let mut other = fp;
                other.0[i] ^= 1 << bit;
                assert!(!fp.same(&other), "byte {i} bit {bit}");
            }
        }
    }
}
