//! Configuration reload without dropping a request.
//!
//! A reload re-reads the file through the same loader `run` used (CLI overrides included),
//! then either takes effect whole or not at all:
//!
//! * **Invalid** file → refused with the `file:line:column` message `check-config` prints,
//!   logged, counted (`reloads_total{result="invalid"}`); the running configuration stays.
//! * **Refused** change → a key that cannot change while the gateway runs differs: listener
//!   addresses (and whether one has TLS), the admin address, the session store (`sessions:`),
//!   the audit file, the logging format, the login throttle (`auth.login`), the server's
//!   connection settings other than the body pace, and the upstream settings the connection
//!   pool or the brokered session were built from (`url`, `ca_file`, timeouts, pool sizes,
//!   `service_account`, refresh margin, back-off). The message names the key and its
//!   location; nothing is applied (`result="refused"`).
//! * Otherwise it is **applied**: TLS certificates are stored in each listener's
//!   [`CertStore`] (new handshakes get them; open connections keep theirs), the log level is
//!   swapped in the subscriber, and a new [`Snapshot`](crate::pipeline::Snapshot) (routes,
//!   users, token keys, limits, body pace, replay buffer) decides every request that starts
//!   from now on, while requests in flight finish on the one they started with.
//!
//! Triggers ([`spawn_triggers`]): SIGHUP, and a watch of the config file's *directory*
//! (Kubernetes swaps a `..data` symlink there, which a watch on the file itself misses),
//! debounced, acting only when the file's content hash changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, Settings};
use crate::metrics::ReloadResult;
use crate::observability::LevelHandle;
use crate::pipeline::{Snapshot, State};
use crate::tls::{CertStore, TlsError, TlsSettings};

/// Changes of the watched directory closer together than this count as one.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Re-reads the configuration (the same loader `run` used, overrides included).
pub type Loader = Arc<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// Why a reload did not take effect. The running configuration stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not load; the text is what `check-config` prints.
    #[error("{0}")]
    Invalid(ConfigError),
    /// It loads, but changes what cannot change while the gateway runs.
    #[error("{0}")]
    Refused(ConfigError),
    #[error("listeners[{listener}].tls: the new certificate cannot be used")]
    Tls {
        listener: usize,
        #[source]
        source: TlsError,
    },
}

/// Replaces the configuration of a serving gateway. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    /// The configuration in force. Held for a whole (synchronous) reload, so reloads run one
    /// at a time; never held across an `.await`.
    current: Mutex<Settings>,
    /// One per listener; `None` for plain-HTTP ones.
    certs: Vec<Option<Arc<CertStore>>>,
    log: OnceLock<LevelHandle>,
    /// Counts finished reload attempts (whatever their result), for whoever waits on one.
    attempts: watch::Sender<u64>,
}

impl Reloader {
    pub(crate) fn new(
        state: Arc<State>,
        settings: Settings,
        certs: Vec<Option<Arc<CertStore>>>,
    ) -> Reloader {
        Reloader {
            inner: Arc::new(Inner {
                state,
                current: Mutex::new(settings),
                certs,
                log: OnceLock::new(),
                attempts: watch::channel(0).0,
            }),
        }
    }

    /// Lets reloads change the log level (`main` passes the subscriber's handle).
    pub fn set_log_level_handle(&self, handle: LevelHandle) {
        let _ = self.inner.log.set(handle);
    }

    /// Makes `settings` the snapshot of the next request, unchecked: the seam [`reload`]
    /// lands on, for tests and embedders that build settings themselves.
    ///
    /// [`reload`]: Reloader::reload
    pub fn apply(&self, settings: &Settings) {
        let clock = self.inner.state.handles.clock.clone();
        self.inner
            .state
            .replace_snapshot(snapshot_of(settings, clock));
    }

    /// Loads with `loader` and reloads; counts and logs the outcome.
    pub fn reload_with(&self, loader: &Loader) -> Result<(), ReloadError> {
        let result = loader()
            .map_err(ReloadError::Invalid)
            .and_then(|next| self.try_reload(next));
        self.finish(result)
    }

    /// Checks `next` against the running configuration and applies it whole, or not at all;
    /// counts and logs the outcome.
    pub fn reload(&self, next: Settings) -> Result<(), ReloadError> {
        let result = self.try_reload(next);
        self.finish(result)
    }

