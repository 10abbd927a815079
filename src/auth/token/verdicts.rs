//! The verdicts this worker thread already reached on bearer tokens.
//!
//! A client sends the same token with request after request, and verifying it (a MAC over the
//! token, base64, the claims' JSON; for upstream tokens a general JWT parser) is the largest
//! part of admission. So each thread keeps the verdicts of the tokens it verified: a token
//! equal byte for byte (compared in constant time) to one that verified under the same keys
//! gets the same verdict while the clock is within the span that verification allowed.
//! Everything a verification checks is fixed by the token's bytes and the keys, except time,
//! and time is checked again on every use against the same clock, at both ends (`exp`, and for
//! upstream tokens `iat`/`nbf`, so a clock stepped back refuses what it would refuse afresh).
//!
//! * Only successful verdicts are kept: a token that failed is verified in full every time.
//! * Verdicts belong to one [`Tokens`](super::Tokens) (its `generation`): a reload that
//!   changes keys, issuer or upstream secret builds new `Tokens`, and a thread that meets a
//!   new generation forgets what it kept for the old one (the kept tokens with it; a verdict
//!   found out of its span is dropped when it is found).
//! * Bounded: at most [`CAPACITY`] verdicts per thread, tokens of at most [`LONGEST`] bytes;
//!   past the bound an arbitrary verdict is dropped for the new one.
//! * Per thread, so nothing is locked or shared between workers; the table is found by a
//!   per-thread keyed hash, so its layout says nothing an attacker can steer. The hash covers
//!   the token's last [`TAIL`] bytes (a JWT's signature): enough to tell tokens apart, and a
//!   token that shares another's tail only finds a slot whose whole-token comparison fails.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Verified;

/// Verdicts kept per thread.
pub(super) const CAPACITY: usize = 1024;

/// Longest token whose verdict is kept (the gateway's and ARCP's tokens are a few hundred
/// bytes).
pub(super) const LONGEST: usize = 2048;

/// Bytes at the end of a token that pick its slot.
const TAIL: usize = 64;

/// The slot of `token` under `hasher`.
fn slot(hasher: &RandomState, token: &[u8]) -> u64 {
    hasher.hash_one(&token[token.len().saturating_sub(TAIL)..])
}

/// Slots are keyed hashes already: the map takes them as they are.
#[derive(Default)]
struct AsIs(u64);

impl Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else folds in byte by byte.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A fresh generation for a new set of keys (never 0, which no table holds verdicts for).
pub(super) fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Kept {
    token: Box<[u8]>,
    verified: Verified,
    /// The clock's seconds over which the verdict holds.
    holds: Range<i64>,
}

struct Table {
    generation: u64,
    hasher: RandomState,
    kept: HashMap<u64, Kept, BuildHasherDefault<AsIs>>,
}

impl Table {
    /// Drops every verdict: they were reached under other keys than `generation`'s.
    fn forget(&mut self, generation: u64) {
        self.kept = HashMap::default();
        self.generation = generation;
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        generation: 0,
        hasher: RandomState::new(),
        kept: HashMap::default(),
    });
}

/// The verdict kept for `token` under `generation`, if it holds at `now`.
pub(super) fn recall(generation: u64, token: &str, now: i64) -> Option<Verified> {
    if token.len() > LONGEST {
        return None;
    }
    TABLE.with(|table| {
        let mut table = table.try_borrow_mut().ok()?;
        if table.generation != generation {
            table.forget(generation);
            return None;
        }
        let slot = slot(&table.hasher, token.as_bytes());
        let kept = table.kept.get(&slot)?;
        if !crate::secret::same_bytes(&kept.token, token.as_bytes()) {
            return None;
        }
        if kept.holds.contains(&now) {
            return Some(kept.verified.clone());
        }
        table.kept.remove(&slot);
        None
    })
}

/// Keeps the verdict `verified` on `token` under `generation`, holding over `holds`.
pub(super) fn remember(generation: u64, token: &str, verified: &Verified, holds: Range<i64>) {
    if token.len() > LONGEST {
        return;
    }
    TABLE.with(|table| {
        let Ok(mut table) = table.try_borrow_mut() else {
            return;
        };
        if table.generation != generation {
            table.forget(generation);
        }
        let slot = slot(&table.hasher, token.as_bytes());
        if table.kept.len() >= CAPACITY && !table.kept.contains_key(&slot) {
            if let Some(&old) = table.kept.keys().next() {
                table.kept.remove(&old);
            }
        }
        table.kept.insert(
            slot,
            Kept {
                token: token.as_bytes().into(),
                verified: verified.clone(),
                holds,
            },
        );
    });
}

/// Verdicts this thread keeps (tests).
#[cfg(test)]
pub(super) fn kept() -> usize {
    TABLE.with(|table| table.borrow().kept.len())
}
