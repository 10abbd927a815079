//! What every request reads: long-lived handles, and a swappable snapshot of the policy.
//!
//! * [`Handles`] live as long as the process: the session store, the upstream session
//!   broker, the upstream connection pool, the login throttle and the WebSocket limits with
//!   their counts. Their state (sessions, counters, connections) must survive a
//!   configuration change.
//! * A [`Snapshot`] is immutable: route policy, limits, token keys, users. A request loads
//!   it once, at its start, and keeps that `Arc` until it ends, so replacing the snapshot
//!   ([`State::replace_snapshot`], through `arc-swap`) is seen by the next request while
//!   requests in flight finish on the one they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::frame::{Limits, ServerNames};
use super::websocket::{Sockets, WebSocketSettings};
use crate::audit::Audit;
use crate::auth::{Tokens, Users};
use crate::body::Pace;
use crate::clock::Clock;
use crate::config::Settings;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::ratelimit::{LoginSettings, LoginThrottle};
use crate::session::{SessionSettings, SessionStore};
use crate::upstream::{Broker, SharedCredentials, UpstreamClient, UpstreamError, UpstreamSettings};

/// Process-lifetime handles, cheap to clone.
#[derive(Debug, Clone)]
pub struct Handles {
    pub upstream: UpstreamClient,
    pub broker: Broker,
    pub sessions: SessionStore,
    pub throttle: LoginThrottle,
    /// Relayed WebSockets: their limits, and the counts behind the caps.
    pub sockets: Sockets,
    pub clock: Clock,
    pub metrics: Metrics,
    /// Where audit events go (the log stream until the server opens the configured file).
    pub audit: Audit,
    /// The Redis the replicas share (`sessions.store.redis`), if configured.
    pub fleet: Option<Fleet>,
}

impl Handles {
    pub fn new(
        upstream: &UpstreamSettings,
        sessions: &SessionSettings,
        login: &LoginSettings,
        websocket: &WebSocketSettings,
        clock: Clock,
    ) -> Result<Handles, UpstreamError> {
        Self::with_fleet(upstream, sessions, login, websocket, None, clock)
    }

    /// Like [`Handles::new`]; with a `fleet`, sessions and the upstream admin session are
    /// shared with every replica on that Redis.
    pub fn with_fleet(
        upstream: &UpstreamSettings,
        sessions: &SessionSettings,
        login: &LoginSettings,
        websocket: &WebSocketSettings,
        fleet: Option<Fleet>,
        clock: Clock,
    ) -> Result<Handles, UpstreamError> {
        let client = UpstreamClient::new(upstream)?;
        let metrics = Metrics::new();
        let shared = fleet.clone().and_then(SharedCredentials::new);
        let broker = match shared {
            Some(shared) => Broker::shared(client.clone(), upstream, clock.clone(), shared),
            None => Broker::new(client.clone(), upstream, clock.clone()),
        };
        broker.attach_metrics(metrics.clone());
        if let Some(f) = &fleet {
            f.attach_metrics(metrics.clone());
        }
        let store = match &fleet {
            Some(f) => SessionStore::with_fleet(sessions, f.clone(), clock.clone()),
            None => SessionStore::new(sessions, clock.clone()),
        };
        Ok(Handles {
            broker,
            upstream: client,
            sessions: store,
            throttle: match &fleet {
                Some(f) => LoginThrottle::shared(login, f.clone()),
                None => LoginThrottle::new(login, clock.clone()),
            },
            sockets: Sockets::new(websocket),
            clock,
            metrics,
            audit: Audit::default(),
            fleet,
        })
    }
}

/// The configuration a request is decided by, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub limits: Limits,
    pub tokens: Tokens,
    pub users: Users,
    /// Largest admin request body kept for a replay after an upstream re-login.
    pub replay_buffer_bytes: u64,
    /// How fast bodies the gateway reads itself (login, PIN, replay buffer) must arrive.
    pub body_pace: Pace,
    /// Hosts a request may name (`server.server_names`; empty accepts any).
    pub server_names: ServerNames,
}

impl Snapshot {
    /// The part of `settings` every request is decided by.
    pub fn new(settings: &Settings, clock: Clock) -> Snapshot {
        let fleet_secret = settings.session_store.as_ref().map(|r| &r.signing_secret);
        Snapshot {
            policy: settings.policy.clone(),
            limits: settings.limits,
            tokens: Tokens::new(&settings.auth, clock),
            users: Users::new(&settings.auth.users, fleet_secret),
            replay_buffer_bytes: settings.upstream.replay_buffer_bytes,
            body_pace: settings.server.body_pace(),
            server_names: ServerNames::new(&settings.server.server_names),
        }
    }
}

/// Handles plus the current snapshot.
#[derive(Debug)]
pub struct State {
    pub handles: Handles,
    snapshot: ArcSwap<Snapshot>,
}

impl State {
    pub fn new(handles: Handles, snapshot: Snapshot) -> Arc<State> {
        Arc::new(State {
            handles,
            snapshot: ArcSwap::from_pointee(snapshot),
        })
    }

    /// The snapshot a new request is decided by (one atomic load and reference count).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Makes `next` the snapshot of every request that starts from now on.
    pub fn replace_snapshot(&self, next: Snapshot) {
        self.snapshot.store(Arc::new(next));
    }
}
