//! The client's first frame, read off the raw upgraded stream before any WebSocket machinery
//! (RFC 6455 §5.2).
//!
//! Dashboard and agent sockets authenticate in their first frame, and nothing else may happen
//! before it has been checked: no upstream connection, no buffer larger than the frame allowed.
//! So the header is parsed as soon as its bytes are in, a length over the limit is refused
//! before a byte of its payload is read, and at most `limit` payload bytes (plus one read of
//! look-ahead) are ever held. Pings and pongs before it are skipped (a few); the bytes read past
//! the frame are handed back so the socket goes on where this stopped.

use std::io::Cursor;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// How many control frames may come before the first data frame.
const MAX_CONTROL_FRAMES: usize = 8;
/// Bytes asked for per read.
const READ_CHUNK: usize = 4096;

/// What the client sent first.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstFrame {
    /// One complete, unfragmented text frame.
    Text(String),
    /// A first message of another kind (binary, fragmented, not UTF-8): refused like a bad
    /// authentication frame.
    Other,
    /// A frame longer than the limit (1009).
    TooBig,
    /// Not a frame a client may send: unmasked, reserved bits or opcodes (1002).
    Protocol,
    /// The client closed or went away.
    Gone,
}

/// Reads the first data frame from `io`, holding at most `limit` payload bytes. Returns it and
/// the bytes read past its end.
pub async fn read_first_frame<S: AsyncRead + Unpin>(
    io: &mut S,
    limit: usize,
) -> (FirstFrame, Vec<u8>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut controls = 0;
    loop {
        let mut cursor = Cursor::new(&buf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Err(_) => return (FirstFrame::Protocol, Vec::new()),
            Ok(None) => {
                if !read_more(io, &mut buf).await {
                    return (FirstFrame::Gone, Vec::new());
                }
                continue;
            }
            Ok(Some(parsed)) => parsed,
        };
        let head = cursor.position() as usize;
        let reserved = matches!(
            header.opcode,
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_))
        );
        if header.rsv1 || header.rsv2 || header.rsv3 || reserved {
            return (FirstFrame::Protocol, Vec::new());
        }
        let Some(mask) = header.mask else {
            return (FirstFrame::Protocol, Vec::new()); // RFC 6455 §5.1: clients mask
        };
        if len > limit as u64 {
            return (FirstFrame::TooBig, Vec::new());
        }
        let end = head + len as usize;
        while buf.len() < end {
            if !read_more(io, &mut buf).await {
                return (FirstFrame::Gone, Vec::new());
            }
        }
        let rest = buf.split_off(end);
        let mut payload = buf.split_off(head);
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        let first = match header.opcode {
            OpCode::Control(Control::Ping | Control::Pong) => {
                controls += 1;
                if controls > MAX_CONTROL_FRAMES {
                    FirstFrame::Other
                } else {
                    buf = rest;
                    continue;
                }
            }
            OpCode::Control(_) => FirstFrame::Gone,
            OpCode::Data(Data::Text) if header.is_final => {
                String::from_utf8(payload).map_or(FirstFrame::Other, FirstFrame::Text)
            }
            OpCode::Data(_) => FirstFrame::Other,
        };
        return (first, rest);
    }
}

/// Appends one read to `buf`; false at the end of the stream or on an error.
async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; READ_CHUNK];
    match io.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A masked client frame.
    fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![first_byte];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    async fn read(bytes: &[u8], limit: usize) -> (FirstFrame, Vec<u8>) {
        let mut io = bytes;
        read_first_frame(&mut io, limit).await
    }

    #[tokio::test]
    async fn a_text_frame_and_what_follows_it() {
        let mut bytes = frame(0x81, br#"{"token":"t"}"#);
        bytes.extend_from_slice(b"next");
        let (first, rest) = read(&bytes, 64).await;
        assert_eq!(first, FirstFrame::Text(r#"{"token":"t"}"#.into()));
        assert_eq!(rest, b"next");
    }

    #[tokio::test]
    async fn sixteen_bit_lengths_and_pings_before_the_frame() {
        let text = "x".repeat(300);
        let mut bytes = frame(0x89, b"ping");
        bytes.extend(frame(0x81, text.as_bytes()));
        assert_eq!(read(&bytes, 300).await.0, FirstFrame::Text(text));
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        // Only the header is there: the payload is never waited for.
        let header = &frame(0x81, &vec![b'a'; 70_000])[..14];
        assert_eq!(read(header, 4096).await.0, FirstFrame::TooBig);
        assert_eq!(read(&frame(0x81, b"12345"), 4).await.0, FirstFrame::TooBig);
    }

    #[tokio::test]
    async fn what_is_not_one_masked_text_frame() {
        let cases: Vec<(&str, Vec<u8>, FirstFrame)> = vec![
            ("binary", frame(0x82, b"{}"), FirstFrame::Other),
            ("fragment", frame(0x01, b"{"), FirstFrame::Other),
            ("continuation", frame(0x80, b"{}"), FirstFrame::Other),
            ("not UTF-8", frame(0x81, &[0xff, 0xfe]), FirstFrame::Other),
            ("close", frame(0x88, &[0x03, 0xe8]), FirstFrame::Gone),
            (
                "unmasked",
                vec![0x81, 0x02, b'{', b'}'],
                FirstFrame::Protocol,
            ),
            ("rsv1", frame(0xc1, b"{}"), FirstFrame::Protocol),
            ("reserved opcode", frame(0x83, b"{}"), FirstFrame::Protocol),
            (
                "truncated",
                frame(0x81, b"{}")[..5].to_vec(),
                FirstFrame::Gone,
            ),
            ("nothing", Vec::new(), FirstFrame::Gone),
            (
                "too many pings",
                std::iter::repeat_n(frame(0x89, b""), MAX_CONTROL_FRAMES + 1)
                    .flatten()
                    .collect(),
                FirstFrame::Other,
            ),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(read(&bytes, 64).await.0, want, "{what}");
        }
    }
}
