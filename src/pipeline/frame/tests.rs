use super::*;

const UNLIMITED: Limits = Limits {
    max_header_bytes: usize::MAX,
    max_uri_bytes: usize::MAX,
    max_body_bytes: u64::MAX,
};

fn check_head<B>(req: &http::Request<B>, names: &ServerNames) -> Result<(), FrameError> {
    Head::read(req.headers(), names).check(req, &UNLIMITED, names)
}

#[test]
fn server_names_match_the_host_without_its_port() {
    let names = ServerNames::new(&["Gateway.example".into(), "127.0.0.1".into(), "::1".into()]);
    for ok in [
        "gateway.example",
        "GATEWAY.example:8443",
        "127.0.0.1:8443",
        "[::1]:8443",
    ] {
        assert!(names.allows(ok), "{ok}");
    }
    for bad in ["evil.example", "gateway.example.evil:443", "[::2]:8443", ""] {
        assert!(!names.allows(bad), "{bad}");
    }
    assert!(ServerNames::default().allows("anything"));
}

#[test]
fn normalisation_table() {
    let ok = [
        ("/", "/"),
        ("/agents", "/agents"),
        ("/agents/", "/agents/"),
        ("//agents//stats", "/agents/stats"),
        ("/agent%73/stats", "/agents/stats"),
        ("/a%2a", "/a%2A"),
        ("/public/agent/x%20y", "/public/agent/x%20y"),
        ("/static/js/dashboard.js", "/static/js/dashboard.js"),
        ("/a.b/c..d", "/a.b/c..d"),
    ];
    for (input, want) in ok {
        assert_eq!(normalise_path(input).unwrap(), want, "{input}");
    }
    let bad = [
        "agents",
        "/static/../agents/stats",
        "/static/./x",
        "/static/..",
        "/%2e%2e/agents",
        "/static/%2E%2E/agents",
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a\\b",
        "/a%00",
        "/a%252e",
        "/a%zz",
        "/a%2",
    ];
    for input in bad {
        assert!(normalise_path(input).is_err(), "{input} should be refused");
    }
}

/// Every path of up to seven bytes of `/`, `.` and `a` is refused exactly when one of its
/// segments is `.` or `..`.
#[test]
fn dot_segments_are_found_wherever_they_are() {
    let alphabet = [b'/', b'.', b'a'];
    for len in 0..=6u32 {
        for n in 0..3usize.pow(len) {
            let mut path = vec![b'/'];
            let mut k = n;
            for _ in 0..len {
                path.push(alphabet[k % 3]);
                k /= 3;
            }
            let path = String::from_utf8(path).unwrap();
            let dot = path.split('/').any(|s| s == "." || s == "..");
            assert_eq!(
                normalise_path(&path).is_err(),
                dot,
                "{path}: {:?}",
                normalise_path(&path)
            );
        }
    }
}

#[test]
fn a_decision_field_given_twice_is_refused_and_the_host_checked() {
    let names = ServerNames::new(&["gw.example".to_owned()]);
    let request = |fields: &[(&str, &str)]| {
        let mut builder = http::Request::builder().uri("/agents");
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    };
    let all = [
        ("host", "gw.example"),
        ("authorization", "Bearer a"),
        ("x-client-fingerprint", "f"),
        ("x-session-pin", "1"),
        ("accept", "*/*"),
        ("accept", "text/html"),
    ];
    assert!(check_head(&request(&all), &names).is_ok());
    for (name, display) in SINGLE.iter().map(|(n, d)| (n.as_str(), *d)) {
        let mut fields = all.to_vec();
        fields.push((name, "again"));
        match check_head(&request(&fields), &names) {
            Err(FrameError::DuplicateHeader(d)) => assert_eq!(d, display),
            other => panic!("{name} twice: {other:?}"),
        }
    }
    let elsewhere = request(&[("host", "other.example")]);
    assert!(matches!(
        check_head(&elsewhere, &names),
        Err(FrameError::MisdirectedHost)
    ));
    assert!(check_head(&request(&[]), &names).is_ok());
}

#[test]
fn unchanged_paths_are_not_copied() {
    assert!(matches!(
        normalise_path("/agents/stats").unwrap(),
        Cow::Borrowed(_)
    ));
}

#[test]
fn request_ids() {
    let mut h = HeaderMap::new();
    let generated = request_id(&h);
    assert!(
        generated.starts_with("req_") && generated.len() == 28,
        "{}",
        &*generated
    );
    assert_eq!(generated.header().as_bytes(), generated.as_bytes());
    assert!(plain_request_id(generated.as_bytes()));
    assert_ne!(request_id(&h).as_bytes(), generated.as_bytes());
    h.insert(&X_REQUEST_ID, "client-abc_1".parse().unwrap());
    assert_eq!(request_id(&h), "client-abc_1");
    assert_eq!(request_id(&h).header(), "client-abc_1");
    h.insert(&X_REQUEST_ID, "evil\"id <script>".parse().unwrap());
    assert!(request_id(&h).starts_with("req_"));
    for bad in ["", "a\tb", "a b", "a/b", &"x".repeat(129)] {
        h.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
        let id = request_id(&h);
        assert!(
            id.starts_with("req_") && plain_request_id(id.as_bytes()),
            "{bad:?}: {}",
            &*id
        );
    }
    h.insert(
        &X_REQUEST_ID,
        HeaderValue::from_str(&"x".repeat(128)).unwrap(),
    );
    assert_eq!(request_id(&h).len(), 128);
    h.insert(&X_REQUEST_ID, HeaderValue::from_bytes(b"caf\xe9").unwrap());
    assert!(request_id(&h).starts_with("req_"));
    h.insert(&X_REQUEST_ID, HeaderValue::from_static("a.b:c-d_1"));
    assert_eq!(request_id(&h).as_bytes(), b"a.b:c-d_1");
    // The first of two is the one looked at, usable or not.
    h.append(&X_REQUEST_ID, HeaderValue::from_static("second"));
    assert_eq!(request_id(&h), "a.b:c-d_1");
    h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad one"));
    h.append(&X_REQUEST_ID, HeaderValue::from_static("good"));
    assert!(request_id(&h).starts_with("req_"));
}

