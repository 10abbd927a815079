//! Admin sessions: a moka cache with time-to-idle expiry, an absolute cap, a capacity bound
//! and a per-user limit.
//!
//! * **Idle expiry**: only *admitted* requests are activity ([`SessionStore::touch`], after
//!   the fingerprint matched). Each session keeps the time of its last admitted request (on
//!   the injected [`Clock`]) and a lookup past `idle_timeout` finds it expired; moka's
//!   `time_to_idle` (reset by every read) only bounds memory, so a refused request cannot
//!   keep a session alive.
//! * **Absolute cap**: a per-entry expiry ([`moka::Expiry`]) at `expires_at`, and the same
//!   instant is checked against the injected [`Clock`] on every lookup.
//! * **Per-user limit**: creating a session beyond `max_per_user` ends the user's oldest.
//! * Sessions ended on purpose (logout, eviction) leave a tombstone, so their tokens get
//!   `session-invalid`; a session that is simply gone (idle, cap, restart) reads as expired.
//!
//! * **Shared store** (`sessions.store.redis`, [`SessionStore::with_fleet`]): the record
//!   lives in Redis (`session/redis.rs`) and this moka cache is only a short-lived L1;
//!   ends are published so every replica drops its copy and closes the session's sockets.
//!   See docs/design.md §4 for the slack of the sliding idle timeout and the failure
//!   behaviour ([`Lookup::Unavailable`], fail closed).
//!
//! No lock here is held across an `.await`.

mod fingerprint;
mod id;
mod redis;
mod shared;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::fleet::Fleet;
pub use crate::fleet::FleetError as StoreError;
pub use fingerprint::Fingerprint;
pub use id::SessionId;
use redis::RedisSessions;
pub use redis::{touch_interval, L1_LIFETIME_MAX};

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub max_per_user: u32,
    /// Requests with this session's token and another fingerprint that end the session.
    pub max_fingerprint_mismatches: u32,
    pub capacity: u64,
}

/// One admin session.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub user: Arc<str>,
    pub fingerprint: Fingerprint,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the absolute cap, also the `exp` of every token of this session.
    pub expires_at: i64,
    /// The last admitted request: milliseconds since the store's start (memory store), or
    /// Unix milliseconds on the injected clock (shared store, comparable across replicas).
    last_active_ms: AtomicU64,
    /// Requests that carried this session's token with another fingerprint.
    fingerprint_mismatches: std::sync::atomic::AtomicU32,
    pin: Mutex<PinState>,
    /// Shared store: Unix ms when this copy was read from Redis (0 in the memory store).
    loaded_at_ms: i64,
    /// Shared store: the activity time Redis last heard of (Unix ms).
    flushed_ms: AtomicI64,
}

/// PIN state of a session (the PIN itself is an argon2id hash). `Debug` shows whether a
/// PIN is set, never its hash.
#[derive(Default, Clone)]
pub struct PinState {
    pub hash: Option<String>,
    /// Consecutive wrong PIN attempts.
    pub failures: u32,
}

impl std::fmt::Debug for PinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinState")
            .field("set", &self.hash.is_some())
            .field("failures", &self.failures)
            .finish()
    }
}

impl Session {
    /// A copy of the PIN state (the lock is released before returning).
    pub fn pin(&self) -> PinState {
        self.pin.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Updates the PIN state under its lock.
    pub fn update_pin<R>(&self, f: impl FnOnce(&mut PinState) -> R) -> Option<R> {
        self.pin.lock().ok().map(|mut p| f(&mut p))
    }
}

/// Sessions per user, oldest first (for `max_per_user`).
struct UserIndex {
    users: HashMap<Arc<str>, VecDeque<SessionId>>,
    /// Size of `users` at which the next sweep of users without live sessions runs.
    sweep_at: usize,
}

/// Why a session ended on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    LoggedOut,
    Evicted,
    /// Too many requests presented the wrong fingerprint: the token is in other hands.
    FingerprintMismatches,
}

/// Result of looking a session up.
#[derive(Debug, Clone)]
pub enum Lookup {
    Active(Arc<Session>),
    /// Logged out or evicted: the token is dead (`session-invalid`).
    Ended(Ended),
    /// Idle expiry, absolute cap, or unknown to this store (`session-expired`).
    Expired,
    /// The shared session storage cannot be reached: fail closed (`session-invalid`).
    Unavailable,
}

/// Cheap-to-clone handle on the session store.
#[derive(Clone)]
pub struct SessionStore {
    sessions: Cache<SessionId, Arc<Session>>,
    tombstones: Cache<SessionId, Ended>,
    by_user: Arc<Mutex<UserIndex>>,
    /// End signals for sessions that have open WebSockets (logout closes them).
    watchers: Arc<Mutex<HashMap<SessionId, watch::Sender<bool>>>>,
    settings: Arc<SessionSettings>,
    clock: Clock,
    /// Monotonic origin of `last_active_ms` (on the injected clock).
    started: TokioInstant,
    /// The shared L2; `None` keeps everything in this process.
    shared: Option<RedisSessions>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("sessions", &self.sessions.entry_count())
            .finish_non_exhaustive()
    }
}

