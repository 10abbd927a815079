//! Stage 1, framing: request id, size limits and path normalisation.
//!
//! Everything here is decided from the request head alone, before any routing, so an
//! oversized or ambiguous request never reaches the upstream.

use std::borrow::Cow;

use http::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH, HOST, UPGRADE};
use http::{HeaderMap, HeaderValue};
use rand::RngCore;

use crate::arcp::{plain_request_id, X_CLIENT_FINGERPRINT, X_REQUEST_ID, X_SESSION_PIN};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sum of name and value lengths of the request headers (as upstream counts them).
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("request target of {len} bytes exceeds {max}")]
    UriTooLong { len: usize, max: usize },
    #[error("request headers of {size} bytes exceed {max}")]
    HeadersTooLarge { size: usize, max: usize },
    #[error("declared body of {declared} bytes exceeds {max}")]
    BodyTooLarge { declared: u64, max: u64 },
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("ambiguous request path: {0}")]
    AmbiguousPath(&'static str),
    /// RFC 9112 §6.3, as strict as nginx ≥ 1.21.1: the head could be framed more than one way.
    #[error("ambiguous message framing: {0}")]
    AmbiguousFraming(&'static str),
    /// A field the gateway decides on appears twice: which one upstream reads is a guess.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// `Host` (or `:authority`) names none of `server.server_names` (RFC 9110 §15.5.20).
    #[error("request for a host this gateway does not serve")]
    MisdirectedHost,
}

/// Fields that must appear at most once: the gateway decides on them, and a second copy
/// could be what upstream reads.
///
/// Names as `HeaderName`s, not text: a lookup by text parses the name first.
static SINGLE: [(&HeaderName, &str); 4] = [
    (&AUTHORIZATION, "Authorization"),
    (&X_CLIENT_FINGERPRINT, "X-Client-Fingerprint"),
    (&X_SESSION_PIN, "X-Session-Pin"),
    (&HOST, "Host"),
];

/// The host names the gateway answers for (`server.server_names`); empty accepts any.
#[derive(Debug, Clone, Default)]
pub struct ServerNames(std::sync::Arc<[String]>);

impl ServerNames {
    pub fn new(names: &[String]) -> Self {
        ServerNames(names.iter().map(|n| n.to_ascii_lowercase()).collect())
    }

    /// Whether `authority` (`host`, `host:port`, `[v6]:port`) names a configured host.
    pub fn allows(&self, authority: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let host = match authority.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        self.0.iter().any(|n| n.eq_ignore_ascii_case(host))
    }
}

/// The request's fields as the framing stage and the pipeline need them before admission,
/// read in one pass over the header map (a head has a few fields; a lookup per name would
/// hash each name and probe the map for fields that are mostly absent).
#[derive(Debug)]
pub struct Head {
    /// The request's id ([`RequestId`]).
    pub request_id: RequestId,
    /// The request has an `Upgrade` field (it asks to switch protocols).
    pub upgrade: bool,
    /// Sum of name and value lengths, the way ARCP's size middleware counts header bytes.
    header_bytes: usize,
    /// The first `Content-Length`, and its value if it is a number.
    content_length: Option<Option<u64>>,
    /// The first decision field ([`SINGLE`]) found twice, by its display name.
    duplicate: Option<&'static str>,
    /// `Host` is not text or names no host in `server.server_names`.
    misdirected: bool,
}

impl Head {
    /// Reads `headers` once; `names` are the hosts the gateway answers for.
    pub fn read(headers: &HeaderMap, names: &ServerNames) -> Head {
        let mut upgrade = false;
        let mut header_bytes = 0;
        let mut content_length = None;
        let mut duplicate = None;
        let mut misdirected = false;
        let mut client_id = None;
        let mut seen = [false; SINGLE.len()];
        for (name, value) in headers {
            header_bytes += name.as_str().len() + value.len();
            if name == CONTENT_LENGTH {
                content_length
                    .get_or_insert_with(|| value.to_str().ok().and_then(|s| s.trim().parse().ok()));
            } else if name == UPGRADE {
                upgrade = true;
            } else if name == X_REQUEST_ID {
                client_id.get_or_insert(value);
            } else if let Some(at) = SINGLE.iter().position(|(single, _)| *single == name) {
                if seen[at] {
                    duplicate.get_or_insert(SINGLE[at].1);
                    continue;
                }
                seen[at] = true;
                if name == HOST {
                    misdirected = value.to_str().map_or(true, |h| !names.allows(h));
                }
            }
        }
        Head {
            request_id: RequestId::of(client_id),
            upgrade,
            header_bytes,
            content_length,
            duplicate,
            misdirected,
        }
    }

    /// The body's declared length: the first `Content-Length`, when it is a number.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length.flatten()
    }

    /// Refuses a request over `limits`, then one with a decision field given twice, then one
    /// for a host outside `names` (by `Host`, or by the target's authority).
    pub fn check<B>(
        &self,
        req: &http::Request<B>,
        limits: &Limits,
        names: &ServerNames,
    ) -> Result<(), FrameError> {
        let uri_len = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
        if uri_len > limits.max_uri_bytes {
            return Err(FrameError::UriTooLong {
                len: uri_len,
                max: limits.max_uri_bytes,
            });
        }
        if self.header_bytes > limits.max_header_bytes {
            return Err(FrameError::HeadersTooLarge {
                size: self.header_bytes,
                max: limits.max_header_bytes,
            });
        }
        if let Some(declared) = self.content_length {
            let declared = declared.ok_or(FrameError::BadContentLength)?;
            if declared > limits.max_body_bytes {
                return Err(FrameError::BodyTooLarge {
                    declared,
                    max: limits.max_body_bytes,
                });
            }
        }
        if let Some(name) = self.duplicate {
            return Err(FrameError::DuplicateHeader(name));
        }
        if self.misdirected {
            return Err(FrameError::MisdirectedHost);
        }
        if let Some(authority) = req.uri().authority() {
            if !names.allows(authority.as_str()) {
                return Err(FrameError::MisdirectedHost);
            }
        }
        Ok(())
    }
}

