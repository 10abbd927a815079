//! Time as an input: the only place that reads the system's clocks.
//!
//! Every decision that depends on time goes through a [`Clock`] handle: token `exp`/`iat`
//! and the absolute session cap against [`Clock::now`] (wall clock, seconds), idle expiry,
//! login lockouts and the upstream session's refresh against [`Clock::instant`] (monotonic,
//! on tokio's clock, so `tokio::time::pause` also moves it). Tests move a clock forward with
//! [`Clock::advance`] instead of sleeping. Durations that are only reported (the access
//! log) use a [`Stopwatch`]. Clippy's `disallowed-methods` keeps `Instant::now` and
//! `SystemTime::now` out of every other file.
//!
//! A connection task reads the monotonic clock once per poll ([`in_turns`]), as nginx reads
//! it once per turn of its event loop: within one poll every reader of [`io_now`] and
//! [`Clock::instant`] sees the same instant. A poll does not wait, so the instant is at most
//! microseconds old; a poll that blocked (a log written to a stalled pipe) would make
//! deadlines computed in it start a little early and checks in it see a little late. Nested,
//! the inner turn ends by putting back the outer instant, which may be older: readers take
//! differences with `saturating_duration_since`. A [`Stopwatch`] starts at the poll's instant
//! and reads its end live.

use std::cell::Cell;
use std::future::Future;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The gateway's time source: wall-clock seconds and a monotonic instant, both movable
/// forward by tests. Cheap to clone; clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds added to both system clocks (tests move time forward with it).
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Milliseconds since the Unix epoch (shared session records across replicas).
    pub fn now_ms(&self) -> i64 {
        #[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        ms + self.offset_ms.load(Ordering::Relaxed)
    }

    /// A monotonic instant (tokio's clock, plus the offset tests added).
    pub fn instant(&self) -> tokio::time::Instant {
        let now = monotonic();
        let offset = self.offset_ms.load(Ordering::Relaxed).max(0) as u64;
        now + Duration::from_millis(offset)
    }

    /// Moves this clock (and its clones) forward by whole seconds; for tests.
    pub fn advance(&self, seconds: i64) {
        self.offset_ms.fetch_add(seconds * 1000, Ordering::Relaxed);
    }

    /// Moves this clock (and its clones) forward; for tests.
    pub fn advance_by(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

/// Now on tokio's timer, for connection and body deadlines (I/O timing that
/// `tokio::time::pause` moves in tests). Session, token and lockout decisions use a
/// [`Clock`] instead.
pub fn io_now() -> tokio::time::Instant {
    monotonic()
}

/// Polls a deadline's `timer` when it has just been set (`*armed` false: the poll registers
/// the task with it) and afterwards only once it has fired, not at every wake-up of its task
/// (each poll registers the task's waker anew: two atomic swaps). Polled outside tokio's
/// budget: a first poll refused for want of budget would create no timer entry, and
/// `is_elapsed` would never turn true. Whoever sets the timer anew sets `*armed` to false.
pub(crate) fn poll_deadline(
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    armed: &mut bool,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<()> {
    if *armed && !timer.is_elapsed() {
        return std::task::Poll::Pending;
    }
    *armed = true;
    std::pin::pin!(tokio::task::coop::unconstrained(timer)).poll(cx)
}

thread_local! {
    /// The instant of the poll running on this thread: `None` outside [`in_turns`], `Some(None)`
    /// inside it until the first read.
    static TURN: Cell<Option<Option<tokio::time::Instant>>> = const { Cell::new(None) };
}

/// tokio's monotonic clock, read at most once per poll of a future run [`in_turns`].
fn monotonic() -> tokio::time::Instant {
    let read = monotonic_live;
    TURN.with(|turn| match turn.get() {
        Some(Some(now)) => now,
        Some(None) => {
            let now = read();
            turn.set(Some(Some(now)));
            now
        }
        None => read(),
    })
}

/// tokio's monotonic clock, read now whatever the poll has read.
fn monotonic_live() -> tokio::time::Instant {
    #[allow(clippy::disallowed_methods)] // the one place that reads the monotonic clock
    tokio::time::Instant::now()
}

/// Runs `f` so that each of its polls reads the monotonic clock at most once: a connection
/// task reads it for its deadlines, its request's timings and its upstream exchange, and all
/// of that happens in a handful of polls per request. `f` is pinned by the caller, so that a
/// connection's (large) future is not stored twice.
pub async fn in_turns<F: Future>(mut f: std::pin::Pin<&mut F>) -> F::Output {
    /// Puts back the state of the poll this one runs in (nothing, for a task), also when the
    /// poll panics.
    struct Restore(Option<Option<tokio::time::Instant>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            TURN.with(|turn| turn.set(self.0));
        }
    }
    std::future::poll_fn(|cx| {
        let _restore = Restore(TURN.with(|turn| turn.replace(Some(None))));
        f.as_mut().poll(cx)
    })
    .await
}

/// Measures how long something took, for reports only (never for decisions).
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(tokio::time::Instant);

impl Stopwatch {
    /// Starts at the instant of the poll it is started in (a read of the clock only when the
    /// poll has not read it yet): earlier than now by what the poll did before, microseconds,
    /// which a report of milliseconds does not see.
    pub fn start() -> Self {
        Stopwatch(monotonic())
    }

    /// Read live, not from the poll's instant: an answer made within one poll took time too,
    /// and HTTP/2 streams (their own tasks) are measured the same way.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The calendar time a log line is stamped with (reports only, never for decisions).
pub fn log_time() -> std::time::SystemTime {
    #[allow(clippy::disallowed_methods)] // log timestamps, like tracing-subscriber's own
    std::time::SystemTime::now()
}

/// The current time as an HTTP `Date` value (RFC 9110 §5.6.7), formatted at most once a
/// second per thread. Within the second it was formatted in, the value is found by the
/// poll's monotonic instant ([`io_now`]), without reading the calendar clock.
pub fn http_date<R>(with: impl FnOnce(&[u8]) -> R) -> R {
    struct Cached {
        /// The monotonic instant at which the formatted second ends.
        until: Option<tokio::time::Instant>,
        value: String,
    }
    thread_local! {
        static CACHED: std::cell::RefCell<Cached> =
            const { std::cell::RefCell::new(Cached { until: None, value: String::new() }) };
    }
    let instant = monotonic();
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.until.is_none_or(|until| instant >= until) {
            // Read before the calendar clock, so the second ends at `until` or after it: the
            // value is formatted anew once its second has ended by the poll's instant (which
            // lags the clock by what the poll did before, microseconds).
            let read = monotonic_live();
            #[allow(clippy::disallowed_methods)] // the `Date` of a response, like hyper's own
            let now = std::time::SystemTime::now();
            let into_second = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(Duration::ZERO, |d| {
                    Duration::from_nanos(u64::from(d.subsec_nanos()))
                });
            *cached = Cached {
                until: Some(read + (Duration::from_secs(1) - into_second)),
                value: httpdate::fmt_http_date(now),
            };
        }
        with(cached.value.as_bytes())
    })
}

