//! Login throttling, built so an attacker elsewhere can neither lock the real admin out nor
//! burn the gateway's CPU.
//!
//! * **Addresses.** An IPv4 address is one client; a whole IPv6 /64 is one client (one host
//!   usually holds the whole prefix).
//! * **Attempt rate** per address: a GCRA bucket (`attempts_per_minute_per_ip`, governor);
//!   an empty bucket answers 429 at once.
//! * **Lockouts** are keyed by *user name and address*: `max_failures_per_ip` wrong
//!   passwords for one name from one address lock that pair for `lockout`, and
//!   `max_failures_per_address` failures of any kind lock the address. Neither touches the
//!   same user at another address.
//! * **Per-user ceiling slows, never blocks**: past `max_failures_per_user` failures of one
//!   name (from everywhere), each further attempt for it waits a delay that doubles per
//!   failure up to `slowdown_max`, then is checked as usual. The right password still logs
//!   in, a little later.
//! * Counting is atomic per key (moka's `and_upsert_with`): 64 parallel wrong guesses count
//!   64. Failure windows restart with each failure; a success clears its pair and name.
//! * **CPU**: at most `max_concurrent_verifications` argon2 verifications run at once; a
//!   login waits up to `verification_queue_timeout` for a slot, then gets 503 with
//!   `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::clock::Clock;

#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Wrong passwords for one user name from one address before that pair is locked.
    pub max_failures_per_ip: u32,
    /// Failed attempts of any kind from one address before the address is locked.
    pub max_failures_per_address: u32,
    /// Failures of one user name (all addresses) past which its attempts are slowed.
    pub max_failures_per_user: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    pub attempts_per_minute_per_ip: u32,
    /// Longest delay a slowed attempt waits.
    pub slowdown_max: Duration,
    /// argon2 verifications allowed to run at once.
    pub max_concurrent_verifications: u32,
    /// How long a login waits for a verification slot before 503.
    pub verification_queue_timeout: Duration,
}

/// Why a login attempt is refused before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many login attempts; retry in {retry_after:?}")]
pub struct Throttled {
    pub retry_after: Duration,
}

/// No password verification slot came free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password verification is saturated; retry in {retry_after:?}")]
pub struct Busy {
    pub retry_after: Duration,
}

/// A client address as throttling sees it: IPv4 as is, IPv6 by its /64.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ClientKey(u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(u32::from(v4))),
                // Top bit set keeps prefixes apart from IPv4 keys.
                None => ClientKey((u128::from(v6) & !((1u128 << 64) - 1)) | 1),
            },
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Address(ClientKey),
    UserAt(Arc<str>, ClientKey),
    User(Arc<str>),
}

