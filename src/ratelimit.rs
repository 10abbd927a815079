//! Login throttling: an attempt rate per client address (governor) and failure lockouts per
//! address and per user name.
//!
//! * Every login attempt from an address spends one cell of a GCRA bucket
//!   (`attempts_per_minute_per_ip`); an empty bucket answers 429 at once.
//! * Failed logins are counted per address and per user name within `failure_window`
//!   (the window restarts with each failure). Reaching `max_failures_per_ip` or
//!   `max_failures_per_user` locks that key for `lockout`. A success clears the counts.
//! * The per-user threshold is higher than the per-address one, so one attacker's address
//!   locks itself out long before it can lock the real user out from everywhere.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use crate::clock::Clock;

#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub max_failures_per_ip: u32,
    pub max_failures_per_user: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    pub attempts_per_minute_per_ip: u32,
}

/// Why a login attempt is refused before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many login attempts; retry in {retry_after:?}")]
pub struct Throttled {
    pub retry_after: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Ip(IpAddr),
    User(Arc<str>),
}

/// Cheap-to-clone handle.
#[derive(Clone)]
pub struct LoginThrottle {
    attempts: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Cache<Key, u32>,
    /// Lockout ends, on the injected clock.
    locks: Cache<Key, Instant>,
    settings: Arc<LoginSettings>,
    clock: Clock,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle").finish_non_exhaustive()
    }
}

impl LoginThrottle {
    pub fn new(settings: &LoginSettings, clock: Clock) -> Self {
        let per_minute =
            NonZeroU32::new(settings.attempts_per_minute_per_ip).unwrap_or(NonZeroU32::MIN);
        LoginThrottle {
            attempts: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.failure_window)
                .build(),
            locks: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.lockout)
                .build(),
            settings: Arc::new(settings.clone()),
            clock,
        }
    }

    /// Admits an attempt from `ip` (spends one cell of its rate) unless it is locked.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Throttled> {
        self.check_lock(&Key::Ip(ip))?;
        if self.attempts.len() > 50_000 {
            self.attempts.retain_recent();
        }
        self.attempts.check_key(&ip).map_err(|not_until| Throttled {
            retry_after: not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            )),
        })
    }

    /// Refuses attempts for a locked user name.
    pub fn check_user(&self, user: &str) -> Result<(), Throttled> {
        self.check_lock(&Key::User(Arc::from(user)))
    }

    fn check_lock(&self, key: &Key) -> Result<(), Throttled> {
        let now = self.clock.instant();
        match self.locks.get(key) {
            Some(until) if until > now => Err(Throttled {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure; locks the address or user when a threshold is reached.
    pub fn record_failure(&self, ip: IpAddr, user: Option<&str>) {
        self.count(Key::Ip(ip), self.settings.max_failures_per_ip);
        if let Some(user) = user {
            self.count(
                Key::User(Arc::from(user)),
                self.settings.max_failures_per_user,
            );
        }
    }

    fn count(&self, key: Key, max: u32) {
        let n = self.failures.get(&key).unwrap_or(0) + 1;
        if n >= max {
            self.failures.invalidate(&key);
            self.locks
                .insert(key, self.clock.instant() + self.settings.lockout);
        } else {
            self.failures.insert(key, n);
        }
    }

    /// A success clears the failure counts of the address and the user.
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        self.failures.invalidate(&Key::Ip(ip));
        self.failures.invalidate(&Key::User(Arc::from(user)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LoginSettings {
        LoginSettings {
            max_failures_per_ip: 3,
            max_failures_per_user: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            attempts_per_minute_per_ip: 100,
        }
    }

    #[test]
    fn an_address_locks_itself_out_but_not_others() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check_ip(a).is_ok());
            t.record_failure(a, Some("ARCP"));
        }
        let locked = t.check_ip(a).unwrap_err();
        assert!(locked.retry_after > Duration::from_secs(50));
        assert!(t.check_ip(b).is_ok());
        assert!(
            t.check_user("ARCP").is_ok(),
            "3 failures stay below the per-user threshold"
        );
    }

    #[test]
    fn success_clears_counts_and_user_lock_applies_everywhere() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        t.record_failure(a, Some("u"));
        t.record_failure(a, Some("u"));
        t.record_success(a, "u");
        t.record_failure(a, Some("u"));
        assert!(t.check_ip(a).is_ok(), "counts restarted after the success");
        for i in 0..5 {
            t.record_failure(format!("10.1.0.{i}").parse().unwrap(), Some("victim"));
        }
        assert!(t.check_user("victim").is_err());
    }

    #[test]
    fn attempt_rate_is_limited() {
        let mut s = settings();
        s.attempts_per_minute_per_ip = 2;
        let t = LoginThrottle::new(&s, Clock::system());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(t.check_ip(a).is_ok());
        assert!(t.check_ip(a).is_ok());
        assert!(t.check_ip(a).is_err());
    }
}
