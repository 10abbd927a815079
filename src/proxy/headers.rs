//! Header surgery as small pure functions.
//!
//! * Hop-by-hop fields (RFC 9110 §7.6.1) describe one connection and must not be forwarded:
//!   the fixed list plus every name listed in `Connection`.
//! * Fields a client could use to lie about itself (`X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, client-certificate headers that ARCP's mTLS code trusts) are removed and
//!   then set from facts the gateway observed.

use std::net::IpAddr;

use http::header::{Entry, GetAll, HeaderMap, HeaderName, HeaderValue, CONNECTION};

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
///
/// What `Connection` lists is read from its values as they came, before anything is removed;
/// each listed name costs one lookup, and nothing is allocated unless `Connection` comes more
/// than once.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Entry::Occupied(connection) = headers.entry(CONNECTION) {
        // Taken out first, so the scan of the fixed list below usually finds nothing.
        let mut values = connection.remove_entry_mult().1;
        let first = values.next();
        let more: Vec<HeaderValue> = values.collect();
        for value in first.iter().chain(&more) {
            for token in value.as_bytes().split(|&b| b == b',') {
                // Looked up case-insensitively; a token that is no field name finds nothing.
                if let Ok(name) = std::str::from_utf8(token.trim_ascii()) {
                    headers.remove(name);
                }
            }
        }
    }
    while let Some(name) = headers.keys().find(|&n| is_hop_by_hop(n)).cloned() {
        headers.remove(name);
    }
}

/// Whether a request field goes up: not hop-by-hop (the fixed list or a name `Connection`
/// lists) and not one only the gateway may set.
pub fn goes_up(name: &HeaderName, listed: &Listed<'_>) -> bool {
    !is_hop_by_hop(name) && !is_spoofable(name) && !listed.names(name)
}

/// On the fixed hop-by-hop list.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // `HOP_BY_HOP` as a match: by length first, then one comparison.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// A field only the gateway may set.
pub fn is_spoofable(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || CLIENT_CERT_HEADERS.contains(&n)
}

/// The names a message's `Connection` fields list, read in place (nothing is allocated).
pub struct Listed<'a>(GetAll<'a, HeaderValue>);

impl<'a> Listed<'a> {
    pub fn of(headers: &'a HeaderMap) -> Self {
        Listed(headers.get_all(CONNECTION))
    }

    /// Whether `name` is listed.
    pub fn names(&self, name: &HeaderName) -> bool {
        self.token(name.as_str().as_bytes())
    }

    /// Whether `token` (`close`, a field name) is listed, case-insensitively; read as bytes, so a
    /// value with obs-text still lists its names.
    pub fn token(&self, token: &[u8]) -> bool {
        self.0.iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
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
    fn what_goes_up_is_neither_hop_by_hop_nor_spoofable() {
        let h = map(&[
            ("connection", "x-secret, Keep-Alive"),
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
        let listed = Listed::of(&h);
        let mut up: Vec<&str> = h
            .iter()
            .filter(|(name, _)| goes_up(name, &listed))
            .map(|(name, _)| name.as_str())
            .collect();
        up.sort_unstable();
        assert_eq!(up, ["accept", "accept", "authorization"]);
        // The response side removes only the hop-by-hop ones.
        let mut response = h.clone();
        strip_hop_by_hop(&mut response);
        assert!(response.contains_key("x-forwarded-for"));
        assert!(!response.contains_key("keep-alive"));
        assert!(!response.contains_key("x-secret"));
    }

    #[test]
    fn the_hop_by_hop_match_is_the_published_list() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "content-length",
            "host",
            "keep",
            "tea",
            "upgrades",
            "x-connection",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
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
    fn spoofable_fields_never_go_up() {
        let h = map(&[("host", "gw.example"), ("x-forwarded-port", "1")]);
        let listed = Listed::of(&h);
        for name in [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-port",
            "forwarded",
            "x-real-ip",
        ]
        .iter()
        .chain(CLIENT_CERT_HEADERS.iter())
        {
            let name = HeaderName::from_static(name);
            assert!(is_spoofable(&name), "{name}");
            assert!(!goes_up(&name, &listed), "{name}");
        }
        assert!(goes_up(&HeaderName::from_static("host"), &listed));
    }

    #[test]
    fn v4_mapped_addresses_are_shown_as_v4() {
        assert_eq!(
            client_address("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3"
        );
        assert_eq!(
            client_address("2001:db8::1".parse().unwrap()),
            "2001:db8::1"
        );
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
