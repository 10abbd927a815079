//! HTTP/1.1 towards the upstream as pure functions over buffers.
//!
//! The request head is written in one pass from the request's fields (the proxied request's
//! after hygiene) into one buffer the connection keeps; the response head is parsed by
//! `httparse` into `http` types whose values share the connection's read buffer (no copy per
//! field); the response body is cut out of that buffer by its framing (RFC 9112 §6.3): a
//! length, chunks, or the end of the connection. Nothing here does I/O — `conn.rs` reads and
//! writes — so the fuzz target drives these functions directly.
//!
//! The reader is strict where leniency would let the gateway and the client disagree on where a
//! response ends: conflicting `Content-Length` values are refused, `Transfer-Encoding` wins over
//! `Content-Length` (which is then removed), chunk lines need CRLF and at most 15 hex digits,
//! and chunk extensions and trailers are bounded and dropped.

use std::io::Write as _;

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};

use crate::arcp::{plain_request_id, X_REQUEST_ID};
use crate::proxy::headers::lists;

/// Largest response head accepted (the same bound as for client heads).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in a response head (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// Why the upstream's answer cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("malformed upstream response head")]
    Head,
    #[error("upstream response head exceeds {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} fields")]
    HeadTooLarge,
    #[error("upstream response has an invalid Content-Length")]
    ContentLength,
    #[error("malformed chunk in the upstream response body")]
    Chunk,
    #[error("upstream closed the connection before the response body ended")]
    Truncated,
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body, and no framing field.
    Empty,
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// An upstream request head as the connection writes it: the proxied request's (the client's
/// fields after hygiene, then the gateway's own: `proxy::forward`), or a plain
/// [`http::Request`] (the broker's login).
pub trait RequestHead {
    fn method(&self) -> &Method;
    /// The target in origin form: path and query.
    fn target(&self) -> &str;
    /// The `Host` to send, if the request names one.
    fn host(&self) -> Option<&HeaderValue>;
    /// Hands each field to send to `field`, in order. `Host` and the body's framing
    /// (`Content-Length`, `Transfer-Encoding`, `Expect`) may be among them: the codec writes
    /// those itself.
    fn fields(&self, field: &mut dyn FnMut(&HeaderName, &HeaderValue));
    /// The request id to send as `x-request-id` (`pipeline::frame::RequestId`), after the
    /// fields, in place of any field of that name among them. Written as it is, so only a
    /// plain one (`arcp::plain_request_id`) is sent.
    fn request_id(&self) -> Option<&[u8]> {
        None
    }
}

impl<B> RequestHead for http::Request<B> {
    fn method(&self) -> &Method {
        self.method()
    }

    fn target(&self) -> &str {
        self.uri().path_and_query().map_or("/", |pq| pq.as_str())
    }

    fn host(&self) -> Option<&HeaderValue> {
        self.headers().get(HOST)
    }

    fn fields(&self, field: &mut dyn FnMut(&HeaderName, &HeaderValue)) {
        for (name, value) in self.headers() {
            field(name, value);
        }
    }
}

