//! A connection's life under deadlines: nothing can hold a slot for free.
//!
//! hyper bounds HTTP/2 liveness (PING); everything else is bounded here, by [`supervise`],
//! from what the connection reports through [`Activity`]: the HTTP/1.1 reader
//! (`server::framing`, or the gateway's own loop, `server::h1`) counts request heads as their
//! first byte arrives, the service counts
//! requests as their head is complete, and a request is in flight until its response body is
//! finished or dropped. Both only update counters; the supervisor reads them when its single
//! timer fires, so a request arms no timer of its own (hyper's `header_read_timeout`, which
//! armed one per request and also cut kept-alive connections waiting for their next request,
//! is off).
//!
//! * no request yet: closed `header_read_timeout` after the handshake (hyper-util's protocol
//!   detection, a partial HTTP/2 preface, HTTP/2 with no stream, a slow first head);
//! * a later HTTP/1.1 head begun and not complete: closed `header_read_timeout` after its
//!   first byte (or after the previous response, if it came pipelined);
//! * no request in flight and no head begun: closed after `idle_timeout`;
//! * a request in flight whose response the client stopped reading (a write to it has waited
//!   `send_timeout` without moving): dropped at once, since no graceful close can reach a
//!   client that reads nothing. [`Watched`] tells the activity when writes wait and move,
//!   and [`Tracked`] when a response body hyper sends on HTTP/1.1 waits for hyper to take
//!   its next frame (an HTTP/2 stream's body tells its own stream, which resets itself:
//!   `server::streams`);
//! * server shutdown: asked to finish what is in flight (the drain bound is the caller's).
//!
//! Closing is hyper's graceful shutdown (HTTP/2 GOAWAY, HTTP/1.1 close after the response),
//! then, since a client can ignore that too, the connection is dropped [`CLOSE_GRACE`] later
//! unless a request is in flight by then.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a connection asked to close gets before it is dropped, when nothing is in flight.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Counters the requests of one connection update and its supervisor reads when its one
/// timer fires: a request costs two counter updates and a clock read, no wake-up and no timer.
#[derive(Debug)]
struct Load {
    in_flight: AtomicUsize,
    /// Requests whose head was complete (counted by the service).
    started: AtomicU64,
    /// Heads whose first byte arrived (counted by the HTTP/1.1 reader; more than `started`
    /// while one is being read).
    heads: AtomicU64,
    /// When the latest head began, as nanoseconds since `opened`.
    head_began: AtomicU64,
    /// When the last request ended, as nanoseconds since `opened`.
    last_end: AtomicU64,
    /// When a write to the client began to wait, as nanoseconds since `opened` plus one;
    /// zero while writes go through.
    write_waits: AtomicU64,
    /// Set when the connection is dropped for a client that stopped reading: its socket is
    /// then closed with a reset ([`Watched`]).
    reset: AtomicBool,
    /// Response bodies hyper sends that wait for it to take their next frame ([`Tracked`]).
    handed: tracked::Handed,
    opened: Instant,
}

