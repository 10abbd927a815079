//! Serving on one current-thread runtime per worker thread (`server.workers`, default: the
//! available cores), each with its own `SO_REUSEPORT` socket per listener, so the kernel
//! spreads new connections over the workers and a connection lives on one thread from
//! accept to close: no work stealing, no cross-thread wake-ups on the request path.
//!
//! Shared state (sessions, throttling, the snapshot) is the same `Arc<State>` on every
//! worker; what a request drives itself (its upstream connection) stays on its worker
//! ([`current`] picks the worker's share of the upstream pool). Background work (the
//! admin listener, Redis subscription, the broker's refresh, reloads) runs on the runtime
//! that called [`crate::Gateway::serve`].

use std::cell::Cell;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::accept::{accept_loop, AcceptCtx};
use super::proxy_header::Trusted;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker this thread is, if it is one.
pub(crate) fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// `workers` listening sockets on `addr`, all with `SO_REUSEPORT` (one per worker); port 0
/// is resolved by the first and shared by the rest. Before that, a plain bind checks that
/// nobody holds the address: `SO_REUSEPORT` would otherwise let a second gateway started
/// on the same port silently share its connections.
pub(super) fn bind(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        drop(socket(addr, false)?);
    }
    let first = socket(addr, workers > 1)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(socket(addr, true)?);
    }
    Ok(sockets)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// One worker's share of a listener.
pub(super) struct WorkerListener {
    pub(super) socket: std::net::TcpListener,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) balancers: Trusted,
}

/// A listener as an accept loop serves it (registered with the worker's runtime).
pub(super) struct Listening {
    pub(super) listener: TcpListener,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) balancers: Trusted,
}

/// Starts worker `id` on its own thread: it accepts on `listeners` until `stop`, then keeps
/// serving the connections it has until `release` (the end of the drain).
pub(super) fn spawn(
    id: usize,
    listeners: Vec<WorkerListener>,
    ctx: AcceptCtx,
    stop: watch::Receiver<bool>,
    mut release: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("arcp-gw-worker-{id}"))
        .spawn(move || {
            WORKER.with(|w| w.set(Some(id)));
            runtime.block_on(async move {
                // This worker's log lines go out in batches, at least this often.
                let flusher = tokio::spawn(async {
                    let mut tick = tokio::time::interval(crate::observability::LOG_FLUSH_EVERY);
                    loop {
                        tick.tick().await;
                        crate::observability::flush_worker_logs();
                    }
                });
                let mut loops = Vec::with_capacity(listeners.len());
                for l in listeners {
                    let listener = match TcpListener::from_std(l.socket) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!(worker = id, error = %e, "cannot register a listener");
                            continue;
                        }
                    };
                    let listening = Listening {
                        listener,
                        tls: l.tls,
                        balancers: l.balancers,
                    };
                    loops.push(tokio::spawn(accept_loop(
                        listening,
                        ctx.clone(),
                        stop.clone(),
                    )));
                }
                drop(stop);
                for l in loops {
                    let _ = l.await;
                }
                // Connections drain on this runtime: keep it until the drain is over (or
                // the server that started it is gone).
                while !*release.borrow_and_update() {
                    if release.changed().await.is_err() {
                        break;
                    }
                }
                flusher.abort();
            });
            crate::observability::flush_worker_logs();
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_gets_a_socket_on_the_same_port() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        assert_eq!(addrs.len(), 3);
        assert_ne!(addrs[0].port(), 0);
        assert!(addrs.iter().all(|a| *a == addrs[0]), "{addrs:?}");
    }

    #[test]
    fn a_second_gateway_on_a_taken_port_fails() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = first[0].local_addr().unwrap();
        let second = bind(taken, 2).expect_err("the port is taken");
        assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
        let single = bind(taken, 1).expect_err("the port is taken");
        assert_eq!(single.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_wildcard_ipv6_listener_also_takes_ipv4_clients() {
        let sockets = bind("[::]:0".parse().unwrap(), 2).unwrap();
        let port = sockets[0].local_addr().unwrap().port();
        let v4 = std::net::TcpStream::connect(("127.0.0.1", port));
        assert!(v4.is_ok(), "IPv4 client refused: {v4:?}");
    }
}
