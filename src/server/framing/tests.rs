//! The framing reader: splits, flags, heads begun.

#![allow(clippy::unwrap_used)]

use super::*;

/// Feeds `bytes` in pieces of `step` bytes; returns the flag.
fn scan(bytes: &[u8], step: usize) -> Option<(u64, &'static str)> {
    let mut s = Scanner::default();
    let mut flag = None;
    for piece in bytes.chunks(step) {
        if let Some(f) = s.feed(piece) {
            flag.get_or_insert(f);
        }
    }
    flag
}

#[test]
fn well_framed_pipelines_pass_in_any_split() {
    let pipeline = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n\
GET /c HTTP/1.1\r\nHost: x\r\nX-Length: Content-Length: 3\r\n\r\n";
    for step in [1, 2, 7, pipeline.len()] {
        assert_eq!(scan(pipeline, step), None, "step {step}");
    }
}

#[test]
fn a_head_is_counted_as_begun_at_its_first_byte_once() {
    // Empty lines before a request line (RFC 9112 §2.2) do not begin a head; bodies do not.
    let pipeline = b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /\
GET / HTTP/1.1\r\n\r\n\r\n\r\nG";
    let mut s = Scanner::default();
    assert_eq!(s.feed(b"\r\n"), None);
    assert_eq!(s.begun, 0, "an empty line is no head");
    assert_eq!(s.feed(b"P"), None);
    assert_eq!(s.begun, 1, "the first byte of the request line");
    for step in [1, 3, pipeline.len()] {
        let mut s = Scanner::default();
        for piece in pipeline.chunks(step) {
            assert_eq!(s.feed(piece), None);
        }
        // POST /a (its body "GET /" is no head), GET /, and the G of a third.
        assert_eq!((s.begun, s.heads), (3, 2), "step {step}");
    }
}

#[test]
fn ambiguous_heads_are_flagged_by_position() {
    let cases: &[(&[u8], u64, &str)] = &[
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "together"),
        (b"GET / HTTP/1.1\r\ncontent-length: 0\r\nContent-Length: 0\r\n\r\n", 0, "repeated Content-Length"),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n", 0, "repeated Transfer"),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, "other than chunked"),
        (b"GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", 0, "bare LF"),
        (b"GET / HTTP/1.1\r\nA: a\rb\r\n\r\n", 0, "bare CR"),
        (b"GET / HTTP/1.1\r\nA: a\0b\r\n\r\n", 0, "NUL"),
        (b"GET / HTTP/1.1\r\nA: a\r\n b\r\n\r\n", 0, "folding"),
        (b"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx", 0, "invalid Content-Length"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 38\r\n\r\nGET /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n\
GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            1,
            "repeated",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n\
GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            1,
            "repeated",
        ),
    ];
    for (bytes, index, why) in cases {
        for step in [1, 5, bytes.len()] {
            let (i, w) = scan(bytes, step)
                .unwrap_or_else(|| panic!("not flagged: {:?}", String::from_utf8_lossy(bytes)));
            assert_eq!(i, *index, "{w}");
            assert!(w.contains(why), "{w} vs {why}");
        }
    }
}

#[test]
fn any_split_of_any_input_reads_like_one_piece() {
    // Heads that end across reads must be found where one read would find them: every
    // split of generated pipelines (CR, LF, colons, lengths, chunks) gives the same flag
    // and the same state as the whole input at once.
    let alphabet: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r",
        b"GET / HTTP/1.1",
        b"Content-Length: 2",
        b"Transfer-Encoding: chunked",
        b"A: b",
        b"ab",
        b"2\r\nab\r\n0\r\n\r\n",
        b" ",
        b"\0",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut input = Vec::new();
        for _ in 0..(next() % 24) {
            input.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        let whole = {
            let mut s = Scanner::default();
            (s.feed(&input), s.heads, s.begun, format!("{:?}", s.state))
        };
        for cut in 0..=input.len() {
            let mut s = Scanner::default();
            let first = s.feed(&input[..cut]);
            let second = s.feed(&input[cut..]);
            let split = (first.or(second), s.heads, s.begun, format!("{:?}", s.state));
            assert_eq!(
                split,
                whole,
                "cut {cut} of {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[tokio::test]
async fn the_connection_hears_of_every_head_begun_in_one_read() {
    use tokio::io::AsyncReadExt;
    let pipeline = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nHo";
    let activity = Activity::new();
    let log = Arc::new(HeadLog::default());
    let mut reader = Scanned::new(&pipeline[..], true, log, activity.clone());
    let mut buf = vec![0; 4096];
    assert_eq!(
        reader.read(&mut buf).await.unwrap(),
        pipeline.len(),
        "one read"
    );
    assert_eq!(activity.heads_seen(), 3);
}

#[test]
fn http2_and_upgrades_are_left_alone() {
    let mut s = Scanner::default();
    assert_eq!(s.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04"), None);
    assert!(matches!(s.state, State::Aside));
    let mut s = Scanner::default();
    let upgrade =
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello\n\n";
    assert_eq!(s.feed(upgrade), None);
    assert!(matches!(s.state, State::Aside));
}

#[test]
fn the_service_sees_the_flag_on_the_matching_request_only() {
    let log = HeadLog::default();
    let _ = log.flagged.set((1, "why"));
    assert_eq!(log.next_request(), None);
    assert_eq!(log.next_request(), Some("why"));
    assert_eq!(log.next_request(), None);
}

/// The head finder as a stop at every LF: the definition `head_end` is checked against.
fn head_end_by_lines(buf: &[u8], data: &[u8]) -> Option<usize> {
    let whole = [buf, data].concat();
    (buf.len()..whole.len())
        .find(|&i| {
            whole[i] == b'\n'
                && ((i >= 1 && whole[i - 1] == b'\n')
                    || (i >= 2 && whole[i - 1] == b'\r' && whole[i - 2] == b'\n'))
        })
        .map(|i| i + 1 - buf.len())
}

/// Every input of up to 8 bytes over CR, LF and a letter, split anywhere, and long random
/// heads (the vectorised searches' long paths), find the end the definition finds.
#[test]
fn the_head_end_is_the_first_empty_line_in_any_split() {
    let alphabet = [b'\r', b'\n', b'a'];
    for len in 0..=8u32 {
        for mut code in 0..3usize.pow(len) {
            let mut bytes = Vec::with_capacity(len as usize);
            for _ in 0..len {
                bytes.push(alphabet[code % 3]);
                code /= 3;
            }
            for split in 0..=bytes.len() {
                let (buf, data) = bytes.split_at(split);
                assert_eq!(
                    head_end(buf, data),
                    head_end_by_lines(buf, data),
                    "{bytes:?} at {split}"
                );
            }
        }
    }
    // Lines of 0 to 40 letters ending in CRLF, LF or LF CR, a few hundred bytes in all.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let mut bytes = Vec::new();
        while bytes.len() < 300 {
            let letters = (next() % 41) as usize;
            bytes.extend(std::iter::repeat_n(b'x', letters));
            bytes.extend_from_slice(match next() % 16 {
                0 => b"\n",
                1 => b"\r",
                2 => b"\n\r",
                _ => b"\r\n",
            });
        }
        let split = (next() as usize) % (bytes.len() + 1);
        let (buf, data) = bytes.split_at(split);
        assert_eq!(
            head_end(buf, data),
            head_end_by_lines(buf, data),
            "{bytes:?} at {split}"
        );
    }
}
