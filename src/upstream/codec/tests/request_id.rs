//! The request id the codec writes apart from the fields.

use http::{HeaderName, HeaderValue, Method};

use super::super::{encode_request, RequestHead};
use super::{encoded, request};

/// A request head with a request id of its own (as the forwarder gives one).
struct WithId<'a>(&'a http::Request<()>, &'a [u8]);

impl RequestHead for WithId<'_> {
    fn method(&self) -> &Method {
        self.0.method()
    }
    fn target(&self) -> &str {
        RequestHead::target(self.0)
    }
    fn host(&self) -> Option<&HeaderValue> {
        RequestHead::host(self.0)
    }
    fn fields(&self, field: &mut dyn FnMut(&HeaderName, &HeaderValue)) {
        RequestHead::fields(self.0, field)
    }
    fn request_id(&self) -> Option<&[u8]> {
        Some(self.1)
    }
}

#[test]
fn a_request_id_given_apart_is_the_only_one_and_only_if_plain() {
    let req = request(
        Method::GET,
        "/a",
        &[
            ("x-request-id", "theirs"),
            ("x-b", "1"),
            ("X-Request-ID", "again"),
        ],
    );
    let written = |id: &[u8]| {
        let mut out = Vec::new();
        let head = WithId(&req, id);
        encode_request(&mut out, &head, &HeaderValue::from_static("up"), true, None);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        written(b"req_0123456789abcdef01234567"),
        "GET /a HTTP/1.1\r\nhost: up\r\nx-b: 1\r\nx-request-id: req_0123456789abcdef01234567\r\n\r\n"
    );
    assert_eq!(
        written(b"a.b:c-d_1"),
        "GET /a HTTP/1.1\r\nhost: up\r\nx-b: 1\r\nx-request-id: a.b:c-d_1\r\n\r\n"
    );
    // Not plain: not written, whoever made it (and the fields' own are kept).
    for bad in [&b"a\r\nx-evil: 1"[..], b"a b", b"", b"\xe9", &[b'a'; 129]] {
        let head = written(bad);
        assert!(
            !head.contains("evil") && !head.contains('\u{e9}'),
            "{head:?}"
        );
        assert_eq!(
            head,
            // (a header map hands out a name's values together)
            "GET /a HTTP/1.1\r\nhost: up\r\nx-request-id: theirs\r\nx-request-id: again\r\nx-b: 1\r\n\r\n",
            "{bad:?}"
        );
    }
    // A plain request's own head (no id given apart) keeps its fields as they are.
    assert!(encoded(&req, true, None)
        .0
        .contains("x-request-id: theirs\r\n"));
}
