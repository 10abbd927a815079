//! The pool of idle upstream connections, and the response body that reads its connection.
//!
//! A connection goes back to the pool as soon as its response body has been read to the end
//! and its request was written whole; a body dropped early closes it. Idle connections are not
//! polled: on checkout each is checked once without waiting (see [`Conn::usable`]), else it is
//! dropped and the next one is tried. Idle connections older than `pool_idle_timeout` are
//! dropped; at most `pool_max_idle_per_host` are kept per worker (newest first), for the first
//! 1024 workers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use super::codec::{CodecError, Decoder, Fields, Step};
use super::conn::{Conn, WriteError, Writer};

/// Idle connections, newest last.
#[derive(Clone)]
pub(super) struct Pool {
    inner: Arc<PoolInner>,
}

/// Shards of idle connections: one for the threads that are not workers (one runtime), then
/// one per worker thread. Workers past the last shard keep no idle connections: a shard is
/// never shared by two runtimes (a connection's socket and deadline belong to the runtime
/// that opened it).
const SHARDS: usize = 1 + 1024;

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

/// This thread's shard, if it has one.
fn shard(idle: &[Idle]) -> Option<&Idle> {
    idle.get(crate::server::workers::current().map_or(0, |w| 1 + w))
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

    /// The newest idle connection that can take a request at `now`; stale and closed ones are
    /// dropped.
    pub(super) fn checkout(&self, now: Instant) -> Option<Box<Conn>> {
        loop {
            let mut conn = {
                let mut idle = shard(&self.inner.idle)?.lock().ok()?;
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
    pub(super) fn put_back(&self, mut conn: Box<Conn>) {
        if self.inner.max_idle == 0 {
            return;
        }
        conn.idle_since = crate::clock::io_now();
        if let Some(Ok(mut idle)) = shard(&self.inner.idle).map(Mutex::lock) {
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

/// A response body from the upstream, read from its connection as the client side asks for
/// it; the connection goes back to the pool once the body has ended. It carries its
/// response's fields as they came ([`Fields`]) until the head is written: held here, they
/// cost no allocation of the response's extensions.
pub struct UpstreamBody {
    decoder: Decoder,
    /// The response's fields, until taken to write its head.
    fields: Fields,
    /// The connection, while the body is being read.
    conn: Option<Box<Conn>>,
    pool: Pool,
    /// The rest of a request that upstream answered before it was sent whole.
    writer: Option<Box<Writer>>,
    /// The connection can carry another request once this body has ended (and the request
    /// has been written whole).
    reusable: bool,
    /// The body failed: it fails again if polled again, it does not end.
    failed: bool,
}

/// Why a response body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error("upstream connection failed while sending the response body")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The rest of a request upstream answered early could not be sent.
    #[error("request body failed while upstream was answering")]
    Request(#[source] crate::body::BoxError),
    #[error("upstream response body already failed")]
    Failed,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("decoder", &self.decoder)
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// The body of a response read on `conn`; a body that is already complete gives the
    /// connection back at once.
    pub(super) fn new(
        decoder: Decoder,
        fields: Fields,
        conn: Box<Conn>,
        writer: Option<Box<Writer>>,
        reusable: bool,
        pool: &Pool,
    ) -> Self {
        let mut body = UpstreamBody {
            decoder,
            fields,
            conn: Some(conn),
            pool: pool.clone(),
            writer,
            reusable,
            failed: false,
        };
        if body.decoder.is_done() {
            body.release();
        }
        body
    }

    /// The response's fields as they came (hop-by-hop ones included until the forwarder
    /// strips them).
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    pub fn fields_mut(&mut self) -> &mut Fields {
        &mut self.fields
    }

    /// Takes the response's fields, leaving none.
    pub fn take_fields(&mut self) -> Fields {
        std::mem::take(&mut self.fields)
    }

    /// The body has ended: its connection goes back to the pool if it can carry another
    /// request and nothing beyond the response arrived on it.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && self.writer.is_none() && conn.read.is_empty() {
                self.pool.put_back(conn);
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Some(Err(UpstreamBodyError::Failed)));
        }
        if let (Some(writer), Some(conn)) = (this.writer.as_mut(), this.conn.as_mut()) {
            match writer.poll_conn(cx, conn) {
                Poll::Ready(Ok(())) => this.writer = None,
                Poll::Ready(Err(WriteError::Io(_))) => {
                    // The answer may still arrive whole; the connection is done after it.
                    this.writer = None;
                    this.reusable = false;
                }
                Poll::Ready(Err(WriteError::Exchange(e))) => {
                    // The client's body failed (too large, gone): upstream would wait for the
                    // rest forever. The connection is closed so that it sees the request cut.
                    this.writer = None;
                    this.conn = None;
                    this.failed = true;
                    return Poll::Ready(Some(Err(UpstreamBodyError::Request(Box::new(e)))));
                }
                Poll::Pending => {}
            }
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match this.decoder.decode(&mut conn.read) {
                Ok(Step::More) => match ready!(conn.poll_fill(cx)) {
                    Ok(0) => this.decoder.eof(),
                    Ok(_) => continue,
                    Err(e) => {
                        this.conn = None;
                        this.failed = true;
                        return Poll::Ready(Some(Err(UpstreamBodyError::Io(e))));
                    }
                },
                other => other,
            };
            return Poll::Ready(match step {
                Ok(Step::Data(data)) => {
                    if this.decoder.is_done() {
                        this.release();
                    }
                    Some(Ok(Frame::data(data)))
                }
                Ok(Step::End) => {
                    this.release();
                    None
                }
                Ok(Step::More) => continue,
                Err(e) => {
                    this.conn = None;
                    this.failed = true;
                    Some(Err(e.into()))
                }
            });
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done() && !self.failed
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
