//! Listeners, the accept loop and graceful drain.
//!
//! Each connection lives in its own task: the TLS handshake runs there under a deadline
//! (a slow client never stalls the accept loop), then the gateway's own loop serves bodyless
//! HTTP/1.1 requests on it ([`h1`]) and hands the connection to hyper-util's auto builder at
//! the first request it does not serve (a body, an upgrade, HTTP/2, anything unusual). A semaphore bounds concurrent connections: at the limit the loop
//! stops accepting and the kernel's backlog holds new clients; one client address (an IPv6 /64)
//! holds at most `max_connections_per_address` of them ([`crate::per_address`]). Every stage a client
//! could stall has a deadline ([`activity`]), and HTTP/1.1 framing is checked as strictly as
//! nginx does ([`framing`]). Accept errors (e.g. out of file descriptors) back off instead of
//! ending the loop. Shutdown stops accepting, asks every connection to finish its in-flight
//! requests, and waits at most `drain_timeout`.

mod accept;
mod activity;
mod framing;
pub mod h1;
mod hyper_conn;
pub(crate) use framing::head_end;
#[doc(hidden)]
pub use framing::{bodyless, scan_in_pieces};
pub mod proxy_header;
mod streams;
pub(crate) mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use accept::AcceptCtx;
use activity::{Activity, Closed, Deadlines};
use h1::serve::{Closing, Ended};
use hyper_conn::Hyper;
use proxy_header::Trusted;
use streams::Streams;

use crate::clock::Clock;
use crate::config::Settings;
use crate::per_address::PerAddress;
use crate::pipeline::{ConnSlot, Handles, State};
use crate::proxy::ConnInfo;
use crate::reload::{snapshot_of, Reloader};
use crate::tls::TlsSettings;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub handshake_timeout: Duration,
    /// Deadline for a complete request head: from the end of the TLS handshake for the first
    /// request (protocol detection and the HTTP/2 preface included), and for every HTTP/1.1 head.
    pub header_read_timeout: Duration,
    pub max_connections: u32,
    pub drain_timeout: Duration,
    /// Concurrent connections from one client address (an IPv6 /64 counts as one).
    pub max_connections_per_address: u32,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A connection whose response write has waited this long for the client is dropped.
    pub send_timeout: Duration,
    /// Bodies the gateway reads itself: the time they may lag behind `body_min_rate`.
    pub body_read_timeout: Duration,
    /// Bodies the gateway reads itself: bytes per second they must average after the grace.
    pub body_min_rate: u64,
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 PING interval on a connection (dead peers are found while streams are open).
    pub http2_keep_alive_interval: Duration,
    /// A PING unanswered for this long closes the connection.
    pub http2_keep_alive_timeout: Duration,
    /// Host names requests may carry in `Host`/`:authority`; others get 421. Empty accepts
    /// any host (a warning is logged at start).
    pub server_names: Vec<String>,
    /// Worker threads, each a current-thread runtime with its own socket per listener.
    pub workers: usize,
}

