//! The session store's L1/L2 logic when sessions are shared through Redis, and the PIN
//! updates both stores offer.
//!
//! * **Lookup**: an L1 copy younger than the L1 lifetime (on the injected clock) that is
//!   neither past its cap nor idle is served without a round trip. Anything else (no copy,
//!   an old copy, a copy that looks idle because the activity happened on another replica)
//!   reads the record (`HGETALL`). Idle and cap are decided against the injected clock with
//!   the record's last activity, so every replica decides alike; Redis's TTL only collects
//!   garbage.
//! * **Touch**: local at once; written to Redis when the last write is at least one touch
//!   interval old. A session may therefore end up to one touch interval early (its
//!   recorded activity lags), never late.
//! * **Events**: an end heard from any replica drops the L1 copy and wakes the session's
//!   WebSockets; an update drops the copy; a (re)subscription or a lost subscription drops
//!   the whole L1, since messages may have been missed.
//! * **Failure**: a record that cannot be read is [`Lookup::Unavailable`] (fail closed) and
//!   the copy is dropped; nothing is ever deleted because Redis errored.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::redis::{Loaded, RedisSessions};
use super::{signal_end, Lookup, Session, SessionId, SessionStore, StoreError};
use crate::fleet::Event;

impl SessionStore {
    /// Whether the session storage answers (always true for the memory store).
    pub async fn check_available(&self) -> bool {
        match &self.shared {
            Some(shared) => shared.fleet.ping().await.is_ok(),
            None => true,
        }
    }

    /// Drops every L1 copy (a resubscription does it; benchmarks use it to measure misses).
    pub fn clear_local_cache(&self) {
        self.sessions.invalidate_all();
    }