    /// A receiver whose value counts finished reload attempts.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.attempts.subscribe()
    }

    fn try_reload(&self, next: Settings) -> Result<(), ReloadError> {
        let Ok(mut current) = self.inner.current.lock() else {
            return Err(ReloadError::Refused(next.origin.error(
                "",
                "an earlier reload failed midway; restart the gateway".into(),
                None,
            )));
        };
        if let Some(refusal) = fixed_change(&current, &next) {
            return Err(ReloadError::Refused(refusal));
        }
        // Everything that can fail is prepared before anything is applied.
        let mut certs = Vec::new();
        for (i, (store, (old, new))) in self
            .inner
            .certs
            .iter()
            .zip(current.listeners.iter().zip(&next.listeners))
            .enumerate()
        {
            let (Some(store), Some(new_tls)) = (store, &new.tls) else {
                continue;
            };
            let keep_dev = matches!(
                (&old.tls, new_tls),
                (
                    Some(TlsSettings::Development { .. }),
                    TlsSettings::Development { .. }
                )
            );
            if keep_dev {
                continue; // a new development CA on every reload would only break clients
            }
            let key = crate::tls::load(new_tls).map_err(|source| ReloadError::Tls {
                listener: i,
                source,
            })?;
            certs.push((store.clone(), key));
        }
        for (store, key) in certs {
            store.replace(key);
        }
        if next.logging.level != current.logging.level {
            if let Some(log) = self.inner.log.get() {
                log.set(&next.logging.level);
            }
        }
        self.apply(&next);
        *current = next;
        Ok(())
    }

    fn finish(&self, result: Result<(), ReloadError>) -> Result<(), ReloadError> {
        let metrics = &self.inner.state.handles.metrics;
        match &result {
            Ok(()) => {
                metrics.reload(ReloadResult::Ok);
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                metrics.reload(match e {
                    ReloadError::Refused(_) => ReloadResult::Refused,
                    ReloadError::Invalid(_) | ReloadError::Tls { .. } => ReloadResult::Invalid,
                });
                tracing::error!(
                    error = %crate::observability::error_chain(e),
                    "configuration reload refused; the running configuration stays"
                );
            }
        }
        self.inner.attempts.send_modify(|n| *n += 1);
        result
    }
}

/// The part of the settings every request is decided by.
pub(crate) fn snapshot_of(settings: &Settings, clock: crate::clock::Clock) -> Snapshot {
    Snapshot::new(settings, clock)
}

/// Reloads on SIGHUP and, with `watch`, when that file's content changes (its directory
/// is watched; changes within [`DEBOUNCE`] of each other count once). Runs until aborted.
///
/// The SIGHUP handler and the watch are in place when this returns (call it from within
/// the runtime): a SIGHUP sent afterwards reloads instead of ending the process.
pub fn spawn_triggers(
    reloader: Reloader,
    loader: Loader,
    watch: Option<PathBuf>,
) -> JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload by file change only");
            None
        }
    };
    let (tx, mut changed) = mpsc::channel::<()>(64);
    let watcher = watch.as_deref().and_then(|p| watch_directory(p, tx));
    // The content in force now; read before returning so no change slips in between.
    let mut last = watch
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| <[u8; 32]>::from(Sha256::digest(&b)));
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let by_signal = tokio::select! {
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
                Some(()) = changed.recv() => false,
                else => break,
            };
            if by_signal {
                tracing::info!("SIGHUP received: reloading the configuration");
            } else {
                // Debounce: wait until the directory is quiet, then compare contents.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changed.recv()).await {}
            }
            if let Some(p) = &watch {
                let now = content_hash(p).await;
                if !by_signal && now == last {
                    continue;
                }
                last = now;
            }
            let (reloader, loader) = (reloader.clone(), loader.clone());
            // Loading reads files and parses certificates: off the async workers.
            let _ = tokio::task::spawn_blocking(move || reloader.reload_with(&loader)).await;
        }
    })
}

