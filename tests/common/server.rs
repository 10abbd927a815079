//! The skeleton every stub upstream shares: an HTTP/1.1 server on `127.0.0.1:0` (upgrades
//! allowed) with one task per connection ([`StubServer`]), and a [`Journal`] of what arrived
//! that tests wait on without sleeping.
//!
//! A stub supplies only how it answers ([`StubService`]); what it records and how it decides
//! stay in its own module ([`super::stub`], [`super::arcp_stub`], [`super::ws_stub`]). Accept
//! errors are skipped and the loop keeps accepting; dropping the [`StubServer`] stops
//! accepting, while connections already open finish on their own.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TestBody;

/// How a stub answers. One value serves every connection, hence `Arc<Self>`.
pub trait StubService: Send + Sync + 'static {
    /// Answers one request (a stub that upgrades answers 101 and takes the connection over
    /// with [`hyper::upgrade::on`]).
    fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<TestBody>> + Send;

    /// Runs when a connection is accepted; what it returns is dropped when the connection
    /// ends (a guard that counts open connections, say). Nothing by default.
    fn connected(self: Arc<Self>) -> impl Send + 'static {}
}

/// A stub's listener and accept loop.
pub struct StubServer {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl StubServer {
    /// Binds `127.0.0.1:0` and serves `service` on every connection.
    pub async fn start<S: StubService>(service: Arc<S>) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(accept_loop(listener, service));
        StubServer { addr, accept }
    }

    /// `http://127.0.0.1:<port>` for `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop<S: StubService>(listener: TcpListener, service: Arc<S>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _open = service.clone().connected();
            let hyper_service = service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.serve(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper_service)
                .with_upgrades()
                .await;
        });
    }
}

/// What a stub recorded, in arrival order, with a change signal: tests wait for a condition
/// ([`Journal::wait_until`]) instead of sleeping. Stubs also [`Journal::notify`] when other
/// state a condition may read (counters) changes.
pub struct Journal<T> {
    /// Never locked across an await.
    entries: Mutex<Vec<T>>,
    changed: watch::Sender<u64>,
}

impl<T: Clone> Journal<T> {
    pub fn new() -> Journal<T> {
        Journal {
            entries: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }
    }

    /// Appends `entry`, wakes waiters and returns its index.
    pub fn push(&self, entry: T) -> usize {
        self.push_with(|_| entry)
    }

    /// Appends the entry `make` builds from its index (for entries that carry their own id),
    /// wakes waiters and returns the index.
    pub fn push_with(&self, make: impl FnOnce(usize) -> T) -> usize {
        let index = {
            let mut entries = self.entries.lock().unwrap();
            let index = entries.len();
            entries.push(make(index));
            index
        };
        self.notify();
        index
    }

    /// Changes entry `index` and wakes waiters.
    pub fn update(&self, index: usize, f: impl FnOnce(&mut T)) {
        f(&mut self.entries.lock().unwrap()[index]);
        self.notify();
    }

    /// A copy of every entry so far.
    pub fn entries(&self) -> Vec<T> {
        self.entries.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// `f` over the entries, under the lock (keep it short; it must not block).
    pub fn with<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        f(&self.entries.lock().unwrap())
    }

    /// Wakes waiters: something a condition may read has changed.
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until `cond` holds, re-checking after every change; returns whether it did
    /// within `limit`.
    pub async fn wait_until(&self, limit: Duration, cond: impl Fn() -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        let waited = tokio::time::timeout(limit, async {
            while !cond() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        waited.is_ok() && cond()
    }
}

impl<T: Clone> Default for Journal<T> {
    fn default() -> Self {
        Journal::new()
    }
}