struct AbsoluteCap {
    clock: Clock,
}

impl Expiry<SessionId, Arc<Session>> for AbsoluteCap {
    fn expire_after_create(
        &self,
        _key: &SessionId,
        value: &Arc<Session>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let left = (value.expires_at - self.clock.now()).max(0) as u64;
        Some(Duration::from_secs(left))
    }
}

impl SessionStore {
    /// Sessions in this process only.
    pub fn new(settings: &SessionSettings, clock: Clock) -> Self {
        let watchers: Arc<Mutex<HashMap<SessionId, watch::Sender<bool>>>> = Arc::default();
        let on_removal = watchers.clone();
        let sessions = Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_idle(settings.idle_timeout)
            .expire_after(AbsoluteCap {
                clock: clock.clone(),
            })
            .eviction_listener(move |id: Arc<SessionId>, _s, cause: RemovalCause| {
                // Idle expiry, the cap, capacity eviction or an explicit end: wake its sockets.
                if cause != RemovalCause::Replaced {
                    signal_end(&on_removal, &id);
                }
            })
            .build();
        let tombstones = Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_live(settings.absolute_timeout)
            .build();
        SessionStore {
            sessions,
            tombstones,
            by_user: Arc::new(Mutex::new(UserIndex {
                users: HashMap::new(),
                sweep_at: 1024,
            })),
            watchers,
            settings: Arc::new(settings.clone()),
            started: clock.instant(),
            clock,
            shared: None,
        }
    }