impl ServerSettings {
    /// The pace bodies the gateway reads itself must keep.
    pub fn body_pace(&self) -> crate::body::Pace {
        crate::body::Pace {
            grace: self.body_read_timeout,
            min_rate: self.body_min_rate,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    /// `None` is a plain-HTTP listener (behind a TLS-terminating load balancer).
    pub tls: Option<TlsSettings>,
    /// Load balancers whose connections start with a PROXY header (empty: none).
    pub proxy_protocol: Trusted,
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
    #[error("audit trail setup")]
    Audit(#[from] crate::audit::AuditError),
    #[error("shared session storage setup")]
    Store(#[from] crate::fleet::FleetError),
}

struct Bound {
    /// One socket per worker (`SO_REUSEPORT`), all on the same address.
    sockets: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
    /// Load balancers whose connections start with a PROXY header.
    balancers: Trusted,
}

/// A bound gateway: ports are open, nothing is served until [`Gateway::serve`].
pub struct Gateway {
    bound: Vec<Bound>,
    state: Arc<State>,
    server: ServerSettings,
    admin: Option<crate::admin::AdminListener>,
    reloader: Reloader,
}

impl Gateway {
    /// Opens every listener and builds the shared handles.
    pub async fn bind(settings: Settings) -> Result<Gateway, ServerError> {
        Self::bind_with_clock(settings, Clock::system()).await
    }

    /// Like [`Gateway::bind`], deciding token and session lifetimes against `clock`
    /// (tests move it forward instead of sleeping).
    pub async fn bind_with_clock(settings: Settings, clock: Clock) -> Result<Gateway, ServerError> {
        if settings.server.server_names.is_empty() {
            tracing::warn!("server.server_names is not set: requests for any Host are forwarded with that Host; list the names clients use");
        }
        let fleet = match &settings.session_store {
            Some(redis) => Some(crate::fleet::Fleet::new(redis)?),
            None => None,
        };
        let mut handles = Handles::with_fleet(
            &settings.upstream,
            &settings.sessions,
            &settings.auth.login,
            &settings.websocket,
            fleet,
            clock.clone(),
        )?;
        handles.audit = crate::audit::Audit::open(&settings.audit)?;
        let state = State::new(handles, snapshot_of(&settings, clock));
        let mut bound = Vec::with_capacity(settings.listeners.len());
        let mut certs = Vec::with_capacity(settings.listeners.len());
        for l in &settings.listeners {
            let sockets = workers::bind(l.address, settings.server.workers).map_err(|source| {
                ServerError::Bind {
                    addr: l.address,
                    source,
                }
            })?;
            let tls = match &l.tls {
                Some(t) => {
                    let (config, store) = crate::tls::reloadable_server_config(t)?;
                    certs.push(Some(store));
                    Some(TlsAcceptor::from(config))
                }
                None => {
                    tracing::warn!(address = %l.address, "plain-HTTP listener: only for use behind a TLS-terminating load balancer");
                    certs.push(None);
                    None
                }
            };
            bound.push(Bound {
                sockets,
                tls,
                balancers: l.proxy_protocol.clone(),
            });
        }
        let admin = match &settings.admin {
            Some(a) => Some(crate::admin::AdminListener::bind(a).await?),
            None => None,
        };
        let server = settings.server.clone();
        let reloader = Reloader::new(state.clone(), settings, certs);
        Ok(Gateway {
            bound,
            state,
            server,
            admin,
            reloader,
        })
    }

    /// Addresses actually bound, in config order (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter_map(|b| b.sockets.first().and_then(|s| s.local_addr().ok()))
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

    /// A handle that reloads the configuration while the gateway serves ([`crate::reload`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.server.max_connections as usize));
        let per_address = PerAddress::new(self.server.max_connections_per_address);
        let builder = Arc::new(Builders::new(&self.server));

        let ctx = AcceptCtx {
            state: self.state.clone(),
            builder: builder.clone(),
            limit: limit.clone(),
            per_address: per_address.clone(),
            handshake_timeout: self.server.handshake_timeout,
            deadlines: Deadlines {
                head: self.server.header_read_timeout,
                idle: self.server.idle_timeout,
                send: self.server.send_timeout,
            },
        };
        // Worker w serves socket w of every listener.
        let mut shares: Vec<Vec<workers::WorkerListener>> =
            (0..self.server.workers).map(|_| Vec::new()).collect();
        for b in self.bound {
            for (share, socket) in shares.iter_mut().zip(b.sockets) {
                share.push(workers::WorkerListener {
                    socket,
                    tls: b.tls.clone(),
                    balancers: b.balancers.clone(),
                });
            }
        }
        let (release_tx, release_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(shares.len());
        for (id, share) in shares.into_iter().enumerate() {
            match workers::spawn(id, share, ctx.clone(), stop_rx.clone(), release_rx.clone()) {
                Ok(thread) => threads.push(thread),
                Err(e) => tracing::error!(worker = id, error = %e, "cannot start a worker"),
            }
        }
        drop(ctx);
        drop(release_rx);
        // Every connection task holds a receiver: the drain below ends when the last one drops.
        drop(stop_rx);
        // The admin listener has its own stop signal: it must not hold up the drain.
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let admin = self
            .admin
            .map(|a| a.spawn(self.state.clone(), admin_stop_rx));
        // Shared store: listeners first, so nothing the subscription hears is missed.
        let handles = &self.state.handles;
        let fleet_tasks: Vec<_> = [
            handles.sessions.spawn_listener(),
            handles.broker.spawn_listener(),
            handles.fleet.as_ref().map(|f| f.spawn_subscriber()),
        ]
        .into_iter()
        .flatten()
        .collect();
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
        let _ = admin_stop_tx.send(true);
        let drain = self.server.drain_timeout;
        match tokio::time::timeout(drain, stop_tx.closed()).await {
            Ok(()) => tracing::info!("shutdown: all connections closed"),
            Err(_) => tracing::warn!(
                ?drain,
                "shutdown: drain deadline passed; closing remaining connections"
            ),
        }
        // The workers end their runtimes (closing what is left) and their threads.
        let _ = release_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        if let Some(admin) = admin {
            admin.abort();
        }
        for task in fleet_tasks {
            task.abort();
        }
    }
}

/// hyper's builders: with protocol detection (a connection's first bytes may be the HTTP/2
/// preface) and HTTP/1.1 only (for a connection that has already served an HTTP/1.1 request).
pub(crate) struct Builders {
    pub(crate) any: auto::Builder<Streams>,
    pub(crate) http1: hyper::server::conn::http1::Builder,
    /// For a connection whose TLS handshake chose `h2` (ALPN): HTTP/2 only, so that HTTP/1.1
    /// bytes on it are a protocol error, not a request served without the framing check.
    pub(crate) http2: auto::Builder<Streams>,
}

impl Builders {
    fn new(server: &ServerSettings) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        // The same HTTP/1.1 settings as `http_builder`'s, for the same reasons.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(64 * 1024);
        let any = http_builder(server);
        let http2 = any.clone().http2_only();
        Builders { any, http1, http2 }
    }
}

/// hyper's protocol settings, each protection set explicitly rather than left to a default
/// that may change under us.
fn http_builder(server: &ServerSettings) -> auto::Builder<Streams> {
    let mut builder = auto::Builder::new(Streams {
        send_timeout: server.send_timeout,
    });
    builder
        .http1()
        .timer(TokioTimer::new())
        // Off: `server.header_read_timeout` is enforced by the connection's supervisor
        // (`activity`), which the reader tells when a head begins. hyper's timer would be
        // armed per request and would also close a kept-alive connection waiting for its
        // next request after `header_read_timeout` instead of `idle_timeout`.
        .header_read_timeout(None)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        // CONTINUATION floods (CVE-2024-27316 class): h2 stops decoding a header block past
        // this size and answers 431 / closes instead of buffering it.
        .max_header_list_size(64 * 1024)
        .max_concurrent_streams(server.http2_max_concurrent_streams)
        // Rapid reset (CVE-2023-44487): streams the client resets before we accept them.
        .max_pending_accept_reset_streams(20)
        // Streams we had to reset because the client misbehaved (RUSTSEC-2024-0003).
        .max_local_error_reset_streams(256)
        .keep_alive_interval(server.http2_keep_alive_interval)
        .keep_alive_timeout(server.http2_keep_alive_timeout);
    builder
}

/// What a connection task needs besides its socket.
struct Connection {
    peer: SocketAddr,
    state: Arc<State>,
    builder: Arc<Builders>,
    deadlines: Deadlines,
    stop: watch::Receiver<bool>,
    slot: ConnSlot,
}

async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    conn: Connection,
) {
    let peer = conn.peer;
    match tls {
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
            let http1 = stream.get_ref().1.alpn_protocol() != Some(b"h2");
            serve_http(stream, true, http1, conn).await;
        }
        None => serve_http(stream, false, true, conn).await,
    }
}

/// Serves HTTP on an established stream until it ends, a deadline closes it, or shutdown.
///
/// HTTP/1.1 begins on the gateway's own loop for bodyless requests ([`h1`]); the first
/// request that loop does not serve, and everything after it, is hyper's, as is HTTP/2.
async fn serve_http<S>(stream: S, tls: bool, http1: bool, conn: Connection)
where
    S: AsyncRead + AsyncWrite + activity::UnderTcp + Unpin + Send + 'static,
{
    let Connection {
        peer,
        state,
        builder,
        deadlines,
        stop,
        slot,
    } = conn;
    let info = Arc::new(ConnInfo::new(peer, tls));
    let activity = Activity::new();
    let closing = Arc::new(Closing::default());
    let connection = {
        let (activity, closing) = (activity.clone(), closing.clone());
        async move {
            // Every write to the client tells the supervisor whether the client reads.
            let mut stream = activity::Watched::new(stream, activity.clone());
            let handed = if http1 {
                let ctx = h1::serve::Ctx {
                    state: &state,
                    info: &info,
                    slot: &slot,
                    activity: &activity,
                    closing: &closing,
                };
                match h1::serve::serve(&mut stream, ctx).await? {
                    Ended::Closed => return Ok(()),
                    Ended::HandOff { read, served } => Some((read, served)),
                }
            } else {
                None
            };
            let hyper = Hyper {
                state,
                info,
                slot,
                activity,
                builder,
            };
            Box::pin(hyper.serve(stream, http1, handed, &closing)).await
        }
    };
    let supervised = std::pin::pin!(activity::supervise(
        connection,
        |_| closing.ask(),
        &activity,
        deadlines,
        stop
    ));
    let (why, error) = crate::clock::in_turns(supervised).await;
    match why {
        Closed::NoRequest => tracing::debug!(%peer, "closed: no request within the deadline"),
        Closed::SlowHead => tracing::debug!(%peer, "closed: request head not complete in time"),
        Closed::Idle => tracing::debug!(%peer, "closed: idle"),
        Closed::SlowReader => tracing::debug!(%peer, "closed: the client stopped reading"),
        Closed::Finished | Closed::Shutdown => {}
    }
    if let Some(e) = error {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
