//! A connection's life under deadlines: nothing can hold a slot for free.
//!
//! hyper bounds HTTP/2 liveness (PING); everything else is bounded here, by [`supervise`],
//! from what the connection reports through [`Activity`]: the HTTP/1.1 reader
//! (`server::framing`) counts request heads as their first byte arrives, the service counts
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
//! * server shutdown: asked to finish what is in flight (the drain bound is the caller's).
//!
//! Closing is hyper's graceful shutdown (HTTP/2 GOAWAY, HTTP/1.1 close after the response),
//! then, since a client can ignore that too, the connection is dropped [`CLOSE_GRACE`] later
//! unless a request is in flight by then.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{Body, BoxError};

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

    fn idle(&self) -> bool {
        self.load.in_flight.load(Ordering::Acquire) == 0
    }

    /// The deadline that applies now and why it closes, or `None` while a request is in flight.
    fn deadline(&self, deadlines: Deadlines) -> Option<(Instant, Closed)> {
        let load = &self.load;
        if load.in_flight.load(Ordering::Acquire) > 0 {
            return None;
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

impl Drop for InFlight {
    fn drop(&mut self) {
        let nanos = self.0.since_opened();
        self.0.last_end.fetch_max(nanos, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
#[derive(Debug)]
pub(crate) struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub(crate) fn new(body: Body, in_flight: InFlight) -> Self {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The deadlines [`supervise`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// `header_read_timeout`: the first request's head from the handshake, later heads from
    /// their first byte.
    pub head: Duration,
    pub idle: Duration,
}

/// Why a connection was asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Finished,
    NoRequest,
    SlowHead,
    Idle,
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
    // later).
    let recheck = deadlines.head.min(deadlines.idle);
    // First at the earlier of the two deadlines: a quick first request must not stretch a
    // shorter idle deadline to the first-request one.
    let timer = tokio::time::sleep_until(activity.load.opened + recheck);
    let mut timer = std::pin::pin!(timer);
    let why = loop {
        tokio::select! {
            r = conn.as_mut() => return (Closed::Finished, r.err()),
            () = timer.as_mut() => {
                let now = crate::clock::io_now();
                match activity.deadline(deadlines) {
                    Some((due, why)) if due <= now => break why,
                    Some((due, _)) => timer.as_mut().reset(due.min(now + recheck)),
                    None => timer.as_mut().reset(now + recheck),
                }
            }
            _ = stopped(&mut stop) => break Closed::Shutdown,
        }
    };
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
            }
        }
    }
}

/// Resolves once the server is stopping (never, if the signal is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        head: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    };

    /// A connection that never ends by itself.
    fn silent() -> impl Future<Output = Result<(), ()>> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_after_the_first_request_deadline() {
        let activity = Activity::new();
        let (_tx, stop) = watch::channel(false);
        let asked = AtomicBool::new(false);
        let started = crate::clock::io_now();
        let (why, _) = supervise(
            silent(),
            |_| asked.store(true, Ordering::SeqCst),
            &activity,
            DEADLINES,
            stop,
        )
        .await;
        assert_eq!(why, Closed::NoRequest);
        assert!(asked.load(Ordering::SeqCst));
        let took = started.elapsed();
        assert!(took >= DEADLINES.head && took <= DEADLINES.head + CLOSE_GRACE);
    }

    /// Runs `script` beside a supervised silent connection; returns why and when it closed.
    async fn closes<F>(
        deadlines: Deadlines,
        script: impl FnOnce(Activity) -> F,
    ) -> (Closed, Duration)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let activity = Activity::new();
        let (_tx, stop) = watch::channel(false);
        let task = tokio::spawn(script(activity.clone()));
        let started = crate::clock::io_now();
        let (why, _) = supervise(silent(), |_| {}, &activity, deadlines, stop).await;
        let took = started.elapsed();
        task.abort();
        (why, took)
    }

    /// One request as a connection reports it: its head begins, completes, is answered.
    fn answer(a: &Activity) {
        a.heads_begun(1);
        drop(a.begin());
    }

    fn within_grace(took: Duration, expected: Duration) -> bool {
        took >= expected && took <= expected + CLOSE_GRACE
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_response_and_never_cuts_one_in_flight() {
        let (why, took) = closes(DEADLINES, |a| async move {
            a.heads_begun(1);
            let guard = a.begin();
            tokio::time::sleep(Duration::from_secs(600)).await; // a long response
            drop(guard);
        })
        .await;
        assert_eq!(why, Closed::Idle);
        let expected = Duration::from_secs(600) + DEADLINES.idle;
        assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_deadline_shorter_than_the_first_request_one_holds_from_the_first_request() {
        let deadlines = Deadlines {
            head: Duration::from_secs(30),
            idle: Duration::from_secs(5),
        };
        let (why, took) = closes(deadlines, |a| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer(&a); // one quick request
        })
        .await;
        assert_eq!(why, Closed::Idle);
        let expected = Duration::from_millis(100) + deadlines.idle;
        assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_waiting_for_its_next_head_lasts_the_idle_deadline() {
        let (why, took) = closes(DEADLINES, |a| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer(&a);
        })
        .await;
        assert_eq!(why, Closed::Idle);
        let expected = Duration::from_millis(100) + DEADLINES.idle;
        assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_on_a_kept_alive_connection_is_cut_at_the_head_deadline() {
        let (why, took) = closes(DEADLINES, |a| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer(&a);
            tokio::time::sleep(Duration::from_secs(20)).await;
            a.heads_begun(1); // and the rest of it never comes
            std::future::pending::<()>().await;
        })
        .await;
        assert_eq!(why, Closed::SlowHead);
        let expected = Duration::from_millis(20_100) + DEADLINES.head;
        assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_head_stops_the_head_deadline() {
        let (why, took) = closes(DEADLINES, |a| async move {
            answer(&a);
            tokio::time::sleep(Duration::from_secs(20)).await;
            a.heads_begun(1);
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(a.begin()); // complete and answered
        })
        .await;
        assert_eq!(why, Closed::Idle);
        let expected = Duration::from_secs(22) + DEADLINES.idle;
        assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipelined_head_is_timed_from_the_response_before_it() {
        let (why, took) = closes(DEADLINES, |a| async move {
            a.heads_begun(1);
            let first = a.begin();
            a.heads_begun(1); // pipelined behind a long response, then stalled
            tokio::time::sleep(Duration::from_secs(600)).await;
            drop(first);
            std::future::pending::<()>().await;
        })
        .await;
        assert_eq!(why, Closed::SlowHead);
        let expected = Duration::from_secs(600) + DEADLINES.head;
        assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_the_connection_to_finish() {
        let activity = Activity::new();
        let (tx, stop) = watch::channel(false);
        let _guard = activity.begin();
        let asked = AtomicBool::new(false);
        let conn = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<(), ()>(())
        };
        tx.send(true).unwrap();
        let (why, err) = supervise(
            conn,
            |_| asked.store(true, Ordering::SeqCst),
            &activity,
            DEADLINES,
            stop,
        )
        .await;
        assert_eq!((why, err), (Closed::Shutdown, None));
        assert!(asked.load(Ordering::SeqCst));
    }
}