/// The checks as lookups, one per name, the way they read before the one-pass [`Head`]: the
/// reference the pass is compared with.
fn by_lookups<B>(
    req: &http::Request<B>,
    limits: &Limits,
    names: &ServerNames,
) -> Result<(), FrameError> {
    let uri_len = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(FrameError::UriTooLong {
            len: uri_len,
            max: limits.max_uri_bytes,
        });
    }
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > limits.max_header_bytes {
        return Err(FrameError::HeadersTooLarge {
            size,
            max: limits.max_header_bytes,
        });
    }
    if let Some(v) = req.headers().get(CONTENT_LENGTH) {
        let declared: u64 = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(FrameError::BadContentLength)?;
        if declared > limits.max_body_bytes {
            return Err(FrameError::BodyTooLarge {
                declared,
                max: limits.max_body_bytes,
            });
        }
    }
    for (single, display) in SINGLE {
        if req.headers().get_all(single).iter().count() > 1 {
            return Err(FrameError::DuplicateHeader(display));
        }
    }
    if let Some(host) = req.headers().get(HOST) {
        if !host.to_str().is_ok_and(|h| names.allows(h)) {
            return Err(FrameError::MisdirectedHost);
        }
    }
    if let Some(authority) = req.uri().authority() {
        if !names.allows(authority.as_str()) {
            return Err(FrameError::MisdirectedHost);
        }
    }
    Ok(())
}

/// Every request of up to three fields from a pool that hits each check (and some of none),
/// in every order, under tight and loose limits: the one pass decides as the lookups do, in
/// the same order of precedence, and finds the same id and `Upgrade`.
#[test]
fn one_pass_decides_as_lookups_do() {
    let names = ServerNames::new(&["gw.example".to_owned()]);
    let pool: [(&str, &[u8]); 15] = [
        ("host", b"gw.example"),
        ("host", b"other.example"),
        ("host", b"gw.example\xff"),
        ("authorization", b"Bearer a"),
        ("x-client-fingerprint", b"f"),
        ("x-session-pin", b"1"),
        ("content-length", b"0"),
        ("content-length", b" 70 "),
        ("content-length", b"x1"),
        ("x-request-id", b"client-1"),
        ("x-request-id", b"not plain"),
        ("upgrade", b"websocket"),
        ("connection", b"upgrade"),
        ("accept", b"*/*"),
        ("x-custom", b"0123456789012345678901234567890123456789"),
    ];
    let limits = [
        UNLIMITED,
        Limits {
            max_header_bytes: 60,
            max_uri_bytes: 10,
            max_body_bytes: 64,
        },
    ];
    let mut compared = 0;
    let mut upgrades = 0;
    for len in 0..=3u32 {
        for n in 0..pool.len().pow(len) {
            let mut builder = http::Request::builder().uri(if n % 2 == 0 {
                "/agents/some/long/path"
            } else {
                "http://other.example/a"
            });
            let mut k = n;
            for _ in 0..len {
                let (name, value) = pool[k % pool.len()];
                builder = builder.header(name, HeaderValue::from_bytes(value).unwrap());
                k /= pool.len();
            }
            let req = builder.body(()).unwrap();
            let head = Head::read(req.headers(), &names);
            for limits in &limits {
                assert_eq!(
                    head.check(&req, limits, &names),
                    by_lookups(&req, limits, &names),
                    "{req:?} {limits:?}"
                );
                compared += 1;
            }
            assert_eq!(head.upgrade, req.headers().contains_key(UPGRADE));
            // The WebSocket check runs only when the pass found `Upgrade`.
            if crate::pipeline::websocket::is_upgrade(&req) {
                assert!(head.upgrade, "{req:?}");
                upgrades += 1;
            }
            match req.headers().get(&X_REQUEST_ID) {
                Some(v) if plain_request_id(v.as_bytes()) => {
                    assert_eq!(head.request_id.as_bytes(), v.as_bytes())
                }
                _ => assert!(head.request_id.starts_with("req_")),
            }
        }
    }
    assert_eq!(compared, 2 * (1 + 15 + 15 * 15 + 15 * 15 * 15));
    assert!(upgrades > 0);
}

/// Generated ids do not repeat, within a thread or across threads (each seeds its own
/// generator from the operating system).
#[test]
fn generated_ids_are_unique_across_threads() {
    let per_thread: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..5_000)
                        .map(|_| RequestId::of(None).as_bytes().to_vec())
                        .collect()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let all: std::collections::HashSet<&Vec<u8>> = per_thread.iter().flatten().collect();
    assert_eq!(all.len(), 20_000);
    assert!(all
        .iter()
        .all(|id| id.starts_with(b"req_") && id.len() == 28 && plain_request_id(id)));
}
