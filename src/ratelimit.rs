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
//! * Counting is atomic per key (moka's `and_upsert_with`; one Lua script with a shared
//!   store): 64 parallel wrong guesses count 64. An attempt is counted against its pair
//!   *before* its password is checked ([`LoginThrottle::reserve`]), so of 64 parallel
//!   guesses at most `max_failures_per_ip` are checked at all. Failure windows restart
//!   with each failure; a success clears its pair and name; an attempt never checked (no
//!   verification slot) is taken back, so saturating the verifiers locks nobody out.
//! * **Fleet-wide** with `sessions.store.redis`: failure counts and lockouts live in Redis
//!   (`counts.rs`), so replicas add to the same counts and honour the same locks. Names that
//!   are no user are counted under a reference keyed from the fleet's signing secret (never
//!   in clear, in Redis or in the log; the same on every replica, so they lock exactly like
//!   real names); the per-minute attempt rate stays per replica. Redis unreachable: attempts are refused (503), never waved
//!   through.
//! * **CPU**: at most `max_concurrent_verifications` argon2 verifications run at once; a
//!   login waits up to `verification_queue_timeout` for a slot, then gets 503 with
//!   `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;
use crate::fleet::Fleet;

mod counts;
use counts::{Counts, Reserved};

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
pub struct ClientKey(pub(crate) u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(u32::from(v4))),
                // Bit 32 is never set in an IPv4 key, so no prefix (not even `::/64`)
                // collides with an IPv4 address.
                None => ClientKey((u128::from(v6) & !((1u128 << 64) - 1)) | (1 << 32)),
            },
        }
    }
}

/// What a lockout or a failure count is kept for.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Key {
    Address(ClientKey),
    UserAt(Arc<str>, ClientKey),
    User(Arc<str>),
}

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// The shared counts cannot be read: fail closed.
    #[error("login throttling state unreachable")]
    Unavailable,
}

/// A login attempt counted against its (name, address) pair before its password is
/// checked; see [`LoginThrottle::reserve`].
#[derive(Debug)]
#[must_use = "an attempt is settled as wrong, right or cancelled"]
pub struct Attempt {
    pair: Key,
    address: Key,
    /// Owner of the locks this attempt's counts set.
    token: u64,
}

/// Cheap-to-clone handle.
#[derive(Clone)]
pub struct LoginThrottle {
    attempts: Arc<DefaultKeyedRateLimiter<ClientKey>>,
    counts: Counts,
    verifications: Arc<Semaphore>,
    settings: Arc<LoginSettings>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle").finish_non_exhaustive()
    }
}

impl LoginThrottle {
    /// Counts in this process.
    pub fn new(settings: &LoginSettings, clock: Clock) -> Self {
        Self::with_counts(settings, Counts::local(settings, clock))
    }

    /// Counts in the Redis every replica shares.
    pub fn shared(settings: &LoginSettings, fleet: Fleet) -> Self {
        Self::with_counts(settings, Counts::shared(settings, fleet))
    }

    fn with_counts(settings: &LoginSettings, counts: Counts) -> Self {
        let per_minute =
            NonZeroU32::new(settings.attempts_per_minute_per_ip).unwrap_or(NonZeroU32::MIN);
        LoginThrottle {
            attempts: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            counts,
            verifications: Arc::new(Semaphore::new(
                settings.max_concurrent_verifications.max(1) as usize
            )),
            settings: Arc::new(settings.clone()),
        }
    }

