//! HTTP/1.1 framing as strict as nginx ≥ 1.21.1, checked on the raw bytes.
//!
//! hyper already refuses most ambiguous framing itself (conflicting `Content-Length`, a
//! `Transfer-Encoding` whose last coding is not `chunked`, `Transfer-Encoding` on HTTP/1.0,
//! NUL, bare CR and obsolete line folding in headers, a space before the colon). What it lets
//! through, it also hides from the service: with `Content-Length` *and* `Transfer-Encoding` it
//! drops the length and serves the request (RFC 9112 §6.3 allows that, nginx refuses it since
//! 1.21.1), it merges repeated equal `Content-Length` lines, and it accepts bare LF as a line
//! end. So the [`Scanned`] reader watches the bytes hyper reads: it follows request heads and
//! body framing (lengths and chunks; it never copies a body) and notes the first head that is
//! ambiguous, by its position on the connection. The service, which sees requests in the same
//! order, refuses that request (400 and close); nothing after it on the connection is read.
//! It also tells the connection's [`Activity`] when a head's first byte arrives, so that the
//! connection's supervisor bounds the time to complete a head without a timer per request.
//!
//! The gateway's own loop for bodyless requests (`server::h1`) serves only heads that
//! [`bodyless`] finds unambiguous (its parser takes the same facts in its own pass; a test and
//! the `client_request` fuzz target hold it to this function); any other head goes to hyper,
//! through this reader.
//!
//! What this does not do: parse HTTP/2 (after the preface it stands aside), or follow a
//! connection past an `Upgrade`/`CONNECT` request (the bytes then belong to another protocol).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

mod head;

pub use head::bodyless;
use head::examine;
pub(crate) use head::head_end;

/// Longest head followed; hyper refuses longer ones itself (`max_buf_size`).
const MAX_HEAD: usize = 64 * 1024;

/// Shared by the reader and the service of one connection.
#[derive(Debug, Default)]
pub(crate) struct HeadLog {
    /// Index of the first ambiguous head and why.
    flagged: OnceLock<(u64, &'static str)>,
    /// Requests the service has seen.
    served: AtomicU64,
}

impl HeadLog {
    /// Called once per request, in order: why its head was ambiguous, if it was.
    pub(crate) fn next_request(&self) -> Option<&'static str> {
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        self.flagged
            .get()
            .filter(|(i, _)| *i == n)
            .map(|(_, why)| *why)
    }
}

/// A reader that follows HTTP/1.1 framing and records the first ambiguous head in a [`HeadLog`].
pub(crate) struct Scanned<S> {
    inner: S,
    scanner: Scanner,
    log: Arc<HeadLog>,
    activity: Activity,
    /// Bytes read from `inner` before this reader took over (`server::h1`'s), read first.
    read: Bytes,
    /// Heads the connection's activity already counted that this reader will see again
    /// (the one `server::h1` hands over with its bytes).
    counted: u64,
}

impl<S> Scanned<S> {
    /// `http1` false (ALPN chose `h2`) makes the reader stand aside from the start.
    pub(crate) fn new(inner: S, http1: bool, log: Arc<HeadLog>, activity: Activity) -> Self {
        let mut scanner = Scanner::default();
        if !http1 {
            scanner.state = State::Aside;
        }
        Scanned {
            inner,
            scanner,
            log,
            activity,
            read: Bytes::new(),
            counted: 0,
        }
    }