/// Cheap-to-clone handle.
#[derive(Clone)]
pub struct LoginThrottle {
    attempts: Arc<DefaultKeyedRateLimiter<ClientKey>>,
    failures: Cache<Key, u32>,
    /// Lockout ends, on the injected clock.
    locks: Cache<Key, Instant>,
    verifications: Arc<Semaphore>,
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
            verifications: Arc::new(Semaphore::new(
                settings.max_concurrent_verifications.max(1) as usize
            )),
            settings: Arc::new(settings.clone()),
            clock,
        }
    }

    /// Admits an attempt from `ip` (spends one cell of its rate) unless it is locked.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Throttled> {
        let client = ClientKey::of(ip);
        self.check_lock(&Key::Address(client))?;
        if self.attempts.len() > 50_000 {
            self.attempts.retain_recent();
        }
        self.attempts
            .check_key(&client)
            .map_err(|not_until| Throttled {
                retry_after: not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                )),
            })
    }

    /// Refuses attempts for `user` from `ip` while that pair is locked.
    pub fn check_user(&self, ip: IpAddr, user: &str) -> Result<(), Throttled> {
        self.check_lock(&Key::UserAt(Arc::from(user), ClientKey::of(ip)))
    }

    /// How long an attempt for `user` waits first: nothing below the per-user ceiling, then
    /// a delay doubling with each failure past it, up to `slowdown_max`.
    pub fn slowdown(&self, user: &str) -> Duration {
        let failures = self.failures.get(&Key::User(Arc::from(user))).unwrap_or(0);
        let Some(past) = failures.checked_sub(self.settings.max_failures_per_user) else {
            return Duration::ZERO;
        };
        let delay = Duration::from_millis(250).saturating_mul(1 << past.min(10));
        delay.min(self.settings.slowdown_max)
    }

    /// A slot to verify a password in, waiting up to `verification_queue_timeout`.
    pub async fn verification_slot(&self) -> Result<OwnedSemaphorePermit, Busy> {
        let wait = self.settings.verification_queue_timeout;
        match tokio::time::timeout(wait, self.verifications.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy {
                retry_after: Duration::from_secs(1),
            }),
        }
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

    /// Counts a failed attempt from `ip`; with a user name it is a wrong password for it.
    pub fn record_failure(&self, ip: IpAddr, user: Option<&str>) {
        let client = ClientKey::of(ip);
        self.count(
            Key::Address(client),
            Some(self.settings.max_failures_per_address),
        );
        if let Some(user) = user {
            let user: Arc<str> = Arc::from(user);
            self.count(
                Key::UserAt(user.clone(), client),
                Some(self.settings.max_failures_per_ip),
            );
            // The name's own count only slows; it never locks.
            self.count(Key::User(user), None);
        }
    }

    /// Adds one failure to `key`, atomically; locks it on reaching `max`.
    fn count(&self, key: Key, max: Option<u32>) {
        let n = self
            .failures
            .entry(key.clone())
            .and_upsert_with(|old| old.map_or(1, |e| e.into_value().saturating_add(1)))
            .into_value();
        if max.is_some_and(|max| n >= max) {
            self.locks
                .insert(key, self.clock.instant() + self.settings.lockout);
        }
    }

    /// A success clears the pair's and the name's failures (not the address's: one right
    /// password does not license a spray of wrong ones from there).
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        let user: Arc<str> = Arc::from(user);
        self.failures
            .invalidate(&Key::UserAt(user.clone(), ClientKey::of(ip)));
        self.failures.invalidate(&Key::User(user));
    }

    /// Failures counted for `user` (all addresses), for tests and metrics.
    pub fn user_failures(&self, user: &str) -> u32 {
        self.failures.get(&Key::User(Arc::from(user))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LoginSettings {
        LoginSettings {
            max_failures_per_ip: 3,
            max_failures_per_address: 10,
            max_failures_per_user: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            attempts_per_minute_per_ip: 100,
            slowdown_max: Duration::from_secs(5),
            max_concurrent_verifications: 2,
            verification_queue_timeout: Duration::from_millis(50),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pair_locks_itself_out_but_not_the_user_elsewhere() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            assert!(t.check_ip(a).is_ok());
            assert!(t.check_user(a, "ARCP").is_ok());
            t.record_failure(a, Some("ARCP"));
        }
        let locked = t.check_user(a, "ARCP").unwrap_err();
        assert!(locked.retry_after > Duration::from_secs(50));
        assert!(
            t.check_user(b, "ARCP").is_ok(),
            "the same user elsewhere is not locked"
        );
        assert!(
            t.check_user(a, "other").is_ok(),
            "another user from there is not locked"
        );
        assert!(
            t.check_ip(a).is_ok(),
            "3 failures stay below the address threshold"
        );
    }

    #[test]
    fn the_per_user_ceiling_slows_and_never_locks() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        for i in 0..8 {
            t.record_failure(ip(&format!("10.1.0.{i}")), Some("victim"));
        }
        assert_eq!(t.user_failures("victim"), 8);
        assert_eq!(t.slowdown("victim"), Duration::from_millis(2000));
        assert_eq!(t.slowdown("someone-else"), Duration::ZERO);
        assert!(t.check_user(ip("10.2.0.1"), "victim").is_ok());
        t.record_success(ip("10.2.0.1"), "victim");
        assert_eq!(t.slowdown("victim"), Duration::ZERO);
    }

    #[test]
    fn an_address_spraying_names_locks_itself() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        let a = ip("10.0.0.9");
        for i in 0..10 {
            t.record_failure(a, Some(&format!("user{i}")));
        }
        assert!(t.check_ip(a).is_err());
        assert!(t.check_ip(ip("10.0.0.10")).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:10.0.0.1")),
            ClientKey::of(ip("10.0.0.1"))
        );
        assert_ne!(ClientKey::of(ip("10.0.0.1")), ClientKey::of(ip("10.0.0.2")));
    }

    #[test]
    fn parallel_failures_all_count() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        std::thread::scope(|s| {
            for i in 0..64 {
                let t = &t;
                s.spawn(move || t.record_failure(ip(&format!("10.3.0.{i}")), Some("raced")));
            }
        });
        assert_eq!(t.user_failures("raced"), 64);
    }

    #[tokio::test]
    async fn verification_slots_are_bounded() {
        let t = LoginThrottle::new(&settings(), Clock::system());
        let one = t.verification_slot().await.unwrap();
        let two = t.verification_slot().await.unwrap();
        assert!(
            t.verification_slot().await.is_err(),
            "a third waits, then is refused"
        );
        drop(one);
        assert!(t.verification_slot().await.is_ok());
        drop(two);
    }

    #[test]
    fn attempt_rate_is_limited() {
        let mut s = settings();
        s.attempts_per_minute_per_ip = 2;
        let t = LoginThrottle::new(&s, Clock::system());
        let a = ip("10.0.0.1");
        assert!(t.check_ip(a).is_ok());
        assert!(t.check_ip(a).is_ok());
        assert!(t.check_ip(a).is_err());
    }
}