    /// Listens to the fleet's events until aborted (shared store only).
    pub fn spawn_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        let shared = self.shared.as_ref()?;
        let mut events = shared.fleet.events();
        let store = self.clone();
        Some(tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    // Fell behind: some ends may be lost; start over.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Event::Resync,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                store.apply(event).await;
            }
        }))
    }

    async fn apply(&self, event: Event) {
        match event {
            Event::SessionEnded { sid, .. } => {
                if let Some(id) = SessionId::from_hex(&sid) {
                    self.sessions.invalidate(&id).await;
                    signal_end(&self.watchers, &id);
                }
            }
            Event::SessionUpdated { sid } => {
                if let Some(id) = SessionId::from_hex(&sid) {
                    self.sessions.invalidate(&id).await;
                }
            }
            Event::Resync => self.clear_local_cache(),
            Event::Credentials => {}
        }
    }

    /// Sessions with open sockets whose session expired or ended get their sockets closed
    /// (a storage outage does not close them; their next message is refused instead).
    pub(super) async fn check_watched(&self) {
        let ids: Vec<SessionId> = match self.watchers.lock() {
            Ok(mut w) => {
                w.retain(|_, tx| tx.receiver_count() > 0);
                w.keys().copied().collect()
            }
            Err(_) => return,
        };
        for id in ids {
            if matches!(self.lookup(&id).await, Lookup::Expired | Lookup::Ended(_)) {
                signal_end(&self.watchers, &id);
            }
        }
    }

    pub(super) async fn create_shared(
        &self,
        shared: &RedisSessions,
        user: &str,
        fingerprint: &str,
    ) -> Result<Arc<Session>, StoreError> {
        let mut session = self.new_session(user, fingerprint);
        let now_ms = self.clock.now_ms();
        session.loaded_at_ms = now_ms;
        session
            .last_active_ms
            .store(now_ms as u64, Ordering::Relaxed);
        session.flushed_ms.store(now_ms, Ordering::Relaxed);
        let evicted = shared.create(&session, now_ms).await?;
        let session = Arc::new(session);
        self.sessions.insert(session.id, session.clone()).await;
        for id in evicted {
            self.sessions.invalidate(&id).await;
            signal_end(&self.watchers, &id);
        }
        Ok(session)
    }

    pub(super) async fn lookup_shared(&self, shared: &RedisSessions, id: &SessionId) -> Lookup {
        let now_ms = self.clock.now_ms();
        let lifetime = shared.l1_lifetime.as_millis() as i64;
        let cached = self.sessions.get(id).await;
        if let Some(s) = &cached {
            if now_ms - s.loaded_at_ms <= lifetime && self.live_at(s, now_ms) {
                return Lookup::Active(s.clone());
            }
        }
        let loaded = match shared.load(id, now_ms).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %crate::observability::error_chain(&e), "session lookup failed");
                self.sessions.invalidate(id).await;
                return Lookup::Unavailable;
            }
        };
        match loaded {
            Loaded::Record(session) => {
                if let Some(c) = &cached {
                    // Local activity Redis has not heard of yet.
                    let local = c.last_active_ms.load(Ordering::Relaxed);
                    session.last_active_ms.fetch_max(local, Ordering::Relaxed);
                }
                if !self.live_at(&session, now_ms) {
                    self.sessions.invalidate(id).await;
                    return Lookup::Expired;
                }
                let session = Arc::new(session);
                self.sessions.insert(*id, session.clone()).await;
                Lookup::Active(session)
            }
            Loaded::Ended(why) => {
                self.sessions.invalidate(id).await;
                Lookup::Ended(why)
            }
            Loaded::Missing => {
                self.sessions.invalidate(id).await;
                Lookup::Expired
            }
        }
    }

    /// Shared store: neither past the cap nor idle at `now_ms` (Unix ms).
    fn live_at(&self, s: &Session, now_ms: i64) -> bool {
        let idle_ms = self.settings.idle_timeout.as_millis() as i64;
        let last = s.last_active_ms.load(Ordering::Relaxed) as i64;
        s.expires_at > self.clock.now() && now_ms - last <= idle_ms
    }

    /// Shared store: records activity now and returns the write to Redis when one is due
    /// (`None` for the memory store or when the last write is recent enough).
    pub(super) fn touch_shared(
        &self,
        session: &Session,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let shared = self.shared.as_ref()?;
        let now_ms = self.clock.now_ms();
        session
            .last_active_ms
            .fetch_max(now_ms as u64, Ordering::Relaxed);
        let flushed = session.flushed_ms.load(Ordering::Relaxed);
        if now_ms - flushed < shared.touch_interval_ms {
            return None;
        }
        // One writer per interval, however many requests race here.
        session
            .flushed_ms
            .compare_exchange(flushed, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let shared = shared.clone();
        let (id, expires_at) = (session.id, session.expires_at);
        Some(async move {
            if let Err(e) = shared.touch(&id, expires_at, now_ms).await {
                tracing::debug!(error = %crate::observability::error_chain(&e), "session activity not written");
            }
        })
    }

    /// Sets the session's PIN hash once; `Ok(false)` when one was set already.
    pub async fn set_pin(&self, session: &Session, hash: String) -> Result<bool, StoreError> {
        if let Some(shared) = &self.shared {
            if !shared.set_pin(&session.id, &hash).await? {
                return Ok(false);
            }
        }
        let stored = session.update_pin(|p| {
            if p.hash.is_some() {
                return false;
            }
            p.hash = Some(hash);
            p.failures = 0;
            true
        });
        Ok(stored == Some(true) || self.shared.is_some())
    }

    /// Counts a wrong PIN (fleet-wide with a shared store); returns the consecutive count.
    pub async fn pin_failed(&self, session: &Session) -> Result<u32, StoreError> {
        let local = session
            .update_pin(|p| {
                p.failures += 1;
                p.failures
            })
            .unwrap_or(u32::MAX);
        match &self.shared {
            Some(shared) => shared.pin_failed(&session.id).await,
            None => Ok(local),
        }
    }

    /// A right PIN: the count of wrong ones starts over.
    pub async fn pin_verified(&self, session: &Session) -> Result<(), StoreError> {
        let had = session
            .update_pin(|p| std::mem::take(&mut p.failures))
            .unwrap_or(0);
        match &self.shared {
            Some(shared) if had > 0 => shared.pin_reset(&session.id).await,
            _ => Ok(()),
        }
    }
}