    /// Admits an attempt from `ip` (spends one cell of its rate) unless it is locked.
    /// The rate is checked first: a flood is refused in memory, without a round trip to
    /// the shared store.
    pub async fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let client = ClientKey::of(ip);
        if self.attempts.len() > 50_000 {
            self.attempts.retain_recent();
        }
        self.attempts.check_key(&client).map_err(|not_until| {
            Refused::Throttled(Throttled {
                retry_after: not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                )),
            })
        })?;
        self.check_lock(&Key::Address(client)).await
    }

    /// Counts an attempt for `user` from `ip` against that pair *and* that address before
    /// its password is checked, unless either is locked. Parallel attempts therefore see
    /// each other: however many arrive at once, across every replica, at most
    /// `max_failures_per_ip` are checked for the pair and `max_failures_per_address` for
    /// the address before they lock. Settle it with [`LoginThrottle::wrong_password`],
    /// [`LoginThrottle::right_password`] or, when it was never checked,
    /// [`LoginThrottle::cancel`].
    pub async fn reserve(&self, ip: IpAddr, user: &str) -> Result<Attempt, Refused> {
        let client = ClientKey::of(ip);
        let pair = Key::UserAt(Arc::from(user), client);
        let address = Key::Address(client);
        // Owns the locks this attempt sets, so only this attempt can take them back.
        let token = rand::random::<u64>() | 1;
        let keys = [
            (&pair, self.settings.max_failures_per_ip),
            (&address, self.settings.max_failures_per_address),
        ];
        match self.counts.reserve(&keys, token).await? {
            Reserved::Locked(retry_after) => Err(Refused::Throttled(Throttled { retry_after })),
            Reserved::Counted => Ok(Attempt {
                pair,
                address,
                token,
            }),
        }
    }

    /// The attempt was never checked (no verification slot): it does not count, and the
    /// locks its counts set are lifted.
    pub async fn cancel(&self, attempt: Attempt) {
        let keys = [(&attempt.pair, true), (&attempt.address, true)];
        if self.counts.release(&keys, attempt.token).await.is_err() {
            tracing::warn!("login attempt not taken back: shared store unreachable");
        }
    }

    /// The attempt had a wrong password: the pair and the address already counted it;
    /// the name counts it now (that count only slows, never locks).
    pub async fn wrong_password(&self, attempt: Attempt) {
        let Key::UserAt(user, _) = attempt.pair else {
            return;
        };
        if self.counts.add(Key::User(user), None).await.is_err() {
            tracing::warn!("login failure not counted: shared store unreachable");
        }
    }

    /// The attempt had the right password: it is no failure of the address, the pair's
    /// and the name's failures are forgotten, and locks its own counts set are lifted.
    pub async fn right_password(&self, attempt: Attempt) {
        let Key::UserAt(user, _) = &attempt.pair else {
            return;
        };
        let keys = [(&attempt.pair, false), (&attempt.address, true)];
        let released = self.counts.release(&keys, attempt.token).await;
        let cleared = self
            .counts
            .clear(&[attempt.pair.clone(), Key::User(user.clone())])
            .await;
        if released.and(cleared).is_err() {
            tracing::warn!("login success not recorded: shared store unreachable");
        }
    }

    /// Refuses attempts for `user` from `ip` while that pair is locked.
    pub async fn check_user(&self, ip: IpAddr, user: &str) -> Result<(), Refused> {
        self.check_lock(&Key::UserAt(Arc::from(user), ClientKey::of(ip)))
            .await
    }

    /// How long an attempt for `user` waits first: nothing below the per-user ceiling, then
    /// a delay doubling with each failure past it, up to `slowdown_max`.
    pub async fn slowdown(&self, user: &str) -> Result<Duration, Refused> {
        let failures = self.counts.get(&Key::User(Arc::from(user))).await?;
        let Some(past) = failures.checked_sub(self.settings.max_failures_per_user) else {
            return Ok(Duration::ZERO);
        };
        let delay = Duration::from_millis(250).saturating_mul(1 << past.min(10));
        Ok(delay.min(self.settings.slowdown_max))
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

    async fn check_lock(&self, key: &Key) -> Result<(), Refused> {
        match self.counts.lock_left(key).await? {
            Some(retry_after) => Err(Refused::Throttled(Throttled { retry_after })),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt from `ip`; with a user name it is a wrong password for it.
    /// A count the shared store cannot take is logged (the attempt failed anyway).
    pub async fn record_failure(&self, ip: IpAddr, user: Option<&str>) {
        let client = ClientKey::of(ip);
        let mut result = self
            .counts
            .add(
                Key::Address(client),
                Some(self.settings.max_failures_per_address),
            )
            .await;
        if let Some(user) = user {
            let user: Arc<str> = Arc::from(user);
            let pair = self
                .counts
                .add(
                    Key::UserAt(user.clone(), client),
                    Some(self.settings.max_failures_per_ip),
                )
                .await;
            // The name's own count only slows; it never locks.
            let name = self.counts.add(Key::User(user), None).await;
            result = result.and(pair).and(name);
        }
        if result.is_err() {
            tracing::warn!("login failure not counted: shared store unreachable");
        }
    }

    /// Failures counted for `user` (all addresses), for tests and metrics.
    pub async fn user_failures(&self, user: &str) -> Result<u32, Refused> {
        self.counts.get(&Key::User(Arc::from(user))).await
    }
}

#[cfg(test)]
mod tests;
