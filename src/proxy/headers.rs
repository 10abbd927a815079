//! Header surgery as small pure functions.
//!
//! * Hop-by-hop fields (RFC 9110 §7.6.1) describe one connection and must not be forwarded:
//!   the fixed list plus every name listed in `Connection`.
//! * Fields a client could use to lie about itself (`X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, client-certificate headers that ARCP's mTLS code trusts) are removed and
//!   then set from facts the gateway observed.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

/// Hop-by-hop fields of RFC 9110 §7.6.1 plus the legacy ones peers still send.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client-certificate fields ARCP reads (`utils/mtls.py`); only the gateway may set them.
pub const CLIENT_CERT_HEADERS: [&str; 4] = [
    "x-client-cert",
    "x-ssl-client-cert",
    "x-forwarded-client-cert",
    "x-client-certificate",
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop fields, including the names listed in `Connection` (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed = connection_listed(headers);
    remove_where(headers, |name| is_hop_by_hop(name) || listed.contains(name));
}

/// Removes every field a client could use to spoof its origin or identity.
pub fn strip_spoofable(headers: &mut HeaderMap) {
    remove_where(headers, is_spoofable);
}

/// [`strip_hop_by_hop`] and [`strip_spoofable`] in one pass over the fields: what a request
/// loses on its way up.
pub fn strip_request(headers: &mut HeaderMap) {
    let listed = connection_listed(headers);
    remove_where(headers, |name| {
        is_hop_by_hop(name) || is_spoofable(name) || listed.contains(name)
    });
}

/// On the fixed hop-by-hop list.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// A field only the gateway may set.
pub fn is_spoofable(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || CLIENT_CERT_HEADERS.contains(&n)
}

/// The names `Connection` lists (nothing is allocated when there is no `Connection`).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        // As bytes: a value with obs-text (not `to_str`) still lists its names.
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
}

/// Removes every field whose name `doomed` picks, looking at each name once.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` from facts.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    forwarded_for: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
}

/// A client address as `X-Forwarded-For` carries it (IPv4-mapped IPv6 as IPv4).
pub fn client_address(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    // An address always formats to visible ASCII.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Sum of name and value lengths, the way ARCP's size middleware counts header bytes.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Input headers, names that must survive, names that must be gone.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

    #[test]
    fn hop_by_hop_table() {
        let cases: &[Case] = &[
            (
                &[("connection", "close"), ("accept", "*/*")],
                &["accept"],
                &["connection"],
            ),
            (
                &[
                    ("connection", "x-secret, keep-alive"),
                    ("x-secret", "1"),
                    ("keep-alive", "5"),
                ],
                &[],
                &["x-secret", "keep-alive", "connection"],
            ),
            (
                &[("te", "trailers"), ("trailer", "x"), ("upgrade", "h2c")],
                &[],
                &["te", "trailer", "upgrade"],
            ),
            (
                &[
                    ("proxy-authorization", "Basic x"),
                    ("authorization", "Bearer y"),
                ],
                &["authorization"],
                &["proxy-authorization"],
            ),
            (
                &[("transfer-encoding", "chunked"), ("content-type", "a/b")],
                &["content-type"],
                &["transfer-encoding"],
            ),
        ];
        for (input, kept, gone) in cases {
            let mut h = map(input);
            strip_hop_by_hop(&mut h);
            for k in *kept {
                assert!(h.contains_key(*k), "{k} should survive {input:?}");
            }
            for k in *gone {
                assert!(!h.contains_key(*k), "{k} should be removed from {input:?}");
            }
        }
    }

    #[test]
    fn one_pass_strips_what_the_two_steps_strip() {
        let h = map(&[
            ("connection", "x-secret, keep-alive"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("x-forwarded-for", "6.6.6.6"),
            ("X-Forwarded-Prefix", "/evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-ssl-client-cert", "pem"),
            ("te", "trailers"),
            ("authorization", "Bearer y"),
            ("accept", "*/*"),
            ("accept", "text/html"),
        ]);
        let mut two = h.clone();
        strip_hop_by_hop(&mut two);
        strip_spoofable(&mut two);
        let mut one = h.clone();
        strip_request(&mut one);
        assert_eq!(one, two);
        let mut left: Vec<&str> = one.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization"]);
        assert_eq!(one.get_all("accept").iter().count(), 2);
    }

    /// Found by the `header_hygiene` fuzz target: a `Connection` value with a non-ASCII
    /// byte used to be skipped whole, so the names it listed were forwarded.
    #[test]
    fn names_listed_beside_obs_text_are_removed() {
        let mut h = map(&[("x-secret", "1"), ("accept", "*/*")]);
        h.append(
            CONNECTION,
            HeaderValue::from_bytes(b"x-secret, \x80\xff").unwrap(),
        );
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key(CONNECTION));
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn spoofable_fields_are_replaced_by_facts() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "1"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-client-cert", "pem"),
            ("x-ssl-client-cert", "pem"),
            ("x-forwarded-client-cert", "Cert=x"),
            ("x-client-certificate", "der"),
            ("host", "gw.example"),
        ]);
        strip_spoofable(&mut h);
        let host = h.get("host").cloned();
        set_forwarded(
            &mut h,
            &client_address("127.0.0.9".parse().unwrap()),
            "https",
            host.as_ref(),
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw.example");
        for gone in ["x-forwarded-port", "forwarded", "x-real-ip"]
            .iter()
            .chain(CLIENT_CERT_HEADERS.iter())
        {
            assert!(!h.contains_key(*gone), "{gone}");
        }
    }

    #[test]
    fn v4_mapped_addresses_are_shown_as_v4() {
        let mut h = HeaderMap::new();
        set_forwarded(
            &mut h,
            &client_address("::ffff:10.1.2.3".parse().unwrap()),
            "http",
            None,
        );
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    }

    /// Property: whatever names a client lists, no hop-by-hop field survives.
    #[test]
    fn no_hop_by_hop_field_survives() {
        let names = [
            "a",
            "b",
            "x-y",
            "keep-alive",
            "te",
            "upgrade",
            "trailer",
            "proxy-connection",
            "c-d",
        ];
        for mask in 0u32..(1 << names.len()) {
            let mut h = HeaderMap::new();
            let mut listed = Vec::new();
            for (i, n) in names.iter().enumerate() {
                h.insert(HeaderName::from_static(n), HeaderValue::from_static("v"));
                if mask & (1 << i) != 0 {
                    listed.push(*n);
                }
            }
            h.insert(
                CONNECTION,
                HeaderValue::from_str(&listed.join(", ")).unwrap(),
            );
            strip_hop_by_hop(&mut h);
            for n in HOP_BY_HOP.iter().chain(listed.iter()) {
                assert!(
                    !h.contains_key(*n),
                    "{n} survived with Connection: {listed:?}"
                );
            }
        }
    }
}
