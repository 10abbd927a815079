//! The gateway's own HTTP/1.1 connections to the upstream, driven inside the request's task.
//!
//! hyper's `client::conn::http1` gives a request sender and a connection future. Nothing is
//! spawned: the future is polled by whoever waits — the request's task while it waits for the
//! response head, then the response body as the server streams it to the client
//! ([`UpstreamBody`]). One task per request instead of two joined by channels (hyper-util's
//! pooled client) saves the wake-ups and context switches of the hand-off.
//!
//! A connection goes back to the pool when its response body has been read to the end; a body
//! dropped early closes it. Idle connections are not polled: on checkout each is polled once
//! (a closed socket or a connection hyper gave up on completes its future) and must be ready
//! for a request, else it is dropped and the next one is tried. Idle connections older than
//! `pool_idle_timeout` are dropped; at most `pool_max_idle_per_host` are kept per worker (newest
//! first).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::Body;

/// TCP, or TLS over TCP, to the upstream.
pub(super) enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream connection: its request sender and the future that drives it.
pub(super) struct Conn {
    pub tx: http1::SendRequest<Body>,
    pub conn: http1::Connection<TokioIo<Io>, Body>,
    /// When it last went idle (for `pool_idle_timeout`).
    idle_since: Instant,
}

impl Conn {
    pub fn new(tx: http1::SendRequest<Body>, conn: http1::Connection<TokioIo<Io>, Body>) -> Self {
        Conn {
            tx,
            conn,
            idle_since: crate::clock::io_now(),
        }
    }

    /// Polls an idle connection once, without waiting: `true` if it can take a request.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        if Pin::new(&mut self.conn).poll(&mut cx).is_ready() {
            return false; // closed by the peer, or failed
        }
        matches!(self.tx.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

/// Why an exchange on a connection failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("upstream connection failed")]
    Http(#[source] hyper::Error),
    #[error("upstream closed the connection before answering")]
    Closed,
}

/// Sends `req` on `conn` and drives the connection until the response head arrives. The
/// connection comes back with the response unless it has already ended.
pub(super) async fn exchange(
    mut conn: Box<Conn>,
    req: http::Request<Body>,
) -> Result<(Response<Incoming>, Option<Box<Conn>>), ExchangeError> {
    let mut response = std::pin::pin!(conn.tx.send_request(req));
    let mut ended = false;
    let result = std::future::poll_fn(|cx| {
        // The connection first: it writes the request and reads the answer into the
        // response future, which is then ready in the same poll (no self-wake-up).
        let finished = if ended {
            None
        } else {
            match Pin::new(&mut conn.conn).poll(cx) {
                Poll::Ready(r) => {
                    ended = true;
                    Some(r)
                }
                Poll::Pending => None,
            }
        };
        match response.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(ExchangeError::Http)),
            // The dispatcher settles the pending request when it ends; if it did not,
            // the connection's own outcome is the answer.
            Poll::Pending => match finished {
                Some(Err(e)) => Poll::Ready(Err(ExchangeError::Http(e))),
                Some(Ok(())) => Poll::Ready(Err(ExchangeError::Closed)),
                None if ended => Poll::Ready(Err(ExchangeError::Closed)),
                None => Poll::Pending,
            },
        }
    })
    .await?;
    Ok((result, (!ended).then_some(conn)))
}

/// Idle connections, newest last.
#[derive(Clone)]
pub(super) struct Pool {
    inner: Arc<PoolInner>,
}

/// Shards of idle connections: one per worker thread (up to 256 workers), one for the rest.
const SHARDS: usize = 257;

/// One shard of idle connections, newest last.
// Boxed on purpose: a connection moves pool → request → response body → pool as one
// pointer, and the body that carries it stays small.
#[allow(clippy::vec_box)]
type Idle = Mutex<Vec<Box<Conn>>>;

struct PoolInner {
    /// A connection is registered with the runtime of the worker that opened it, so it
    /// is kept for, and reused by, that worker only (the request that drives it runs
    /// there): no cross-thread wake-ups on the request path.
    idle: Box<[Idle]>,
    /// Per shard.
    max_idle: usize,
    idle_timeout: Duration,
}

/// This thread's shard.
fn shard(idle: &[Idle]) -> &Idle {
    let i = crate::server::workers::current().map_or(0, |w| 1 + w % (SHARDS - 1));
    &idle[i]
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle", &self.inner.max_idle)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            inner: Arc::new(PoolInner {
                idle: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
                max_idle,
                idle_timeout,
            }),
        }
    }

    /// The newest idle connection that can take a request; stale and closed ones are dropped.
    pub fn checkout(&self) -> Option<Box<Conn>> {
        let now = crate::clock::io_now();
        loop {
            let mut conn = {
                let mut idle = shard(&self.inner.idle).lock().ok()?;
                idle.pop()?
            };
            if now.saturating_duration_since(conn.idle_since) < self.inner.idle_timeout
                && conn.usable()
            {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for the next request (the oldest idle one goes if the pool is full).
    fn put_back(&self, mut conn: Box<Conn>) {
        if self.inner.max_idle == 0 {
            return;
        }
        conn.idle_since = crate::clock::io_now();
        if let Ok(mut idle) = shard(&self.inner.idle).lock() {
            if idle.len() >= self.inner.max_idle {
                idle.remove(0);
            }
            idle.push(conn);
        }
    }

    /// Idle connections held (tests).
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.inner
            .idle
            .iter()
            .map(|shard| shard.lock().map(|i| i.len()).unwrap_or(0))
            .sum()
    }
}

/// A response body from the upstream that drives its connection while it is read, and gives
/// the connection back to the pool once read to the end.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<(Box<Conn>, Pool)>,
    finished: bool,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.lease.is_some())
            .field("finished", &self.finished)
            .finish()
    }
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, conn: Option<Box<Conn>>, pool: &Pool) -> Self {
        let finished = http_body::Body::is_end_stream(&inner);
        UpstreamBody {
            inner,
            lease: conn.map(|c| (c, pool.clone())),
            finished,
        }
    }
}

impl Drop for UpstreamBody {
    /// A connection goes back only when its exchange is over on both sides: the response
    /// read to its end *and* the request written to its end. Upstream may answer before
    /// it has read the request body (a 413, an early 401); such a connection is closed, not
    /// parked with a half-sent body that nobody would drive.
    fn drop(&mut self) {
        if self.finished {
            if let Some((mut conn, pool)) = self.lease.take() {
                if conn.usable() {
                    pool.put_back(conn);
                }
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some((conn, _)) = this.lease.as_mut() {
            if Pin::new(&mut conn.conn).poll(cx).is_ready() {
                // The connection ended; what it delivered is in the body channel.
                this.lease = None;
            }
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        // A reader may stop at `is_end_stream` without polling for the final `None`.
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.finished = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
