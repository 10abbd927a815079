//! Header hygiene on arbitrary client header maps: the upstream request head the forwarder
//! writes in one pass (`proxy::Proxied` through `upstream::codec::encode_request`), read back
//! field by field, and the response side's `strip_hop_by_hop`.
//!
//! Input: an optional first line `PEER-IP [https] [strip|swap|bearer|nobearer] [open|len=N]
//! [h2]`, then `name: value` lines (bytes; lines that are not a valid field are skipped). The
//! credentials word picks how the route forwards them: removed (public), replaced by the
//! brokered login (admin), replaced or removed by a verified upstream token (agent); without
//! one, upstream's own go up unchanged. `open` sends a body of unknown size, `len=N` one of N
//! bytes; without either, no body. `h2` marks the request as HTTP/2.
//!
//! Invariants: no hop-by-hop field goes up — neither the fixed list nor any name listed in any
//! `Connection` field value (RFC 9110 §7.6.1); no spoofable field goes up except the
//! `X-Forwarded-*` the gateway sets from facts, each exactly once; `Host` is the client's first
//! one; no `Transfer-Encoding` or `Expect`, and exactly the one framing field the returned
//! framing names; one `X-Request-ID`; `Authorization` and `X-Client-Fingerprint` are the
//! gateway's when it decides them, once; every other field keeps all its values in order
//! (`Cookie` of HTTP/2 joined into one). The response side leaves every field but
//! the hop-by-hop ones untouched, and on the same fields as an upstream response brings them
//! (`strip_hop_by_hop_fields`, names in any case) keeps the same ones.
#![no_main]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use arcp_gateway::pipeline::frame::request_id;
use arcp_gateway::proxy::headers::{
    client_address, strip_hop_by_hop, strip_hop_by_hop_fields, CLIENT_CERT_HEADERS, HOP_BY_HOP,
};
use arcp_gateway::proxy::{ConnInfo, Credentials, Proxied};
use arcp_gateway::upstream::codec::{encode_request, parse_response, RequestFraming};
use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;

const BEARER: &str = "Bearer verified.upstream.token";
const BROKERED: &str = "Bearer brokered.upstream.login";
const FINGERPRINT: &str = "gateway-fingerprint";

/// How the request goes up, from the input's first line.
struct Mode {
    peer: IpAddr,
    tls: bool,
    credentials: Credentials,
    end_stream: bool,
    exact: Option<u64>,
    h2: bool,
}

fn parse(data: &[u8]) -> (Mode, HeaderMap) {
    let mut lines = data.split(|&b| b == b'\n').peekable();
    let mut mode = Mode {
        peer: [127, 0, 0, 1].into(),
        tls: false,
        credentials: Credentials::Keep,
        end_stream: true,
        exact: Some(0),
        h2: false,
    };
    if let Some(first) = lines.peek() {
        let first = String::from_utf8_lossy(first);
        let mut words = first.split_whitespace();
        if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
            mode.peer = ip;
            for word in words {
                match word {
                    "https" => mode.tls = true,
                    "h2" => mode.h2 = true,
                    "strip" => mode.credentials = Credentials::Strip,
                    "nobearer" => mode.credentials = Credentials::Bearer(None),
                    "bearer" => mode.credentials = Credentials::Bearer(Some(HeaderValue::from_static(BEARER))),
                    "swap" => {
                        mode.credentials = Credentials::Swap {
                            authorization: HeaderValue::from_static(BROKERED),
                            fingerprint: HeaderValue::from_static(FINGERPRINT),
                        }
                    }
                    "open" => (mode.end_stream, mode.exact) = (false, None),
                    w => {
                        if let Some(n) = w.strip_prefix("len=").and_then(|n| n.parse().ok()) {
                            (mode.end_stream, mode.exact) = (n == 0, Some(n));
                        }
                    }
                }
            }
            lines.next();
        }
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (mode, headers)
}

/// Every name listed in any `Connection` value, read as bytes (RFC 9110 §7.6.1).
fn listed(headers: &HeaderMap) -> HashSet<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect()
}