    /// Takes over from `server::h1`'s loop: `read` (bytes it read from the stream, beginning
    /// with a head it counted as begun) comes first.
    pub(crate) fn resumed(mut self, read: Bytes) -> Self {
        self.counted = u64::from(!read.is_empty());
        self.read = read;
        self
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Scanned<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = if this.read.is_empty() || buf.remaining() == 0 {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            Poll::Ready(Ok(()))
        };
        if matches!(polled, Poll::Ready(Ok(()))) && !matches!(this.scanner.state, State::Aside) {
            let begun = this.scanner.begun;
            if let Some(flag) = this.scanner.feed(&buf.filled()[before..]) {
                let _ = this.log.flagged.set(flag);
            }
            if this.scanner.begun != begun {
                // Several pipelined heads may begin in one read; each counts, once.
                let begun = this.scanner.begun - begun;
                let seen = begun.min(this.counted);
                this.counted -= seen;
                if begun > seen {
                    this.activity.heads_begun(begun - seen);
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Scanned<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[derive(Debug, Default)]
struct Scanner {
    state: State,
    /// Heads completed so far.
    heads: u64,
    /// Heads whose first byte was seen.
    begun: u64,
}

#[derive(Debug)]
enum State {
    /// Collecting a head up to its empty line.
    Head(Vec<u8>),
    /// Body bytes left of a `Content-Length` body.
    Fixed(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not HTTP/1.1 framing (HTTP/2, an upgrade, or past a flagged head): bytes pass unseen.
    Aside,
}

impl Default for State {
    fn default() -> Self {
        State::Head(Vec::new())
    }
}

/// RFC 9112 §7.1 chunked framing, as hyper's decoder reads it.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace or an extension after the size, up to CR.
    SizeTail(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines; `at_start` while nothing of a line was seen.
    Trailer {
        at_start: bool,
    },
    EndLf,
}

impl Scanner {
    /// Follows `data`; returns the index of a head that was ambiguous and why.
    fn feed(&mut self, mut data: &[u8]) -> Option<(u64, &'static str)> {
        while !data.is_empty() {
            match &mut self.state {
                State::Aside => return None,
                State::Head(buf) => {
                    if buf.is_empty() {
                        // RFC 9112 §2.2: empty lines before a request line.
                        let skip = data
                            .iter()
                            .position(|&b| b != b'\r' && b != b'\n')
                            .unwrap_or(data.len());
                        data = &data[skip..];
                        if data.is_empty() {
                            break;
                        }
                        self.begun += 1;
                    }
                    let Some(used) = head_end(buf, data) else {
                        // The head goes on in the next read.
                        buf.extend_from_slice(data);
                        if buf.len() > MAX_HEAD {
                            self.state = State::Aside;
                        }
                        break;
                    };
                    if buf.len() + used > MAX_HEAD + 1 {
                        self.state = State::Aside;
                        break;
                    }
                    let index = self.heads;
                    self.heads += 1;
                    // A head that arrived in one read is examined where it lies (no copy).
                    let verdict = if buf.is_empty() {
                        examine(&data[..used])
                    } else {
                        buf.extend_from_slice(&data[..used]);
                        let verdict = examine(buf);
                        // Freed, not kept: a long head must not pin memory for the
                        // connection's life.
                        *buf = Vec::new();
                        verdict
                    };
                    data = &data[used..];
                    match verdict {
                        Ok(State::Head(_)) => {} // no body: the next head, same buffer
                        Ok(next) => self.state = next,
                        Err(why) => {
                            self.state = State::Aside;
                            return Some((index, why));
                        }
                    }
                }
                State::Fixed(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        self.state = State::default();
                    }
                }
                State::Chunked(chunk) => {
                    let (next, used) = step(*chunk, data);
                    data = &data[used..];
                    self.state = next;
                }
            }
        }
        None
    }
}

/// One step of the chunked framing: the next state and how many bytes it used.
fn step(chunk: Chunk, data: &[u8]) -> (State, usize) {
    let b = data[0];
    let next = match chunk {
        // Leading zeros are digits like any other (hyper accepts them); only a size past
        // u64 is refused.
        Chunk::Size { size, digits } => match (b as char).to_digit(16) {
            Some(d) if size >> 60 == 0 => Chunk::Size {
                size: size * 16 + u64::from(d),
                digits: digits.saturating_add(1),
            },
            None if digits > 0 && matches!(b, b' ' | b'\t' | b';') => Chunk::SizeTail(size),
            None if digits > 0 && b == b'\r' => Chunk::SizeLf(size),
            _ => return (State::Aside, 1),
        },
        Chunk::SizeTail(size) => match b {
            b'\r' => Chunk::SizeLf(size),
            b'\n' => return (State::Aside, 1),
            _ => Chunk::SizeTail(size),
        },
        Chunk::SizeLf(0) if b == b'\n' => Chunk::Trailer { at_start: true },
        Chunk::SizeLf(size) if b == b'\n' => Chunk::Data(size),
        Chunk::Data(left) => {
            let n = left.min(data.len() as u64);
            let next = if n == left {
                Chunk::DataCr
            } else {
                Chunk::Data(left - n)
            };
            return (State::Chunked(next), n as usize);
        }
        Chunk::DataCr if b == b'\r' => Chunk::DataLf,
        Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
        Chunk::Trailer { at_start: true } if b == b'\r' => Chunk::EndLf,
        Chunk::Trailer { .. } if b == b'\n' => Chunk::Trailer { at_start: true },
        Chunk::Trailer { .. } => Chunk::Trailer { at_start: false },
        Chunk::EndLf if b == b'\n' => return (State::default(), 1),
        _ => return (State::Aside, 1),
    };
    (State::Chunked(next), 1)
}

/// What the reader makes of `data` read in pieces cut at `cuts` (positions into `data`): the
/// first ambiguous head and why, the heads completed, the heads begun, and where it stands.
/// For the `framing` fuzz target, which checks that any cuts give what one read gives.
#[doc(hidden)]
pub fn scan_in_pieces(
    data: &[u8],
    cuts: &[usize],
) -> (Option<(u64, &'static str)>, u64, u64, String) {
    let mut scanner = Scanner::default();
    let mut flag = None;
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let cut = cut.clamp(from, data.len());
        if let Some(f) = scanner.feed(&data[from..cut]) {
            flag.get_or_insert(f);
        }
        from = cut;
    }
    (
        flag,
        scanner.heads,
        scanner.begun,
        format!("{:?}", scanner.state),
    )
}

#[cfg(test)]
mod tests;