/// Writes a request head into `out` in one pass — the request line in origin form, `Host`
/// (`default_host` when the head names none), the fields, the field announcing the body, the
/// blank line — and returns how the body follows.
///
/// The body's framing: a valid `Content-Length` from the client (one value) is kept; otherwise
/// an exact size becomes one, and a body of unknown size goes chunked. A body-less POST, PUT
/// or PATCH says `content-length: 0`. The client's `Transfer-Encoding` never goes up, and
/// neither does `Expect`: the body follows the head at once (the client's `100-continue` was
/// answered on the client side), and an upstream told to expect a body it then refused might
/// read that body as the connection's next request.
pub fn encode_request(
    out: &mut Vec<u8>,
    head: &dyn RequestHead,
    default_host: &HeaderValue,
    end_stream: bool,
    exact: Option<u64>,
) -> RequestFraming {
    let method = head.method();
    let target = head.target();
    out.reserve(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    field_line(
        out,
        HOST.as_str(),
        head.host().unwrap_or(default_host).as_bytes(),
    );
    // Written as it is, so checked here too (a table lookup a byte): an id that is not
    // plain is not sent, whoever made it.
    let id = head.request_id().filter(|id| plain_request_id(id));
    // The client's length: `Some(Some(n))` for one valid value, `Some(None)` for none usable.
    let mut declared: Option<Option<u64>> = None;
    head.fields(&mut |name, value| {
        if name == CONTENT_LENGTH {
            declared = match declared {
                None => Some(parse_length(value.as_bytes())),
                Some(_) => Some(None),
            };
        } else if name != HOST
            && name != TRANSFER_ENCODING
            && name != EXPECT
            && !(id.is_some() && name == X_REQUEST_ID)
        {
            field_line(out, name.as_str(), value.as_bytes());
        }
    });
    if let Some(id) = id {
        field_line(out, X_REQUEST_ID.as_str(), id);
    }
    let framing = match (declared.flatten(), end_stream, exact) {
        (Some(n), _, _) => RequestFraming::Length(n),
        (None, true, _) => RequestFraming::Empty,
        (None, false, Some(n)) => RequestFraming::Length(n),
        (None, false, None) => RequestFraming::Chunked,
    };
    match framing {
        RequestFraming::Empty if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    framing.or_empty()
}

/// `name: value` and CRLF.
fn field_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl RequestFraming {
    fn or_empty(self) -> Self {
        match self {
            RequestFraming::Length(0) => RequestFraming::Empty,
            other => other,
        }
    }
}

/// Appends one chunk (size line, data, CRLF) of a chunked request body to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return; // an empty chunk would end the body
    }
    encode_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` (> 0) bytes to `out`.
pub fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// The last chunk of a chunked request body, without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The fields as they came, less `Content-Length` where `Transfer-Encoding` frames the body.
    pub fields: Fields,
    pub framing: BodyFraming,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses the response head at the start of `buf`, after any interim (1xx) responses, and
/// removes it from `buf`. `Ok(None)`: the head is not complete yet (interim responses already
/// read are removed). `head_request`: the answer to a HEAD has no body whatever it says.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, CodecError> {
    loop {
        // Uninitialised: filling 100 empty fields first would cost more than most heads' parse.
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        // The strict defaults: no obs-fold, no space before a colon. The fields are written
        // to clients as they came (`Fields`), so a value must hold no CR or LF, and a name
        // must be a token: `Fields` relies on that.
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut fields,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(CodecError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(CodecError::HeadTooLarge),
            Err(_) => return Err(CodecError::Head),
        };
        if len > MAX_HEAD_BYTES {
            return Err(CodecError::HeadTooLarge);
        }
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| CodecError::Head)?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // `100 Continue` and friends: the final answer follows on the same connection.
            let _ = buf.split_to(len);
            continue;
        }
        let version = match response.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        // Where each field lies in the head, so that names and values can share its bytes.
        let base = buf.as_ptr() as usize;
        let mut spans = Vec::with_capacity(response.headers.len());
        for field in response.headers.iter() {
            let name = field.name.as_ptr() as usize - base;
            if field.name.is_empty() {
                return Err(CodecError::Head);
            }
            // An empty value may point anywhere; it needs no bytes of the head.
            let value = if field.value.is_empty() {
                name
            } else {
                field.value.as_ptr() as usize - base
            };
            spans.push(Span::new(
                field.name.as_bytes(),
                name,
                value,
                field.value.len(),
            ));
        }
        let head = buf.split_to(len).freeze();
        return head_of(status, version, Fields::new(head, spans), head_request).map(Some);
    }
}

/// The framing and persistence of a response (RFC 9112 §6.3, §9.3).
fn head_of(
    status: StatusCode,
    version: Version,
    mut fields: Fields,
    head_request: bool,
) -> Result<ResponseHead, CodecError> {
    let close = lists(fields.values(Kind::Connection), b"close");
    let mut keep_alive = version == Version::HTTP_11 && !close;
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let chunked = fields.has(Kind::TransferEncoding);
    let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false; // the connection is no longer HTTP
        BodyFraming::Empty
    } else if bodiless {
        // Whatever its fields say (a HEAD's length is the GET's). A 204 or 304 that claims
        // a body may send one anyway: its connection is not trusted with another request.
        let claims_body = chunked
            || fields
                .values(Kind::ContentLength)
                .any(|v| v.iter().any(|&b| b != b'0' && b != b' ' && b != b','));
        if !head_request && claims_body {
            keep_alive = false;
        }
        BodyFraming::Empty
    } else if chunked {
        // A length next to a transfer coding is ignored, and must not reach the client.
        let last_chunked = fields
            .values(Kind::TransferEncoding)
            .next_back()
            .and_then(|v| v.rsplit(|&b| b == b',').next())
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if fields.has(Kind::ContentLength) {
            fields.retain_kinds(|kind| kind != Kind::ContentLength);
        }
        if last_chunked {
            BodyFraming::Chunked
        } else {
            keep_alive = false;
            BodyFraming::Close
        }
    } else if fields.has(Kind::ContentLength) {
        let mut length = None;
        for value in fields.values(Kind::ContentLength) {
            // `5, 5` and repeated fields are one length if they agree (RFC 9110 §8.6).
            for item in value.split(|&b| b == b',') {
                let n = parse_length(item.trim_ascii()).ok_or(CodecError::ContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(CodecError::ContentLength);
                }
                length = Some(n);
            }
        }
        match length {
            Some(0) | None => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
        }
    } else {
        keep_alive = false;
        BodyFraming::Close
    };
    Ok(ResponseHead {
        status,
        version,
        fields,
        framing,
        keep_alive,
    })
}

/// A decimal `Content-Length`: digits only, at most 18 of them (no sign, no overflow).
pub(crate) fn parse_length(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 18 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

mod body;
mod fields;
mod pieces;

pub use body::{Decoder, Step};
use fields::Span;
pub use fields::{is, Fields, Kind};
#[doc(hidden)]
pub use pieces::read_in_pieces;

#[cfg(test)]
mod tests;
