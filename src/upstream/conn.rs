//! One HTTP/1.1 connection to the upstream, driven by the request's own task.
//!
//! No task is spawned and nothing crosses a channel: [`exchange`] writes the request and reads
//! the response head in the caller's poll, and the response body ([`super::UpstreamBody`])
//! reads the rest as the server streams it to the client. The connection owns one read buffer
//! and one write buffer for its whole life; response heads and bodies are cut out of the read
//! buffer without copies, and once the client side has written them the buffer is reused in
//! place instead of allocated afresh per message.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderValue;
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::codec::{self, CodecError, RequestFraming, RequestHead, ResponseHead};
use crate::body::{Body, BoxError};

/// Capacity of a connection's read buffer.
const READ_BUFFER: usize = 16 * 1024;
/// Below this much free space the read buffer is topped up before a read.
const MIN_READ: usize = 4 * 1024;
/// A connection whose buffers grew beyond this is not reused.
const MAX_KEPT_BUFFER: usize = 64 * 1024;
/// Request body pieces up to this size are copied behind the head (one write); larger ones are
/// written from where they lie.
const COALESCE: usize = 8 * 1024;

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

/// One upstream connection and its buffers.
pub(super) struct Conn {
    io: Io,
    /// Received and not yet consumed.
    pub read: BytesMut,
    /// The request head (and small body pieces) on their way out; after a body-less
    /// request, its head as written.
    pub write: Vec<u8>,
    /// When it last went idle (for `pool_idle_timeout`).
    pub idle_since: Instant,
    /// The response deadline of the exchange on it, moved forward for each request
    /// ([`exchange_by`]): a later deadline is an atomic store on a timer registered once,
    /// instead of a timer registered and removed per request. Idle in the pool, it may fire
    /// once per deadline and wake the task that last waited on it, which finds nothing to do.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Why an exchange on a connection failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("upstream connection failed")]
    Io(#[source] io::Error),
    #[error("upstream closed the connection before answering")]
    Closed,
    #[error(transparent)]
    Codec(CodecError),
    /// The client's request body failed (too large, or the client went away).
    #[error("request body failed while it was sent upstream")]
    Body(#[source] BoxError),
    #[error("request body does not match its Content-Length")]
    Length,
}

/// The answer to an exchange.
pub(super) struct Answer {
    pub head: ResponseHead,
    /// The rest of the request, when upstream answered before it was sent whole: it goes on
    /// being written while the response body is read (an upstream may stream its answer
    /// from the request body it is still reading).
    pub writer: Option<Box<Writer>>,
    /// Writing the request failed: the connection cannot carry another.
    pub broken: bool,
}

impl Conn {
    pub fn new(io: Io) -> Self {
        Conn {
            io,
            read: BytesMut::with_capacity(READ_BUFFER),
            write: Vec::with_capacity(1024),
            idle_since: crate::clock::io_now(),
            deadline: None,
        }
    }

    /// Whether an idle connection can take a request: nothing unread, and a read attempted
    /// without waiting finds neither data, nor the end, nor an error.
    pub fn usable(&mut self) -> bool {
        if self.read.capacity() > MAX_KEPT_BUFFER || self.write.capacity() > MAX_KEPT_BUFFER {
            // A connection that once carried a huge head or chunk is not kept at that size.
            return false;
        }
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        self.poll_fill(&mut cx).is_pending()
    }

    /// Reads what is there into the read buffer: `Ok(0)` at the end of the connection.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < MIN_READ {
            // Reuses the buffer in place once what was cut out of it has been dropped.
            self.read.reserve(READ_BUFFER / 2);
        }
        std::pin::pin!(self.io.read_buf(&mut self.read)).poll(cx)
    }
}

