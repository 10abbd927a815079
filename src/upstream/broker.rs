//! The brokered upstream admin session (docs/design.md §1).
//!
//! ARCP only accepts admin requests that carry the token *and* fingerprint of a login it
//! served itself, allows five sessions per username and expires them absolutely. The broker
//! therefore logs in upstream once with the service account and a fingerprint of its own,
//! and every admitted admin request is sent with that pair.
//!
//! * **Single flight**: one login at a time (a tokio mutex around the login); callers that
//!   queued behind it find fresh credentials and return without logging in again.
//! * **Refresh**: a background task logs in again `session_refresh_margin` before upstream's
//!   `expires_in` runs out.
//! * **Re-login after a 401**: [`Broker::relogin`] with the generation that failed; if
//!   someone already replaced it, the newer credentials are returned.
//! * **Back-off**: failed logins (wrong credentials, upstream down) back off exponentially up
//!   to `login_backoff_max`; meanwhile callers get [`BrokerError::Unavailable`] at once
//!   instead of a login storm, and readiness is false.
//!
//! * **Fleet-wide** (`sessions.store.redis`): the credentials are shared through Redis
//!   (`upstream/shared.rs`) and one replica at a time logs in, under a Redis lock; the
//!   others adopt what it stored. Single flight holds across the fleet.
//!
//! The upstream token never leaves the gateway: it only goes into upstream requests (and,
//! encrypted, into the shared store).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::client::{UpstreamClient, UpstreamError};
use super::shared::SharedCredentials;
use super::{ServiceAccount, UpstreamSettings};
use crate::arcp::X_CLIENT_FINGERPRINT;
use crate::body::Body;
use crate::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no upstream service account is configured")]
    NotConfigured,
    #[error("upstream admin login is unavailable; next attempt in {retry_after:?}")]
    Unavailable { retry_after: Duration },
    #[error("upstream login failed")]
    Login(#[source] LoginFailure),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    #[error("upstream rejected the service account credentials (status {0})")]
    Rejected(u16),
    #[error("upstream answered the login with status {0}")]
    Status(u16),
    #[error("upstream login response is not the expected JSON")]
    BadResponse,
    #[error("upstream login request failed")]
    Upstream(#[source] UpstreamError),
}

/// Credentials to put on an upstream admin request. `Debug` shows the generation only; the
/// `Authorization` value is also marked sensitive (HPACK never indexes it, and its own
/// `Debug` prints nothing).
#[derive(Clone)]
pub struct UpstreamCredentials {
    pub authorization: HeaderValue,
    pub fingerprint: HeaderValue,
    /// Increases with every login; a request that got 401 reports the one it used.
    pub generation: u64,
}

impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Current {
    creds: UpstreamCredentials,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Backoff {
    until: Option<Instant>,
    delay: Duration,
}

struct Inner {
    client: UpstreamClient,
    account: Option<ServiceAccount>,
    fingerprint: HeaderValue,
    margin: Duration,
    backoff_max: Duration,
    /// Read on every admin request by every worker: a lock-free load, no shared write.
    current: ArcSwapOption<Current>,
    backoff: RwLock<Backoff>,
    login_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    generation: std::sync::atomic::AtomicU64,
    clock: Clock,
    metrics: std::sync::OnceLock<crate::metrics::Metrics>,
    /// Credentials shared with the other replicas; `None` for a lone gateway.
    shared: Option<SharedCredentials>,
    /// Woken when another replica stored credentials or released the login lock.
    shared_changed: tokio::sync::Notify,
}

/// Cheap-to-clone handle.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct LoginResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl Broker {
    pub fn new(client: UpstreamClient, settings: &UpstreamSettings, clock: Clock) -> Self {
        Self::build(client, settings, clock, None)
    }

    /// A broker that shares one upstream session with every replica on `shared`'s Redis.
    pub fn shared(
        client: UpstreamClient,
        settings: &UpstreamSettings,
        clock: Clock,
        shared: SharedCredentials,
    ) -> Self {
        Self::build(client, settings, clock, Some(shared))
    }

    fn build(
        client: UpstreamClient,
        settings: &UpstreamSettings,
        clock: Clock,
        shared: Option<SharedCredentials>,
    ) -> Self {
        let fp = settings
            .service_account
            .as_ref()
            .and_then(|a| a.fingerprint.clone())
            .unwrap_or_else(|| {
                let n: u64 = rand::random();
                format!("arcp-gateway-{n:016x}")
            });
        let fingerprint =
            HeaderValue::from_str(&fp).unwrap_or(HeaderValue::from_static("arcp-gateway"));
        Broker {
            inner: Arc::new(Inner {
                client,
                account: settings.service_account.clone(),
                fingerprint,
                margin: settings.session_refresh_margin,
                backoff_max: settings.login_backoff_max,
                current: ArcSwapOption::empty(),
                backoff: RwLock::new(Backoff {
                    until: None,
                    delay: Duration::from_millis(500),
                }),
                login_lock: tokio::sync::Mutex::new(()),
                ready: AtomicBool::new(false),
                generation: std::sync::atomic::AtomicU64::new(0),
                clock,
                metrics: std::sync::OnceLock::new(),
                shared,
                shared_changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Counts this broker's upstream logins in `metrics` (the first call wins).
    pub fn attach_metrics(&self, metrics: crate::metrics::Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Whether the last upstream login succeeded and is still valid.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// Valid credentials, logging in if there are none.
    pub async fn credentials(&self) -> Result<UpstreamCredentials, BrokerError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        // Boxed: a login is rare and its future large; every admin request's future would
        // otherwise carry (and move) its size.
        Box::pin(self.login_once(None)).await
    }

    /// New credentials after upstream refused those of `generation`.
    pub async fn relogin(&self, generation: u64) -> Result<UpstreamCredentials, BrokerError> {
        self.login_once(Some(generation)).await
    }

    fn fresh(&self) -> Option<UpstreamCredentials> {
        let guard = self.inner.current.load();
        let current = guard.as_ref()?;
        (self.inner.clock.instant() < current.expires_at).then(|| current.creds.clone())
    }

    fn current_generation(&self) -> Option<u64> {
        let guard = self.inner.current.load();
        guard.as_ref().map(|c| c.creds.generation)
    }

    /// One login at a time. `stale` forces a login unless credentials newer than that
    /// generation appeared while waiting.
    async fn login_once(&self, stale: Option<u64>) -> Result<UpstreamCredentials, BrokerError> {
        let account = self
            .inner
            .account
            .as_ref()
            .ok_or(BrokerError::NotConfigured)?;
        let _guard = self.inner.login_lock.lock().await;
        match stale {
            None => {
                if let Some(c) = self.fresh() {
                    return Ok(c);
                }
            }
            Some(old) => {
                if let Some(c) = self.fresh().filter(|c| c.generation > old) {
                    return Ok(c);
                }
            }
        }
        if let Some(shared) = &self.inner.shared {
            return self.login_shared(shared, account, stale).await;
        }
        self.login_backing_off(account, stale.is_some()).await
    }

    /// One upstream login unless backing off after failures.
    async fn login_backing_off(
        &self,
        account: &ServiceAccount,
        relogin: bool,
    ) -> Result<UpstreamCredentials, BrokerError> {
        if let Some(until) = self.backoff_until() {
            let now = self.inner.clock.instant();
            if until > now {
                return Err(BrokerError::Unavailable {
                    retry_after: until - now,
                });
            }
        }
        let result = self.login(account).await;
        if let Some(m) = self.inner.metrics.get() {
            m.upstream_login(relogin, result.is_ok());
        }
        match result {
            Ok(creds) => Ok(creds),
            Err(failure) => {
                self.inner.ready.store(false, Ordering::Relaxed);
                let delay = self.bump_backoff();
                match &failure {
                    LoginFailure::Rejected(_) => tracing::error!(
                        username = %account.username,
                        retry_in = ?delay,
                        "upstream rejected the service account credentials; check upstream.service_account"
                    ),
                    other => {
                        tracing::warn!(error = %crate::observability::error_chain(other), retry_in = ?delay, "upstream login failed")
                    }
                }
                Err(BrokerError::Login(failure))
            }
        }
    }

    fn backoff_until(&self) -> Option<Instant> {
        self.inner.backoff.read().ok().and_then(|b| b.until)
    }

    fn bump_backoff(&self) -> Duration {
        let Ok(mut b) = self.inner.backoff.write() else {
            return self.inner.backoff_max;
        };
        let delay = b.delay;
        b.until = Some(self.inner.clock.instant() + delay);
        b.delay = (delay * 2).min(self.inner.backoff_max);
        delay
    }

    async fn login(&self, account: &ServiceAccount) -> Result<UpstreamCredentials, LoginFailure> {
        let body = serde_json::json!({
            "username": account.username,
            "password": account.password.expose(),
        });
        let uri = self
            .inner
            .client
            .uri_for(http::uri::PathAndQuery::from_static("/auth/login"));
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(X_CLIENT_FINGERPRINT.clone(), self.inner.fingerprint.clone())
            .header(http::header::USER_AGENT, "arcp-gateway")
            .body(Body::full(Bytes::from(body.to_string())))
            .map_err(|_| LoginFailure::BadResponse)?;
        let started = self.inner.clock.instant();
        let response = self
            .inner
            .client
            .send(req)
            .await
            .map_err(LoginFailure::Upstream)?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|_| LoginFailure::BadResponse)?
            .to_bytes();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(LoginFailure::Rejected(status.as_u16()));
        }
        if !status.is_success() {
            return Err(LoginFailure::Status(status.as_u16()));
        }
        let parsed: LoginResponse =
            serde_json::from_slice(&bytes).map_err(|_| LoginFailure::BadResponse)?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", parsed.access_token))
            .map_err(|_| LoginFailure::BadResponse)?;
        authorization.set_sensitive(true);
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(1800));
        // Refresh `margin` before the end, but never sooner than half the lifetime.
        let refresh_in = lifetime.saturating_sub(self.inner.margin).max(lifetime / 2);
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let creds = UpstreamCredentials {
            authorization,
            fingerprint: self.inner.fingerprint.clone(),
            generation,
        };
        self.inner.current.store(Some(Arc::new(Current {
            creds: creds.clone(),
            refresh_at: started + refresh_in,
            // Treat the session as gone a little early: upstream counts from its clock.
            expires_at: started + lifetime.saturating_sub(Duration::from_secs(5)),
        })));
        if let Ok(mut b) = self.inner.backoff.write() {
            b.until = None;
            b.delay = Duration::from_millis(500);
        }
        self.inner.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            generation,
            expires_in = lifetime.as_secs(),
            "upstream admin session established"
        );
        Ok(creds)
    }

    /// Waits until `at` on the injected clock, in steps of at most a second, so a clock
    /// that tests move forward is noticed without waiting the whole interval.
    async fn sleep_until(&self, at: Instant) {
        loop {
            let left = at.saturating_duration_since(self.inner.clock.instant());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
    }

    /// Keeps the upstream session fresh until the returned task is aborted.
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            if broker.inner.account.is_none() {
                return;
            }
            loop {
                let refresh_at = broker.inner.current.load().as_ref().map(|c| c.refresh_at);
                if let Some(at) = refresh_at {
                    broker.sleep_until(at).await;
                }
                let result = match broker.current_generation() {
                    Some(generation) => broker.relogin(generation).await,
                    None => broker.credentials().await,
                };
                if result.is_err() {
                    // Failures back off inside; wait until the next attempt is allowed.
                    let wait = broker
                        .backoff_until()
                        .map(|u| u.saturating_duration_since(broker.inner.clock.instant()))
                        .unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_millis(100));
                    tokio::time::sleep(wait).await;
                }
            }
        })
    }
}

mod fleet;