    /// Sessions shared by every replica on `fleet`'s Redis, with this process's moka cache
    /// as an L1 that keeps a record for a short while ([`L1_LIFETIME_MAX`] at most).
    pub fn with_fleet(settings: &SessionSettings, fleet: Fleet, clock: Clock) -> Self {
        let shared = RedisSessions::new(fleet, settings);
        let sessions = Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_live(shared.l1_lifetime)
            .build();
        SessionStore {
            sessions,
            tombstones: Cache::builder().max_capacity(1).build(),
            by_user: Arc::new(Mutex::new(UserIndex {
                users: HashMap::new(),
                sweep_at: 1024,
            })),
            watchers: Arc::default(),
            settings: Arc::new(settings.clone()),
            started: clock.instant(),
            clock,
            shared: Some(shared),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock
            .instant()
            .saturating_duration_since(self.started)
            .as_millis() as u64
    }

    /// Records an admitted request (or a client WebSocket message) as session activity.
    /// With a shared store, a due write to Redis runs in the background
    /// ([`SessionStore::record_activity`] awaits it instead).
    pub fn touch(&self, session: &Session) {
        if self.shared.is_some() {
            if let Some(flush) = self.touch_shared(session) {
                tokio::spawn(flush);
            }
            return;
        }
        session
            .last_active_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// Like [`SessionStore::touch`], waiting for a due write to Redis (admission uses it,
    /// so the next request on another replica sees the activity).
    pub async fn record_activity(&self, session: &Session) {
        match self.touch_shared(session) {
            Some(flush) if self.shared.is_some() => Box::pin(flush).await,
            _ => self.touch(session),
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Creates a session for `user` bound to `fingerprint`; ends the user's oldest sessions
    /// beyond `max_per_user` (fleet-wide with a shared store). Fails only when the shared
    /// store cannot be reached.
    pub async fn try_create(
        &self,
        user: &str,
        fingerprint: &str,
    ) -> Result<Arc<Session>, StoreError> {
        match &self.shared {
            Some(shared) => self.create_shared(shared, user, fingerprint).await,
            None => Ok(self.create_in_memory(user, fingerprint).await),
        }
    }

    /// [`SessionStore::try_create`] for the memory store (benches and tests). With a shared
    /// store that cannot be reached, the session returned is stored nowhere: every lookup
    /// of it fails.
    pub async fn create(&self, user: &str, fingerprint: &str) -> Arc<Session> {
        if self.shared.is_some() {
            return match self.try_create(user, fingerprint).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %crate::observability::error_chain(&e), "session not stored");
                    Arc::new(self.new_session(user, fingerprint))
                }
            };
        }
        self.create_in_memory(user, fingerprint).await
    }

    async fn create_in_memory(&self, user: &str, fingerprint: &str) -> Arc<Session> {
        let session = Arc::new(self.new_session(user, fingerprint));
        self.sessions.insert(session.id, session.clone()).await;
        let evicted = self.track(&session);
        for id in evicted {
            self.end(&id, Ended::Evicted).await;
        }
        session
    }

    fn new_session(&self, user: &str, fingerprint: &str) -> Session {
        let now = self.clock.now();
        Session {
            id: SessionId::random(),
            user: Arc::from(user),
            fingerprint: Fingerprint::of(fingerprint),
            created_at: now,
            expires_at: now + self.settings.absolute_timeout.as_secs() as i64,
            last_active_ms: AtomicU64::new(self.now_ms()),
            fingerprint_mismatches: std::sync::atomic::AtomicU32::new(0),
            pin: Mutex::new(PinState::default()),
            loaded_at_ms: 0,
            flushed_ms: AtomicI64::new(0),
        }
    }

    /// Records the session under its user and returns the ids that exceed the limit.
    fn track(&self, session: &Session) -> Vec<SessionId> {
        let max = self.settings.max_per_user as usize;
        let Ok(mut by_user) = self.by_user.lock() else {
            return Vec::new();
        };
        // Forget users whose sessions all expired, so the map stays bounded. The sweep runs
        // when the map has doubled since the last one: amortised O(1) per login.
        if by_user.users.len() > by_user.sweep_at {
            by_user
                .users
                .retain(|_, ids| ids.iter().any(|id| self.sessions.contains_key(id)));
            by_user.sweep_at = (by_user.users.len() * 2).max(1024);
        }
        let ids = by_user.users.entry(session.user.clone()).or_default();
        ids.retain(|id| self.sessions.contains_key(id));
        ids.push_back(session.id);
        let mut evicted = Vec::new();
        while ids.len() > max {
            if let Some(old) = ids.pop_front() {
                evicted.push(old);
            }
        }
        evicted
    }

    /// Looks a session up. This is not activity: call [`SessionStore::touch`] once the
    /// request is admitted.
    pub async fn lookup(&self, id: &SessionId) -> Lookup {
        if let Some(shared) = &self.shared {
            // Boxed, like the other rare or large branches below: the in-process lookup
            // is every admin request's, and its future would otherwise carry their size.
            return Box::pin(self.lookup_shared(shared, id)).await;
        }
        let idle_ms = self.settings.idle_timeout.as_millis() as u64;
        match self.sessions.get(id).await {
            Some(session)
                if session.expires_at > self.clock.now()
                    && self
                        .now_ms()
                        .saturating_sub(session.last_active_ms.load(Ordering::Relaxed))
                        <= idle_ms =>
            {
                Lookup::Active(session)
            }
            Some(_) => {
                Box::pin(self.sessions.invalidate(id)).await;
                Lookup::Expired
            }
            None => match self.tombstones.get(id).await {
                Some(ended) => Lookup::Ended(ended),
                None => Lookup::Expired,
            },
        }
    }

    /// Counts a request that carried `session`'s token with another fingerprint; the
    /// `max_fingerprint_mismatches`th ends the session (its token is in other hands).
    /// With a shared store the count is kept in Redis, so every replica adds to it.
    pub async fn fingerprint_mismatch(&self, session: &Session) {
        let n = match &self.shared {
            Some(shared) => match shared.fingerprint_mismatch(&session.id).await {
                Ok(n) => n,
                Err(e) => {
                    // The request is refused anyway; the count resumes when Redis is back.
                    tracing::warn!(session = ?session.id, error = %crate::observability::error_chain(&e), "fingerprint mismatch not counted");
                    return;
                }
            },
            None => {
                session
                    .fingerprint_mismatches
                    .fetch_add(1, Ordering::Relaxed)
                    + 1
            }
        };
        if n >= self.settings.max_fingerprint_mismatches {
            tracing::warn!(user = %session.user, session = ?session.id, "repeated fingerprint mismatches; session ended");
            self.end(&session.id, Ended::FingerprintMismatches).await;
        }
    }

    /// Ends a session on purpose (logout, eviction). With a shared store, an end that
    /// cannot be written is logged; [`SessionStore::try_end`] reports it instead.
    pub async fn end(&self, id: &SessionId, why: Ended) {
        if let Err(e) = self.try_end(id, why).await {
            tracing::warn!(session = ?id, error = %crate::observability::error_chain(&e), "session end not stored");
        }
    }

    /// Ends a session on purpose everywhere: with a shared store it is deleted in Redis
    /// and the end is published to every replica.
    pub async fn try_end(&self, id: &SessionId, why: Ended) -> Result<(), StoreError> {
        if let Some(shared) = &self.shared {
            self.sessions.invalidate(id).await;
            signal_end(&self.watchers, id);
            return shared.end(id, why).await;
        }
        self.tombstones.insert(*id, why).await;
        self.sessions.invalidate(id).await;
        Ok(())
    }

    /// A receiver that turns `true` when the session ends for any reason (logout, eviction,
    /// idle expiry, cap). Used to close the session's WebSockets.
    pub fn watch_end(&self, id: &SessionId) -> watch::Receiver<bool> {
        let Ok(mut watchers) = self.watchers.lock() else {
            return watch::channel(true).1;
        };
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        watchers
            .entry(*id)
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// Applies pending expirations now (moka does this lazily); run periodically so idle
    /// sessions with open sockets are noticed without traffic.
    pub async fn run_pending_tasks(&self) {
        self.sessions.run_pending_tasks().await;
        if self.shared.is_some() {
            self.check_watched().await;
        }
    }

    /// Number of live sessions (approximate, for metrics and tests).
    pub fn len(&self) -> u64 {
        self.sessions.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn signal_end(watchers: &Mutex<HashMap<SessionId, watch::Sender<bool>>>, id: &SessionId) {
    if let Ok(mut watchers) = watchers.lock() {
        if let Some(tx) = watchers.remove(id) {
            let _ = tx.send(true);
        }
    }
}

#[cfg(test)]
mod tests;
