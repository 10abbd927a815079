//! The Redis (or Valkey) connection several gateway replicas share (`sessions.store.redis`).
//!
//! One [`Fleet`] handle per process, built once from [`RedisSettings`] and cloned into the
//! session store (`session/redis.rs`) and the upstream broker (`upstream/shared.rs`):
//!
//! * **Commands** go through a `redis` [`ConnectionManager`] (one multiplexed connection that
//!   reconnects by itself), each under `command_timeout`, so a dead Redis costs a request at
//!   most that long and never hangs it. Every failure is a [`FleetError`]; callers fail
//!   closed.
//! * **Events** (session ends, session updates, new upstream credentials) are published on
//!   one channel, `<key_prefix>events`. [`Fleet::spawn_subscriber`] keeps a subscription open
//!   (reconnecting with a bounded back-off) and hands every message, plus a
//!   [`Event::Resync`] whenever the subscription was (re)established or lost, to a broadcast
//!   channel the session store and the broker listen to.
//! * **Login throttling** counts and locks through [`Fleet::script`] and [`Fleet::query`]
//!   (`src/ratelimit/counts.rs`).
//!
//! Keys are built inside Lua scripts from the prefix, so a Redis Cluster is not supported
//! (one primary, or Sentinel in front of one, is).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, Script};
use tokio::sync::broadcast;

use crate::secret::Secret;

