//! One request head on its own: where it ends in the bytes read, and what it says about the
//! framing of what follows it (or why it is ambiguous).

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::{Chunk, State};

/// Where the head that `buf` began ends in `data`: the length of `data` up to and including
/// the LF of its empty line (a LF after LF or after LF CR), if it is there.
pub(crate) fn head_end(buf: &[u8], data: &[u8]) -> Option<usize> {
    // An empty line whose LF is one of `data`'s first two bytes may begin in `buf`.
    let before = |i: usize, back: usize| -> Option<u8> {
        match i.checked_sub(back) {
            Some(j) => Some(data[j]),
            None => buf.len().checked_sub(back - i).map(|j| buf[j]),
        }
    };
    for (i, &byte) in data.iter().enumerate().take(2) {
        if byte == b'\n'
            && match before(i, 1) {
                Some(b'\n') => true,
                Some(b'\r') => before(i, 2) == Some(b'\n'),
                _ => false,
            }
        {
            return Some(i + 1);
        }
    }
    if data.len() <= 2 {
        return None;
    }
    // Any later one lies in `data` whole: the first `\n\r\n` (how heads end), unless a bare
    // `\n\n` comes before it. Two vectorised searches instead of a stop at every line.
    static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    let crlf = CRLF.find(data).map(|q| q + 3);
    // A `\n\n` ending before that one's end starts at or before its first byte.
    let upto = crlf.map_or(data.len(), |end| end - 1);
    let lf = LF.find(&data[..upto]).map(|q| q + 2);
    lf.or(crlf)
}

/// Whether one complete head is unambiguous, has no body and stays HTTP/1.1 after it (no
/// `Upgrade`, no `CONNECT`, not the HTTP/2 preface): every head `server::h1` serves is one.
pub fn bodyless(head: &[u8]) -> bool {
    matches!(examine(head), Ok(State::Head(_)))
}

/// Checks one complete head; returns how its body is framed, or why it is ambiguous.
///
/// One pass over the line ends: a NUL, bare CR or bare LF anywhere is the answer (the first
/// in byte order), else the first fault of a field line, else what the framing fields say.
pub(super) fn examine(head: &[u8]) -> Result<State, &'static str> {
    if head.starts_with(b"PRI * HTTP/2.0") {
        return Ok(State::Aside);
    }
    let mut fields = Fields::default();
    let mut ends = memchr::memchr3_iter(0, b'\r', b'\n', head);
    let mut start = 0;
    while let Some(i) = ends.next() {
        match head[i] {
            0 => return Err("NUL in the request head"),
            b'\n' => return Err("bare LF in the request head"),
            _ if head.get(i + 1) != Some(&b'\n') => return Err("bare CR in the request head"),
            _ => {
                ends.next(); // the LF just checked
                fields.line(&head[start..i], start == 0);
                start = i + 2;
            }
        }
    }
    // A head always ends with its empty line; anything after the last line end is a line too.
    fields.line(&head[start..], start == 0);
    if let Some(fault) = fields.fault {
        return Err(fault);
    }
    let next = match (fields.lengths, fields.codings) {
        (1.., 1..) => return Err("Content-Length together with Transfer-Encoding"),
        (2.., _) => return Err("repeated Content-Length"),
        (_, 2..) => return Err("repeated Transfer-Encoding"),
        (0, 1) if fields.coding.eq_ignore_ascii_case(b"chunked") => {
            State::Chunked(Chunk::Size { size: 0, digits: 0 })
        }
        (0, 1) => return Err("a transfer coding other than chunked"),
        (1, 0) => {
            let length = fields.length;
            let digits = !length.is_empty() && length.len() <= 19;
            let parsed = std::str::from_utf8(length)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            match parsed {
                Some(n) if digits && length.iter().all(u8::is_ascii_digit) => {
                    if n == 0 {
                        State::default()
                    } else {
                        State::Fixed(n)
                    }
                }
                _ => return Err("an invalid Content-Length"),
            }
        }
        _ => State::default(),
    };
    Ok(if fields.aside { State::Aside } else { next })
}

/// What the field lines of one head said about its framing.
#[derive(Default)]
struct Fields<'h> {
    lengths: u32,
    length: &'h [u8],
    codings: u32,
    coding: &'h [u8],
    /// A `CONNECT` request or an `Upgrade` field: the bytes after the head are not followed.
    aside: bool,
    /// The first field line that is not one.
    fault: Option<&'static str>,
}

impl<'h> Fields<'h> {
    /// One line of the head, without its line end.
    fn line(&mut self, line: &'h [u8], first: bool) {
        if first {
            self.aside = line.starts_with(b"CONNECT ");
        } else if !line.is_empty() && self.fault.is_none() {
            self.fault = self.take(line).err();
        }
    }

    /// One field line.
    fn take(&mut self, line: &'h [u8]) -> Result<(), &'static str> {
        if line[0] == b' ' || line[0] == b'\t' {
            return Err("obsolete line folding in the request head");
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err("a header line without a colon");
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.lengths = self.lengths.saturating_add(1);
            self.length = value;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.codings = self.codings.saturating_add(1);
            self.coding = value;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.aside = true;
        }
        Ok(())
    }
}

/// RFC 9110 §5.5: optional whitespace around a field value.
fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}
