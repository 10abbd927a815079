//! The upstream codec on exact bytes: request heads and framing, response heads, bodies.

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method};

use super::*;

mod request_id;

fn fields(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

fn request(
    method: Method,
    target: &str,
    pairs: &[(&'static str, &'static str)],
) -> http::Request<()> {
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = target.parse().unwrap();
    *req.headers_mut() = fields(pairs);
    req
}

/// The head `encode_request` writes for `req`, and the framing it chose.
fn encoded(
    req: &http::Request<()>,
    end_stream: bool,
    exact: Option<u64>,
) -> (String, RequestFraming) {
    let mut out = b"stale".to_vec();
    out.clear();
    let framing = encode_request(
        &mut out,
        req,
        &HeaderValue::from_static("upstream:8001"),
        end_stream,
        exact,
    );
    (String::from_utf8(out).unwrap(), framing)
}

#[test]
fn the_request_head_is_written_in_origin_form_with_every_field() {
    let req = request(
        Method::GET,
        "http://up/agents?x=1",
        &[("host", "up"), ("x-a", "1"), ("x-a", "2")],
    );
    assert_eq!(
        encoded(&req, true, Some(0)),
        (
            "GET /agents?x=1 HTTP/1.1\r\nhost: up\r\nx-a: 1\r\nx-a: 2\r\n\r\n".to_owned(),
            RequestFraming::Empty
        )
    );
    // No `Host` of its own: the upstream's.
    let req = request(Method::OPTIONS, "/", &[]);
    assert_eq!(
        encoded(&req, true, None).0,
        "OPTIONS / HTTP/1.1\r\nhost: upstream:8001\r\n\r\n"
    );
}

#[test]
fn request_framing_keeps_a_valid_length_and_announces_every_other_body() {
    // The client's own length stays; a client transfer coding or expectation never goes up.
    let req = request(
        Method::POST,
        "/p",
        &[
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("expect", "100-continue"),
        ],
    );
    assert_eq!(
        encoded(&req, false, None),
        (
            "POST /p HTTP/1.1\r\nhost: upstream:8001\r\ncontent-length: 5\r\n\r\n".to_owned(),
            RequestFraming::Length(5)
        )
    );
    // An exact size becomes a length.
    let (head, framing) = encoded(&request(Method::PUT, "/p", &[]), false, Some(12));
    assert_eq!(framing, RequestFraming::Length(12));
    assert!(head.ends_with("\r\ncontent-length: 12\r\n\r\n"), "{head}");
    // A body of unknown size goes chunked.
    let (head, framing) = encoded(&request(Method::POST, "/p", &[]), false, None);
    assert_eq!(framing, RequestFraming::Chunked);
    assert!(
        head.ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    // Nothing to send: a GET says nothing, a POST says 0.
    let (head, framing) = encoded(&request(Method::GET, "/g", &[]), true, Some(0));
    assert_eq!(framing, RequestFraming::Empty);
    assert_eq!(head, "GET /g HTTP/1.1\r\nhost: upstream:8001\r\n\r\n");
    let (head, framing) = encoded(&request(Method::POST, "/p", &[]), true, Some(0));
    assert_eq!(framing, RequestFraming::Empty);
    assert!(head.ends_with("\r\ncontent-length: 0\r\n\r\n"), "{head}");
    // Two lengths, or one that is not a plain number, are no length: the body's size decides.
    for pairs in [
        &[("content-length", "5"), ("content-length", "6")][..],
        &[("content-length", "+5")][..],
    ] {
        let (head, framing) = encoded(&request(Method::POST, "/p", pairs), false, Some(7));
        assert_eq!(framing, RequestFraming::Length(7));
        assert_eq!(head.matches("content-length").count(), 1, "{head}");
        assert!(head.ends_with("\r\ncontent-length: 7\r\n\r\n"), "{head}");
    }
}

#[test]
fn chunks_are_framed_and_an_empty_piece_is_not_a_last_chunk() {
    let mut out = Vec::new();
    encode_chunk(&mut out, b"hello world, 17 b");
    encode_chunk(&mut out, b"");
    out.extend_from_slice(LAST_CHUNK);
    assert_eq!(out, b"11\r\nhello world, 17 b\r\n0\r\n\r\n");
}

fn parse(bytes: &[u8]) -> Result<Option<ResponseHead>, CodecError> {
    parse_response(&mut BytesMut::from(bytes), false)
}

#[test]
fn a_response_head_is_parsed_and_its_values_share_the_read_buffer() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nX-Empty:\r\n\r\nbody"[..],
    );
    let start = buf.as_ptr() as usize;
    let head = parse_response(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.status, 201);
    assert_eq!(head.version, http::Version::HTTP_11);
    assert_eq!(head.framing, BodyFraming::Length(4));
    assert!(head.keep_alive);
    let cookies: Vec<_> = head.fields.get_all("set-cookie").collect();
    assert_eq!(cookies, [b"a", b"b"]);
    assert_eq!(head.fields.get_all("x-empty").next().unwrap(), b"");
    let names: Vec<_> = head.fields.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            &b"Content-Length"[..],
            b"Set-Cookie",
            b"Set-Cookie",
            b"X-Empty"
        ],
        "in their order and case"
    );
    let value = head.fields.get_all("content-length").next().unwrap();
    let at = value.as_ptr() as usize;
    assert!(
        at > start && at < start + 80,
        "the value lies in the read buffer"
    );
    assert_eq!(&buf[..], b"body", "the head is consumed, the body is not");
}

