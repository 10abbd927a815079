//! Time as an input.
//!
//! Token `exp`/`iat` and the absolute session cap are decided against a [`Clock`] handle, so
//! tests can move time without sleeping. Idle (time-to-idle) expiry is moka's own and uses
//! real time; tests give it short timeouts.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Wall-clock source in whole seconds since the Unix epoch.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Seconds added to the system time (tests move time forward with it).
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        secs + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and its clones) forward; for tests.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// The current UTC time as RFC 3339 with microseconds and a `Z`, as ARCP writes it.
pub fn rfc3339_now() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.microsecond() * 1000)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_utc_with_z() {
        let ts = rfc3339_now();
        assert!(ts.ends_with('Z'), "{ts}");
        assert!(OffsetDateTime::parse(&ts, &Rfc3339).is_ok());
    }

    #[test]
    fn advance_moves_clones() {
        let a = Clock::system();
        let b = a.clone();
        let before = b.now();
        a.advance(100);
        assert!(b.now() >= before + 100);
    }
}
