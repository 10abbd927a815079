//! Where login failure counts and lockouts are kept: in this process (moka), or in the
//! Redis the replicas share (`sessions.store.redis`).
//!
//! Redis keys under the configured prefix `P` (failure windows and lockouts expire by TTL):
//!
//! | key                    | type   | what                                               |
//! |------------------------|--------|----------------------------------------------------|
//! | `P l:n:<what>`         | int    | failures in the current window (`failure_window`)   |
//! | `P l:x:<what>`         | string | lockout of `<what>`, TTL = what is left of it        |
//!
//! `<what>` is `a:<address>`, `p:<address>:<name>` or `u:<name>` (an address is the IPv4
//! address or the IPv6 /64; a name that is no user arrives as the replica's keyed
//! reference, never in clear).

use std::time::Duration;

use moka::sync::Cache;
use redis::Script;
use tokio::time::Instant;

use super::{Key, LoginSettings, Refused};
use crate::clock::Clock;
use crate::fleet::Fleet;

/// Counts and lockouts of one gateway, or of the fleet.
#[derive(Clone)]
pub(crate) enum Counts {
    Local {
        failures: Cache<Key, u32>,
        /// Lockout ends, on the injected clock.
        locks: Cache<Key, Instant>,
        lockout: Duration,
        clock: Clock,
    },
    Shared {
        fleet: Fleet,
        add: Script,
        window: Duration,
        lockout: Duration,
    },
}

/// One failure: the count grows and its window restarts; at `max` the lock is set.
const ADD: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local max = tonumber(ARGV[2])
if max > 0 and n >= max then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return n
";

impl Counts {
    pub(crate) fn local(settings: &LoginSettings, clock: Clock) -> Counts {
        Counts::Local {
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.failure_window)
                .build(),
            locks: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.lockout)
                .build(),
            lockout: settings.lockout,
            clock,
        }
    }

    pub(crate) fn shared(settings: &LoginSettings, fleet: Fleet) -> Counts {
        Counts::Shared {
            fleet,
            add: Script::new(ADD),
            window: settings.failure_window,
            lockout: settings.lockout,
        }
    }

    /// Adds one failure to `key`, atomically; locks it on reaching `max`.
    pub(crate) async fn add(&self, key: Key, max: Option<u32>) -> Result<u32, Refused> {
        match self {
            Counts::Local {
                failures,
                locks,
                lockout,
                clock,
            } => {
                let n = failures
                    .entry(key.clone())
                    .and_upsert_with(|old| old.map_or(1, |e| e.into_value().saturating_add(1)))
                    .into_value();
                if max.is_some_and(|max| n >= max) {
                    locks.insert(key, clock.instant() + *lockout);
                }
                Ok(n)
            }
            Counts::Shared {
                fleet,
                add,
                window,
                lockout,
            } => {
                let what = redis_name(&key);
                let keys = [
                    fleet.key(&format!("l:n:{what}")),
                    fleet.key(&format!("l:x:{what}")),
                ];
                let args = [
                    millis(*window),
                    max.unwrap_or(0).to_string(),
                    millis(*lockout),
                ];
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
                let n: i64 = fleet
                    .script(add, &keys, &args)
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                Ok(n.clamp(0, i64::from(u32::MAX)) as u32)
            }
        }
    }

    /// What is left of `key`'s lockout, if it is locked.
    pub(crate) async fn lock_left(&self, key: &Key) -> Result<Option<Duration>, Refused> {
        match self {
            Counts::Local { locks, clock, .. } => {
                let now = clock.instant();
                Ok(locks
                    .get(key)
                    .filter(|until| *until > now)
                    .map(|until| until - now))
            }
            Counts::Shared { fleet, .. } => {
                let lock = fleet.key(&format!("l:x:{}", redis_name(key)));
                let left: i64 = fleet
                    .query(redis::cmd("PTTL").arg(lock))
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                // -2: no lock; -1 cannot happen (always set with PX).
                Ok((left > 0).then(|| Duration::from_millis(left as u64)))
            }
        }
    }

    /// Failures counted for `key` in its current window.
    pub(crate) async fn get(&self, key: &Key) -> Result<u32, Refused> {
        match self {
            Counts::Local { failures, .. } => Ok(failures.get(key).unwrap_or(0)),
            Counts::Shared { fleet, .. } => {
                let count = fleet.key(&format!("l:n:{}", redis_name(key)));
                let n: Option<i64> = fleet
                    .query(redis::cmd("GET").arg(count))
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                Ok(n.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
            }
        }
    }

    /// Forgets the failure counts of `keys` (not their lockouts).
    pub(crate) async fn clear(&self, keys: &[Key]) -> Result<(), Refused> {
        match self {
            Counts::Local { failures, .. } => {
                for key in keys {
                    failures.invalidate(key);
                }
                Ok(())
            }
            Counts::Shared { fleet, .. } => {
                let mut del = redis::cmd("DEL");
                for key in keys {
                    del.arg(fleet.key(&format!("l:n:{}", redis_name(key))));
                }
                let _: i64 = fleet.query(&del).await.map_err(|_| Refused::Unavailable)?;
                Ok(())
            }
        }
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// The `<what>` of a key in Redis.
fn redis_name(key: &Key) -> String {
    match key {
        Key::Address(a) => format!("a:{:x}", a.0),
        Key::UserAt(name, a) => format!("p:{:x}:{name}", a.0),
        Key::User(name) => format!("u:{name}"),
    }
}
