//! Log lines written on worker threads are gathered per thread and handed to the background
//! writer in batches: one hand-off (and at most one wake-up of the writer thread) per
//! [`FLUSH_AT`] bytes or [`FLUSH_EVERY`], instead of one per line. With one access-log line
//! per request this is what keeps `logging.level: info` cheap.
//!
//! A line waits at most [`FLUSH_EVERY`] on its worker (each worker flushes on that timer and
//! when it ends); audit events and lines of other threads (startup, background tasks) go
//! straight through. The background writer queues at most [`QUEUED_BATCHES`] hand-offs
//! (about 64 MiB of batches) before a writer waits, so a stalled stdout cannot grow memory
//! without bound.
//! A process killed with SIGKILL loses what its workers had not handed over yet, as it loses
//! what the background writer had not written.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::MakeWriter;

/// A worker hands its lines over when this many bytes are waiting.
pub const FLUSH_AT: usize = 32 * 1024;
/// ... and at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Hand-offs (batches or single lines) the background writer queues before writers wait.
pub const QUEUED_BATCHES: usize = 1024;

thread_local! {
    static PENDING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The background writer every batch goes to (set once by `observability::init`).
static WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// The `MakeWriter` of the installed subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct Batched;

impl Batched {
    /// Routes batches to `writer` (the first call wins; later ones are ignored).
    pub fn install(writer: NonBlocking) -> Batched {
        let _ = WRITER.set(writer);
        Batched
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { direct: false }
    }

    /// Audit events are not held back: they go out at once (after what the worker had
    /// gathered before them, so the order stays).
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            direct: meta.target() == "audit",
        }
    }
}

/// Writes one formatted line.
pub struct LineWriter {
    direct: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.direct || crate::server::workers::current().is_none() {
            flush_thread();
            return match WRITER.get() {
                Some(w) => w.clone().write(buf),
                None => Ok(buf.len()),
            };
        }
        let full = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.extend_from_slice(buf);
            p.len() >= FLUSH_AT
        });
        if full {
            flush_thread();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends a line that `format` writes (newline included) the way [`LineWriter`] appends
/// one: to this worker's batch, or at once off the workers.
pub(super) fn append(format: impl FnOnce(&mut Vec<u8>)) {
    if crate::server::workers::current().is_none() {
        let mut line = Vec::with_capacity(256);
        format(&mut line);
        flush_thread();
        if let Some(w) = WRITER.get() {
            let _ = w.clone().write_all(&line);
        }
        return;
    }
    let full = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        format(&mut p);
        p.len() >= FLUSH_AT
    });
    if full {
        flush_thread();
    }
}

/// Hands what this thread has gathered to the background writer.
pub fn flush_thread() {
    let batch = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            return None;
        }
        let capacity = p.capacity().min(FLUSH_AT * 2);
        Some(std::mem::replace(&mut *p, Vec::with_capacity(capacity)))
    });
    if let (Some(batch), Some(w)) = (batch, WRITER.get()) {
        let _ = w.clone().write_all(&batch);
    }
}