/// Sends a request (`head`, `Host` defaulting to `default_host`, then `body`) on `conn` and
/// reads until the response head has arrived.
///
/// The request body is written while the answer is awaited: an upstream may answer before it
/// has read the body (a 413, an early 401), and that answer is returned as soon as it is
/// complete, with the rest of the request in [`Answer::writer`].
pub(super) async fn exchange(
    conn: &mut Conn,
    head: &(dyn RequestHead + Sync),
    default_host: &HeaderValue,
    body: Body,
) -> Result<Answer, ExchangeError> {
    let head_request = *head.method() == http::Method::HEAD;
    conn.write.clear();
    let framing = codec::encode_request(
        &mut conn.write,
        head,
        default_host,
        body.is_end_stream(),
        body.size_hint().exact(),
    );
    run(conn, Writer::new(body, framing), head_request).await
}

/// [`exchange`] within `due`: `None` if `due` passed before the response head was complete
/// (the connection is then in an unknown state and must be dropped).
pub(super) async fn exchange_by(
    conn: &mut Conn,
    due: Instant,
    head: &(dyn RequestHead + Sync),
    default_host: &HeaderValue,
    body: Body,
) -> Option<Result<Answer, ExchangeError>> {
    let mut deadline = match conn.deadline.take() {
        Some(mut deadline) => {
            deadline.as_mut().reset(due);
            deadline
        }
        None => Box::pin(tokio::time::sleep_until(due)),
    };
    let answer = {
        let mut exchange = std::pin::pin!(exchange(conn, head, default_host, body));
        // Polled once in each exchange, which registers this request's task (the connection
        // serves one task after another), then once fired; outside the budget, so that an
        // exchange that used it up (an upstream flooding interim answers) cannot keep the
        // deadline from being looked at (`clock::poll_deadline`).
        let mut armed = false;
        std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
            Poll::Ready(answer) => Poll::Ready(Some(answer)),
            Poll::Pending => {
                crate::clock::poll_deadline(deadline.as_mut(), &mut armed, cx).map(|()| None)
            }
        })
        .await
    };
    conn.deadline = Some(deadline);
    answer
}

/// Sends again, on a fresh `conn`, a body-less request whose head another connection wrote
/// (`head`, as it went on the wire) before it failed.
pub(super) async fn exchange_again(
    conn: &mut Conn,
    head: Vec<u8>,
    head_request: bool,
) -> Result<Answer, ExchangeError> {
    conn.write = head;
    run(
        conn,
        Writer::new(Body::empty(), RequestFraming::Empty),
        head_request,
    )
    .await
}

/// The head (and what else is ready) written, the answer read: the exchange itself.
async fn run(
    conn: &mut Conn,
    mut writer: Writer,
    head_request: bool,
) -> Result<Answer, ExchangeError> {
    // A head can only be complete once a blank line has arrived: after a first try on the
    // first bytes read (where a whole head usually is: no search before it), the head is
    // parsed only then, not again for every piece of a head that trickles in.
    let mut searched = 0;
    let answer = std::future::poll_fn(|cx| {
        if !writer.done && writer.failed.is_none() {
            match writer.poll_conn(cx, conn) {
                Poll::Ready(Ok(())) => writer.done = true,
                Poll::Ready(Err(WriteError::Io(e))) => {
                    // Upstream may have answered and closed: its answer, if any, comes first.
                    writer.failed = Some(e);
                }
                Poll::Ready(Err(WriteError::Exchange(e))) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        loop {
            // Nothing searched yet: the first bytes of a head, tried as they are.
            let first = searched == 0 && !conn.read.is_empty();
            if first || blank_line(&conn.read, searched) {
                let before = conn.read.len();
                match codec::parse_response(&mut conn.read, head_request) {
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    // Interim answers were taken off; the final one may be complete too.
                    Ok(None) if conn.read.len() < before && blank_line(&conn.read, 0) => continue,
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(ExchangeError::Codec(e))),
                }
            }
            searched = conn.read.len();
            if searched > codec::MAX_HEAD_BYTES {
                return Poll::Ready(Err(ExchangeError::Codec(CodecError::HeadTooLarge)));
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(match writer.failed.take() {
                        Some(e) => ExchangeError::Io(e),
                        None => ExchangeError::Closed,
                    }))
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(ExchangeError::Io(e))),
            }
        }
    })
    .await?;
    let broken = writer.failed.is_some();
    let writer = (!writer.done && !broken).then(|| Box::new(writer));
    Ok(Answer {
        head: answer,
        writer,
        broken,
    })
}

