//! Response bodies cut out of the connection's read buffer by their framing.

use bytes::{Bytes, BytesMut};

use super::{BodyFraming, CodecError};

/// Longest chunk extension accepted (it is dropped).
const MAX_CHUNK_EXTENSION: usize = 4096;
/// Most trailer bytes accepted after the last chunk (they are dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The buffer holds no more of the body: read more.
    More,
    /// The body is complete.
    End,
}

/// Cuts a response body out of the connection's read buffer as it arrives.
#[derive(Debug, Clone)]
pub enum Decoder {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunked),
    /// Everything until the connection ends.
    Close,
    Done,
}

/// Where a chunked body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size.
    SizeSpace,
    /// In a chunk extension (dropped).
    Extension,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Inside a chunk's data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    Trailer,
    TrailerLine,
    TrailerLf,
    EndLf,
}

/// A chunked body's reader.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: ChunkState,
    /// Size of the chunk being read, or bytes of it left in `Data`.
    size: u64,
    /// Extension or trailer bytes seen (bounded).
    extra: usize,
}

impl Decoder {
    pub fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => Decoder::Done,
            BodyFraming::Length(n) => Decoder::Length(n),
            BodyFraming::Chunked => Decoder::Chunked(Chunked {
                state: ChunkState::Size { digits: 0 },
                size: 0,
                extra: 0,
            }),
            BodyFraming::Close => Decoder::Close,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// Bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, CodecError> {
        match self {
            Decoder::Done => Ok(Step::End),
            _ if buf.is_empty() => Ok(Step::More),
            Decoder::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                let data = buf.split_to(n as usize).freeze();
                if *left == 0 {
                    *self = Decoder::Done;
                }
                Ok(Step::Data(data))
            }
            Decoder::Close => Ok(Step::Data(buf.split().freeze())),
            Decoder::Chunked(chunked) => {
                let step = chunked.decode(buf)?;
                if step == Step::End {
                    *self = Decoder::Done;
                }
                Ok(step)
            }
        }
    }

    /// The connection ended: the end of a close-delimited body, an error for any other.
    pub fn eof(&mut self) -> Result<Step, CodecError> {
        match self {
            Decoder::Close | Decoder::Done => {
                *self = Decoder::Done;
                Ok(Step::End)
            }
            _ => Err(CodecError::Truncated),
        }
    }
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, CodecError> {
        use ChunkState::*;
        let mut i = 0;
        while i < buf.len() {
            if self.state == Data {
                let _ = buf.split_to(i);
                let n = self.size.min(buf.len() as u64);
                self.size -= n;
                if self.size == 0 {
                    self.state = DataCr;
                }
                return Ok(Step::Data(buf.split_to(n as usize).freeze()));
            }
            let b = buf[i];
            i += 1;
            self.state = match (self.state, b) {
                (Size { digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return Err(CodecError::Chunk);
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self.size * 16 + u64::from(d);
                    Size { digits: digits + 1 }
                }
                (Size { digits: 0 }, _) => return Err(CodecError::Chunk),
                (Size { .. } | SizeSpace, b' ' | b'\t') => SizeSpace,
                (Size { .. } | SizeSpace, b';') => Extension,
                (Size { .. } | SizeSpace | Extension, b'\r') => SizeLf,
                (Extension, _) if b == b'\t' || (b >= b' ' && b != 0x7f) => {
                    self.extra += 1;
                    if self.extra > MAX_CHUNK_EXTENSION {
                        return Err(CodecError::Chunk);
                    }
                    Extension
                }
                (SizeLf, b'\n') if self.size == 0 => {
                    self.extra = 0;
                    Trailer
                }
                (SizeLf, b'\n') => {
                    self.extra = 0;
                    Data
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size { digits: 0 },
                (Trailer, b'\r') => EndLf,
                (Trailer | TrailerLine, _) if b != b'\r' && b != b'\n' => {
                    self.extra += 1;
                    if self.extra > MAX_TRAILERS {
                        return Err(CodecError::Chunk);
                    }
                    TrailerLine
                }
                (TrailerLine, b'\r') => TrailerLf,
                (TrailerLf, b'\n') => Trailer,
                (EndLf, b'\n') => {
                    let _ = buf.split_to(i);
                    return Ok(Step::End);
                }
                _ => return Err(CodecError::Chunk),
            };
        }
        let _ = buf.split_to(i);
        Ok(Step::More)
    }
}
