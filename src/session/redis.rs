//! The shared L2 of the session store: session records in Redis (`sessions.store.redis`).
//!
//! Keys under the configured prefix `P`:
//!
//! | key            | type   | what                                                        |
//! |----------------|--------|-------------------------------------------------------------|
//! | `P s:<sid>`    | hash   | `u` user, `f` fingerprint SHA-256 (hex), `c` created, `x` absolute cap (Unix s), `l` last activity (Unix ms), `p` PIN hash, `n` wrong PINs, `m` fingerprint mismatches; TTL = idle timeout (never past the cap) |
//! | `P t:<sid>`    | string | tombstone of a session ended on purpose (`logout`/`evicted`/`fingerprint`), TTL = absolute timeout |
//! | `P u:<user>`   | zset   | the user's sessions, oldest first (per-user limit)          |
//! | `P seq`        | int    | creation order for the zset                                  |
//!
//! Every write that must be atomic is one Lua script (create + per-user limit + eviction,
//! end + tombstone + publish, touch, PIN changes). A lookup that misses the L1 is one
//! `HGETALL` (and a `GET` of the tombstone only when the record is gone).

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;

use super::{Ended, Fingerprint, PinState, Session, SessionId, SessionSettings};
use crate::fleet::{Fleet, FleetError};

/// The L1 keeps a record this long at most (on the injected clock); also the longest an
/// L1 hit can serve while Redis is unreachable and the subscription has not noticed yet.
pub const L1_LIFETIME_MAX: Duration = Duration::from_secs(5);

/// Redis side of the store, with its scripts.
#[derive(Clone)]
pub(super) struct RedisSessions {
    pub fleet: Fleet,
    /// Activity is written to Redis at most this often per session and replica.
    pub touch_interval_ms: i64,
    pub l1_lifetime: Duration,
    idle_ms: i64,
    absolute_ms: i64,
    max_per_user: u32,
    scripts: Arc<Scripts>,
}

struct Scripts {
    create: Script,
    end: Script,
    touch: Script,
    set_pin: Script,
    pin_failed: Script,
    pin_reset: Script,
    fingerprint_mismatch: Script,
}

/// What a record read found.
pub(super) enum Loaded {
    Record(Session),
    Ended(Ended),
    Missing,
}

/// `min(10 % of the idle timeout, 60 s)` (mod_auth_openidc's slack), at least 1 ms.
pub fn touch_interval(idle: Duration) -> Duration {
    (idle / 10)
        .min(Duration::from_secs(60))
        .max(Duration::from_millis(1))
}

impl RedisSessions {
    pub fn new(fleet: Fleet, settings: &SessionSettings) -> Self {
        let touch = touch_interval(settings.idle_timeout);
        RedisSessions {
            fleet,
            touch_interval_ms: touch.as_millis() as i64,
            l1_lifetime: touch.min(L1_LIFETIME_MAX),
            idle_ms: settings.idle_timeout.as_millis() as i64,
            absolute_ms: settings.absolute_timeout.as_millis() as i64,
            max_per_user: settings.max_per_user,
            scripts: Arc::new(Scripts {
                create: Script::new(CREATE),
                end: Script::new(END),
                touch: Script::new(TOUCH),
                set_pin: Script::new(SET_PIN),
                pin_failed: Script::new(PIN_FAILED),
                pin_reset: Script::new(PIN_RESET),
                fingerprint_mismatch: Script::new(FINGERPRINT_MISMATCH),
            }),
        }
    }

    fn session_key(&self, id: &SessionId) -> String {
        self.fleet.key(&format!("s:{}", id.to_hex()))
    }

    /// Redis TTL of a record: the idle timeout, never past the absolute cap.
    fn ttl_ms(&self, expires_at: i64, now_ms: i64) -> i64 {
        self.idle_ms.min(expires_at * 1000 - now_ms).max(1)
    }

