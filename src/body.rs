//! The one body type the gateway serves and forwards.
//!
//! An enum instead of a boxed trait object: the common cases (a proxied stream, a small
//! rendered document, nothing) need no allocation per response. Request bodies from clients
//! are wrapped with a byte budget so that an oversized chunked upload fails the moment it
//! crosses the limit, while the body still streams (it is never buffered whole).
//!
//! The few bodies the gateway reads whole itself (login and PIN documents, the admin replay
//! buffer) go through [`read_limited`], the one reader that bounds both their size and their
//! pace, so a client trickling a body cannot hold a connection for free.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::upstream::codec::Fields;
use crate::upstream::UpstreamBody;

/// Boxed error type of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body crossed `limits.max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the configured limit")]
pub struct BodyTooLarge;

/// A client's request body as it arrived: hyper's stream for requests hyper read, nothing
/// for the bodyless HTTP/1.1 requests the gateway reads itself (`server::h1`).
#[derive(Debug, Default)]
pub enum Inbound {
    /// No body (no `Content-Length`, or `Content-Length: 0`, and no `Transfer-Encoding`).
    #[default]
    Empty,
    /// A body hyper reads from the connection.
    Hyper(Incoming),
}

impl From<Incoming> for Inbound {
    fn from(inner: Incoming) -> Self {
        Inbound::Hyper(inner)
    }
}

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Inbound::Empty => Poll::Ready(None),
            Inbound::Hyper(inner) => Pin::new(inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Empty => true,
            Inbound::Hyper(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Empty => SizeHint::with_exact(0),
            Inbound::Hyper(inner) => inner.size_hint(),
        }
    }
}

/// Body of every request the gateway forwards and every response it sends.
#[derive(Debug, Default)]
pub enum Body {
    /// No content.
    #[default]
    Empty,
    /// A complete body held in memory (rendered documents, replayable small requests).
    Full(Option<Bytes>),
    /// A body streamed from a peer as it arrives.
    Incoming(Inbound),
    /// A client request body streamed with a remaining byte budget.
    Limited { inner: Inbound, remaining: u64 },
    /// An upstream response body; reading it drives its upstream connection.
    Upstream(UpstreamBody),
}

impl Body {
    pub fn empty() -> Self {
        Body::Empty
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }

    pub fn incoming(inner: Inbound) -> Self {
        Body::Incoming(inner)
    }

    pub fn upstream(inner: UpstreamBody) -> Self {
        Body::Upstream(inner)
    }

    /// Takes an upstream response's fields from its body, to write its head.
    pub fn take_upstream_fields(&mut self) -> Option<Fields> {
        match self {
            Body::Upstream(body) => Some(body.take_fields()),
            _ => None,
        }
    }

    pub fn limited(inner: Inbound, limit: u64) -> Self {
        Body::Limited {
            inner,
            remaining: limit,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Upstream(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Limited { inner, remaining } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let len = data.len() as u64;
                        if len > *remaining {
                            *remaining = 0;
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                        }
                        *remaining -= len;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                other => other.map_err(Into::into),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Incoming(inner) | Body::Limited { inner, .. } => inner.is_end_stream(),
            Body::Upstream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(inner) | Body::Limited { inner, .. } => inner.size_hint(),
            Body::Upstream(inner) => inner.size_hint(),
        }
    }
}

/// Whether `err` (or anything in its source chain) is a [`BodyTooLarge`].
pub fn is_body_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// How fast a body the gateway reads itself must arrive (Apache `mod_reqtimeout`'s rule): it may
/// lag at most `grace` behind a steady `min_rate` bytes per second. A body that keeps up is
/// never cut off however long it is; one that trickles is refused about `grace` after it falls
/// behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub grace: Duration,
    /// Bytes per second; at least 1.
    pub min_rate: u64,
}

impl Pace {
    /// Time allowed, from the start, for `received` bytes to have arrived.
    fn allowance(&self, received: u64) -> Duration {
        self.grace + Duration::from_secs_f64(received as f64 / self.min_rate.max(1) as f64)
    }
}

/// Why [`read_limited`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("request body exceeds {max} bytes")]
    TooLarge { max: u64 },
    #[error("request body arrived slower than {min_rate} bytes per second")]
    TooSlow { min_rate: u64 },
    #[error("cannot read the request body")]
    Body(#[source] BoxError),
}

/// Reads a whole body of at most `max_bytes`, arriving at `pace` or better.
///
/// The deadline moves with the data (start + grace + received / min_rate), so the check costs
/// one timer per frame and nothing per byte. Time is tokio's clock: tests pause it.
pub async fn read_limited<B>(body: B, max_bytes: u64, pace: Pace) -> Result<Bytes, ReadError>
where
    B: http_body::Body + Unpin,
    B::Data: bytes::Buf,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    let started = crate::clock::io_now();
    let mut received: u64 = 0;
    let mut out = BytesMut::new();
    loop {
        let deadline = started + pace.allowance(received);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(ReadError::TooSlow {
                    min_rate: pace.min_rate,
                })
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => {
                let e: BoxError = e.into();
                if is_body_too_large(&*e) {
                    return Err(ReadError::TooLarge { max: max_bytes });
                }
                return Err(ReadError::Body(e));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(mut data) = frame.into_data() {
            use bytes::Buf;
            let len = data.remaining() as u64;
            received = received.saturating_add(len);
            if received > max_bytes {
                return Err(ReadError::TooLarge { max: max_bytes });
            }
            out.extend_from_slice(&data.copy_to_bytes(data.remaining()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::convert::Infallible;

    use futures_util::stream;
    use http_body_util::StreamBody;

    use super::*;

    const PACE: Pace = Pace {
        grace: Duration::from_secs(2),
        min_rate: 100,
    };

    /// A body that yields `chunks` of `size` bytes, `gap` apart.
    fn trickle(
        chunks: usize,
        size: usize,
        gap: Duration,
    ) -> impl http_body::Body<Data = Bytes, Error = Infallible> + Unpin {
        let s = stream::unfold(0, move |i| async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((Ok(Frame::data(Bytes::from(vec![b'x'; size]))), i + 1))
        });
        StreamBody::new(Box::pin(s))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_up_is_read_whole_however_long_it_takes() {
        // 100 bytes every second for 10 s: exactly the minimum rate.
        let bytes = read_limited(trickle(10, 100, Duration::from_secs(1)), 4096, PACE)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_refused_about_grace_after_it_falls_behind() {
        let started = crate::clock::io_now();
        let err = read_limited(trickle(1000, 1, Duration::from_secs(1)), 4096, PACE)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ReadError::TooSlow { min_rate: 100 }),
            "{err:?}"
        );
        let took = started.elapsed();
        assert!(took >= PACE.grace && took < PACE.grace * 2, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_refused_after_grace() {
        let err = read_limited(trickle(1, 1, Duration::from_secs(3600)), 4096, PACE)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooSlow { .. }), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_limit_is_refused_as_soon_as_it_crosses_it() {
        let err = read_limited(trickle(3, 10, Duration::ZERO), 25, PACE)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { max: 25 }), "{err:?}");
        let ok = read_limited(trickle(3, 10, Duration::ZERO), 30, PACE)
            .await
            .unwrap();
        assert_eq!(ok.len(), 30);
    }
}
