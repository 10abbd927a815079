//! The broker's fleet-wide part (`sessions.store.redis`): credentials shared through Redis,
//! one login at a time across the replicas under a Redis lock, the others adopting it.

use super::*;
use crate::upstream::shared::{SharedRecord, LOCK_TTL};

impl Broker {
    /// Fleet-wide single flight: adopt newer shared credentials, else log in under the
    /// Redis lock and share the result, else wait for the lock holder (bounded rounds).
    pub(super) async fn login_shared(
        &self,
        shared: &SharedCredentials,
        account: &ServiceAccount,
        stale: Option<u64>,
    ) -> Result<UpstreamCredentials, BrokerError> {
        let unavailable = || BrokerError::Unavailable {
            retry_after: Duration::from_secs(1),
        };
        for _round in 0..4 {
            // Registered before looking, so a `creds` event in between is not missed.
            let changed = self.inner.shared_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(c) = self.adopt_newer(shared, stale).await? {
                return Ok(c);
            }
            let Some(token) = shared.lock().await.map_err(|_| unavailable())? else {
                let _ = tokio::time::timeout(LOCK_TTL, changed).await;
                continue;
            };
            // Someone may have stored credentials between our read and our lock.
            let result = match self.adopt_newer(shared, stale).await {
                Ok(Some(c)) => Ok(c),
                Ok(None) => match shared.next_generation().await {
                    Ok(g) => {
                        self.inner
                            .generation
                            .fetch_max(g.saturating_sub(1), Ordering::Relaxed);
                        let result = self.login_backing_off(account, stale.is_some()).await;
                        if let Some(record) = result.as_ref().ok().and_then(|_| self.export()) {
                            let ttl = Duration::from_millis(
                                (record.expires_at_ms - self.inner.clock.now_ms()).max(1) as u64,
                            );
                            if let Err(e) = shared.write(&record, ttl).await {
                                tracing::warn!(error = %crate::observability::error_chain(&e), "upstream session not shared");
                            }
                        }
                        result
                    }
                    Err(_) => Err(unavailable()),
                },
                Err(e) => Err(e),
            };
            let _ = shared.unlock(&token).await;
            return result;
        }
        Err(unavailable())
    }

    /// Takes the shared credentials if they are valid and newer than `stale`.
    async fn adopt_newer(
        &self,
        shared: &SharedCredentials,
        stale: Option<u64>,
    ) -> Result<Option<UpstreamCredentials>, BrokerError> {
        let record = shared.read().await.map_err(|_| BrokerError::Unavailable {
            retry_after: Duration::from_secs(1),
        })?;
        let now_ms = self.inner.clock.now_ms();
        let Some(record) = record
            .filter(|r| r.expires_at_ms > now_ms && stale.is_none_or(|old| r.generation > old))
        else {
            return Ok(None);
        };
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", record.token))
            .map_err(|_| BrokerError::Login(LoginFailure::BadResponse))?;
        authorization.set_sensitive(true);
        let fingerprint = HeaderValue::from_str(&record.fingerprint)
            .map_err(|_| BrokerError::Login(LoginFailure::BadResponse))?;
        let creds = UpstreamCredentials {
            authorization,
            fingerprint,
            generation: record.generation,
        };
        let at = |ms: i64| {
            self.inner.clock.instant() + Duration::from_millis((ms - now_ms).max(0) as u64)
        };
        self.inner
            .generation
            .fetch_max(record.generation, Ordering::Relaxed);
        self.inner.current.store(Some(Arc::new(Current {
            creds: creds.clone(),
            refresh_at: at(record.refresh_at_ms),
            expires_at: at(record.expires_at_ms),
        })));
        self.inner.ready.store(true, Ordering::Relaxed);
        tracing::debug!(
            generation = record.generation,
            "adopted the fleet's upstream admin session"
        );
        Ok(Some(creds))
    }

    /// The current credentials as the other replicas will read them.
    fn export(&self) -> Option<SharedRecord> {
        let guard = self.inner.current.load();
        let c = guard.as_ref()?;
        let now = self.inner.clock.instant();
        let now_ms = self.inner.clock.now_ms();
        let wall = |at: Instant| now_ms + at.saturating_duration_since(now).as_millis() as i64;
        Some(SharedRecord {
            token: c
                .creds
                .authorization
                .to_str()
                .ok()?
                .trim_start_matches("Bearer ")
                .to_owned(),
            fingerprint: c.creds.fingerprint.to_str().ok()?.to_owned(),
            generation: c.creds.generation,
            refresh_at_ms: wall(c.refresh_at),
            expires_at_ms: wall(c.expires_at),
        })
    }

    /// Wakes waiting logins whenever another replica shares credentials (until aborted).
    pub fn spawn_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        let shared = self.inner.shared.as_ref()?;
        let mut events = shared.fleet.events();
        let broker = self.clone();
        Some(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(crate::fleet::Event::Credentials)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        broker.inner.shared_changed.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }))
    }
}
