//! Secrets redacted by type.
//!
//! Passwords, signing secrets and upstream tokens live in a [`Secret`], whose `Debug` prints
//! nothing of the value, so a settings dump or an error chain cannot leak it. Secrets and
//! hashes of them are compared with [`same_bytes`].

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret string. `Debug` is redacted; the value is only reachable through
/// [`Secret::expose`], which makes each use visible in review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Whether two byte strings are equal, in a time that depends on their length only: word by
/// word, every word always, the differences OR-ed together and only the total compared
/// (subtle's slice comparison costs a barrier per byte). Lengths are not secret: strings of
/// different lengths are unequal at once.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut words_a, mut words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = words_a
        .by_ref()
        .zip(words_b.by_ref())
        .fold(0u64, |acc, (x, y)| acc | (word(x) ^ word(y)));
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        diff |= u64::from(x ^ y);
    }
    diff.ct_eq(&0).into()
}

/// Eight bytes as one word.
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_finds_every_difference_and_length() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same_bytes(&a, &a.clone()));
            for i in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[i] ^= 1 << bit;
                    assert!(!same_bytes(&a, &b), "len {len}, byte {i}, bit {bit}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer));
            assert!(!same_bytes(&longer, &a));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
