//! Pooled HTTP(S) client to the one upstream.
//!
//! hyper-util's legacy pooled client over rustls (system roots, or the CA file from the
//! config). Connect and response-header deadlines come from the config; bodies stream in
//! both directions.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamSettings;
use crate::body::{is_body_too_large, Body};

/// Why a request to the upstream produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("request body exceeded the limit while streaming")]
    BodyTooLarge(#[source] hyper_util::client::legacy::Error),
    #[error("cannot build the upstream TLS configuration")]
    Tls(#[source] std::io::Error),
}

/// Cheap-to-clone handle on the pooled client.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: http::uri::Authority,
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
        let tls_shared = Arc::new(tls.clone());

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .build(connector);
        let scheme = settings.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = settings
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| http::uri::Authority::from_static("127.0.0.1"));
        Ok(UpstreamClient {
            client,
            scheme,
            authority,
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

    /// Sends a request and waits for the response head within the response timeout.
    ///
    /// Upstream drops its connection after an unhandled 500 (contract §8.19), so the pooled
    /// connection the next request takes can be reset under it. A request that is idempotent
    /// (RFC 9110 §9.2.2) and has no body is sent once more when the connection failed after
    /// it was established; anything else gets the error, since upstream may have acted on it.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        let again = replayable(&req);
        match self.send_once(req).await {
            Err(UpstreamError::Unreachable(e)) if !e.is_connect() => match again {
                Some(again) => self.send_once(again).await,
                None => Err(UpstreamError::Unreachable(e)),
            },
            other => other,
        }
    }

    async fn send_once(&self, req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if is_body_too_large(&e) => Err(UpstreamError::BodyTooLarge(e)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(e)),
        }
    }
}

/// A copy of `req` to send again, if it is idempotent and has no body.
fn replayable(req: &Request<Body>) -> Option<Request<Body>> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    if !idempotent || !http_body::Body::is_end_stream(req.body()) {
        return None;
    }
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}
