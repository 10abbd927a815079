//! Listeners, the accept loop and graceful drain.
//!
//! Each connection lives in its own task: the TLS handshake runs there under a deadline
//! (a slow client never stalls the accept loop), then hyper-util's auto builder serves
//! HTTP/1.1 or HTTP/2 on it. A semaphore bounds concurrent connections: at the limit the loop
//! stops accepting and the kernel's backlog holds new clients. Accept errors (e.g. out of
//! file descriptors) back off instead of ending the loop. Shutdown stops accepting, asks
//! every connection to finish its in-flight requests, and waits at most `drain_timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::clock::Clock;
use crate::config::Settings;
use crate::pipeline::{self, Handles, Snapshot, State};
use crate::proxy::ConnInfo;
use crate::tls::TlsSettings;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: u32,
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    /// `None` is a plain-HTTP listener (behind a TLS-terminating load balancer).
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup")]
    Tls(#[from] crate::tls::TlsError),
    #[error("upstream client setup")]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("admin listener setup")]
    Admin(#[from] crate::admin::AdminError),
}

struct Bound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

/// A bound gateway: ports are open, nothing is served until [`Gateway::serve`].
pub struct Gateway {
    bound: Vec<Bound>,
    state: Arc<State>,
    server: ServerSettings,
    admin: Option<crate::admin::AdminListener>,
}

impl Gateway {
    /// Opens every listener and builds the shared handles.
    pub async fn bind(settings: Settings) -> Result<Gateway, ServerError> {
        Self::bind_with_clock(settings, Clock::system()).await
    }

    /// Like [`Gateway::bind`], deciding token and session lifetimes against `clock`
    /// (tests move it forward instead of sleeping).
    pub async fn bind_with_clock(settings: Settings, clock: Clock) -> Result<Gateway, ServerError> {
        let handles = Handles::new(
            &settings.upstream,
            &settings.sessions,
            &settings.auth.login,
            clock.clone(),
        )?;
        let state = State::new(handles, snapshot_of(&settings, clock));
        let mut bound = Vec::with_capacity(settings.listeners.len());
        for l in &settings.listeners {
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| ServerError::Bind {
                        addr: l.address,
                        source,
                    })?;
            let tls = match &l.tls {
                Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(t)?)),
                None => {
                    tracing::warn!(address = %l.address, "plain-HTTP listener: only for use behind a TLS-terminating load balancer");
                    None
                }
            };
            bound.push(Bound { listener, tls });
        }
        let admin = match &settings.admin {
            Some(a) => Some(crate::admin::AdminListener::bind(a).await?),
            None => None,
        };
        Ok(Gateway {
            bound,
            state,
            server: settings.server.clone(),
            admin,
        })
    }

    /// Addresses actually bound, in config order (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .collect()
    }

    /// Address of the admin listener, when one is configured (port 0 resolved).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr())
    }

    /// The shared handles (for tests and embedding).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// A handle that replaces the configuration snapshot while the gateway serves.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let limit = Arc::new(Semaphore::new(self.server.max_connections as usize));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.server.header_read_timeout)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(64 * 1024)
            .max_concurrent_streams(256);
        let builder = Arc::new(builder);

        let mut loops = Vec::new();
        for b in self.bound {
            let ctx = AcceptCtx {
                state: self.state.clone(),
                builder: builder.clone(),
                graceful: graceful.clone(),
                limit: limit.clone(),
                handshake_timeout: self.server.handshake_timeout,
            };
            loops.push(tokio::spawn(accept_loop(b, ctx, stop_rx.clone())));
        }

        let admin = self
            .admin
            .map(|a| a.spawn(self.state.handles.broker.clone(), stop_rx.clone()));
        let refresher = self.state.handles.broker.spawn_refresher();
        let sessions = self.state.handles.sessions.clone();
        let housekeeping = tokio::spawn(async move {
            // Apply idle expiry promptly so sockets of expired sessions close without traffic.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sessions.run_pending_tasks().await;
            }
        });
        shutdown.await;
        refresher.abort();
        housekeeping.abort();
        tracing::info!("shutdown: no longer accepting; draining in-flight requests");
        let _ = stop_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        let drain = self.server.drain_timeout;
        let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
        match tokio::time::timeout(drain, graceful.shutdown()).await {
            Ok(()) => tracing::info!("shutdown: all connections closed"),
            Err(_) => tracing::warn!(
                ?drain,
                "shutdown: drain deadline passed; closing remaining connections"
            ),
        }
        if let Some(admin) = admin {
            admin.abort();
        }
    }
}

/// Replaces the per-request [`Snapshot`] (the seam configuration reload lands on).
///
/// What a snapshot holds takes effect for every request that starts after
/// [`Reloader::apply`]: the route policy, limits, token keys, users and the replay buffer
/// size. Requests in flight finish on the snapshot they started with. Listeners, the
/// upstream connection pool, the session store and the login throttle are handles bound
/// once and are not changed here.
#[derive(Clone)]
pub struct Reloader {
    state: Arc<State>,
}

impl Reloader {
    /// Makes `settings` the configuration of the next request.
    pub fn apply(&self, settings: &Settings) {
        let clock = self.state.handles.clock.clone();
        self.state.replace_snapshot(snapshot_of(settings, clock));
    }
}

/// The part of the settings every request is decided by.
fn snapshot_of(settings: &Settings, clock: Clock) -> Snapshot {
    Snapshot::new(
        settings.policy.clone(),
        settings.limits,
        &settings.auth,
        settings.upstream.replay_buffer_bytes,
        clock,
    )
}

struct AcceptCtx {
    state: Arc<State>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    limit: Arc<Semaphore>,
    handshake_timeout: Duration,
}

async fn accept_loop(bound: Bound, ctx: AcceptCtx, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = ctx.limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = bound.listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = ctx.state.clone();
        let builder = ctx.builder.clone();
        let watcher = ctx.graceful.watcher();
        let tls = bound.tls.clone();
        let handshake_timeout = ctx.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(
                stream,
                peer,
                tls,
                handshake_timeout,
                state,
                builder,
                watcher,
            )
            .await;
        });
    }
    // Dropping the listener closes the port: new connections are refused from here on.
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    state: Arc<State>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let conn = ConnInfo {
        peer,
        tls: tls.is_some(),
    };
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(pipeline::handle(state, conn, req).await) }
    });
    let result = match tls {
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watcher.watch(conn).await
        }
        None => {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watcher.watch(conn).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
