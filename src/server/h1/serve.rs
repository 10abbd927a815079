//! The connection loop for bodyless HTTP/1.1 requests, and the hand-over to hyper.
//!
//! One request at a time, in order: read a head, serve it through the pipeline, write the
//! response, and look at what follows. The connection's [`Activity`] is told what hyper's
//! reader and service would tell it (a head begun, a request in flight until its response
//! body ended), so the supervisor's deadlines apply unchanged; the supervisor's request to
//! close ([`Closing`]) is heard while the loop waits for a head, and a response being written
//! then says `connection: close`.

use std::future::Future as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{accept, encode_head, BodySize, Framing, HAND_OFF_AT};
use crate::pipeline::{self, ConnSlot, State};
use crate::proxy::ConnInfo;
use crate::server::activity::Activity;
use crate::server::framing::head_end;
use crate::upstream::codec::{encode_chunk_size, LAST_CHUNK};

/// Body data up to this size is copied next to the head (one write); larger pieces are
/// written on their own, and so is the buffer once it holds this much.
const COALESCE: usize = 16 * 1024;
/// The write buffer's usual capacity (a response head and a small body).
const OUT: usize = 1024;

/// The supervisor's request that the connection close: set once, read by the loop.
#[derive(Debug, Default)]
pub(crate) struct Closing(AtomicBool);

