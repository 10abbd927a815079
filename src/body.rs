//! The one body type the gateway serves and forwards.
//!
//! An enum instead of a boxed trait object: the common cases (a proxied stream, a small
//! rendered document, nothing) need no allocation per response. Request bodies from clients
//! are wrapped with a byte budget so that an oversized chunked upload fails the moment it
//! crosses the limit, while the body still streams (it is never buffered whole).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// Boxed error type of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body crossed `limits.max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the configured limit")]
pub struct BodyTooLarge;

/// Body of every request the gateway forwards and every response it sends.
#[derive(Debug, Default)]
pub enum Body {
    /// No content.
    #[default]
    Empty,
    /// A complete body held in memory (rendered documents, replayable small requests).
    Full(Option<Bytes>),
    /// A body streamed from a peer as it arrives.
    Incoming(Incoming),
    /// A client request body streamed with a remaining byte budget.
    Limited { inner: Incoming, remaining: u64 },
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

    pub fn incoming(inner: Incoming) -> Self {
        Body::Incoming(inner)
    }

    pub fn limited(inner: Incoming, limit: u64) -> Self {
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(inner) | Body::Limited { inner, .. } => inner.size_hint(),
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
