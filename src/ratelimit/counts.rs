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

use std::sync::{Arc, Mutex};
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
        /// Makes a reservation's lock check, count and lock one step.
        reserving: Arc<Mutex<()>>,
    },
    Shared {
        fleet: Fleet,
        add: Script,
        reserve: Script,
        cancel: Script,
        window: Duration,
        lockout: Duration,
    },
}

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// The key is locked for this long; nothing was counted.
    Locked(Duration),
    /// Counted; `locked` when this count reached the maximum and set the lock.
    Counted { locked: bool },
}

/// One failure: the count grows and its window restarts; at `max` the lock is set.
const ADD: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local max = tonumber(ARGV[2])
if max > 0 and n >= max then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return n
";

/// A reservation: refused while the key (KEYS[2]) or its address (KEYS[3]) is locked, else
/// counted at once (so parallel attempts see each other's counts); the one reaching `max`
/// sets the lock. Returns {0, ms left} or {1, whether it set the lock}.
const RESERVE: &str = r"
local left = math.max(redis.call('PTTL', KEYS[2]), redis.call('PTTL', KEYS[3]))
if left > 0 then return {0, left} end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local max = tonumber(ARGV[2])
if max > 0 and n >= max then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return {1, 1}
end
return {1, 0}
";

/// Takes back a reservation that was never decided: one count less, and its lock if it
/// set one.
const CANCEL: &str = r"
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) end
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
            reserving: Arc::new(Mutex::new(())),
        }
    }

    pub(crate) fn shared(settings: &LoginSettings, fleet: Fleet) -> Counts {
        Counts::Shared {
            fleet,
            add: Script::new(ADD),
            reserve: Script::new(RESERVE),
            cancel: Script::new(CANCEL),
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
                reserving,
            } => {
                let _one_at_a_time = reserving.lock().unwrap_or_else(|e| e.into_inner());
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
                ..
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

    /// Counts an attempt on `key` before it is decided, unless `key` or `address` is
    /// locked: of any number of parallel reservations at most `max` are counted before the
    /// lock.
    pub(crate) async fn reserve(
        &self,
        key: &Key,
        address: &Key,
        max: u32,
    ) -> Result<Reserved, Refused> {
        match self {
            Counts::Local {
                failures,
                locks,
                lockout,
                clock,
                reserving,
            } => {
                let _one_at_a_time = reserving.lock().unwrap_or_else(|e| e.into_inner());
                let now = clock.instant();
                let until = [key, address]
                    .into_iter()
                    .filter_map(|k| locks.get(k))
                    .filter(|until| *until > now)
                    .max();
                if let Some(until) = until {
                    return Ok(Reserved::Locked(until - now));
                }
                let n = failures
                    .entry(key.clone())
                    .and_upsert_with(|old| old.map_or(1, |e| e.into_value().saturating_add(1)))
                    .into_value();
                let locked = max > 0 && n >= max;
                if locked {
                    locks.insert(key.clone(), now + *lockout);
                }
                Ok(Reserved::Counted { locked })
            }
            Counts::Shared {
                fleet,
                reserve,
                window,
                lockout,
                ..
            } => {
                let (count, lock) = shared_keys(fleet, key);
                let (_, address_lock) = shared_keys(fleet, address);
                let args = [millis(*window), max.to_string(), millis(*lockout)];
                let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
                let keys = [count.as_str(), lock.as_str(), address_lock.as_str()];
                let r: (i64, i64) = fleet
                    .script(reserve, &keys, &args)
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                Ok(match r {
                    (0, left) => Reserved::Locked(Duration::from_millis(left.max(1) as u64)),
                    (_, locked) => Reserved::Counted {
                        locked: locked == 1,
                    },
                })
            }
        }
    }

    /// Takes back a reservation that was never decided (no verification slot came free).
    pub(crate) async fn cancel(&self, key: &Key, set_lock: bool) -> Result<(), Refused> {
        match self {
            Counts::Local {
                failures,
                locks,
                reserving,
                ..
            } => {
                let _one_at_a_time = reserving.lock().unwrap_or_else(|e| e.into_inner());
                failures.entry(key.clone()).and_compute_with(|old| {
                    match old.map(|e| e.into_value()) {
                        Some(n) if n > 1 => moka::ops::compute::Op::Put(n - 1),
                        Some(_) => moka::ops::compute::Op::Remove,
                        None => moka::ops::compute::Op::Nop,
                    }
                });
                if set_lock {
                    locks.invalidate(key);
                }
                Ok(())
            }
            Counts::Shared { fleet, cancel, .. } => {
                let (count, lock) = shared_keys(fleet, key);
                let flag: &[u8] = if set_lock { b"1" } else { b"0" };
                let _: i64 = fleet
                    .script(cancel, &[count.as_str(), lock.as_str()], &[flag])
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                Ok(())
            }
        }
    }

    /// Ends `key`'s lockout.
    pub(crate) async fn unlock(&self, key: &Key) -> Result<(), Refused> {
        match self {
            Counts::Local { locks, .. } => {
                locks.invalidate(key);
                Ok(())
            }
            Counts::Shared { fleet, .. } => {
                let (_, lock) = shared_keys(fleet, key);
                let _: i64 = fleet
                    .query(redis::cmd("DEL").arg(lock))
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                Ok(())
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

/// The count and the lock key of `key` in Redis.
fn shared_keys(fleet: &Fleet, key: &Key) -> (String, String) {
    let what = redis_name(key);
    (
        fleet.key(&format!("l:n:{what}")),
        fleet.key(&format!("l:x:{what}")),
    )
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
