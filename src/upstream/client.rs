//! Pooled HTTP(S) client to the one upstream.
//!
//! HTTP/1.1 connections of the gateway's own pool (`pool.rs`), over TCP or rustls (system
//! roots, or the CA file from the config), driven inside the request's task. Connect and
//! response-header deadlines come from the config; bodies stream in both directions.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::codec::{Decoder, RequestHead};
use super::conn::{exchange_again, exchange_by, Answer, Conn, ExchangeError, Io};
use super::pool::{Pool, UpstreamBody};
use super::UpstreamSettings;
use crate::body::{is_body_too_large, Body, BoxError};

/// Why a request to the upstream produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the upstream")]
    Connect(#[source] std::io::Error),
    #[error("upstream unreachable")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("request body exceeded the limit while streaming")]
    BodyTooLarge(#[source] BoxError),
    #[error("cannot build the upstream TLS configuration")]
    Tls(#[source] std::io::Error),
}

/// Cheap-to-clone handle on the pooled client.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    pool: Pool,
    scheme: Scheme,
    authority: http::uri::Authority,
    /// `Host` for requests that carry none.
    host: HeaderValue,
    /// `host:port` to connect to.
    address: String,
    response_timeout: Duration,
    connect_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
}

impl UpstreamClient {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, UpstreamError> {
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca {
            Some(certs) => {
                for cert in certs {
                    roots
                        .add(cert.clone())
                        .map_err(|e| UpstreamError::Tls(std::io::Error::other(e)))?;
                }
            }
            // System roots matter only for an https:// upstream; loading them costs memory.
            None if settings.url.scheme_str() == Some("https") => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // Unparseable system roots are skipped, as browsers do.
                    let _ = roots.add(cert);
                }
            }
            None => {}
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls_shared = Arc::new(tls);
        let scheme = settings.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = settings
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| http::uri::Authority::from_static("127.0.0.1"));
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        let address = format!("{}:{port}", authority.host());
        let host = HeaderValue::from_str(authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Ok(UpstreamClient {
            pool: Pool::new(settings.pool_max_idle_per_host, settings.pool_idle_timeout),
            scheme,
            authority,
            host,
            address,
            response_timeout: settings.response_timeout,
            connect_timeout: settings.connect_timeout,
            tls: tls_shared,
        })
    }

    /// `https` upstreams are reached over TLS with this configuration (WebSockets too).
    pub fn tls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        (self.scheme == Scheme::HTTPS).then(|| self.tls.clone())
    }

    /// `ws://host:port` or `wss://host:port` of the upstream.
    pub fn websocket_base(&self) -> String {
        let scheme = if self.scheme == Scheme::HTTPS {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}", self.authority)
    }

    /// Time allowed for a connection and the answer to its first request.
    pub fn handshake_deadline(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }

    /// The upstream URI for a path and query.
    pub fn uri_for(&self, path_and_query: PathAndQuery) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .unwrap_or_default()
    }

    /// Sends a request and waits for the response head within the response timeout. The
    /// response's fields are in its body as they came ([`UpstreamBody::fields`]), not in its
    /// header map.
    ///
    /// Upstream drops its connection after an unhandled 500 (contract §8.19), so a pooled
    /// connection can be reset under the next request. A *safe* request (GET, HEAD,
    /// OPTIONS; RFC 9110 §9.2.1) without a body that failed on a *reused* connection is
    /// sent once more, on a fresh one (what Go's and hyper-util's clients do). Anything
    /// else gets the error: a PUT or DELETE may have been acted on, and a failure on a
    /// fresh connection is upstream's answer, not a stale socket.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (parts, body) = req.into_parts();
        self.send_head(&Request::from_parts(parts, ()), body).await
    }

    /// [`send`](Self::send) for a head written straight from its fields (the proxied request's).
    pub async fn send_head(
        &self,
        head: &(dyn RequestHead + Sync),
        body: Body,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let now = crate::clock::io_now();
        let deadline = self.response_timeout;
        let pooled = self.pool.checkout(now);
        let method = head.method();
        let head_request = *method == Method::HEAD;
        let again = pooled.is_some()
            && matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            && http_body::Body::is_end_stream(&body);
        match self.send_once(head, body, pooled, now + deadline).await {
            Ok(response) => Ok(response),
            // The head that went out is sent again as it was: no copy of the request is
            // kept for a retry that is rarely needed.
            Err((UpstreamError::Unreachable(_), written)) if again && !written.is_empty() => {
                // Boxed, as the connect below: rare, and their futures would otherwise be
                // carried (and moved) by every request's.
                tokio::time::timeout(deadline, Box::pin(self.send_again(written, head_request)))
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout(deadline)))
            }
            Err((e, _)) => Err(e),
        }
    }

    /// One exchange on `pooled`, or on a new connection, answered by `due`; on failure, the
    /// error and, when the connection failed before a byte of an answer arrived, the request
    /// head as it was written (the whole head for a body-less request), else nothing: a
    /// malformed or cut answer means upstream got the request, and it is not sent again.
    async fn send_once(
        &self,
        head: &(dyn RequestHead + Sync),
        body: Body,
        pooled: Option<Box<Conn>>,
        due: Instant,
    ) -> Result<Response<UpstreamBody>, (UpstreamError, Vec<u8>)> {
        let timed_out = || (UpstreamError::Timeout(self.response_timeout), Vec::new());
        let mut conn = match pooled {
            Some(conn) => conn,
            None => tokio::time::timeout_at(due, Box::pin(self.connect()))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| (e, Vec::new()))?,
        };
        // `Host` from the request, else the upstream's authority.
        match exchange_by(&mut conn, due, head, &self.host, body).await {
            None => Err(timed_out()),
            Some(Ok(answer)) => Ok(self.response(answer, conn)),
            Some(Err(e)) => {
                let stale = matches!(e, ExchangeError::Io(_) | ExchangeError::Closed)
                    && conn.read.is_empty();
                let head = if stale {
                    std::mem::take(&mut conn.write)
                } else {
                    Vec::new()
                };
                Err((failure(e), head))
            }
        }
    }

    /// Sends a body-less request head again, on a new connection.
    async fn send_again(
        &self,
        head: Vec<u8>,
        head_request: bool,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut conn = self.connect().await?;
        match exchange_again(&mut conn, head, head_request).await {
            Ok(answer) => Ok(self.response(answer, conn)),
            Err(e) => Err(failure(e)),
        }
    }

    /// The response whose body reads the rest from `conn`. Its fields are in its body as
    /// they came ([`UpstreamBody::fields`]); its header map is empty.
    fn response(&self, answer: Answer, conn: Box<Conn>) -> Response<UpstreamBody> {
        let head = answer.head;
        let reusable = head.keep_alive && !answer.broken;
        let decoder = Decoder::new(head.framing);
        let body = UpstreamBody::new(
            decoder,
            head.fields,
            conn,
            answer.writer,
            reusable,
            &self.pool,
        );
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        response
    }

    /// A new connection (TCP, then TLS for `https`), within the connect timeout.
    async fn connect(&self) -> Result<Box<Conn>, UpstreamError> {
        let limit = self.connect_timeout;
        let connecting = async {
            let tcp = TcpStream::connect(&self.address).await?;
            tcp.set_nodelay(true)?;
            let io = if self.scheme == Scheme::HTTPS {
                let name = ServerName::try_from(self.authority.host().to_owned())
                    .map_err(std::io::Error::other)?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await?;
                Io::Tls(Box::new(tls))
            } else {
                Io::Plain(tcp)
            };
            Ok::<_, std::io::Error>(io)
        };
        match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(io)) => Ok(Box::new(Conn::new(io))),
            Ok(Err(e)) => Err(UpstreamError::Connect(e)),
            Err(_) => Err(UpstreamError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {limit:?}"),
            ))),
        }
    }
}

/// What a failed exchange means for the caller.
fn failure(e: ExchangeError) -> UpstreamError {
    match e {
        ExchangeError::Body(e) if is_body_too_large(&*e) => UpstreamError::BodyTooLarge(e),
        e => UpstreamError::Unreachable(Box::new(e)),
    }
}

#[cfg(test)]
mod tests;