/// `sessions.store.redis`. `Debug` never shows the URL (it may hold a password).
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://…` or `rediss://…` (TLS).
    pub url: Secret,
    pub key_prefix: String,
    /// Extra root certificates (PEM) for `rediss://`; the system roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Key material the upstream credentials are encrypted with at rest (the gateway's
    /// signing secret, or its signing key file).
    pub signing_secret: Secret,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("key_prefix", &self.key_prefix)
            .field("tls", &self.url.expose().starts_with("rediss://"))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a Redis operation failed (the text never contains the URL or a value).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot set up the Redis client")]
    Setup(#[source] redis::RedisError),
    #[error("Redis command failed")]
    Command(#[source] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Something another replica (or this one) published, or a gap in what we heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session ended (`end:<sid>:<why>`).
    SessionEnded { sid: String, why: String },
    /// A session's record changed (`upd:<sid>`): drop any cached copy.
    SessionUpdated { sid: String },
    /// New upstream credentials were stored (`creds`).
    Credentials,
    /// The subscription was (re)established or lost: messages may have been missed.
    Resync,
}

impl Event {
    fn parse(payload: &str) -> Option<Event> {
        if payload == "creds" {
            return Some(Event::Credentials);
        }
        if let Some(rest) = payload.strip_prefix("end:") {
            let (sid, why) = rest.split_once(':')?;
            return Some(Event::SessionEnded {
                sid: sid.to_owned(),
                why: why.to_owned(),
            });
        }
        payload
            .strip_prefix("upd:")
            .map(|sid| Event::SessionUpdated {
                sid: sid.to_owned(),
            })
    }
}

struct Inner {
    client: Client,
    manager: ConnectionManager,
    prefix: String,
    command_timeout: Duration,
    /// Last known state of the connection (for readiness and logs; decisions use results).
    available: AtomicBool,
    events: broadcast::Sender<Event>,
    signing_secret: Secret,
    /// Counts failed commands (`redis_errors_total`) once the gateway attached its metrics.
    metrics: std::sync::OnceLock<crate::metrics::Metrics>,
}

/// Cheap-to-clone handle on the shared Redis.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("prefix", &self.inner.prefix)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Builds the client; connects lazily (a Redis that is down at start makes the gateway
    /// not ready, not fail to start).
    pub fn new(settings: &RedisSettings) -> Result<Fleet, FleetError> {
        let url = settings.url.expose();
        let client = match &settings.ca_pem {
            Some(pem) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => Client::open(url),
        }
        .map_err(FleetError::Setup)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(FleetError::Setup)?;
        let (events, _) = broadcast::channel(1024);
        Ok(Fleet {
            inner: Arc::new(Inner {
                client,
                manager,
                prefix: settings.key_prefix.clone(),
                command_timeout: settings.command_timeout,
                available: AtomicBool::new(false),
                events,
                signing_secret: settings.signing_secret.clone(),
                metrics: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Counts this handle's failed commands in `metrics` from now on.
    pub fn attach_metrics(&self, metrics: crate::metrics::Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// `<key_prefix><suffix>`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.inner.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The channel every replica listens to.
    pub fn channel(&self) -> String {
        self.key("events")
    }

    pub(crate) fn signing_secret(&self) -> &Secret {
        &self.inner.signing_secret
    }

    /// Whether the last command or subscription attempt reached Redis.
    pub fn is_available(&self) -> bool {
        self.inner.available.load(Ordering::Relaxed)
    }

    /// Runs one command (or pipeline) under the command timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, FleetError> {
        let mut conn = self.inner.manager.clone();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a pipeline (one round trip) under the command timeout.
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, FleetError> {
        let mut conn = self.inner.manager.clone();
        self.bounded(async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Runs a Lua script (EVALSHA, loading it after a Redis restart) under the timeout.
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, FleetError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let mut conn = self.inner.manager.clone();
        self.bounded(async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// `PING`: for readiness.
    pub async fn ping(&self) -> Result<(), FleetError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Receives every event from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, FleetError> {
        let limit = self.inner.command_timeout;
        let result = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(FleetError::Command(e)),
            Err(_) => Err(FleetError::Timeout(limit)),
        };
        if result.is_err() {
            if let Some(m) = self.inner.metrics.get() {
                m.redis_error();
            }
        }
        let up = match &result {
            Ok(_) => true,
            // A script error or a wrong type is Redis answering: it is up.
            Err(FleetError::Command(e)) => {
                !(e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout())
            }
            Err(_) => false,
        };
        self.set_available(up);
        result
    }

    fn set_available(&self, up: bool) {
        let was = self.inner.available.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("session storage (Redis) reachable");
            } else {
                tracing::warn!("session storage (Redis) unreachable; failing closed");
            }
        }
    }

    /// Keeps a subscription to [`Fleet::channel`] open until the task is aborted, and
    /// forwards what it hears. Every (re)connection and every loss sends [`Event::Resync`].
    pub fn spawn_subscriber(&self) -> tokio::task::JoinHandle<()> {
        let fleet = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                match fleet.subscribe_once().await {
                    Ok(()) => backoff = Duration::from_millis(50),
                    Err(e) => {
                        tracing::debug!(error = %crate::observability::error_chain(&e), "Redis subscription failed");
                    }
                }
                fleet.set_available(false);
                let _ = fleet.inner.events.send(Event::Resync);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        })
    }

    /// One subscription, until the connection drops.
    async fn subscribe_once(&self) -> Result<(), FleetError> {
        let connect = self.inner.client.get_async_pubsub();
        let mut pubsub = self.bounded(connect).await?;
        let channel = self.channel();
        self.bounded(pubsub.subscribe(&channel)).await?;
        // Anything published while we were away is lost: caches start over.
        let _ = self.inner.events.send(Event::Resync);
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some(event) = Event::parse(&payload) {
                let _ = self.inner.events.send(event);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        assert_eq!(
            Event::parse("end:abc:logout"),
            Some(Event::SessionEnded {
                sid: "abc".into(),
                why: "logout".into()
            })
        );
        assert_eq!(
            Event::parse("upd:abc"),
            Some(Event::SessionUpdated { sid: "abc".into() })
        );
        assert_eq!(Event::parse("creds"), Some(Event::Credentials));
        assert_eq!(Event::parse("nonsense"), None);
    }

    #[test]
    fn debug_hides_the_url() {
        let s = RedisSettings {
            url: Secret::new("redis://:hunter2@127.0.0.1:1/0"),
            key_prefix: "p:".into(),
            ca_pem: None,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            signing_secret: Secret::new("s"),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