/// Whether an empty line (the end of a head) ends in `buf`'s bytes from `from` on: the client
/// side's head finder, looking back across `from`.
fn blank_line(buf: &[u8], from: usize) -> bool {
    let from = from.min(buf.len());
    crate::server::head_end(&buf[..from], &buf[from..]).is_some()
}

/// Why writing the request stopped.
pub(super) enum WriteError {
    /// The connection failed (upstream may still have answered).
    Io(io::Error),
    Exchange(ExchangeError),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Writes the request: the head in the connection's write buffer, then the body by its framing.
pub(super) struct Writer {
    /// Written so far of the write buffer.
    pos: usize,
    /// A large body piece written from where it lies, after the write buffer.
    direct: Bytes,
    /// The CRLF that ends a chunk written from where it lies.
    chunk_end: bool,
    body: Body,
    framing: RequestFraming,
    /// Bytes of a `Content-Length` body still to come.
    left: u64,
    /// The body has ended (its last chunk is in the write buffer).
    ended: bool,
    /// Everything written and flushed.
    done: bool,
    failed: Option<io::Error>,
}

impl Writer {
    fn new(body: Body, framing: RequestFraming) -> Self {
        Writer {
            pos: 0,
            direct: Bytes::new(),
            chunk_end: false,
            body,
            left: match framing {
                RequestFraming::Length(n) => n,
                _ => 0,
            },
            framing,
            ended: framing == RequestFraming::Empty,
            done: false,
            failed: None,
        }
    }

    /// Writes what it can of the request on `conn`.
    pub fn poll_conn(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Conn,
    ) -> Poll<Result<(), WriteError>> {
        self.poll(cx, &mut conn.io, &mut conn.write)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut Io,
        out: &mut Vec<u8>,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            // Body pieces that are ready join the head in one write.
            while !self.ended && self.direct.is_empty() && out.len() < COALESCE {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.take(data, out)?;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(WriteError::Exchange(ExchangeError::Body(e))))
                    }
                    Poll::Ready(None) => self.end(out)?,
                    Poll::Pending => break,
                }
            }
            if self.pos == out.len() && self.direct.is_empty() {
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                if self.ended {
                    return Poll::Ready(Ok(()));
                }
                // Waiting for the client's body; what was written is out.
                return Poll::Pending;
            }
            while self.pos < out.len() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &out[self.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                self.pos += n;
            }
            if !self.ended {
                // Room for the next pieces; a complete request stays (for `exchange_again`).
                out.clear();
                self.pos = 0;
            }
            while !self.direct.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.direct))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                self.direct.advance(n);
            }
            if std::mem::take(&mut self.chunk_end) {
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// One piece of the body, framed.
    fn take(&mut self, data: Bytes, out: &mut Vec<u8>) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        match self.framing {
            RequestFraming::Chunked if data.len() <= COALESCE => codec::encode_chunk(out, &data),
            RequestFraming::Chunked => {
                codec::encode_chunk_size(out, data.len());
                self.direct = data;
                self.chunk_end = true;
            }
            RequestFraming::Length(_) => {
                let len = data.len() as u64;
                if len > self.left {
                    return Err(WriteError::Exchange(ExchangeError::Length));
                }
                self.left -= len;
                if data.len() <= COALESCE {
                    out.extend_from_slice(&data);
                } else {
                    self.direct = data;
                }
            }
            RequestFraming::Empty => return Err(WriteError::Exchange(ExchangeError::Length)),
        }
        Ok(())
    }

    /// The body ended.
    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), WriteError> {
        self.ended = true;
        match self.framing {
            RequestFraming::Chunked => out.extend_from_slice(codec::LAST_CHUNK),
            RequestFraming::Length(_) if self.left > 0 => {
                return Err(WriteError::Exchange(ExchangeError::Length))
            }
            _ => {}
        }
        Ok(())
    }
}
