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
        /// Lockout ends, on the injected clock, and the reservation that set each (0: a
        /// failure count did).
        locks: Cache<Key, (Instant, u64)>,
        lockout: Duration,
        clock: Clock,
        /// Makes a reservation's lock checks, counts and locks one step.
        reserving: Arc<Mutex<()>>,
    },
    Shared {
        fleet: Fleet,
        add: Script,
        reserve: Script,
        release: Script,
        window: Duration,
        lockout: Duration,
    },
}

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// A key is locked for this long; nothing was counted.
    Locked(Duration),
    /// Counted on every key (a count that reached its maximum set its key's lock, owned by
    /// the reservation's token).
    Counted,
}

/// One failure: the count grows and its window restarts; at `max` the lock is set.
const ADD: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local max = tonumber(ARGV[2])
if max > 0 and n >= max then redis.call('SET', KEYS[2], '0', 'PX', ARGV[3]) end
return n
";

/// A reservation on N keys: KEYS = count_1, lock_1, ... count_N, lock_N; ARGV = window ms,
/// lockout ms, token, max_1 ... max_N. Refused while any key is locked ({0, ms left}); else
/// every count grows at once (so parallel attempts see each other's counts), and a count
/// reaching its maximum sets its lock, owned by `token` ({1}).
const RESERVE: &str = r"
local n = #KEYS / 2
local left = -2
for i = 1, n do left = math.max(left, redis.call('PTTL', KEYS[2 * i])) end
if left > 0 then return {0, left} end
for i = 1, n do
  local c = redis.call('INCR', KEYS[2 * i - 1])
  redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[1])
  local max = tonumber(ARGV[3 + i])
  if max > 0 and c >= max then redis.call('SET', KEYS[2 * i], ARGV[3], 'PX', ARGV[2]) end
end
return {1}
";

/// Takes back a reservation on N keys: KEYS as for RESERVE, ARGV = token, then per key
/// '1' to take back its count as well (else only its lock). A lock goes only if `token`
/// still owns it: a newer lock by someone else stays.
const RELEASE: &str = r"
for i = 1, #KEYS / 2 do
  if ARGV[1 + i] == '1' then
    local c = redis.call('DECR', KEYS[2 * i - 1])
    if c <= 0 then redis.call('DEL', KEYS[2 * i - 1]) end
  end
  if redis.call('GET', KEYS[2 * i]) == ARGV[1] then redis.call('DEL', KEYS[2 * i]) end
end
return 1
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
            release: Script::new(RELEASE),
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
                    locks.insert(key, (clock.instant() + *lockout, 0));
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

    /// Counts an attempt on every `(key, max)` before it is decided, unless one of them
    /// is locked: of any number of parallel reservations at most `max` are counted on a
    /// key before it locks. Locks it sets are owned by `token` (non-zero).
    pub(crate) async fn reserve(
        &self,
        keys: &[(&Key, u32)],
        token: u64,
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
                let until = keys
                    .iter()
                    .filter_map(|(k, _)| locks.get(*k))
                    .map(|(until, _)| until)
                    .filter(|until| *until > now)
                    .max();
                if let Some(until) = until {
                    return Ok(Reserved::Locked(until - now));
                }
                for (key, max) in keys {
                    let n = failures
                        .entry((*key).clone())
                        .and_upsert_with(|old| old.map_or(1, |e| e.into_value().saturating_add(1)))
                        .into_value();
                    if *max > 0 && n >= *max {
                        locks.insert((*key).clone(), (now + *lockout, token));
                    }
                }
                Ok(Reserved::Counted)
            }
            Counts::Shared {
                fleet,
                reserve,
                window,
                lockout,
                ..
            } => {
                let names = script_keys(fleet, keys.iter().map(|(k, _)| *k));
                let mut args = vec![millis(*window), millis(*lockout), token.to_string()];
                args.extend(keys.iter().map(|(_, max)| max.to_string()));
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
                let r: Vec<i64> = fleet
                    .script(reserve, &names, &args)
                    .await
                    .map_err(|_| Refused::Unavailable)?;
                Ok(match r.as_slice() {
                    [0, left, ..] => Reserved::Locked(Duration::from_millis((*left).max(1) as u64)),
                    [1, ..] => Reserved::Counted,
                    _ => return Err(Refused::Unavailable),
                })
            }
        }
    }

    /// Takes back what a reservation with `token` did on each `(key, uncount)`: the lock
    /// it set, if it still owns it, and with `uncount` the count it added.
    pub(crate) async fn release(&self, keys: &[(&Key, bool)], token: u64) -> Result<(), Refused> {
        match self {
            Counts::Local {
                failures,
                locks,
                reserving,
                ..
            } => {
                let _one_at_a_time = reserving.lock().unwrap_or_else(|e| e.into_inner());
                for (key, uncount) in keys {
                    if *uncount {
                        failures.entry((*key).clone()).and_compute_with(|old| {
                            match old.map(|e| e.into_value()) {
                                Some(n) if n > 1 => moka::ops::compute::Op::Put(n - 1),
                                Some(_) => moka::ops::compute::Op::Remove,
                                None => moka::ops::compute::Op::Nop,
                            }
                        });
                    }
                    if locks.get(*key).is_some_and(|(_, owner)| owner == token) {
                        locks.invalidate(*key);
                    }
                }
                Ok(())
            }
            Counts::Shared { fleet, release, .. } => {
                let names = script_keys(fleet, keys.iter().map(|(k, _)| *k));
                let mut args = vec![token.to_string()];
                args.extend(
                    keys.iter()
                        .map(|(_, u)| if *u { "1" } else { "0" }.to_owned()),
                );
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
                let _: i64 = fleet
                    .script(release, &names, &args)
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
                    .map(|(until, _)| until)
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

/// KEYS of a script over several keys: count_1, lock_1, ... count_N, lock_N.
fn script_keys<'k>(fleet: &Fleet, keys: impl Iterator<Item = &'k Key>) -> Vec<String> {
    keys.flat_map(|k| {
        let (count, lock) = shared_keys(fleet, k);
        [count, lock]
    })
    .collect()
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