impl Load {
    fn since_opened(&self) -> u64 {
        let since = crate::clock::io_now().saturating_duration_since(self.opened);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What one connection's service is doing, read by its supervisor. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    load: Arc<Load>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            load: Arc::new(Load {
                in_flight: AtomicUsize::new(0),
                started: AtomicU64::new(0),
                heads: AtomicU64::new(0),
                head_began: AtomicU64::new(0),
                last_end: AtomicU64::new(0),
                write_waits: AtomicU64::new(0),
                reset: AtomicBool::new(false),
                handed: tracked::Handed::default(),
                opened: crate::clock::io_now(),
            }),
        }
    }

    /// A request's head is complete: it is in flight until the returned guard drops.
    pub(crate) fn begin(&self) -> InFlight {
        self.load.started.fetch_add(1, Ordering::Relaxed);
        self.load.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.load.clone())
    }

    /// The first byte of `n` request heads arrived (HTTP/1.1 only; more than one when
    /// pipelined heads came in one read).
    pub(crate) fn heads_begun(&self, n: u64) {
        let load = &self.load;
        load.head_began
            .store(load.since_opened(), Ordering::Relaxed);
        load.heads.fetch_add(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn heads_seen(&self) -> u64 {
        self.load.heads.load(Ordering::Relaxed)
    }

    /// A write to the client could not go through: its first such write marks the time.
    fn write_waited(&self) {
        let load = &self.load;
        if load.write_waits.load(Ordering::Relaxed) == 0 {
            load.write_waits
                .store(load.since_opened().saturating_add(1), Ordering::Relaxed);
        }
    }

    /// A write to the client went through (or failed): it is no longer waiting.
    fn write_moved(&self) {
        let waits = &self.load.write_waits;
        if waits.load(Ordering::Relaxed) != 0 {
            waits.store(0, Ordering::Relaxed);
        }
    }

    fn idle(&self) -> bool {
        self.load.in_flight.load(Ordering::Acquire) == 0
    }

    /// The deadline that applies now and why it closes, or `None` while a request is in flight
    /// and its response goes out (or has nothing to send yet).
    fn deadline(&self, deadlines: Deadlines) -> Option<(Instant, Closed)> {
        let load = &self.load;
        if load.in_flight.load(Ordering::Acquire) > 0 {
            // The longest wait for the client: a write to it, or a response body whose next
            // frame nobody has taken.
            let waits = [
                load.write_waits.load(Ordering::Relaxed),
                load.handed.earliest(),
            ];
            return waits.into_iter().filter(|&w| w != 0).min().map(|waits| {
                let since = Duration::from_nanos(waits - 1);
                (load.opened + since + deadlines.send, Closed::SlowReader)
            });
        }
        let started = load.started.load(Ordering::Relaxed);
        if started == 0 {
            return Some((load.opened + deadlines.head, Closed::NoRequest));
        }
        let ended = load.last_end.load(Ordering::Relaxed);
        if load.heads.load(Ordering::Relaxed) > started {
            // A head is being read; a pipelined one is timed from the response before it.
            let began = load.head_began.load(Ordering::Relaxed).max(ended);
            let since = Duration::from_nanos(began);
            return Some((load.opened + since + deadlines.head, Closed::SlowHead));
        }
        let ended = Duration::from_nanos(ended);
        Some((load.opened + ended + deadlines.idle, Closed::Idle))
    }
}

/// One request in flight; dropped with its response body.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Load>);

pub(crate) use tracked::Tracked;

impl Drop for InFlight {
    fn drop(&mut self) {
        let nanos = self.0.since_opened();
        self.0.last_end.fetch_max(nanos, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The deadlines [`supervise`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// `header_read_timeout`: the first request's head from the handshake, later heads from
    /// their first byte.
    pub head: Duration,
    pub idle: Duration,
    /// `send_timeout`: how long a write to the client may wait while a request is in flight.
    pub send: Duration,
}

/// Why a connection was asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Finished,
    NoRequest,
    SlowHead,
    Idle,
    /// The client read nothing of a response for `send_timeout`.
    SlowReader,
    Shutdown,
}

/// Drives `conn` to its end under the deadlines; `graceful` asks it to close.
pub(crate) async fn supervise<C, E>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    activity: &Activity,
    deadlines: Deadlines,
    mut stop: watch::Receiver<bool>,
) -> (Closed, Option<E>)
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    // One timer for the connection's life. Requests do not re-arm it: when it fires, the
    // deadline is worked out from the counters and the timer moved to it if it lies ahead,
    // but never further than `recheck`: a head may begin in the meantime, and its deadline
    // is then at most `head` away (while a request is in flight, it looks again `recheck`
    // later; a write may begin to wait in the meantime, and its deadline is `send` away).
    let recheck = deadlines.head.min(deadlines.idle).min(deadlines.send);
    // First at the earlier of the two deadlines: a quick first request must not stretch a
    // shorter idle deadline to the first-request one.
    let timer = tokio::time::sleep_until(activity.load.opened + recheck);
    let mut timer = std::pin::pin!(timer);
    // The stop signal is checked on every wake-up by comparing versions (an atomic load).
    // Its notification is registered once, with a second receiver, and not polled again:
    // polling it takes the lock of the channel's list of waiters, which every connection of
    // every worker shares. It is polled outside tokio's budget, which the connection may
    // have spent in the same poll: a budget-refused poll would register nothing. The server
    // only ever sends `true`, so any new value means stop.
    let mut heard = stop.clone();
    let mut notified = std::pin::pin!(tokio::task::coop::unconstrained(heard.changed()));
    let mut registered = false;
    // Whether the timer has been polled since it was last set (`clock::poll_deadline`).
    let mut armed = false;
    let mut stopping = *stop.borrow_and_update();
    let why = loop {
        if stopping {
            break Closed::Shutdown;
        }
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                return Poll::Ready(Woke::Finished(r));
            }
            if !registered {
                registered = true;
                let _ = notified.as_mut().poll(cx);
            }
            if stop_given(&stop) {
                return Poll::Ready(Woke::Stop);
            }
            crate::clock::poll_deadline(timer.as_mut(), &mut armed, cx).map(|()| Woke::Timer)
        })
        .await;
        match woke {
            Woke::Finished(r) => return (Closed::Finished, r.err()),
            Woke::Stop => stopping = true,
            Woke::Timer => {
                armed = false;
                // The timer fired, so it is at least its deadline, whatever the clock read
                // at the start of this poll says (on a multi-thread runtime another thread can
                // move the timer wheel past that read): a deadline that fell in between would
                // otherwise be set again, fire again at once, and so on without end.
                let now = crate::clock::io_now().max(timer.deadline());
                match activity.deadline(deadlines) {
                    Some((due, why)) if due <= now => break why,
                    Some((due, _)) => timer.as_mut().reset(due.min(now + recheck)),
                    None => timer.as_mut().reset(now + recheck),
                }
            }
        }
    };
    if why == Closed::SlowReader {
        // Its client reads nothing, so a graceful close would not reach it: dropping the
        // connection also ends the response and its upstream exchange.
        activity.load.reset.store(true, Ordering::Relaxed);
        return (why, None);
    }
    graceful(conn.as_mut());
    if why == Closed::Shutdown {
        return (why, conn.await.err());
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => return (why, r.err()),
            _ = tokio::time::sleep(CLOSE_GRACE) => {
                if activity.idle() {
                    return (why, None);
                }
                // A request begun during the grace (hyper may still take one) is held to the
                // send deadline like any other.
                if let Some((due, Closed::SlowReader)) = activity.deadline(deadlines) {
                    if due <= crate::clock::io_now() {
                        activity.load.reset.store(true, Ordering::Relaxed);
                        return (Closed::SlowReader, None);
                    }
                }
            }
        }
    }
}

