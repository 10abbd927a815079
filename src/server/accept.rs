//! Accepting connections: the global and per-address caps, and the client's address from
//! a trusted load balancer's PROXY header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::activity::Deadlines;
use super::workers::Listening;
use super::{proxy_header, serve_connection, Connection};
use crate::per_address::{AddressPermit, PerAddress};
use crate::pipeline::{ConnSlot, State};

#[derive(Clone)]
pub(super) struct AcceptCtx {
    pub(super) state: Arc<State>,
    pub(super) builder: Arc<super::Builders>,
    pub(super) limit: Arc<Semaphore>,
    pub(super) per_address: PerAddress,
    pub(super) handshake_timeout: Duration,
    pub(super) deadlines: Deadlines,
}

pub(super) async fn accept_loop(bound: Listening, ctx: AcceptCtx, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        // Accept first, then wait for a place in `max_connections`: a worker whose socket
        // has nothing to accept holds no place another worker's client could use. Each
        // loop holds at most one accepted connection while it waits.
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
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = ctx.limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let _ = stream.set_nodelay(true);
        let tls = bound.tls.clone();
        let handshake_timeout = ctx.handshake_timeout;
        if bound.balancers.contains(peer.ip()) {
            // The client's address comes first, and its per-address cap applies to it.
            let pending = ctx.pending(permit, stop.clone());
            tokio::spawn(behind_balancer(
                stream,
                peer,
                tls,
                handshake_timeout,
                pending,
            ));
            continue;
        }
        let Some(address_permit) = ctx.per_address.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue; // dropping the stream closes it; the global permit returns to the pool
        };
        let conn = ctx
            .pending(permit, stop.clone())
            .connection(peer, address_permit);
        tokio::spawn(serve_connection(stream, tls, handshake_timeout, conn));
    }
    // Dropping the listener closes the port: new connections are refused from here on.
}

impl AcceptCtx {
    fn pending(&self, permit: OwnedSemaphorePermit, stop: watch::Receiver<bool>) -> Pending {
        Pending {
            state: self.state.clone(),
            builder: self.builder.clone(),
            per_address: self.per_address.clone(),
            deadlines: self.deadlines,
            permit,
            stop,
        }
    }
}

/// An accepted connection before its client's address is settled.
pub(super) struct Pending {
    state: Arc<State>,
    builder: Arc<super::Builders>,
    per_address: PerAddress,
    deadlines: Deadlines,
    permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
}

impl Pending {
    fn connection(self, peer: SocketAddr, address_permit: AddressPermit) -> Connection {
        Connection {
            peer,
            state: self.state,
            builder: self.builder,
            deadlines: self.deadlines,
            stop: self.stop,
            // Held until the connection ends, or by a WebSocket upgraded on it until that
            // closes: sockets count against both caps too.
            slot: ConnSlot::new(self.permit, address_permit),
        }
    }
}

/// A connection from a trusted load balancer: reads the PROXY header (within the
/// handshake timeout, which the TLS handshake then has what is left of), and serves the
/// client it names under that client's address.
async fn behind_balancer(
    mut stream: TcpStream,
    balancer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    pending: Pending,
) {
    let clock = pending.state.handles.clock.clone();
    let started = clock.instant();
    let peer = match tokio::time::timeout(handshake_timeout, proxy_header::read(&mut stream)).await
    {
        Ok(Ok(client)) => client.unwrap_or(balancer),
        Ok(Err(e)) => {
            tracing::debug!(%balancer, error = %e, "connection from a load balancer closed");
            return;
        }
        Err(_) => {
            tracing::debug!(%balancer, "PROXY header timed out");
            return;
        }
    };
    let Some(address_permit) = pending.per_address.try_acquire(peer.ip()) else {
        tracing::debug!(%peer, %balancer, "connection refused: too many from this address");
        return;
    };
    let conn = pending.connection(peer, address_permit);
    let left = handshake_timeout.saturating_sub(clock.instant() - started);
    serve_connection(stream, tls, left, conn).await;
}