impl Closing {
    pub(crate) fn ask(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn asked(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How the loop ended.
pub(crate) enum Ended {
    /// The connection is finished (the client closed it, or it was asked to close).
    Closed,
    /// A request this loop does not serve begins at the front of `read`: hyper's. `served`
    /// requests came before it on this connection.
    HandOff { read: Bytes, served: u64 },
}

/// What the loop serves requests with.
pub(crate) struct Ctx<'a> {
    pub state: &'a Arc<State>,
    pub info: &'a ConnInfo,
    pub slot: &'a ConnSlot,
    pub activity: &'a Activity,
    pub closing: &'a Closing,
}

/// Serves bodyless HTTP/1.1 requests on `io` until the connection ends or a request comes
/// that is hyper's.
pub(crate) async fn serve<S>(io: &mut S, ctx: Ctx<'_>) -> io::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(OUT);
    let mut served = 0;
    loop {
        if out.capacity() > COALESCE {
            // A large response grew it; a kept-alive connection does not keep that.
            out = Vec::with_capacity(OUT);
        }
        if ctx.closing.asked() {
            return Ok(Ended::Closed);
        }
        let end = match next_head(io, &mut buf, &ctx).await? {
            Next::Head(end) => end,
            Next::Long => {
                return Ok(Ended::HandOff {
                    read: buf.freeze(),
                    served,
                })
            }
            Next::Ended => {
                // The client's end, or a close the supervisor asked for: TLS says so.
                let _ = io.shutdown().await;
                return Ok(Ended::Closed);
            }
        };
        let Some(parsed) = accept(&buf[..end]) else {
            return Ok(Ended::HandOff {
                read: buf.freeze(),
                served,
            });
        };
        buf.advance(end);
        let in_flight = ctx.activity.begin();
        let head_request = parsed.request.method() == Method::HEAD;
        let request = parsed.request;
        let (response, request_id) =
            pipeline::respond(ctx.state.clone(), ctx.info, ctx.slot, request, None).await;
        let (parts, mut body) = response.into_parts();
        let fields = body.take_upstream_fields();
        let size = if body.is_end_stream() {
            BodySize::Empty
        } else {
            match body.size_hint().exact() {
                Some(n) => BodySize::Known(n),
                None => BodySize::Unknown,
            }
        };
        let close = parsed.close || ctx.closing.asked();
        out.clear();
        let written = crate::clock::http_date(|date| {
            encode_head(
                &mut out,
                parts.status,
                &parts.headers,
                fields.as_ref(),
                Some(request_id.as_bytes()),
                head_request,
                size,
                close,
                date,
            )
        });
        drop((parts, fields, request_id));
        // In flight until the body ended, as with hyper: a client that then stops reading is
        // held to the connection's deadlines.
        let complete = write_body(io, &mut out, body, written.framing, || drop(in_flight)).await?;
        served += 1;
        io.write_all(&out).await?;
        io.flush().await?;
        if written.close || !complete {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
    }
}

/// What is at the front of the connection's buffer.
enum Next {
    /// A complete head of this many bytes.
    Head(usize),
    /// A head not complete within [`HAND_OFF_AT`] bytes: hyper's to judge.
    Long,
    /// The connection ended, or was asked to close, before a head began or while it came.
    Ended,
}

/// Reads until a complete head is at the front of `buf`.
async fn next_head<S>(io: &mut S, buf: &mut BytesMut, ctx: &Ctx<'_>) -> io::Result<Next>
where
    S: AsyncRead + Unpin,
{
    let mut begun = false;
    // Bytes already searched for the head's end.
    let mut searched = 0;
    loop {
        if !begun {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            let skip = buf
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(buf.len());
            buf.advance(skip);
            if !buf.is_empty() {
                begun = true;
                ctx.activity.heads_begun(1);
            }
        }
        if begun {
            if let Some(used) = head_end(&buf[..searched], &buf[searched..]) {
                return Ok(Next::Head(searched + used));
            }
            searched = buf.len();
            if buf.len() >= HAND_OFF_AT {
                return Ok(Next::Long);
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        // One read, unless the supervisor asks the connection to close first.
        let read = std::future::poll_fn(|cx| {
            if ctx.closing.asked() {
                return Poll::Ready(Ok(0));
            }
            let read = io.read_buf(&mut *buf);
            std::pin::pin!(read).poll(cx)
        });
        if read.await? == 0 {
            return Ok(Next::Ended);
        }
    }
}

/// Writes the body after the head in `out` as `framing` says; the last bytes are left in
/// `out` for the caller to write. `ended` is called once the body has ended (or is not
/// sent), before those last bytes go out. `false` when the body ended early or failed: the
/// response is cut and the connection must close.
async fn write_body<S, B>(
    io: &mut S,
    out: &mut Vec<u8>,
    body: B,
    framing: Framing,
    ended: impl FnOnce(),
) -> io::Result<bool>
where
    S: AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut left = match framing {
        // As hyper does: the body of a response without one is not read.
        Framing::None => {
            ended();
            return Ok(true);
        }
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    let mut body = std::pin::pin!(body);
    loop {
        // What is ready goes out with what is buffered; what is not is waited for with the
        // buffer written (a slow stream must not hold back what came before it).
        let frame = match std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await
        {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                io.write_all(out).await?;
                io.flush().await?;
                out.clear();
                body.frame().await
            }
        };
        let data = match frame {
            None => {
                ended();
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        match &mut left {
            Some(left) => {
                if data.len() as u64 > *left {
                    tracing::debug!("response body longer than its length; closing the connection");
                    return Ok(false);
                }
                *left -= data.len() as u64;
                put(io, out, &data).await?;
            }
            None => {
                encode_chunk_size(out, data.len());
                put(io, out, &data).await?;
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    match left {
        Some(0) => Ok(true),
        Some(_) => {
            tracing::debug!("response body shorter than its length; closing the connection");
            Ok(false)
        }
        None => {
            out.extend_from_slice(LAST_CHUNK);
            Ok(true)
        }
    }
}

/// Appends `data` to `out`, or writes both when `data` is large.
async fn put<S: AsyncWrite + Unpin>(io: &mut S, out: &mut Vec<u8>, data: &Bytes) -> io::Result<()> {
    if data.len() <= COALESCE {
        out.extend_from_slice(data);
        if out.len() < COALESCE {
            return Ok(());
        }
    } else {
        io.write_all(out).await?;
        out.clear();
        return io.write_all(data).await;
    }
    io.write_all(out).await?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests;