fn values(headers: &HeaderMap, name: &HeaderName) -> Vec<HeaderValue> {
    headers.get_all(name).iter().cloned().collect()
}

fn is_spoofable(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || CLIENT_CERT_HEADERS.contains(&n)
}

/// The fields of a written head, in order, read back from its bytes.
fn read_back(head: &[u8]) -> HeaderMap {
    let head = head.strip_suffix(b"\r\n\r\n").expect("a head ends with a blank line");
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().expect("a request line");
    assert!(request_line.ends_with(b" HTTP/1.1\r"), "request line");
    let mut fields = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.windows(2).position(|w| w == b": ").expect("name: value");
        let name = HeaderName::from_bytes(&line[..colon]).expect("a field name");
        let value = HeaderValue::from_bytes(&line[colon + 2..]).expect("a field value");
        fields.append(name, value);
    }
    fields
}

/// The one `Content-Length` a client declared that goes up: a single plain decimal value.
fn declared(original: &HeaderMap, hop: &HashSet<HeaderName>) -> Option<u64> {
    if hop.contains(&http::header::CONTENT_LENGTH) {
        return None;
    }
    let mut values = original.get_all(http::header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => {
            let b = v.as_bytes();
            (!b.is_empty() && b.len() <= 18 && b.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(b).ok()?.parse().ok())
                .flatten()
        }
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, original) = parse(data);
    let hop: HashSet<HeaderName> = listed(&original)
        .into_iter()
        .chain(HOP_BY_HOP.iter().map(|n| HeaderName::from_static(n)))
        .collect();

    // The response side: only the hop-by-hop fields go.
    let mut response = original.clone();
    strip_hop_by_hop(&mut response);
    for name in &hop {
        assert!(!response.contains_key(name), "hop-by-hop `{name}` survived");
    }
    for name in original.keys().filter(|n| !hop.contains(*n)) {
        assert_eq!(values(&response, name), values(&original, name), "`{name}` changed");
    }

    // The response side on the fields as an upstream response brings them: what the header
    // map keeps, whatever the case of the names.
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for (i, (name, value)) in original.iter().enumerate() {
        let name = name.as_str();
        let name = if i % 2 == 0 { name.to_ascii_uppercase() } else { name.to_owned() };
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if let Ok(Some(parsed)) = parse_response(&mut BytesMut::from(&head[..]), false) {
        let mut raw = parsed.fields;
        let mut mapped = raw.clone().into_map();
        strip_hop_by_hop(&mut mapped);
        strip_hop_by_hop_fields(&mut raw);
        let mut kept: Vec<(String, Vec<u8>)> = raw
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
            .collect();
        let mut expected: Vec<(String, Vec<u8>)> = mapped
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        kept.sort();
        expected.sort();
        assert_eq!(kept, expected, "the fields as they came keep what the map keeps");
    }

    // The request side, written as the forwarder writes it.
    let mut req = http::Request::new(());
    *req.headers_mut() = original.clone();
    if mode.h2 {
        *req.version_mut() = http::Version::HTTP_2;
    }
    let (parts, ()) = req.into_parts();
    let conn = ConnInfo::new(SocketAddr::new(mode.peer, 40000), mode.tls);
    let id = request_id(&parts.headers);
    let target = PathAndQuery::from_static("/agents");
    let head = Proxied::new(&conn, &parts, &target, &mode.credentials, &id);
    let default_host = HeaderValue::from_static("upstream:8001");
    let mut out = Vec::new();
    let framing = encode_request(&mut out, &head, &default_host, mode.end_stream, mode.exact);
    let up = read_back(&out);

    let shown = match mode.peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let xfh = HeaderName::from_static("x-forwarded-host");
    let host = original.get(http::header::HOST).cloned();
    assert_eq!(values(&up, &xff), [HeaderValue::from_str(&shown.to_string()).expect("ip")]);
    assert_eq!(values(&up, &xff), [client_address(mode.peer)]);
    let proto = HeaderValue::from_static(if mode.tls { "https" } else { "http" });
    assert_eq!(values(&up, &xfp), [proto]);
    assert_eq!(values(&up, &xfh), host.clone().into_iter().collect::<Vec<_>>());
    assert_eq!(values(&up, &http::header::HOST), [host.unwrap_or(default_host)]);
    assert_eq!(up.get_all("x-request-id").iter().count(), 1);
    assert_eq!(up.get("x-request-id").map(|v| v.as_bytes()), Some(id.as_bytes()));
    assert!(!up.contains_key("x-session-pin"));
    assert!(!up.contains_key(http::header::EXPECT));

    // Exactly the framing field the returned framing names, chosen as the model says.
    let lengths = values(&up, &http::header::CONTENT_LENGTH);
    let codings = values(&up, &http::header::TRANSFER_ENCODING);
    match framing {
        RequestFraming::Empty => {
            assert!(codings.is_empty());
            assert!(lengths.is_empty() || lengths == ["0"], "{lengths:?}");
        }
        RequestFraming::Length(n) => {
            assert!(codings.is_empty());
            assert_eq!(lengths, [HeaderValue::from(n)]);
        }
        RequestFraming::Chunked => {
            assert!(lengths.is_empty());
            assert_eq!(codings, ["chunked"]);
        }
    }
    let expected = match (declared(&original, &hop), mode.end_stream, mode.exact) {
        (Some(n), _, _) | (None, false, Some(n)) => RequestFraming::Length(n),
        (None, true, _) => RequestFraming::Empty,
        (None, false, None) => RequestFraming::Chunked,
    };
    let expected = if expected == RequestFraming::Length(0) { RequestFraming::Empty } else { expected };
    assert_eq!(framing, expected);

    // `Authorization` and `X-Client-Fingerprint`: the gateway's where it decides them.
    let authorization = http::header::AUTHORIZATION;
    let fingerprint = HeaderName::from_static("x-client-fingerprint");
    let (mine_auth, mine_fp): (Option<Vec<&str>>, Option<Vec<&str>>) = match &mode.credentials {
        Credentials::Keep => (None, None),
        Credentials::Strip => (Some(vec![]), Some(vec![])),
        Credentials::Bearer(None) => (Some(vec![]), None),
        Credentials::Bearer(Some(_)) => (Some(vec![BEARER]), None),
        Credentials::Swap { .. } => (Some(vec![BROKERED]), Some(vec![FINGERPRINT])),
    };
    if let Some(expected) = &mine_auth {
        assert_eq!(values(&up, &authorization), *expected);
    }
    if let Some(expected) = &mine_fp {
        assert_eq!(values(&up, &fingerprint), *expected);
    }

    // What the gateway writes itself: the forwarded facts, `Host`, the request id, the framing.
    let mut decided = vec![
        "host",
        "x-request-id",
        "x-session-pin",
        "content-length",
        "transfer-encoding",
        "expect",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ];
    if mine_auth.is_some() {
        decided.push("authorization");
    }
    if mine_fp.is_some() {
        decided.push("x-client-fingerprint");
    }
    for name in hop.iter().filter(|n| !decided.contains(&n.as_str())) {
        assert!(!up.contains_key(name), "hop-by-hop `{name}` went up");
    }
    let cookie = http::header::COOKIE;
    for name in up.keys() {
        if is_spoofable(name) {
            assert!(*name == xff || *name == xfp || *name == xfh, "`{name}` went up");
        } else if mode.h2 && *name == cookie && original.get_all(&cookie).iter().count() > 1 {
            let joined: Vec<&[u8]> = original.get_all(&cookie).iter().map(HeaderValue::as_bytes).collect();
            assert_eq!(values(&up, name), [HeaderValue::from_bytes(&joined.join(&b"; "[..])).expect("joined")]);
        } else if !hop.contains(name) && !decided.contains(&name.as_str()) {
            assert_eq!(values(&up, name), values(&original, name), "`{name}` changed");
        }
    }
    // Nothing else was dropped.
    for name in original.keys().filter(|n| !decided.contains(&n.as_str())) {
        let dropped = hop.contains(name) || is_spoofable(name);
        assert_eq!(up.contains_key(name), !dropped, "`{name}`");
    }
});