#[test]
fn a_partial_head_waits_and_interim_answers_are_skipped() {
    assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap().is_none());
    let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
    assert!(parse_response(&mut buf, false).unwrap().is_none());
    assert_eq!(
        &buf[..],
        b"HTTP/1.1 200 OK\r\n",
        "the interim answer is gone"
    );
    buf.extend_from_slice(b"content-length: 0\r\n\r\n");
    let head = parse_response(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.framing, BodyFraming::Empty);
}

#[test]
fn the_framing_of_a_response_follows_rfc_9112() {
    let framing = |bytes: &[u8], head_request: bool| {
        let head = parse_response(&mut BytesMut::from(bytes), head_request)
            .unwrap()
            .unwrap();
        (head.framing, head.keep_alive)
    };
    let cases: [(&[u8], bool, BodyFraming, bool); 13] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            true,
            BodyFraming::Empty,
            true,
        ),
        (
            b"HTTP/1.1 204 No Content\r\n\r\n",
            false,
            BodyFraming::Empty,
            true,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n",
            false,
            BodyFraming::Empty,
            true,
        ),
        // A 204 or 304 that claims a body may send one: not trusted with another request.
        (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            false,
            BodyFraming::Empty,
            false,
        ),
        (
            b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            BodyFraming::Empty,
            false,
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            false,
            BodyFraming::Empty,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            BodyFraming::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            false,
            BodyFraming::Close,
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", false, BodyFraming::Close, false),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n",
            false,
            BodyFraming::Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive, Close\r\n\r\n",
            false,
            BodyFraming::Length(3),
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n",
            false,
            BodyFraming::Length(3),
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            false,
            BodyFraming::Empty,
            true,
        ),
    ];
    for (bytes, head_request, expected, keep_alive) in cases {
        assert_eq!(
            framing(bytes, head_request),
            (expected, keep_alive),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn a_transfer_coding_removes_the_length_that_came_with_it() {
    let head = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, BodyFraming::Chunked);
    assert!(!head.fields.contains("content-length"));
}

#[test]
fn bad_heads_are_refused() {
    let bad: [(&[u8], CodecError); 13] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            CodecError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            CodecError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            CodecError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            CodecError::ContentLength,
        ),
        (b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n", CodecError::Head),
        (b"HTTP/1.1 20 OK\r\n\r\n", CodecError::Head),
        (b"SSH-2.0-OpenSSH\r\n\r\n", CodecError::Head),
        // The fields are written to clients as they came: nothing that could end a line or
        // a field early gets through.
        (
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n",
            CodecError::Head,
        ),
        (
            b"HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\n\r\n",
            CodecError::Head,
        ),
        (b"HTTP/1.1 200 OK\r\nx-a: 1\x7f\r\n\r\n", CodecError::Head),
        (b"HTTP/1.1 200 OK\r\nx-a: \x001\r\n\r\n", CodecError::Head),
        (b"HTTP/1.1 200 OK\r\nx-a : 1\r\n\r\n", CodecError::Head),
        (b"HTTP/1.1 200 OK\r\n: 1\r\n\r\n", CodecError::Head),
    ];
    for (bytes, error) in bad {
        assert_eq!(
            parse(bytes).unwrap_err(),
            error,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse(&many).unwrap_err(), CodecError::HeadTooLarge);
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
    assert_eq!(parse(&endless).unwrap_err(), CodecError::HeadTooLarge);
}

/// Every way of cutting `response` gives what one read gives.
fn read_every_way(response: &[u8], head_request: bool) -> pieces::Outcome {
    let whole = read_in_pieces(response, &[], head_request);
    for a in 0..=response.len() {
        for b in (a..=response.len()).step_by(7) {
            assert_eq!(
                read_in_pieces(response, &[a, b], head_request),
                whole,
                "cut at {a}, {b}"
            );
        }
    }
    whole
}

#[test]
fn a_chunked_body_is_decoded_however_it_arrives() {
    let response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;name=\"v\"\r\nhello\r\n1 \t\r\n \r\n00a\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
    let outcome = read_every_way(response, false);
    assert_eq!(outcome.body, b"hello 0123456789");
    assert_eq!(outcome.ended, Ok(true));
    assert_eq!(outcome.left, 4, "what follows the body is not part of it");
}

#[test]
fn a_length_body_ends_at_its_length_and_a_close_body_at_the_end() {
    let outcome = read_every_way(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloEXTRA",
        false,
    );
    assert_eq!(
        (outcome.body.as_slice(), outcome.ended, outcome.left),
        (&b"hello"[..], Ok(true), 5)
    );
    let outcome = read_every_way(b"HTTP/1.1 200 OK\r\n\r\nall of it", false);
    assert_eq!(
        (outcome.body.as_slice(), outcome.ended, outcome.left),
        (&b"all of it"[..], Ok(true), 0)
    );
    let outcome = read_every_way(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort", false);
    assert_eq!(outcome.ended, Err(CodecError::Truncated));
    let outcome = read_every_way(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", true);
    assert_eq!(
        (outcome.body.len(), outcome.left),
        (0, 5),
        "a HEAD answer has no body"
    );
}

#[test]
fn malformed_chunks_are_refused() {
    let bad: [&[u8]; 9] = [
        b"x\r\n",                    // not hex
        b"\r\n",                     // no size
        b"5\nhello\r\n0\r\n\r\n",    // bare LF after the size
        b"5\r\nhelloX\r\n0\r\n\r\n", // data longer than its size
        b"5\r\nhello\r0\r\n\r\n",    // CR without LF after the data
        b"1000000000000000\r\n",     // 16 hex digits
        b"5 5\r\nhello\r\n",         // space inside the size
        b"5;a\x00\r\nhello\r\n",     // control byte in an extension
        b"0\r\nx: y\n\r\n",          // bare LF in a trailer
    ];
    for body in bad {
        let mut response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        response.extend_from_slice(body);
        let outcome = read_every_way(&response, false);
        assert_eq!(
            outcome.ended,
            Err(CodecError::Chunk),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let mut long = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;".to_vec();
    long.extend(std::iter::repeat_n(b'e', 5000));
    assert_eq!(
        read_in_pieces(&long, &[], false).ended,
        Err(CodecError::Chunk)
    );
}

#[test]
fn what_is_chunked_decodes_to_what_went_in() {
    let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    for piece in [1, 2, 15, 16, 17, 255, 256, 4095, 3000] {
        let mut response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for part in data.chunks(piece) {
            encode_chunk(&mut response, part);
        }
        response.extend_from_slice(LAST_CHUNK);
        let outcome = read_in_pieces(&response, &[50, 777, 2000], false);
        assert_eq!(outcome.body, data, "pieces of {piece}");
        assert_eq!((outcome.ended, outcome.left), (Ok(true), 0));
    }
}
