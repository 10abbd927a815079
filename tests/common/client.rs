//! A TLS client that trusts the gateway's CA: HTTP/1.1 or HTTP/2 (forced with ALPN) over
//! hyper's connection API, raw bytes for requests a client library would refuse to send, or one
//! HTTP/1.1 exchange from a chosen loopback source address (for per-address limits).
//!
//! The TLS configuration comes from [`super::tls::connector`], the one every suite uses. The
//! client does not pool connections: each call opens a new one unless the test holds a
//! [`Conn`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{tls, within, TestBody, STEP};

/// HTTP version to negotiate with ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

impl Proto {
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Proto::H1 => b"http/1.1",
            Proto::H2 => b"h2",
        }
    }

    pub fn version(self) -> Version {
        match self {
            Proto::H1 => Version::HTTP_11,
            Proto::H2 => Version::HTTP_2,
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The only value of `name`; fails the test if the field is repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all: Vec<&HeaderValue> = self.headers.get_all(name).iter().collect();
        assert!(
            all.len() <= 1,
            "{name} appears {} times: {all:?}",
            all.len()
        );
        all.first()
            .map(|v| v.to_str().expect("visible ASCII header"))
    }

    /// Collects a streamed response whole.
    async fn read(response: Response<Incoming>) -> TestResponse {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        TestResponse {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }
}

/// A client that trusts the gateway's CA and names it `localhost`.
#[derive(Clone)]
pub struct TlsClient {
    pub addr: SocketAddr,
    /// The CA the gateway's certificate chains to (the only root this client trusts).
    pub ca: CertificateDer<'static>,
}

impl TlsClient {
    pub fn new(addr: SocketAddr, ca: CertificateDer<'static>) -> TlsClient {
        TlsClient { addr, ca }
    }

    /// `localhost:<port>`, the default `Host` / `:authority`.
    pub fn authority(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// A TCP connection and TLS handshake offering only `proto` in ALPN.
    pub async fn tls_connect(&self, proto: Proto) -> TlsStream<TcpStream> {
        within(
            STEP,
            "TLS connect to the gateway",
            self.handshake(None, b"", proto),
        )
        .await
    }

    /// Connects from `source` (the OS picks when `None`) and completes the TLS handshake;
    /// unbounded, the caller bounds it.
    /// `prefix` is written before the handshake (a PROXY protocol header).
    async fn handshake(
        &self,
        source: Option<IpAddr>,
        prefix: &[u8],
        proto: Proto,
    ) -> TlsStream<TcpStream> {
        let connector = tls::connector([self.ca.clone()], proto.alpn());
        let tcp = match source {
            None => TcpStream::connect(self.addr).await.unwrap(),
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => TcpSocket::new_v4().unwrap(),
                    IpAddr::V6(_) => TcpSocket::new_v6().unwrap(),
                };
                socket.bind(SocketAddr::new(ip, 0)).unwrap();
                socket.connect(self.addr).await.unwrap()
            }
        };
        let mut tcp = tcp;
        tcp.set_nodelay(true).unwrap();
        if !prefix.is_empty() {
            tcp.write_all(prefix).await.unwrap();
        }
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// An HTTP connection of version `proto`.
    pub async fn connect(&self, proto: Proto) -> Conn {
        let tls = self.tls_connect(proto).await;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let sender = match proto {
            Proto::H1 => {
                let (sender, conn) = within(
                    STEP,
                    "HTTP/1.1 handshake",
                    hyper::client::conn::http1::handshake::<_, TestBody>(io),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Proto::H2 => {
                let (sender, conn) = within(
                    STEP,
                    "HTTP/2 handshake",
                    hyper::client::conn::http2::handshake::<_, _, TestBody>(
                        TokioExecutor::new(),
                        io,
                    ),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Conn {
            proto,
            alpn,
            authority: self.authority(),
            sender,
        }
    }

    /// Sends one request on a new connection and reads the whole response.
    pub async fn send(&self, proto: Proto, req: Request<TestBody>) -> TestResponse {
        self.connect(proto).await.send(req).await
    }

    /// Sends `req` over HTTP/1.1 on a new TLS connection from `source` (any 127/8 address on
    /// Linux), waiting at most `limit` for the whole exchange.
    pub async fn send_from(
        &self,
        source: IpAddr,
        req: Request<TestBody>,
        limit: Duration,
    ) -> TestResponse {
        self.send_behind(source, b"", req, limit).await
    }

    /// Like [`TlsClient::send_from`], writing `header` (a PROXY protocol header) first.
    pub async fn send_behind(
        &self,
        source: IpAddr,
        header: &[u8],
        mut req: Request<TestBody>,
        limit: Duration,
    ) -> TestResponse {
        let what = format!("{} {} from {source}", req.method(), req.uri());
        within(limit, &what, async move {
            let tls = self.handshake(Some(source), header, Proto::H1).await;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, TestBody>(TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            *req.uri_mut() = path_and_query(&req).parse().unwrap();
            *req.version_mut() = Version::HTTP_11;
            req.headers_mut()
                .insert(HOST, HeaderValue::from_str(&self.authority()).unwrap());
            TestResponse::read(sender.send_request(req).await.unwrap()).await
        })
        .await
    }

    /// Writes `request` verbatim on a new HTTP/1.1 TLS connection and parses the response.
    pub async fn raw(&self, request: &[u8]) -> TestResponse {
        let mut tls = self.tls_connect(Proto::H1).await;
        within(STEP, "write a raw request", async {
            tls.write_all(request).await.unwrap();
            tls.flush().await.unwrap();
        })
        .await;
        within(STEP, "read a raw response", read_raw_response(&mut tls)).await
    }
}

/// The request's path and query (`/` when it has none).
fn path_and_query<B>(req: &Request<B>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// One client connection.
pub struct Conn {
    pub proto: Proto,
    /// The protocol the server chose in ALPN.
    pub alpn: Option<Vec<u8>>,
    authority: String,
    sender: Sender,
}

impl Conn {
    /// Sends a request whose URI is a path (and query); fills in `Host` (HTTP/1.1) or the
    /// scheme and authority (HTTP/2). Returns the response with its body still streaming.
    pub async fn send_streaming(&mut self, mut req: Request<TestBody>) -> Response<Incoming> {
        let pq = path_and_query(&req);
        match self.proto {
            Proto::H1 => {
                *req.uri_mut() = pq.parse().unwrap();
                if !req.headers().contains_key(HOST) {
                    req.headers_mut()
                        .insert(HOST, HeaderValue::from_str(&self.authority).unwrap());
                }
                *req.version_mut() = Version::HTTP_11;
            }
            Proto::H2 => {
                *req.uri_mut() = Uri::builder()
                    .scheme("https")
                    .authority(self.authority.as_str())
                    .path_and_query(pq)
                    .build()
                    .unwrap();
                *req.version_mut() = Version::HTTP_2;
            }
        }
        let what = format!("response head for {} {}", req.method(), req.uri());
        within(STEP, &what, async {
            match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.unwrap();
                    s.send_request(req).await.unwrap()
                }
                Sender::H2(s) => {
                    s.ready().await.unwrap();
                    s.send_request(req).await.unwrap()
                }
            }
        })
        .await
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, req: Request<TestBody>) -> TestResponse {
        let response = self.send_streaming(req).await;
        within(STEP, "response body", TestResponse::read(response)).await
    }
}

/// Reads one HTTP/1.1 response: head, then a `Content-Length`, chunked or until-close body.
pub async fn read_raw_response<S: AsyncRead + Unpin>(stream: &mut S) -> TestResponse {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = read_some(stream, &mut buf).await;
        assert!(
            n > 0,
            "connection closed before a complete response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
    };
    let head = std::str::from_utf8(&buf[..head_end]).expect("response head is not UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    let version = match parts.next() {
        Some("HTTP/1.1") => Version::HTTP_11,
        Some("HTTP/1.0") => Version::HTTP_10,
        other => panic!("unexpected status line {status_line:?} ({other:?})"),
    };
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line without a colon");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let mut rest = buf[head_end + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("chunked"));
    let length: Option<usize> = headers
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = if chunked {
        decode_chunked(stream, rest).await
    } else if let Some(len) = length {
        while rest.len() < len {
            let n = read_some(stream, &mut rest).await;
            assert!(n > 0, "connection closed inside a {len}-byte body");
        }
        rest.truncate(len);
        rest
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        while read_some(stream, &mut rest).await > 0 {}
        rest
    };
    TestResponse {
        status: StatusCode::from_u16(status).unwrap(),
        version,
        headers,
        body: Bytes::from(body),
    }
}

async fn decode_chunked<S: AsyncRead + Unpin>(stream: &mut S, mut buf: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            assert!(read_some(stream, &mut buf).await > 0, "EOF in chunk size");
        };
        let line = std::str::from_utf8(&buf[..line_end]).unwrap();
        let size_text = line.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_text, 16).unwrap();
        buf.drain(..line_end + 2);
        if size == 0 {
            return body;
        }
        while buf.len() < size + 2 {
            assert!(read_some(stream, &mut buf).await > 0, "EOF in chunk data");
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Reads what is available; 0 at EOF (including a TLS close without `close_notify`).
async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> usize {
    buf.reserve(16 * 1024);
    match stream.read_buf(buf).await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        Err(e) => panic!("read failed: {e}"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
