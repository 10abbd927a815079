//! A small blocking HTTPS client for the end-to-end suite: one TLS connection per request
//! (HTTP/1.1 over hyper's connection API), trusting one gateway's development CA, optionally
//! from a chosen loopback source address (127.0.0.2, 127.0.0.3, ...). The TLS configuration is
//! the harness's ([`crate::tls::connector`]).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

const DEADLINE: Duration = Duration::from_secs(60);

/// A client for one gateway.
pub struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
    rt: tokio::runtime::Runtime,
}

/// A response read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON after checking the status.
    pub fn expect_json(&self, status: u16, what: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{what}: unexpected status; body: {}",
            self.text()
        );
        self.json()
    }
}

impl Client {
    pub fn new(addr: SocketAddr, ca_file: &Path) -> Client {
        let ca = CertificateDer::pem_file_iter(ca_file)
            .expect("read the CA file")
            .map(|cert| cert.expect("a PEM certificate"));
        Client {
            addr,
            tls: crate::tls::connector(ca, b"http/1.1"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            client: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            from: None,
        }
    }

    /// `POST /auth/login` as the gateway's user, from `from` (default 127.0.0.1).
    pub fn login(
        &self,
        user: &str,
        password: &str,
        fingerprint: &str,
        from: Option<IpAddr>,
    ) -> Response {
        let mut call = self
            .post("/auth/login")
            .fingerprint(fingerprint)
            .json(&serde_json::json!({"username": user, "password": password}));
        call.from = from;
        call.send()
    }

    /// Logs in and returns the access token (fails the test otherwise).
    pub fn login_token(&self, fingerprint: &str, from: Option<IpAddr>) -> String {
        let body = self
            .login("ARCP", "ARCP", fingerprint, from)
            .expect_json(200, "login as ARCP");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_owned()
    }
}

/// One request being built.
pub struct Call<'a> {
    client: &'a Client,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    from: Option<IpAddr>,
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        ));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn fingerprint(self, fingerprint: &str) -> Self {
        self.header("x-client-fingerprint", fingerprint)
    }

    /// Admin credentials: the gateway token and the fingerprint it was issued for.
    pub fn admin(self, token: &str, fingerprint: &str) -> Self {
        self.bearer(token).fingerprint(fingerprint)
    }

    pub fn json(mut self, value: &Value) -> Self {
        self.body = Bytes::from(value.to_string());
        self.header("content-type", "application/json")
    }

    /// Connect from this local (loopback) address.
    pub fn from(mut self, ip: IpAddr) -> Self {
        self.from = Some(ip);
        self
    }

    pub fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.path);
        let client = self.client;
        client
            .rt
            .block_on(async { tokio::time::timeout(DEADLINE, self.exchange()).await })
            .unwrap_or_else(|_| panic!("{what}: no response within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn exchange(self) -> Result<Response, String> {
        let client = self.client;
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        if let Some(ip) = self.from {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("bind {ip}: {e}"))?;
        }
        let tcp = socket
            .connect(client.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", client.addr))?;
        let server_name = ServerName::IpAddress(client.addr.ip().into());
        let tls = client
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header(HOST, client.addr.to_string());
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(self.body))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Checks an RFC 9457 problem document from the gateway and returns it.
pub fn problem(response: &Response, status: u16, slug: &str, path: &str) -> Value {
    assert_eq!(
        response.status,
        status,
        "expected {status} {slug}; body: {}",
        response.text()
    );
    assert_eq!(
        response.header(CONTENT_TYPE.as_str()),
        Some("application/problem+json"),
        "content type of a problem document"
    );
    let body = response.json();
    assert_eq!(
        body["type"],
        format!("https://arcp.0x001.tech/docs/problems/{slug}"),
        "problem type in {body}"
    );
    assert_eq!(body["status"], status, "status field in {body}");
    assert_eq!(body["instance"], path, "instance in {body}");
    let request_id = body["request_id"].as_str().unwrap_or_default();
    assert!(request_id.starts_with("req_"), "request_id in {body}");
    assert_eq!(
        response.header("x-request-id"),
        Some(request_id),
        "X-Request-ID matches the body"
    );
    if status == 401 {
        assert!(
            response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "401 carries WWW-Authenticate: Bearer; headers {:?}",
            response.headers
        );
    }
    body
}
