use super::*;
use ppp::v2::{Addresses, Builder, Command, IPv4, IPv6, Protocol, Version};

fn v2(command: Command, addresses: Addresses) -> Vec<u8> {
    Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses)
        .build()
        .unwrap()
}

/// Reads a header from `bytes`; returns its address and the bytes left unread.
async fn parse(bytes: &[u8]) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
    let mut stream = bytes;
    let result = read(&mut stream).await;
    (result, stream.to_vec())
}

#[tokio::test]
async fn v2_names_the_client_and_leaves_the_tls_bytes_unread() {
    let mut bytes = v2(
        Command::Proxy,
        IPv4::new([192, 0, 2, 7], [10, 0, 0, 1], 51000, 8443).into(),
    );
    bytes.extend_from_slice(b"\x16\x03\x01client hello");
    let (addr, rest) = parse(&bytes).await;
    assert_eq!(addr.unwrap(), Some("192.0.2.7:51000".parse().unwrap()));
    assert_eq!(rest, b"\x16\x03\x01client hello");

    let six = v2(
        Command::Proxy,
        IPv6::new(
            "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap(),
            "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap(),
            1,
            2,
        )
        .into(),
    );
    let (addr, _) = parse(&six).await;
    assert_eq!(addr.unwrap(), Some("[2001:db8::7]:1".parse().unwrap()));
}

#[tokio::test]
async fn v1_names_the_client_and_leaves_the_rest_unread() {
    let (addr, rest) = parse(b"PROXY TCP4 198.51.100.9 10.0.0.1 40000 8443\r\nGET /").await;
    assert_eq!(addr.unwrap(), Some("198.51.100.9:40000".parse().unwrap()));
    assert_eq!(rest, b"GET /");
    let (addr, _) = parse(b"PROXY TCP6 2001:db8::9 2001:db8::1 40000 8443\r\n").await;
    assert_eq!(addr.unwrap(), Some("[2001:db8::9]:40000".parse().unwrap()));
}

#[tokio::test]
async fn health_checks_name_no_client() {
    let (addr, _) = parse(&v2(Command::Local, Addresses::Unspecified)).await;
    assert_eq!(addr.unwrap(), None);
    let (addr, rest) = parse(b"PROXY UNKNOWN\r\nx").await;
    assert_eq!(addr.unwrap(), None);
    assert_eq!(rest, b"x");
}

#[tokio::test]
async fn anything_else_is_refused() {
    for bytes in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c",
    ] {
        let (r, _) = parse(bytes).await;
        assert!(matches!(r, Err(HeaderError::Missing)), "{bytes:?}: {r:?}");
    }
    let (r, _) = parse(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n").await;
    assert!(matches!(r, Err(HeaderError::Malformed)), "{r:?}");
    let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    let (r, _) = parse(&endless).await;
    assert!(matches!(r, Err(HeaderError::Malformed)), "{r:?}");
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend([0x21, 0x11, 0xff, 0xff]);
    let (r, _) = parse(&huge).await;
    assert!(matches!(r, Err(HeaderError::TooLong)), "{r:?}");
    let (r, _) = parse(b"PROXY TCP4 1.2.3.4").await;
    assert!(matches!(r, Err(HeaderError::Io(_))), "a cut header: {r:?}");
}

#[test]
fn trusted_ranges_match_plain_and_mapped_addresses() {
    let t = Trusted::new(vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ]);
    assert!(t.contains("10.1.2.3".parse().unwrap()));
    assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(t.contains("2001:db8::5".parse().unwrap()));
    assert!(!t.contains("11.0.0.1".parse().unwrap()));
    assert!(!Trusted::default().contains("10.0.0.1".parse().unwrap()));
}