/// Watches the directory holding `file`; every change there sends on `tx`.
fn watch_directory(file: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the file (our own hash) is an access, not a change.
        if let Ok(e) = event {
            if !matches!(e.kind, EventKind::Access(_)) {
                let _ = tx.try_send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration directory; reload with SIGHUP");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the configuration directory; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

async fn content_hash(file: &Path) -> Option<[u8; 32]> {
    let bytes = tokio::fs::read(file).await.ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// The first key that differs between `old` and `new` although it cannot change while the
/// gateway runs, as a located error.
fn fixed_change(old: &Settings, new: &Settings) -> Option<ConfigError> {
    let hint = Some("restart the gateway to apply it; the running configuration stays");
    let refuse = |path: &str, what: String| {
        Some(new.origin.error(
            path,
            format!("{what} cannot change while the gateway runs"),
            hint,
        ))
    };
    if old.listeners.len() != new.listeners.len() {
        return refuse(
            "listeners",
            format!(
                "the number of listeners ({} → {})",
                old.listeners.len(),
                new.listeners.len()
            ),
        );
    }
    for (i, (o, n)) in old.listeners.iter().zip(&new.listeners).enumerate() {
        if o.address != n.address {
            return refuse(
                &format!("listeners[{i}].address"),
                format!("the listener address ({} → {})", o.address, n.address),
            );
        }
        if o.tls.is_some() != n.tls.is_some() {
            return refuse(
                &format!("listeners[{i}].tls"),
                "whether a listener speaks TLS".into(),
            );
        }
        if o.proxy_protocol != n.proxy_protocol {
            return refuse(
                &format!("listeners[{i}].proxy_protocol"),
                "the load balancers a listener trusts".into(),
            );
        }
    }
    if old.admin != new.admin {
        let show = |a: &Option<crate::admin::AdminSettings>| {
            a.as_ref()
                .map_or_else(|| "none".to_owned(), |a| a.address.to_string())
        };
        return refuse(
            "admin.address",
            format!(
                "the admin address ({} → {})",
                show(&old.admin),
                show(&new.admin)
            ),
        );
    }
    if old.audit != new.audit {
        return refuse("audit.file", "the audit file".into());
    }
    if old.logging.format != new.logging.format {
        return refuse("logging.format", "the log format".into());
    }
    let (os, ns) = (&old.sessions, &new.sessions);
    for (path, same) in [
        ("sessions.idle_timeout", os.idle_timeout == ns.idle_timeout),
        (
            "sessions.absolute_timeout",
            os.absolute_timeout == ns.absolute_timeout,
        ),
        ("sessions.max_per_user", os.max_per_user == ns.max_per_user),
        ("sessions.capacity", os.capacity == ns.capacity),
        // Whatever else the session store is built from (its backend).
        ("sessions", os == ns),
    ] {
        if !same {
            return refuse(path, format!("`{path}` (the session store is built once)"));
        }
    }
    let (ov, nv) = (&old.server, &new.server);
    for (path, same) in [
        (
            "server.handshake_timeout",
            ov.handshake_timeout == nv.handshake_timeout,
        ),
        (
            "server.header_read_timeout",
            ov.header_read_timeout == nv.header_read_timeout,
        ),
        (
            "server.max_connections",
            ov.max_connections == nv.max_connections,
        ),
        ("server.drain_timeout", ov.drain_timeout == nv.drain_timeout),
        (
            "server.max_connections_per_address",
            ov.max_connections_per_address == nv.max_connections_per_address,
        ),
        ("server.idle_timeout", ov.idle_timeout == nv.idle_timeout),
        ("server.send_timeout", ov.send_timeout == nv.send_timeout),
        ("server.workers", ov.workers == nv.workers),
        (
            "server.http2_max_concurrent_streams",
            ov.http2_max_concurrent_streams == nv.http2_max_concurrent_streams,
        ),
        (
            "server.http2_keep_alive_interval",
            ov.http2_keep_alive_interval == nv.http2_keep_alive_interval,
        ),
        (
            "server.http2_keep_alive_timeout",
            ov.http2_keep_alive_timeout == nv.http2_keep_alive_timeout,
        ),
    ] {
        if !same {
            return refuse(path, format!("`{path}` (the listeners are built once)"));
        }
    }
    let (ou, nu) = (&old.upstream, &new.upstream);
    let account = |a: &Option<crate::upstream::ServiceAccount>| {
        a.as_ref().map(|a| {
            (
                a.username.clone(),
                a.password.clone(),
                a.fingerprint.clone(),
            )
        })
    };
    for (path, same) in [
        ("upstream.url", ou.url == nu.url),
        ("upstream.ca_file", ou.ca == nu.ca),
        (
            "upstream.connect_timeout",
            ou.connect_timeout == nu.connect_timeout,
        ),
        (
            "upstream.response_timeout",
            ou.response_timeout == nu.response_timeout,
        ),
        (
            "upstream.pool_idle_timeout",
            ou.pool_idle_timeout == nu.pool_idle_timeout,
        ),
        (
            "upstream.pool_max_idle_per_host",
            ou.pool_max_idle_per_host == nu.pool_max_idle_per_host,
        ),
        (
            "upstream.service_account",
            account(&ou.service_account) == account(&nu.service_account),
        ),
        (
            "upstream.session_refresh_margin",
            ou.session_refresh_margin == nu.session_refresh_margin,
        ),
        (
            "upstream.login_backoff_max",
            ou.login_backoff_max == nu.login_backoff_max,
        ),
    ] {
        if !same {
            return refuse(
                path,
                format!("`{path}` (the upstream pool and session are built once)"),
            );
        }
    }
    let (ol, nl) = (&old.auth.login, &new.auth.login);
    let same_login = ol.max_failures_per_ip == nl.max_failures_per_ip
        && ol.max_failures_per_user == nl.max_failures_per_user
        && ol.failure_window == nl.failure_window
        && ol.lockout == nl.lockout
        && ol.attempts_per_minute_per_ip == nl.attempts_per_minute_per_ip;
    if !same_login {
        return refuse(
            "auth.login",
            "`auth.login` (the login throttle is built once)".into(),
        );
    }
    None
}
