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
        assert!(
            is_hop_by_hop_name(name.to_ascii_uppercase().as_bytes()),
            "{name}"
        );
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
        assert!(!is_hop_by_hop_name(name.as_bytes()), "{name}");
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

/// An upstream response head with `pairs`, read by the codec: its fields as they came.
fn fields(pairs: &[(&str, &str)]) -> Fields {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for (name, value) in pairs {
        head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    head.extend_from_slice(b"content-length: 0\r\n\r\n");
    let mut buf = bytes::BytesMut::from(&head[..]);
    crate::upstream::codec::parse_response(&mut buf, false)
        .unwrap()
        .unwrap()
        .fields
}

/// A name in an odd case: every other letter upper-case.
fn odd_case(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// What survives, lower-cased, in order.
fn survivors(fields: &Fields) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
        .collect()
}

/// An upstream response head with `pairs`, its fields stripped as they came and as a header
/// map.
fn stripped_both_ways(pairs: &[(String, String)]) -> (Fields, HeaderMap) {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut raw = fields(&pairs);
    let mut map = raw.clone().into_map();
    strip_hop_by_hop_fields(&mut raw);
    strip_hop_by_hop(&mut map);
    (raw, map)
}

/// The same rule on the fields as they came as on a header map, whatever the case of names
/// and listed tokens: every subset of the names listed, the names in two cases.
#[test]
fn raw_fields_lose_what_a_header_map_loses() {
    let names = [
        "a",
        "x-y",
        "keep-alive",
        "te",
        "upgrade",
        "trailer",
        "proxy-connection",
        "proxy-authenticate",
        "transfer-encoding",
    ];
    for mask in 0u32..(1 << names.len()) {
        for case in [str::to_owned as fn(&str) -> String, odd_case] {
            let listed: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| case(&n.to_ascii_uppercase()))
                .collect();
            let mut pairs: Vec<(String, String)> =
                names.iter().map(|n| (case(n), "v".to_owned())).collect();
            pairs.push((case("connection"), listed.join(" ,\t")));
            pairs.push(("Set-Cookie".to_owned(), "a=1".to_owned()));
            pairs.push(("set-cookie".to_owned(), "b=2".to_owned()));
            let (raw, map) = stripped_both_ways(&pairs);
            let from_map: Vec<(String, Vec<u8>)> = map
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let mut from_raw = survivors(&raw);
            assert_eq!(
                from_raw.iter().filter(|(n, _)| n == "set-cookie").count(),
                2,
                "{pairs:?}"
            );
            from_raw.sort();
            let mut from_map = from_map;
            from_map.sort();
            assert_eq!(from_raw, from_map, "Connection: {listed:?}");
            for (name, _) in &from_raw {
                assert!(!is_hop_by_hop(
                    &HeaderName::from_bytes(name.as_bytes()).unwrap()
                ));
            }
        }
    }
}

/// A name `Connection` lists goes in any case; the fields keep their own case and order.
#[test]
fn listed_names_go_in_any_case_and_the_rest_keep_theirs() {
    let mut raw = fields(&[
        ("Server", "uvicorn"),
        ("X-Secret", "1"),
        ("CONNECTION", "x-SECRET, Keep-Alive"),
        ("Keep-Alive", "timeout=5"),
        ("Content-Type", "application/json"),
    ]);
    strip_hop_by_hop_fields(&mut raw);
    let names: Vec<&[u8]> = raw.iter().map(|(n, _)| n).collect();
    assert_eq!(names, [&b"Server"[..], b"Content-Type", b"content-length"]);
}

/// For hyper: the fields move into the map, and the gateway's own fields replace the
/// upstream's of the same name.
#[test]
fn the_gateway_fields_replace_the_upstream_ones_in_the_map() {
    let upstream = fields(&[
        ("X-Request-Id", "from-upstream"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]);
    let mut h = HeaderMap::new();
    h.insert("x-request-id", HeaderValue::from_static("req_gateway"));
    h.append("x-own", HeaderValue::from_static("1"));
    h.append("x-own", HeaderValue::from_static("2"));
    fields_into_map(&mut h, upstream);
    let h = &h;
    let all = |name: &str| -> Vec<&str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-request-id"), ["req_gateway"]);
    assert_eq!(all("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(all("x-own"), ["1", "2"]);
    assert_eq!(all("content-length"), ["0"]);
    // No upstream fields leave the map as it is; a body of the gateway's own has none.
    let mut own = HeaderMap::new();
    own.insert("x-request-id", HeaderValue::from_static("req_gateway"));
    fields_into_map(&mut own, Fields::default());
    assert_eq!(own.len(), 1);
    assert_eq!(own["x-request-id"], "req_gateway");
    assert!(crate::body::Body::full("{}")
        .take_upstream_fields()
        .is_none());
    assert!(crate::body::Body::empty().take_upstream_fields().is_none());
}

/// Past a few listed names, the names are looked up in a set: the same fields go, whatever
/// the case, the order or repeats of the list.
#[test]
fn a_long_connection_list_removes_the_same_fields() {
    let mut pairs: Vec<(String, String)> = (0..40)
        .map(|i| (format!("X-Field-{i}"), "v".to_owned()))
        .collect();
    let listed: Vec<String> = (0..40)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("x-FIELD-{i}"))
        .chain((0..50).map(|i| format!("absent-{i}")))
        .chain([
            "X-FIELD-0".to_owned(),
            "keep-alive".to_owned(),
            " ".to_owned(),
        ])
        .collect();
    pairs.push(("Connection".to_owned(), listed.join(",")));
    pairs.push(("Keep-Alive".to_owned(), "5".to_owned()));
    let (raw, map) = stripped_both_ways(&pairs);
    let kept = survivors(&raw);
    let expected: Vec<(String, Vec<u8>)> = (0..40)
        .filter(|i| i % 3 != 0)
        .map(|i| (format!("x-field-{i}"), b"v".to_vec()))
        .chain([("content-length".to_owned(), b"0".to_vec())])
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(map.len(), expected.len());
}
