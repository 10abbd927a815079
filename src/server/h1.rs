//! HTTP/1.1 towards clients for the common request, as pure functions over buffers.
//!
//! Most requests an ARCP gateway sees are bodyless HTTP/1.1 requests: dashboard and agent
//! `GET`s, `DELETE`s, `POST`s with `Content-Length: 0`. For those the connection's own loop
//! ([`serve`]) reads the head, builds the request from it (field values share the head's
//! buffer), runs the pipeline and writes the response, without hyper's server connection.
//! Everything else — a body, `Expect`, `Upgrade`, `CONNECT`, HTTP/1.0, an absolute or `*`
//! target, the HTTP/2 preface, more than [`MAX_HEADERS`] fields, a head longer than
//! [`HAND_OFF_AT`], anything ambiguous or malformed — is hyper's: the loop hands the
//! connection over with the bytes it has read, and hyper serves it from that request on. So
//! this reader only ever says "mine" or "not mine"; every refusal, and every protocol feature
//! beyond the bodyless request, keeps hyper's behaviour.
//!
//! The response is encoded the way hyper encodes it (lower-case names, `content-length` from
//! an exact body size or else `transfer-encoding: chunked`, no body for `HEAD`, 204 and 304,
//! `connection: close` when the connection ends after it, a `date` field).

pub(super) mod serve;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::arcp::{X_CLIENT_FINGERPRINT, X_REQUEST_ID, X_SESSION_PIN};
use crate::body::Inbound;
use crate::proxy::headers::{lists, Listed};
use crate::upstream::codec::{is, parse_length, Fields, Kind};

/// Most header fields in a request head served here (hyper's default; more is hyper's to
/// refuse).
pub const MAX_HEADERS: usize = 100;
/// A head not complete within this many bytes is handed to hyper, which allows up to its
/// `max_buf_size` and answers 431 beyond.
pub const HAND_OFF_AT: usize = 16 * 1024;

/// A bodyless HTTP/1.1 request, parsed from its complete head.
#[derive(Debug)]
pub struct Parsed {
    pub request: Request<Inbound>,
    /// The client asked to close the connection after the response (`Connection: close`).
    pub close: bool,
}

/// The request `head` (one complete request head, up to and including its empty line) is,
/// if this module serves it (see [`parse_request`]). `None` leaves it to hyper.
pub fn accept(head: &[u8]) -> Option<Parsed> {
    let parsed = parse_request(&Bytes::copy_from_slice(head));
    // Debug builds (every test) hold each head served here to the framing check itself: a
    // parser that became more lenient (an httparse upgrade, a setting) fails loudly.
    debug_assert!(parsed.is_none() || super::framing::bodyless(head));
    parsed
}

/// Parses `head` (one complete request head, up to and including its empty line) into a
/// request, or `None` when the request is not one this module serves.
///
/// A request served here is one `server::framing` finds unambiguous and bodyless (the
/// framing check hyper's requests pass through): every line ends in CRLF, no NUL, no
/// obsolete line folding, no `Upgrade`, no `CONNECT`, no `Transfer-Encoding`, at most one
/// `Content-Length` and it says 0 in at most 19 digits. Those facts are taken here, in the
/// same pass that builds the request, instead of a second walk over the head; a test and the
/// `client_request` fuzz target hold every head served here to the framing check (the test's
/// heads carry bare CRs in values and at line ends).
pub fn parse_request(head: &Bytes) -> Option<Parsed> {
    let lines = crlf_lines(head)?;
    // Uninitialised: filling 100 empty fields first would cost more than most heads' parse.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(head, &mut fields) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    // The request line, one line per field, the empty line: nothing httparse skipped (it
    // passes over empty lines before the request line).
    if lines != parsed.headers.len() + 2 {
        return None;
    }
    if parsed.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let target = parsed.path?;
    if !target.starts_with('/') {
        return None;
    }
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes())).ok()?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut length = false;
    let mut close = false;
    for field in parsed.headers.iter() {
        let name = field_name(field.name.as_bytes())?;
        if name == EXPECT || name == TRANSFER_ENCODING || name == UPGRADE {
            return None;
        }
        if name == CONTENT_LENGTH {
            // At most one, and it says 0 (in at most 19 digits, as the framing check reads a
            // length).
            let digits = field.value.trim_ascii();
            if length || digits.is_empty() || digits.len() > 19 || digits.iter().any(|&b| b != b'0')
            {
                return None;
            }
            length = true;
        } else if name == CONNECTION {
            close = close || lists([field.value], b"close");
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(Inbound::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(Parsed { request, close })
}

/// How many lines `head` has, if each LF follows a CR, no line begins with a space or a tab
/// (obsolete line folding) and no byte is NUL: with httparse's refusal of a CR not followed
/// by LF (and `http`'s of a CR in a name, value or target), what `server::framing` requires
/// of a head's bytes before it reads its fields. A vectorised search, a step per line.
fn crlf_lines(head: &[u8]) -> Option<usize> {
    if memchr::memchr(0, head).is_some() {
        return None;
    }
    let mut lines = 0;
    for lf in memchr::memchr_iter(b'\n', head) {
        if lf == 0 || head[lf - 1] != b'\r' || matches!(head.get(lf + 1), Some(b' ' | b'\t')) {
            return None;
        }
        lines += 1;
    }
    Some(lines)
}

/// The field name `bytes` is, as `HeaderName::from_bytes` reads it. ARCP's own names, which
/// most requests carry, are the shared constants: `from_bytes` would copy each into a new
/// allocation (it knows only the standard names).
fn field_name(bytes: &[u8]) -> Option<HeaderName> {
    for known in [&X_CLIENT_FINGERPRINT, &X_REQUEST_ID, &X_SESSION_PIN] {
        if bytes.eq_ignore_ascii_case(known.as_str().as_bytes()) {
            return Some(known.clone());
        }
    }
    HeaderName::from_bytes(bytes).ok()
}

/// What the response body is, as far as its framing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// Already at its end.
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// Not known before it ends.
    Unknown,
}

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body is sent (`HEAD`, 1xx, 204, 304, or an empty body).
    None,
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// How a response head was written: the body's framing, and whether the connection closes
/// after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub framing: Framing,
    pub close: bool,
}