/// The current UTC time as RFC 3339 with microseconds and a `Z`, as ARCP writes it.
pub fn rfc3339_now() -> String {
    #[allow(clippy::disallowed_methods)] // the one place that reads the calendar clock
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.microsecond() * 1000)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_utc_with_z() {
        let ts = rfc3339_now();
        assert!(ts.ends_with('Z'), "{ts}");
        assert!(OffsetDateTime::parse(&ts, &Rfc3339).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_in_turns_reads_the_clock_once_per_poll() {
        let (first, same, next) = in_turns(std::pin::pin!(async {
            let first = io_now();
            tokio::time::advance(Duration::from_millis(5)).await; // a poll ends here
            let next = io_now();
            (first, io_now(), next)
        }))
        .await;
        assert_eq!(same, next, "one poll, one instant");
        assert_eq!(
            next - first,
            Duration::from_millis(5),
            "a new poll reads it again"
        );
        // Outside it, every read is live again.
        let outside = io_now();
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(io_now() - outside, Duration::from_millis(1));
    }

    /// A stopwatch starts at its poll's instant and stops live: what the poll did after the
    /// clock was first read (a password hashed, a page rendered) is in the duration.
    #[test]
    fn a_stopwatch_starts_at_the_poll_and_stops_live() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let (first, started, took) = runtime.block_on(in_turns(std::pin::pin!(async {
            let first = io_now();
            std::thread::sleep(Duration::from_millis(20)); // work within one poll
            let started = Stopwatch::start();
            std::thread::sleep(Duration::from_millis(20));
            (first, started, started.elapsed())
        })));
        assert_eq!(started.0, first, "no second read in the same poll");
        assert!(took >= Duration::from_millis(40), "{took:?}");
    }

    /// The `Date` value is the calendar's second, the same within a second, and the next
    /// one once that second has passed.
    #[test]
    fn the_date_follows_the_calendar_second() {
        let parse =
            |value: &[u8]| httpdate::parse_http_date(std::str::from_utf8(value).unwrap()).unwrap();
        let before = log_time() - Duration::from_secs(1);
        let first = http_date(parse);
        assert_eq!(http_date(parse), first);
        assert!(first >= before && first <= log_time(), "{first:?}");
        let started = Stopwatch::start();
        let mut next = first;
        while next == first && started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
            next = http_date(parse);
        }
        // Not a second later: the value kept past its second would be the one after.
        assert_eq!(next, first + Duration::from_secs(1));
    }

    #[test]
    fn a_poll_that_panics_leaves_the_thread_outside_any_turn() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(in_turns(std::pin::pin!(async {
                let _ = io_now();
                panic!("in the middle of a poll");
            })))
        }));
        assert_eq!(TURN.with(Cell::get), None);
    }

    #[test]
    fn advance_moves_clones() {
        let a = Clock::system();
        let b = a.clone();
        let before = b.now();
        let instant = b.instant();
        a.advance(100);
        assert!(b.now() >= before + 100);
        assert!(b.instant() >= instant + Duration::from_secs(100));
    }
}