/// A request id, made once per request: the client's `X-Request-ID` if it is short and plain,
/// else `req_<hex>`. Only `[A-Za-z0-9._:-]` is ever in one, so its bytes go into heads as they
/// are. The client's is held as its header value (shared, not copied); a generated one is held
/// inline (no allocation), and read as text by the log and the problem documents.
#[derive(Clone, Debug)]
pub struct RequestId(Id);

#[derive(Clone, Debug)]
enum Id {
    Client(HeaderValue),
    Generated([u8; GENERATED_LEN]),
}

thread_local! {
    /// Where generated ids come from: a fast generator per thread, seeded from the operating
    /// system. An id only has to be unique (96 random bits, across threads and replicas), not
    /// unpredictable: it grants nothing, and a client may send an id of its own choosing.
    static IDS: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
}

/// `req_` and 24 hex digits.
const GENERATED_LEN: usize = 4 + 24;

impl RequestId {
    /// The id's bytes, for a head written as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Id::Client(value) => value.as_bytes(),
            Id::Generated(bytes) => bytes,
        }
    }

    /// The id as a header value (a new one for a generated id: only responses hyper writes
    /// need it).
    pub fn header(&self) -> HeaderValue {
        match &self.0 {
            Id::Client(value) => value.clone(),
            Id::Generated(bytes) => {
                HeaderValue::from_bytes(bytes).unwrap_or(HeaderValue::from_static("req_unknown"))
            }
        }
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        // Only `[A-Za-z0-9._:-]` is ever put in; it is always UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        &**self == *other
    }
}

impl RequestId {
    /// The request's id, from the first `X-Request-Id` field if there is one.
    pub fn of(client: Option<&HeaderValue>) -> RequestId {
        if let Some(v) = client {
            if plain_request_id(v.as_bytes()) {
                // Shared with the client's field, not copied.
                return RequestId(Id::Client(v.clone()));
            }
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            let mut bytes = [0u8; 12];
            bytes[..8].copy_from_slice(&ids.next_u64().to_le_bytes());
            bytes[8..].copy_from_slice(&ids.next_u32().to_le_bytes());
            bytes
        });
        let mut id = [0u8; GENERATED_LEN];
        id[..4].copy_from_slice(b"req_");
        for (i, b) in bytes.into_iter().enumerate() {
            id[4 + 2 * i] = HEX[usize::from(b >> 4)];
            id[5 + 2 * i] = HEX[usize::from(b & 0xf)];
        }
        RequestId(Id::Generated(id))
    }
}

/// The request's id (see [`RequestId`]).
pub fn request_id(headers: &HeaderMap) -> RequestId {
    RequestId::of(headers.get(&X_REQUEST_ID))
}

/// Normalises a request path for matching and forwarding (RFC 3986 §6.2.2).
///
/// * Percent-encoded unreserved characters are decoded; other escapes are upper-cased.
/// * Empty segments (`//`) collapse.
/// * Ambiguous forms are refused instead of guessed: encoded `.`, `/` or `\`, a literal
///   `\`, NUL (raw or encoded), double encoding (`%25`), and any `.` or `..` segment.
pub fn normalise_path(raw: &str) -> Result<Cow<'_, str>, FrameError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(FrameError::AmbiguousPath("the path must start with `/`"));
    }
    let mut clean = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                        (*h, *l)
                    }
                    _ => return Err(FrameError::AmbiguousPath("malformed percent-encoding")),
                };
                let value = hex(hi) << 4 | hex(lo);
                match value {
                    b'.' => return Err(FrameError::AmbiguousPath("encoded `.`")),
                    b'/' => return Err(FrameError::AmbiguousPath("encoded `/`")),
                    b'\\' => return Err(FrameError::AmbiguousPath("encoded `\\`")),
                    0 => return Err(FrameError::AmbiguousPath("encoded NUL")),
                    b'%' => return Err(FrameError::AmbiguousPath("double percent-encoding")),
                    _ => {}
                }
                if is_unreserved(value) || hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    clean = false;
                }
                i += 3;
            }
            b'\\' => return Err(FrameError::AmbiguousPath("`\\` in the path")),
            0 => return Err(FrameError::AmbiguousPath("NUL in the path")),
            b'/' => {
                // Every segment follows a `/` (the path starts with one).
                match &bytes[i + 1..] {
                    [b'/', ..] => clean = false,
                    [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..] => {
                        return Err(FrameError::AmbiguousPath("dot segment"))
                    }
                    _ => {}
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if clean {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let value = hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]);
                if is_unreserved(value) {
                    out.push(value as char);
                } else {
                    out.push('%');
                    out.push(bytes[i + 1].to_ascii_uppercase() as char);
                    out.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
            }
            b'/' => {
                if !out.ends_with('/') {
                    out.push('/');
                }
                i += 1;
            }
            _ => {
                // Non-`%` bytes are copied whole characters at a time.
                let start = i;
                while i < bytes.len() && bytes[i] != b'%' && bytes[i] != b'/' {
                    i += 1;
                }
                out.push_str(&raw[start..i]);
            }
        }
    }
    Ok(Cow::Owned(out))
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// RFC 3986 §2.3 unreserved characters (without `.`, which is refused when encoded).
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~')
}

#[cfg(test)]
mod tests;
