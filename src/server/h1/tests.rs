use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::body::BoxError;

mod framing_check;

fn parse(head: &str) -> Option<Parsed> {
    parse_request(&Bytes::copy_from_slice(head.as_bytes()))
}

#[test]
fn a_bodyless_request_is_parsed_with_its_fields() {
    let parsed = parse(
        "DELETE /agents/a-1?force=true HTTP/1.1\r\nHost: gw\r\nX-Client-Fingerprint: fp\r\n\
         Accept: a\r\nAccept: b\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("served here");
    let req = &parsed.request;
    assert_eq!(req.method(), Method::DELETE);
    assert_eq!(req.uri().path(), "/agents/a-1");
    assert_eq!(req.uri().query(), Some("force=true"));
    assert_eq!(req.version(), http::Version::HTTP_11);
    assert_eq!(req.headers()["host"], "gw");
    assert_eq!(req.headers()["x-client-fingerprint"], "fp");
    let accept: Vec<_> = req.headers().get_all("accept").iter().collect();
    assert_eq!(accept, ["a", "b"]);
    assert!(req.body().is_end_stream());
    assert!(!parsed.close);
}

#[test]
fn connection_close_is_heard_in_any_case_and_list_position() {
    for value in ["close", "Close", "keep-alive, CLOSE", " te , close "] {
        let parsed = parse(&format!("GET / HTTP/1.1\r\nConnection: {value}\r\n\r\n")).unwrap();
        assert!(parsed.close, "{value:?}");
    }
    for value in ["keep-alive", "closed", "upgrade"] {
        let parsed = parse(&format!("GET / HTTP/1.1\r\nConnection: {value}\r\n\r\n")).unwrap();
        assert!(!parsed.close, "{value:?}");
    }
}

/// Field names are read as `HeaderName::from_bytes` reads them, ARCP's own names (kept as
/// shared constants) included, in any case.
#[test]
fn field_names_are_read_in_any_case() {
    let names = [
        "X-Client-Fingerprint",
        "x-client-fingerprint",
        "X-CLIENT-FINGERPRINT",
        "X-Request-Id",
        "x-request-ID",
        "X-Session-Pin",
        "x-session-pin",
        "X-Client-Fingerprints",
        "X-Client-Fingerprin",
        "Host",
        "Authorization",
        "X-Other",
    ];
    for name in names {
        let parsed = parse(&format!("GET / HTTP/1.1\r\n{name}: v\r\n\r\n")).unwrap();
        let expected = HeaderName::from_bytes(name.as_bytes()).unwrap();
        let got: Vec<_> = parsed.request.headers().keys().collect();
        assert_eq!(got, [&expected], "{name}");
        assert_eq!(parsed.request.headers()[&expected], "v", "{name}");
    }
}

/// `Connection: close` is heard in any of several `Connection` fields.
#[test]
fn connection_close_is_heard_in_any_field() {
    let parsed =
        parse("GET / HTTP/1.1\r\nConnection: keep-alive\r\nX: y\r\nconnection: te, Close\r\n\r\n")
            .unwrap();
    assert!(parsed.close);
    let values: Vec<_> = parsed
        .request
        .headers()
        .get_all("connection")
        .iter()
        .collect();
    assert_eq!(values, ["keep-alive", "te, Close"]);
    // A later field does not take back what an earlier one said.
    let parsed = parse("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n");
    assert!(parsed.unwrap().close);
}

/// Everything but a plain bodyless HTTP/1.1 request is left to hyper.
#[test]
fn other_requests_are_not_served_here() {
    let many = (0..=MAX_HEADERS)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect::<String>();
    for head in [
        "GET / HTTP/1.0\r\n\r\n".to_owned(),
        "GET http://gw/ HTTP/1.1\r\nHost: gw\r\n\r\n".into(),
        "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n".into(),
        "CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n".into(),
        "PRI * HTTP/2.0\r\n\r\n".into(),
        "POST /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n".into(),
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n".into(),
        "POST /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".into(),
        "POST /x HTTP/1.1\r\nContent-Length: \r\n\r\n".into(),
        "POST /x HTTP/1.1\r\nContent-Length: +0\r\n\r\n".into(),
        "GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n".into(),
        "GET /x HTTP/1.1\r\nX: a\x7fb\r\n\r\n".into(),
        "G@T /x HTTP/1.1\r\n\r\n".into(),
        "GET /x HTTP/1.1\r\nHost: gw\r\n\r\nGET".into(), // not one head
        "GET /x HTTP/1.1\r\nHost: gw\r\n".into(),        // not complete
        format!("GET / HTTP/1.1\r\n{many}\r\n"),
    ] {
        assert!(parse(&head).is_none(), "{head:?}");
    }
    assert!(parse("POST /x HTTP/1.1\r\nContent-Length: 00\r\n\r\n").is_some());
}

/// The field values share the head's buffer instead of being copied.
#[test]
fn field_values_share_the_head() {
    let head = Bytes::from_static(b"GET / HTTP/1.1\r\nX-Client-Fingerprint: abcdef\r\n\r\n");
    let parsed = parse_request(&head).unwrap();
    let value = parsed.request.headers()["x-client-fingerprint"].as_bytes();
    let range = head.as_ptr_range();
    assert!(range.contains(&value.as_ptr()), "copied");
}

/// A body whose size is not known in advance.
fn stream(
    parts: &[&'static str],
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>>> {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

fn size_of<B: http_body::Body>(body: &B) -> BodySize {
    if body.is_end_stream() {
        BodySize::Empty
    } else {
        body.size_hint()
            .exact()
            .map_or(BodySize::Unknown, BodySize::Known)
    }
}

/// What hyper's HTTP/1.1 server writes for `response` to `request`.
async fn hyper_writes<B>(request: &'static str, response: Response<B>) -> String
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let response = std::sync::Mutex::new(Some(response));
    let service = service_fn(move |_req| {
        let r = response.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(r) }
    });
    let served = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    served.await.unwrap().unwrap();
    undated(&String::from_utf8(out).unwrap())
}

/// Fields as an upstream response head would bring them, written in `case`.
fn raw(pairs: &[(&str, &[u8])], case: fn(&str) -> String) -> Fields {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for (name, value) in pairs {
        head.extend_from_slice(case(name).as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut buf = bytes::BytesMut::from(&head[..]);
    crate::upstream::codec::parse_response(&mut buf, false)
        .unwrap()
        .unwrap()
        .fields
}

/// What [`encode_head`] writes for the same, followed by the body as its framing says. With
/// `upstream`, the response's fields but `Connection` come as an upstream response's fields
/// ([`Fields`]), as the gateway forwards them.
async fn we_write<B>(request: &'static str, response: Response<B>, upstream: bool) -> String
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let head_request = request.starts_with("HEAD ");
    let mut fields = None;
    if upstream {
        let pairs: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .filter(|(name, _)| *name != http::header::CONNECTION)
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        fields = Some(raw(&pairs, str::to_owned));
        let connection: Vec<HeaderValue> = parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .cloned()
            .collect();
        parts.headers.clear();
        for value in connection {
            parts.headers.append(http::header::CONNECTION, value);
        }
    }
    let mut out = Vec::new();
    let written = encode_head(
        &mut out,
        parts.status,
        &parts.headers,
        fields.as_ref(),
        None,
        head_request,
        size_of(&body),
        true,
        b"D",
    );
    assert!(written.close);
    let mut body = std::pin::pin!(body);
    let mut sent = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        sent += data.len() as u64;
        match written.framing {
            Framing::None => {}
            Framing::Length(_) => out.extend_from_slice(&data),
            Framing::Chunked => crate::upstream::codec::encode_chunk(&mut out, &data),
        }
    }
    match written.framing {
        Framing::None => {}
        Framing::Length(n) => assert_eq!(n, sent),
        Framing::Chunked => out.extend_from_slice(crate::upstream::codec::LAST_CHUNK),
    }
    undated(&String::from_utf8(out).unwrap())
}

/// The response with its `date` value replaced (the two clocks may tick between).
fn undated(text: &str) -> String {
    text.split("\r\n")
        .map(|line| {
            if line.starts_with("date: ") {
                "date: D"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn with_headers<B>(
    status: StatusCode,
    fields: &[(&'static str, &'static str)],
    body: B,
) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers: &mut HeaderMap = response.headers_mut();
    for (name, value) in fields {
        headers.append(*name, HeaderValue::from_static(value));
    }
    response
}

const GET: &str = "GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
const HEAD: &str = "HEAD / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";

/// Byte for byte what hyper writes (the date aside), over the cases the gateway produces:
/// rendered documents, empty answers, streamed and length-delimited upstream bodies, `HEAD`,
/// 204 and 304, and fields that say how the connection or the body ends; with the fields in
/// the header map, and as an upstream response's fields.
#[tokio::test]
async fn responses_are_encoded_as_hyper_encodes_them() {
    use crate::body::Body;
    macro_rules! same {
        ($request:expr, $response:expr) => {{
            let theirs = hyper_writes($request, $response).await;
            let ours = we_write($request, $response, false).await;
            assert_eq!(ours, theirs, "{}", stringify!($response));
            let forwarded = we_write($request, $response, true).await;
            assert_eq!(
                forwarded,
                theirs,
                "upstream fields: {}",
                stringify!($response)
            );
        }};
    }
    let json = [
        ("content-type", "application/json"),
        ("x-request-id", "req_1"),
    ];
    same!(
        GET,
        with_headers(StatusCode::OK, &json, Body::full("{\"ok\":true}"))
    );
    same!(
        GET,
        with_headers(StatusCode::NOT_FOUND, &json, Body::empty())
    );
    same!(
        GET,
        with_headers(
            StatusCode::UNAUTHORIZED,
            &[("content-length", "5")],
            Body::full("hello")
        )
    );
    same!(
        GET,
        with_headers(
            StatusCode::NO_CONTENT,
            &[("content-length", "0")],
            Body::empty()
        )
    );
    same!(
        GET,
        with_headers(
            StatusCode::NOT_MODIFIED,
            &[("content-length", "10"), ("etag", "\"e\"")],
            Body::empty()
        )
    );
    same!(
        HEAD,
        with_headers(StatusCode::OK, &json, Body::full("hello"))
    );
    same!(
        HEAD,
        with_headers(StatusCode::OK, &[("content-length", "616")], Body::empty())
    );
    same!(HEAD, with_headers(StatusCode::OK, &[], Body::empty()));
    same!(
        GET,
        with_headers(StatusCode::OK, &json, stream(&["a", "bc"]))
    );
    same!(
        GET,
        with_headers(
            StatusCode::OK,
            &[("content-length", "3")],
            stream(&["a", "bc"])
        )
    );
    same!(HEAD, with_headers(StatusCode::OK, &[], stream(&["a"])));
    same!(
        GET,
        with_headers(
            StatusCode::BAD_REQUEST,
            &[("connection", "close")],
            Body::full("no")
        )
    );
    same!(
        GET,
        with_headers(
            StatusCode::OK,
            &[("date", "Thu, 01 Jan 1970 00:00:00 GMT")],
            Body::empty()
        )
    );
    same!(
        GET,
        with_headers(StatusCode::from_u16(599).unwrap(), &[], Body::empty())
    );
    same!(
        GET,
        with_headers(StatusCode::from_u16(299).unwrap(), &[], Body::empty())
    );
}

#[test]
fn a_kept_alive_response_says_nothing_of_the_connection_unless_it_closes() {
    let mut out = Vec::new();
    let written = encode_head(
        &mut out,
        StatusCode::OK,
        &HeaderMap::new(),
        None,
        None,
        false,
        BodySize::Known(2),
        false,
        b"D",
    );
    assert_eq!(
        written,
        Written {
            framing: Framing::Length(2),
            close: false
        }
    );
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: D\r\n\r\n"
    );

    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("close"));
    out.clear();
    let written = encode_head(
        &mut out,
        StatusCode::BAD_REQUEST,
        &headers,
        None,
        None,
        false,
        BodySize::Empty,
        false,
        b"D",
    );
    assert_eq!(
        written,
        Written {
            framing: Framing::None,
            close: true
        }
    );
    assert_eq!(
        out,
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: D\r\n\r\n"
    );
}

/// After a 1xx nothing more is read as HTTP/1.1 on the connection.
#[test]
fn an_informational_answer_ends_the_connection() {
    for status in [100, 101, 103] {
        let mut out = Vec::new();
        let status = StatusCode::from_u16(status).unwrap();
        let written = encode_head(
            &mut out,
            status,
            &HeaderMap::new(),
            None,
            None,
            false,
            BodySize::Empty,
            false,
            b"D",
        );
        assert_eq!(
            written,
            Written {
                framing: Framing::None,
                close: true
            },
            "{status}"
        );
    }
}

/// A response that already says `content-length: 0` for a body of size 0 says it once.
#[test]
fn a_length_is_written_once() {
    let mut headers = HeaderMap::new();
    headers.insert("content-length", HeaderValue::from_static("0"));
    let mut out = Vec::new();
    encode_head(
        &mut out,
        StatusCode::OK,
        &headers,
        None,
        None,
        false,
        BodySize::Known(0),
        false,
        b"D",
    );
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: D\r\n\r\n"
    );
}

mod upstream;
