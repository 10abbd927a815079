//! Deterministic large bodies, generated and hashed on the fly: a test can send or expect
//! 64 MiB without ever holding it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use sha2::{Digest, Sha256};

use super::{hex, BoxError, TestBody};

const PATTERN_CHUNK: usize = 64 * 1024;

/// A streamed body of `len` deterministic pseudo-random bytes, 64 KiB per frame, with an exact
/// size hint (so HTTP/1.1 sends it with `Content-Length`). Every chunk carries its index, so a
/// dropped, repeated or reordered chunk changes the hash.
pub struct PatternBody {
    block: Arc<Vec<u8>>,
    index: u64,
    remaining: u64,
}

impl PatternBody {
    pub fn new(len: u64) -> Self {
        PatternBody {
            block: Arc::new(pattern_block()),
            index: 0,
            remaining: len,
        }
    }

    /// As a [`TestBody`].
    pub fn boxed(len: u64) -> TestBody {
        PatternBody::new(len).boxed_unsync()
    }
}

fn pattern_block() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = Vec::with_capacity(PATTERN_CHUNK);
    while block.len() < PATTERN_CHUNK {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        block.extend_from_slice(&state.to_le_bytes());
    }
    block
}

fn pattern_chunk(block: &[u8], index: u64, len: usize) -> Bytes {
    let mut chunk = block[..len].to_vec();
    for (b, i) in chunk.iter_mut().zip(index.to_le_bytes()) {
        *b ^= i;
    }
    Bytes::from(chunk)
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = this.remaining.min(PATTERN_CHUNK as u64) as usize;
        let chunk = pattern_chunk(&this.block, this.index, len);
        this.index += 1;
        this.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// SHA-256 of the first `len` bytes [`PatternBody`] produces, without holding them.
pub fn pattern_sha256(len: u64) -> String {
    let block = pattern_block();
    let mut hasher = Sha256::new();
    let (mut index, mut remaining) = (0u64, len);
    while remaining > 0 {
        let n = remaining.min(PATTERN_CHUNK as u64) as usize;
        hasher.update(pattern_chunk(&block, index, n));
        index += 1;
        remaining -= n as u64;
    }
    hex(&hasher.finalize())
}

/// Streams a body to its end, returning its length and SHA-256; never holds it whole.
pub async fn hash_body<B>(mut body: B) -> Result<(u64, String), B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len() as u64;
            hasher.update(&data);
        }
    }
    Ok((len, hex(&hasher.finalize())))
}