/// Whether the stop signal came since `stop` last looked: a new value, or a closed channel
/// that holds `true`.
fn stop_given(stop: &watch::Receiver<bool>) -> bool {
    match stop.has_changed() {
        Ok(changed) => changed,
        Err(_closed) => *stop.borrow(),
    }
}

/// What woke the supervisor.
enum Woke<R> {
    Finished(R),
    Stop,
    Timer,
}

/// The client's stream, telling the connection's [`Activity`] when a write has to wait for
/// the client and when writing moves again.
#[derive(Debug)]
pub(crate) struct Watched<S: UnderTcp> {
    inner: S,
    activity: Activity,
}

/// The TCP socket under a client's stream.
pub(crate) trait UnderTcp {
    fn tcp(&self) -> &tokio::net::TcpStream;
}

impl UnderTcp for tokio::net::TcpStream {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self
    }
}

impl UnderTcp for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.get_ref().0
    }
}

impl<S: UnderTcp> Drop for Watched<S> {
    fn drop(&mut self) {
        let load = &self.activity.load;
        // Dropped for a client that stopped reading, or (whatever closed it) while a write to
        // the client waits: closed with a reset, as nginx's `reset_timedout_connection` does.
        // The response bytes the client never took are discarded now instead of being kept,
        // and retransmitted, by the kernel for a peer that takes nothing.
        if load.reset.load(Ordering::Relaxed) || load.write_waits.load(Ordering::Relaxed) != 0 {
            let _ = self.inner.tcp().set_zero_linger();
        }
    }
}

impl<S: UnderTcp> Watched<S> {
    pub(crate) fn new(inner: S, activity: Activity) -> Self {
        Watched { inner, activity }
    }

    fn seen<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.activity.write_waited(),
            Poll::Ready(_) => self.activity.write_moved(),
        }
        polled
    }
}

impl<S: AsyncRead + Unpin + UnderTcp> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin + UnderTcp> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.seen(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.seen(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.seen(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

mod tracked;

#[cfg(test)]
mod tests;
