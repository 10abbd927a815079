//! The own loop's encoder on an upstream response's fields as they came.

use super::*;

/// An upstream response's fields are written in their case and order; the gateway's own
/// fields replace the upstream's of the same name; the framing fields are recognised in any
/// case.
#[test]
fn upstream_fields_keep_their_case_and_yield_to_the_gateway_own() {
    let fields = raw(
        &[
            ("Server", b"uvicorn"),
            ("X-REQUEST-ID", b"from-upstream"),
            ("Set-Cookie", b"a=1"),
            ("DATE", b"Thu, 01 Jan 1970 00:00:00 GMT"),
            ("Content-LENGTH", b"3"),
            ("set-cookie", b"b=2"),
        ],
        str::to_owned,
    );
    let mut own = HeaderMap::new();
    own.insert("x-request-id", HeaderValue::from_static("req_gateway"));
    let encode = |body: BodySize, head_request: bool| {
        let mut out = Vec::new();
        let written = encode_head(
            &mut out,
            StatusCode::OK,
            &own,
            Some(&fields),
            None,
            head_request,
            body,
            false,
            b"D",
        );
        (String::from_utf8(out).unwrap(), written.framing)
    };
    let fields_but_length = "HTTP/1.1 200 OK\r\nServer: uvicorn\r\nSet-Cookie: a=1\r\n\
        DATE: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
    // An exact size: the length is the body's, where the upstream put it.
    assert_eq!(
        encode(BodySize::Known(3), false),
        (
            format!("{fields_but_length}content-length: 3\r\nset-cookie: b=2\r\nx-request-id: req_gateway\r\n\r\n"),
            Framing::Length(3)
        )
    );
    // A size not known: the upstream's length frames the body, as it came.
    assert_eq!(
        encode(BodySize::Unknown, false),
        (
            format!("{fields_but_length}Content-LENGTH: 3\r\nset-cookie: b=2\r\nx-request-id: req_gateway\r\n\r\n"),
            Framing::Length(3)
        )
    );
    // A HEAD answer keeps the GET's length and sends no body.
    assert_eq!(
        encode(BodySize::Empty, true),
        (
            format!("{fields_but_length}Content-LENGTH: 3\r\nset-cookie: b=2\r\nx-request-id: req_gateway\r\n\r\n"),
            Framing::None
        )
    );
    // A transfer coding is the gateway's to write, once, whatever the upstream's case.
    let chunked = raw(&[("TRANSFER-encoding", b"chunked")], str::to_owned);
    let mut out = Vec::new();
    let written = encode_head(
        &mut out,
        StatusCode::OK,
        &HeaderMap::new(),
        Some(&chunked),
        None,
        false,
        BodySize::Unknown,
        false,
        b"D",
    );
    assert_eq!(written.framing, Framing::Chunked);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n"
    );
}

/// The request id given apart writes the head the response would have with the id set in its
/// map (what `pipeline::handle` does for hyper), replacing the upstream's `X-Request-Id`. (A
/// map that has one already, which the pipeline never builds, has it replaced too; the id is
/// then written after the map's fields, not in that one's place.)
#[test]
fn a_request_id_given_apart_is_written_as_if_set_in_the_map() {
    let id = HeaderValue::from_static("req_0123456789abcdef01234567");
    let upstream = [
        raw(&[], str::to_owned),
        raw(
            &[("Server", b"uvicorn"), ("X-REQUEST-ID", b"from-upstream")],
            str::to_owned,
        ),
        raw(
            &[("x-request-id", b"a"), ("X-Request-Id", b"b")],
            str::to_owned,
        ),
    ];
    let mut maps = vec![HeaderMap::new()];
    let mut stale = HeaderMap::new();
    stale.insert("x-request-id", HeaderValue::from_static("stale"));
    stale.insert("content-type", HeaderValue::from_static("application/json"));
    maps.push(stale);
    let mut typed = HeaderMap::new();
    typed.insert("content-type", HeaderValue::from_static("text/plain"));
    typed.append("vary", HeaderValue::from_static("a"));
    typed.append("vary", HeaderValue::from_static("b"));
    maps.push(typed);
    let encode = |map: &HeaderMap, fields: Option<&Fields>, id: Option<&[u8]>| {
        let mut out = Vec::new();
        let written = encode_head(
            &mut out,
            StatusCode::OK,
            map,
            fields,
            id,
            false,
            BodySize::Known(2),
            false,
            b"D",
        );
        (String::from_utf8(out).unwrap(), written)
    };
    for map in &maps {
        let mut with_id = map.clone();
        with_id.insert("x-request-id", id.clone());
        for fields in [None].into_iter().chain(upstream.iter().map(Some)) {
            let apart = encode(map, fields, Some(id.as_bytes()));
            if map.contains_key("x-request-id") {
                assert!(!apart.0.contains("stale"), "{map:?} {fields:?}");
            } else {
                assert_eq!(apart, encode(&with_id, fields, None), "{map:?} {fields:?}");
            }
            assert_eq!(apart.0.matches("req_0123456789abcdef01234567").count(), 1);
            assert_eq!(
                apart.0.to_ascii_lowercase().matches("x-request-id").count(),
                1
            );
        }
    }
}