/// Writes the response head into `out`, as hyper would for the same response: `head_request`
/// is whether it answers a `HEAD`, `close` whether the connection ends after it (the client
/// asked, or the server is closing), `date` the value of the `date` field to add when the
/// response has none.
///
/// `fields` are an upstream response's fields as they came ([`Fields`]): written first, in
/// their order and case, except where `headers` (the gateway's own) has a field of the same
/// name, which replaces them. `request_id`, when given, is written as `x-request-id` after
/// `headers` and replaces any other field of that name.
#[allow(clippy::too_many_arguments)]
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    fields: Option<&Fields>,
    request_id: Option<&[u8]>,
    head_request: bool,
    body: BodySize,
    close: bool,
    date: &[u8],
) -> Written {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §6.4.1, §8.6: no content for these, and no length for the last two.
    let no_length = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let can_have_body = !head_request && !no_length;
    // After a 1xx the bytes on the connection are no longer this protocol's (a 101) or the
    // exchange is not over (the others): either way, nothing more is read here. (`fields`
    // never hold `Connection`: it is hop-by-hop.)
    let says_close = Listed::of(headers).token(b"close");
    let close = close || says_close || status.is_informational();
    let mut writer = Outgoing {
        out,
        body,
        head_request,
        dated: false,
        declared: None,
        length_written: false,
    };
    let replaced = |name: &[u8]| request_id.is_some() && is(name, X_REQUEST_ID.as_str());
    if let Some(fields) = fields {
        for (kind, name, value) in fields.kinds() {
            if !replaced(name) && !headers.keys().any(|own| is(name, own.as_str())) {
                writer.field(kind, name, value);
            }
        }
    }
    for (name, value) in headers {
        let name = name.as_str().as_bytes();
        if !replaced(name) {
            writer.field(Kind::of(name), name, value.as_bytes());
        }
    }
    if let Some(id) = request_id {
        field(writer.out, X_REQUEST_ID.as_str().as_bytes(), id);
    }
    let Outgoing {
        out,
        dated,
        declared,
        length_written,
        ..
    } = writer;
    // Where hyper puts it: after the response's own fields.
    if close && !says_close {
        field(out, b"connection", b"close");
    }
    let mut framing = Framing::None;
    match (body, declared) {
        (BodySize::Unknown, Some(n)) => framing = Framing::Length(n),
        (BodySize::Unknown, None) if can_have_body => {
            field(out, b"transfer-encoding", b"chunked");
            framing = Framing::Chunked;
        }
        (BodySize::Unknown, None) => {}
        (BodySize::Known(n), _) if n > 0 => {
            if !no_length && !length_written {
                let mut digits = itoa::Buffer::new();
                field(out, b"content-length", digits.format(n).as_bytes());
            }
            framing = Framing::Length(n);
        }
        (BodySize::Known(_) | BodySize::Empty, _) => {
            if !no_length && !head_request && !length_written {
                field(out, b"content-length", b"0");
            }
        }
    }
    if !can_have_body {
        framing = Framing::None;
    }
    if !dated {
        field(out, b"date", date);
    }
    out.extend_from_slice(b"\r\n");
    Written { framing, close }
}

/// The response's fields on their way out, and what they said about its framing.
struct Outgoing<'a> {
    out: &'a mut Vec<u8>,
    body: BodySize,
    head_request: bool,
    dated: bool,
    /// The first valid `Content-Length`, for a body whose size is not known.
    declared: Option<u64>,
    length_written: bool,
}

impl Outgoing<'_> {
    /// Writes one field, or what the body's framing makes of it.
    fn field(&mut self, kind: Kind, name: &[u8], value: &[u8]) {
        match kind {
            Kind::ContentLength => match self.body {
                // Where the response put it, with the body's own size.
                BodySize::Known(n) => {
                    if !self.length_written {
                        self.length_written = true;
                        let mut digits = itoa::Buffer::new();
                        field(self.out, b"content-length", digits.format(n).as_bytes());
                    }
                    return;
                }
                // A HEAD answer keeps the length of what a GET would have sent.
                BodySize::Empty if !self.head_request => return,
                BodySize::Empty => {}
                BodySize::Unknown => match (self.declared, parse_length(value)) {
                    (None, Some(n)) => self.declared = Some(n),
                    _ => return,
                },
            },
            // The framing is the body's, written after the fields.
            Kind::TransferEncoding => return,
            Kind::Date => self.dated = true,
            _ => {}
        }
        field(self.out, name, value);
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
