//! Header hygiene (`proxy::headers::{strip_hop_by_hop, strip_spoofable, set_forwarded}`) on
//! arbitrary header maps, applied in the order the forwarder applies them.
//!
//! Input: an optional first line `PEER-IP [https]`, then `name: value` lines (bytes; lines
//! that are not a valid field are skipped).
//!
//! Invariants: no hop-by-hop field survives — neither the fixed list nor any name listed
//! in any `Connection` field value (RFC 9110 §7.6.1); no spoofable field survives except
//! the `X-Forwarded-*` the gateway sets from facts, each exactly once; every other field
//! keeps all its values in order.
#![no_main]

use std::collections::HashSet;
use std::net::IpAddr;

use arcp_gateway::proxy::headers::{
    client_address, set_forwarded, strip_hop_by_hop, strip_request, strip_spoofable, CLIENT_CERT_HEADERS, HOP_BY_HOP,
};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use libfuzzer_sys::fuzz_target;

fn parse(data: &[u8]) -> (IpAddr, &'static str, HeaderMap) {
    let mut lines = data.split(|&b| b == b'\n').peekable();
    let mut peer: IpAddr = [127, 0, 0, 1].into();
    let mut proto = "http";
    if let Some(first) = lines.peek() {
        let first = String::from_utf8_lossy(first);
        let mut words = first.split_whitespace();
        if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
            peer = ip;
            if words.next() == Some("https") {
                proto = "https";
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
    (peer, proto, headers)
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

fuzz_target!(|data: &[u8]| {
    let (peer, proto, mut headers) = parse(data);
    let original = headers.clone();
    let hop: HashSet<HeaderName> = listed(&headers)
        .into_iter()
        .chain(HOP_BY_HOP.iter().map(|n| HeaderName::from_static(n)))
        .collect();

    strip_hop_by_hop(&mut headers);
    for name in &hop {
        assert!(!headers.contains_key(name), "hop-by-hop `{name}` survived");
    }
    for name in original.keys().filter(|n| !hop.contains(*n)) {
        assert_eq!(
            values(&headers, name),
            values(&original, name),
            "`{name}` changed"
        );
    }

    strip_spoofable(&mut headers);
    for name in headers.keys() {
        assert!(!is_spoofable(name), "spoofable `{name}` survived");
    }
    // The forwarder's single pass leaves exactly what the two steps leave.
    let mut one_pass = original.clone();
    strip_request(&mut one_pass);
    assert_eq!(one_pass, headers, "strip_request differs from the two steps");
    // The forwarder reads `Host` before any stripping.
    let host = original.get(http::header::HOST).cloned();
    set_forwarded(&mut headers, &client_address(peer), proto, host.as_ref());

    let shown = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let xfh = HeaderName::from_static("x-forwarded-host");
    assert_eq!(
        values(&headers, &xff),
        [HeaderValue::from_str(&shown.to_string()).expect("ip")]
    );
    assert_eq!(values(&headers, &xfp), [HeaderValue::from_static(proto)]);
    assert_eq!(values(&headers, &xfh), host.into_iter().collect::<Vec<_>>());
    for name in hop.iter().filter(|n| ![&xff, &xfp, &xfh].contains(n)) {
        assert!(!headers.contains_key(name), "hop-by-hop `{name}` is back");
    }
    for name in headers.keys() {
        if is_spoofable(name) {
            assert!(*name == xff || *name == xfp || *name == xfh, "`{name}`");
        } else if !hop.contains(name) {
            assert_eq!(
                values(&headers, name),
                values(&original, name),
                "`{name}` changed"
            );
        }
    }
});
