//! The gateway's own HTTP/1.1 reader and response writer (`server::h1`) on arbitrary bytes.
//!
//! Input: one byte of options (response side: bit 0 answers a HEAD, bit 1 closes, bits 2–3
//! the body's size kind, bits 4–7 pick the status), then a request head.
//!
//! Invariants: nothing panics. A head the reader serves is one the framing check
//! (`server::framing`, hyper's requests' smuggling defence) finds unambiguous and bodyless, is
//! bodyless HTTP/1.1 in origin form without `Transfer-Encoding` or `Expect`, and written again
//! from its parsed fields it is served the same. Response side, with the head's fields as the
//! response's: the written head is one complete, well-formed response head with the chosen
//! status, and its framing fields say what the writer will send (`content-length: n` for a
//! length of n, `transfer-encoding: chunked` alone for chunks, `connection: close` exactly
//! when it closes).
//! The same fields brought as an upstream response's (`upstream::codec::Fields`) are written
//! the same, but for their order and case.
#![no_main]

use arcp_gateway::server::bodyless;
use arcp_gateway::server::h1::{accept, encode_head, BodySize, Framing, Parsed};
use arcp_gateway::upstream::codec::parse_response;
use bytes::BytesMut;
use http::header::CONNECTION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 16] = [
    200, 201, 204, 206, 301, 304, 400, 401, 403, 404, 409, 429, 500, 502, 503, 599,
];

/// The request as comparable values: method, target, fields, close.
fn shape(p: &Parsed) -> (String, String, Vec<(String, Vec<u8>)>, bool) {
    let r = &p.request;
    let fields = r
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    (r.method().to_string(), r.uri().to_string(), fields, p.close)
}

/// A head's lines with the names lower-cased, sorted.
fn lines(head: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = head
        .split(|&b| b == b'\n')
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(colon) => [&line[..colon].to_ascii_lowercase()[..], &line[colon..]].concat(),
            None => line.to_vec(),
        })
        .collect();
    lines.sort();
    lines
}

fuzz_target!(|data: &[u8]| {
    let (options, head) = data.split_at(data.len().min(1));
    let options = options.first().copied().unwrap_or(0);

    let mut fields = HeaderMap::new();
    if let Some(parsed) = accept(head) {
        assert!(bodyless(head), "served, but the framing check refuses it");
        let r = &parsed.request;
        assert_ne!(r.method(), http::Method::CONNECT);
        assert_eq!(r.version(), http::Version::HTTP_11);
        assert!(r.uri().to_string().starts_with('/'), "{}", r.uri());
        assert!(!r.headers().contains_key("transfer-encoding"));
        assert!(!r.headers().contains_key("expect"));
        for length in r.headers().get_all("content-length") {
            assert!(length.as_bytes().trim_ascii().iter().all(|&b| b == b'0'));
        }
        let mut again = format!("{} {} HTTP/1.1\r\n", r.method(), r.uri()).into_bytes();
        for (name, value) in r.headers() {
            again.extend_from_slice(name.as_str().as_bytes());
            again.extend_from_slice(b": ");
            again.extend_from_slice(value.as_bytes());
            again.extend_from_slice(b"\r\n");
        }
        again.extend_from_slice(b"\r\n");
        let reparsed = accept(&again).expect("written again, still served");
        assert_eq!(shape(&reparsed), shape(&parsed));
        fields = parsed.request.headers().clone();
    } else {
        // Fields for the response side from any `name: value` lines (at most 100).
        for line in head.split(|&b| b == b'\n').take(100) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(&line[..colon]),
                    HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
                ) {
                    fields.append(n, v);
                }
            }
        }
    }

    let head_request = options & 1 == 1;
    let close = options & 2 == 2;
    let size = match (options >> 2) & 3 {
        0 => BodySize::Empty,
        1 => BodySize::Known(0),
        2 => BodySize::Known(u64::from(options) * 7 + 1),
        _ => BodySize::Unknown,
    };
    let status = StatusCode::from_u16(STATUSES[usize::from(options >> 4)]).unwrap();
    let mut out = Vec::new();
    let written = encode_head(&mut out, status, &fields, None, None, head_request, size, close, b"D");

    // The same fields as an upstream response brings them (`Connection` aside: it is
    // hop-by-hop, and only the gateway's own is written): the same head, but for the order
    // and case of the fields.
    let mut upstream = b"HTTP/1.1 200 OK\r\n".to_vec();
    let mut own = HeaderMap::new();
    for (name, value) in &fields {
        if name == CONNECTION {
            own.append(name, value.clone());
        } else {
            upstream.extend_from_slice(name.as_str().as_bytes());
            upstream.extend_from_slice(b": ");
            upstream.extend_from_slice(value.as_bytes());
            upstream.extend_from_slice(b"\r\n");
        }
    }
    upstream.extend_from_slice(b"\r\n");
    if let Ok(Some(parsed)) = parse_response(&mut BytesMut::from(&upstream[..]), false) {
        let raw = parsed.fields;
        let mut mapped = raw.clone().into_map();
        for (name, value) in &own {
            mapped.append(name, value.clone());
        }
        let mut from_map = Vec::new();
        let by_map = encode_head(&mut from_map, status, &mapped, None, None, head_request, size, close, b"D");
        let mut from_raw = Vec::new();
        let by_raw = encode_head(&mut from_raw, status, &own, Some(&raw), None, head_request, size, close, b"D");
        assert_eq!(by_raw, by_map);
        assert_eq!(lines(&from_raw), lines(&from_map));

        // The request id given apart (the own loop) writes what setting it in the map writes
        // (the hyper path): one `x-request-id`, the gateway's, whatever the upstream sent.
        let id = HeaderValue::from_static("req_0123456789abcdef01234567");
        let mut mapped_id = mapped;
        mapped_id.insert(HeaderName::from_static("x-request-id"), id.clone());
        let mut from_map_id = Vec::new();
        let by_map_id = encode_head(&mut from_map_id, status, &mapped_id, None, None, head_request, size, close, b"D");
        let mut from_raw_id = Vec::new();
        let by_raw_id = encode_head(&mut from_raw_id, status, &own, Some(&raw), Some(id.as_bytes()), head_request, size, close, b"D");
        assert_eq!(by_raw_id, by_map_id);
        assert_eq!(lines(&from_raw_id), lines(&from_map_id));
        let ids = lines(&from_raw_id).iter().filter(|l| l.starts_with(b"x-request-id:")).count();
        assert_eq!(ids, 1);
    }

    let mut parsed_fields = [httparse::EMPTY_HEADER; 256];
    let mut response = httparse::Response::new(&mut parsed_fields);
    let n = match response.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(n, out.len(), "one head, nothing after it");
    assert_eq!(response.code, Some(status.as_u16()));
    let values = |name: &str| -> Vec<&[u8]> {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    match written.framing {
        Framing::Length(n) => {
            let said: Vec<Option<u64>> = lengths
                .iter()
                .map(|v| std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()))
                .collect();
            assert_eq!(said, [Some(n)]);
        }
        Framing::Chunked => {
            assert_eq!(codings, [b"chunked".as_slice()]);
            assert!(lengths.is_empty());
        }
        Framing::None => assert!(codings.is_empty()),
    }
    if written.framing != Framing::None {
        assert!(!head_request && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED);
    }
    let closes = values("connection").iter().any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    assert_eq!(closes, written.close);
    assert!(written.close || !close);
});