    /// Stores a new session and applies the per-user limit fleet-wide; returns the ids
    /// of the sessions it ended (oldest first).
    pub async fn create(&self, s: &Session, now_ms: i64) -> Result<Vec<SessionId>, FleetError> {
        let keys = [
            self.session_key(&s.id),
            self.fleet.key(&format!("u:{}", s.user)),
            self.fleet.key("seq"),
        ];
        let args = [
            s.id.to_hex(),
            s.user.to_string(),
            s.fingerprint.to_hex(),
            s.created_at.to_string(),
            s.expires_at.to_string(),
            now_ms.to_string(),
            self.ttl_ms(s.expires_at, now_ms).to_string(),
            self.max_per_user.to_string(),
            self.fleet.prefix().to_owned(),
            self.absolute_ms.to_string(),
            self.fleet.channel(),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
        let evicted: Vec<String> = self
            .fleet
            .script(&self.scripts.create, &keys, &args)
            .await?;
        Ok(evicted
            .iter()
            .filter_map(|h| SessionId::from_hex(h))
            .collect())
    }

    /// Reads a record: one `HGETALL`, plus a `GET` of the tombstone when it is gone.
    pub async fn load(&self, id: &SessionId, now_ms: i64) -> Result<Loaded, FleetError> {
        let fields: Vec<(String, String)> = self
            .fleet
            .query(redis::cmd("HGETALL").arg(self.session_key(id)))
            .await?;
        if let Some(session) = decode(id, &fields, now_ms) {
            return Ok(Loaded::Record(session));
        }
        let tomb: Option<String> = self
            .fleet
            .query(redis::cmd("GET").arg(self.fleet.key(&format!("t:{}", id.to_hex()))))
            .await?;
        Ok(match tomb.as_deref() {
            Some("evicted") => Loaded::Ended(Ended::Evicted),
            Some("fingerprint") => Loaded::Ended(Ended::FingerprintMismatches),
            Some(_) => Loaded::Ended(Ended::LoggedOut),
            None => Loaded::Missing,
        })
    }

    /// Ends a session everywhere: deletes it, leaves a tombstone, publishes the end.
    pub async fn end(&self, id: &SessionId, why: Ended) -> Result<(), FleetError> {
        let hex = id.to_hex();
        let keys = [self.session_key(id), self.fleet.key(&format!("t:{hex}"))];
        let args = [
            why_text(why).to_owned(),
            self.absolute_ms.to_string(),
            self.fleet.channel(),
            hex,
            self.fleet.prefix().to_owned(),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
        let _: i64 = self.fleet.script(&self.scripts.end, &keys, &args).await?;
        Ok(())
    }

    /// Records activity at `now_ms` and slides the TTL (if the record still exists).
    pub async fn touch(
        &self,
        id: &SessionId,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<(), FleetError> {
        let key = self.session_key(id);
        let args = [
            now_ms.to_string(),
            self.ttl_ms(expires_at, now_ms).to_string(),
        ];
        let args: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
        let _: i64 = self
            .fleet
            .script(&self.scripts.touch, &[&key], &args)
            .await?;
        Ok(())
    }

    /// Sets the PIN hash once (`HSETNX`); `false` if one was set already.
    pub async fn set_pin(&self, id: &SessionId, hash: &str) -> Result<bool, FleetError> {
        let key = self.session_key(id);
        let msg = format!("upd:{}", id.to_hex());
        let channel = self.fleet.channel();
        let args: [&[u8]; 3] = [hash.as_bytes(), channel.as_bytes(), msg.as_bytes()];
        let set: i64 = self
            .fleet
            .script(&self.scripts.set_pin, &[&key], &args)
            .await?;
        Ok(set == 1)
    }

    /// Counts a wrong PIN; returns the consecutive count.
    pub async fn pin_failed(&self, id: &SessionId) -> Result<u32, FleetError> {
        let key = self.session_key(id);
        let msg = format!("upd:{}", id.to_hex());
        let channel = self.fleet.channel();
        let args: [&[u8]; 2] = [channel.as_bytes(), msg.as_bytes()];
        let n: i64 = self
            .fleet
            .script(&self.scripts.pin_failed, &[&key], &args)
            .await?;
        Ok(n.max(0) as u32)
    }

    /// Counts a request that presented the session's token with another fingerprint, on
    /// any replica; returns the count (0 when the record is gone).
    pub async fn fingerprint_mismatch(&self, id: &SessionId) -> Result<u32, FleetError> {
        let key = self.session_key(id);
        let n: i64 = self
            .fleet
            .script(&self.scripts.fingerprint_mismatch, &[&key], &[])
            .await?;
        Ok(n.max(0) as u32)
    }

    /// Resets the wrong-PIN count.
    pub async fn pin_reset(&self, id: &SessionId) -> Result<(), FleetError> {
        let key = self.session_key(id);
        let _: i64 = self
            .fleet
            .script(&self.scripts.pin_reset, &[&key], &[])
            .await?;
        Ok(())
    }
}

pub(super) fn why_text(why: Ended) -> &'static str {
    match why {
        Ended::LoggedOut => "logout",
        Ended::Evicted => "evicted",
        Ended::FingerprintMismatches => "fingerprint",
    }
}

/// A session from its record; `None` when the record is absent or damaged.
fn decode(id: &SessionId, fields: &[(String, String)], now_ms: i64) -> Option<Session> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let last: i64 = get("l")?.parse().ok()?;
    Some(Session {
        id: *id,
        user: Arc::from(get("u")?),
        fingerprint: Fingerprint::from_hex(get("f")?)?,
        created_at: get("c")?.parse().ok()?,
        expires_at: get("x")?.parse().ok()?,
        last_active_ms: AtomicU64::new(last.max(0) as u64),
        pin: Mutex::new(PinState {
            hash: get("p").map(str::to_owned),
            failures: get("n").and_then(|n| n.parse().ok()).unwrap_or(0),
        }),
        loaded_at_ms: now_ms,
        flushed_ms: AtomicI64::new(last),
        // Counted in Redis (`m`); this copy's counter is unused.
        fingerprint_mismatches: std::sync::atomic::AtomicU32::new(0),
    })
}

const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'f', ARGV[3], 'c', ARGV[4], 'x', ARGV[5], 'l', ARGV[6], 'n', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[9] .. 's:' .. m) == 0 then redis.call('ZREM', KEYS[2], m) end
end
local evicted = {}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[8])
if over > 0 then
  evicted = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  for _, m in ipairs(evicted) do
    redis.call('DEL', ARGV[9] .. 's:' .. m)
    redis.call('SET', ARGV[9] .. 't:' .. m, 'evicted', 'PX', ARGV[10])
    redis.call('ZREM', KEYS[2], m)
    redis.call('PUBLISH', ARGV[11], 'end:' .. m .. ':evicted')
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[10])
return evicted
";

const END: &str = r"
local u = redis.call('HGET', KEYS[1], 'u')
if u then redis.call('ZREM', ARGV[5] .. 'u:' .. u, ARGV[4]) end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'end:' .. ARGV[4] .. ':' .. ARGV[1])
return 1
";

const TOUCH: &str = r"
local l = redis.call('HGET', KEYS[1], 'l')
if not l then return 0 end
if tonumber(l) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'l', ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

const SET_PIN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'p', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'n', 0)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

const PIN_FAILED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 1000 end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
";

const FINGERPRINT_MISMATCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'm', 1)
";

const PIN_RESET: &str = r"
if redis.call('HGET', KEYS[1], 'n') ~= '0' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'n', 0)
end
return 1
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_interval_is_a_tenth_capped_at_a_minute() {
        assert_eq!(
            touch_interval(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            touch_interval(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn damaged_records_are_absent() {
        let id = SessionId::random();
        assert!(decode(&id, &[], 0).is_none());
        let fields = vec![("u".to_owned(), "ARCP".to_owned())];
        assert!(decode(&id, &fields, 0).is_none());
    }
}
