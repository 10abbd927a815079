//! Stage 1, framing: request id, size limits and path normalisation.
//!
//! Everything here is decided from the request head alone, before any routing, so an
//! oversized or ambiguous request never reaches the upstream.

use std::borrow::Cow;

use http::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue};

use crate::arcp::{plain_request_id, X_CLIENT_FINGERPRINT, X_REQUEST_ID, X_SESSION_PIN};
use crate::proxy::headers::header_bytes;

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

/// Refuses duplicated decision fields and hosts outside `names`.
pub fn check_head<B>(req: &http::Request<B>, names: &ServerNames) -> Result<(), FrameError> {
    let headers = req.headers();
    // One pass over the fields (a head has a few): cheaper than a lookup per name.
    let mut seen = [false; SINGLE.len()];
    let mut host = None;
    for (name, value) in headers {
        if let Some(at) = SINGLE.iter().position(|(single, _)| *single == name) {
            if seen[at] {
                return Err(FrameError::DuplicateHeader(SINGLE[at].1));
            }
            seen[at] = true;
            if name == http::header::HOST {
                host = Some(value.to_str());
            }
        }
    }
    match host {
        Some(Ok(h)) if !names.allows(h) => return Err(FrameError::MisdirectedHost),
        Some(Err(_)) => return Err(FrameError::MisdirectedHost),
        _ => {}
    }
    if let Some(authority) = req.uri().authority() {
        if !names.allows(authority.as_str()) {
            return Err(FrameError::MisdirectedHost);
        }
    }
    Ok(())
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

/// The request's id (see [`RequestId`]).
pub fn request_id(headers: &HeaderMap) -> RequestId {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        if plain_request_id(v.as_bytes()) {
            // Shared with the client's field, not copied.
            return RequestId(Id::Client(v.clone()));
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 12] = rand::random();
    let mut id = [0u8; GENERATED_LEN];
    id[..4].copy_from_slice(b"req_");
    for (i, b) in bytes.into_iter().enumerate() {
        id[4 + 2 * i] = HEX[usize::from(b >> 4)];
        id[5 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
    RequestId(Id::Generated(id))
}

/// Checks the limits on a request head.
pub fn check_limits<B>(req: &http::Request<B>, limits: &Limits) -> Result<(), FrameError> {
    let uri_len = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(FrameError::UriTooLong {
            len: uri_len,
            max: limits.max_uri_bytes,
        });
    }
    let size = header_bytes(req.headers());
    if size > limits.max_header_bytes {
        return Err(FrameError::HeadersTooLarge {
            size,
            max: limits.max_header_bytes,
        });
    }
    if let Some(v) = req.headers().get(CONTENT_LENGTH) {
        let declared: u64 = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(FrameError::BadContentLength)?;
        if declared > limits.max_body_bytes {
            return Err(FrameError::BodyTooLarge {
                declared,
                max: limits.max_body_bytes,
            });
        }
    }
    Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn server_names_match_the_host_without_its_port() {
        let names = ServerNames::new(&["Gateway.example".into(), "127.0.0.1".into(), "::1".into()]);
        for ok in [
            "gateway.example",
            "GATEWAY.example:8443",
            "127.0.0.1:8443",
            "[::1]:8443",
        ] {
            assert!(names.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "gateway.example.evil:443", "[::2]:8443", ""] {
            assert!(!names.allows(bad), "{bad}");
        }
        assert!(ServerNames::default().allows("anything"));
    }

    #[test]
    fn normalisation_table() {
        let ok = [
            ("/", "/"),
            ("/agents", "/agents"),
            ("/agents/", "/agents/"),
            ("//agents//stats", "/agents/stats"),
            ("/agent%73/stats", "/agents/stats"),
            ("/a%2a", "/a%2A"),
            ("/public/agent/x%20y", "/public/agent/x%20y"),
            ("/static/js/dashboard.js", "/static/js/dashboard.js"),
            ("/a.b/c..d", "/a.b/c..d"),
        ];
        for (input, want) in ok {
            assert_eq!(normalise_path(input).unwrap(), want, "{input}");
        }
        let bad = [
            "agents",
            "/static/../agents/stats",
            "/static/./x",
            "/static/..",
            "/%2e%2e/agents",
            "/static/%2E%2E/agents",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%252e",
            "/a%zz",
            "/a%2",
        ];
        for input in bad {
            assert!(normalise_path(input).is_err(), "{input} should be refused");
        }
    }

    /// Every path of up to seven bytes of `/`, `.` and `a` is refused exactly when one of its
    /// segments is `.` or `..`.
    #[test]
    fn dot_segments_are_found_wherever_they_are() {
        let alphabet = [b'/', b'.', b'a'];
        for len in 0..=6u32 {
            for n in 0..3usize.pow(len) {
                let mut path = vec![b'/'];
                let mut k = n;
                for _ in 0..len {
                    path.push(alphabet[k % 3]);
                    k /= 3;
                }
                let path = String::from_utf8(path).unwrap();
                let dot = path.split('/').any(|s| s == "." || s == "..");
                assert_eq!(
                    normalise_path(&path).is_err(),
                    dot,
                    "{path}: {:?}",
                    normalise_path(&path)
                );
            }
        }
    }

    #[test]
    fn a_decision_field_given_twice_is_refused_and_the_host_checked() {
        let names = ServerNames::new(&["gw.example".to_owned()]);
        let request = |fields: &[(&str, &str)]| {
            let mut builder = http::Request::builder().uri("/agents");
            for (name, value) in fields {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let all = [
            ("host", "gw.example"),
            ("authorization", "Bearer a"),
            ("x-client-fingerprint", "f"),
            ("x-session-pin", "1"),
            ("accept", "*/*"),
            ("accept", "text/html"),
        ];
        assert!(check_head(&request(&all), &names).is_ok());
        for (name, display) in SINGLE.iter().map(|(n, d)| (n.as_str(), *d)) {
            let mut fields = all.to_vec();
            fields.push((name, "again"));
            match check_head(&request(&fields), &names) {
                Err(FrameError::DuplicateHeader(d)) => assert_eq!(d, display),
                other => panic!("{name} twice: {other:?}"),
            }
        }
        let elsewhere = request(&[("host", "other.example")]);
        assert!(matches!(
            check_head(&elsewhere, &names),
            Err(FrameError::MisdirectedHost)
        ));
        assert!(check_head(&request(&[]), &names).is_ok());
    }

    #[test]
    fn unchanged_paths_are_not_copied() {
        assert!(matches!(
            normalise_path("/agents/stats").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let generated = request_id(&h);
        assert!(
            generated.starts_with("req_") && generated.len() == 28,
            "{}",
            &*generated
        );
        assert_eq!(generated.header().as_bytes(), generated.as_bytes());
        assert!(plain_request_id(generated.as_bytes()));
        assert_ne!(request_id(&h).as_bytes(), generated.as_bytes());
        h.insert(&X_REQUEST_ID, "client-abc_1".parse().unwrap());
        assert_eq!(request_id(&h), "client-abc_1");
        assert_eq!(request_id(&h).header(), "client-abc_1");
        h.insert(&X_REQUEST_ID, "evil\"id <script>".parse().unwrap());
        assert!(request_id(&h).starts_with("req_"));
        for bad in ["", "a\tb", "a b", "a/b", &"x".repeat(129)] {
            h.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&h);
            assert!(
                id.starts_with("req_") && plain_request_id(id.as_bytes()),
                "{bad:?}: {}",
                &*id
            );
        }
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(128)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 128);
        h.insert(&X_REQUEST_ID, HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert!(request_id(&h).starts_with("req_"));
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("a.b:c-d_1"));
        assert_eq!(request_id(&h).as_bytes(), b"a.b:c-d_1");
        // The first of two is the one looked at, usable or not.
        h.append(&X_REQUEST_ID, HeaderValue::from_static("second"));
        assert_eq!(request_id(&h), "a.b:c-d_1");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad one"));
        h.append(&X_REQUEST_ID, HeaderValue::from_static("good"));
        assert!(request_id(&h).starts_with("req_"));
    }
}
