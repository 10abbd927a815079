//! The proxied request head on exact bytes: what goes up, what the gateway replaces.

use http::header::HeaderMap;
use http::Request;

use super::*;
use crate::pipeline::frame::request_id;
use crate::upstream::codec::{encode_request, RequestFraming};

/// A client request as hyper hands it over.
fn client(pairs: &[(&str, &str)]) -> Parts {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let mut req = Request::post("/agents/a?x=1").body(()).unwrap();
    *req.headers_mut() = headers;
    req.into_parts().0
}

/// The head written for `parts` with `credentials`: request line and fields in order.
fn upstream_head(parts: &Parts, credentials: &Credentials) -> (String, Vec<(String, String)>) {
    let conn = ConnInfo::new("[::ffff:10.0.0.7]:40000".parse().unwrap(), true);
    let id = request_id(&parts.headers);
    let target = PathAndQuery::from_static("/agents/a?x=1");
    let head = Proxied::new(&conn, parts, &target, credentials, &id);
    let mut out = Vec::new();
    let default_host = HeaderValue::from_static("upstream:8001");
    let framing = encode_request(&mut out, &head, &default_host, true, Some(0));
    assert_eq!(framing, RequestFraming::Empty);
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.strip_suffix("\r\n\r\n").unwrap().split("\r\n");
    let line = lines.next().unwrap().to_owned();
    let fields = lines
        .map(|l| {
            let (name, value) = l.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    (line, fields)
}

fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

const CLIENT: &[(&str, &str)] = &[
    ("host", "gw.example"),
    ("accept", "a/b"),
    ("authorization", "Bearer gateway-token"),
    ("x-client-fingerprint", "client-fp"),
    ("x-session-pin", "48~27!"),
    ("x-request-id", "client-id-1"),
    ("connection", "keep-alive, x-secret"),
    ("keep-alive", "5"),
    ("x-secret", "s"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=6.6.6.6"),
    ("x-ssl-client-cert", "pem"),
    ("transfer-encoding", "chunked"),
    ("expect", "100-continue"),
    ("accept", "c/d"),
    ("content-length", "0"),
];

#[test]
fn an_admin_request_goes_up_with_the_brokered_credentials_and_the_gateway_facts() {
    let parts = client(CLIENT);
    let swap = Credentials::Swap {
        authorization: HeaderValue::from_static("Bearer upstream"),
        fingerprint: HeaderValue::from_static("gateway-fp"),
    };
    let (line, fields) = upstream_head(&parts, &swap);
    assert_eq!(line, "POST /agents/a?x=1 HTTP/1.1");
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "host",
            "accept",
            "accept",
            "authorization",
            "x-client-fingerprint",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id",
            "content-length",
        ],
        "{fields:?}"
    );
    assert_eq!(values(&fields, "host"), ["gw.example"]);
    assert_eq!(values(&fields, "accept"), ["a/b", "c/d"]);
    assert_eq!(values(&fields, "authorization"), ["Bearer upstream"]);
    assert_eq!(values(&fields, "x-client-fingerprint"), ["gateway-fp"]);
    assert_eq!(values(&fields, "x-forwarded-for"), ["10.0.0.7"]);
    assert_eq!(values(&fields, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&fields, "x-forwarded-host"), ["gw.example"]);
    assert_eq!(values(&fields, "x-request-id"), ["client-id-1"]);
    assert_eq!(values(&fields, "content-length"), ["0"]);
}

#[test]
fn each_kind_of_credential_decides_authorization_and_the_fingerprint() {
    let parts = client(CLIENT);
    let cases = [
        (Credentials::Strip, vec![], vec![]),
        (
            Credentials::Keep,
            vec!["Bearer gateway-token"],
            vec!["client-fp"],
        ),
        (Credentials::Bearer(None), vec![], vec!["client-fp"]),
        (
            Credentials::Bearer(Some(HeaderValue::from_static("Bearer verified"))),
            vec!["Bearer verified"],
            vec!["client-fp"],
        ),
    ];
    for (credentials, authorization, fingerprint) in cases {
        let (_, fields) = upstream_head(&parts, &credentials);
        assert_eq!(
            values(&fields, "authorization"),
            authorization,
            "{credentials:?}"
        );
        assert_eq!(
            values(&fields, "x-client-fingerprint"),
            fingerprint,
            "{credentials:?}"
        );
        // Whatever the credentials, the PIN, hop-by-hop and spoofed fields stay behind.
        for gone in [
            "x-session-pin",
            "connection",
            "keep-alive",
            "x-secret",
            "forwarded",
            "x-ssl-client-cert",
            "transfer-encoding",
            "expect",
        ] {
            assert!(values(&fields, gone).is_empty(), "{gone} in {fields:?}");
        }
        assert_eq!(values(&fields, "x-forwarded-host"), ["gw.example"]);
        assert_eq!(values(&fields, "x-request-id"), ["client-id-1"]);
    }
}

#[test]
fn without_a_host_the_upstream_gets_its_own_and_no_forwarded_host() {
    let parts = client(&[("accept", "a/b")]);
    let (_, fields) = upstream_head(&parts, &Credentials::Strip);
    assert_eq!(values(&fields, "host"), ["upstream:8001"]);
    assert!(values(&fields, "x-forwarded-host").is_empty());
    // The gateway's own request id, one of them.
    assert_eq!(values(&fields, "x-request-id").len(), 1);
}

#[test]
fn cookies_an_http2_client_split_go_up_as_one_field() {
    let pairs = [
        ("cookie", "a=1"),
        ("accept", "a/b"),
        ("cookie", "b=2"),
        ("cookie", "c=3"),
    ];
    let mut parts = client(&pairs);
    parts.version = Version::HTTP_2;
    let (_, fields) = upstream_head(&parts, &Credentials::Keep);
    assert_eq!(values(&fields, "cookie"), ["a=1; b=2; c=3"]);
    assert_eq!(values(&fields, "accept"), ["a/b"]);
    // One field stays as it is; HTTP/1.1 requests keep theirs unchanged.
    let mut one = client(&[("cookie", "a=1")]);
    one.version = Version::HTTP_2;
    assert_eq!(
        values(&upstream_head(&one, &Credentials::Keep).1, "cookie"),
        ["a=1"]
    );
    let http1 = client(&pairs);
    assert_eq!(
        values(&upstream_head(&http1, &Credentials::Keep).1, "cookie"),
        ["a=1", "b=2", "c=3"]
    );
}

#[test]
fn a_generated_request_id_replaces_an_unusable_one_once() {
    for sent in [None, Some("has spaces/and slashes"), Some("")] {
        let mut pairs = vec![("host", "gw.example"), ("accept", "a/b")];
        if let Some(id) = sent {
            pairs.push(("x-request-id", id));
        }
        let parts = client(&pairs);
        let (_, fields) = upstream_head(&parts, &Credentials::Strip);
        let ids = values(&fields, "x-request-id");
        assert_eq!(ids.len(), 1, "{sent:?}: {fields:?}");
        let id = ids[0];
        assert!(
            id.len() == 28
                && id.starts_with("req_")
                && id[4..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{sent:?}: {id:?}"
        );
        // After the gateway's other fields, before the framing (a body-less POST's length).
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["x-request-id", "content-length"]);
    }
}
