//! Forwarding one admitted request and streaming the answer back.

use std::net::SocketAddr;

use http::header::{HeaderValue, AUTHORIZATION, HOST};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};

use super::headers::{client_address, set_forwarded, strip_hop_by_hop, strip_request};
use crate::arcp::{X_CLIENT_FINGERPRINT, X_REQUEST_ID, X_SESSION_PIN};
use crate::body::Body;
use crate::pipeline::frame::RequestId;
use crate::upstream::{UpstreamClient, UpstreamError};

/// What happens to the client's credentials on the way up.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Public routes: `Authorization` and `X-Client-Fingerprint` removed.
    Strip,
    /// Upstream's own non-JWT credentials: forwarded unchanged.
    Keep,
    /// A verified upstream token: exactly `Authorization: Bearer <verified token>`, or no
    /// `Authorization` when the token travelled in the query.
    Bearer(Option<HeaderValue>),
    /// Admin sessions: replaced by the brokered upstream login.
    Swap {
        authorization: HeaderValue,
        fingerprint: HeaderValue,
    },
}

/// Facts about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The client's address as `X-Forwarded-For` carries it, formatted once per connection.
    pub forwarded_for: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        ConnInfo {
            peer,
            tls,
            forwarded_for: client_address(peer.ip()),
        }
    }
}

/// Builds the upstream request: hygiene, forwarded facts, credentials.
pub fn upstream_request(
    conn: &ConnInfo,
    mut parts: Parts,
    body: Body,
    path_and_query: PathAndQuery,
    credentials: &Credentials,
    request_id: &RequestId,
) -> Request<Body> {
    let host = parts.headers.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let headers = &mut parts.headers;
    strip_request(headers);
    // The PIN is checked by the gateway; upstream never needs it.
    headers.remove(&X_SESSION_PIN);
    match credentials {
        Credentials::Strip => {
            headers.remove(AUTHORIZATION);
            headers.remove(&X_CLIENT_FINGERPRINT);
        }
        Credentials::Keep => {
            // Upstream's own credential goes up as is; never indexed by HPACK, never printed.
            if let Some(v) = headers.get_mut(AUTHORIZATION) {
                v.set_sensitive(true);
            }
        }
        Credentials::Bearer(Some(bearer)) => {
            headers.insert(AUTHORIZATION, bearer.clone());
        }
        Credentials::Bearer(None) => {
            headers.remove(AUTHORIZATION);
        }
        Credentials::Swap {
            authorization,
            fingerprint,
        } => {
            headers.insert(AUTHORIZATION, authorization.clone());
            headers.insert(X_CLIENT_FINGERPRINT.clone(), fingerprint.clone());
        }
    }
    let proto = if conn.tls { "https" } else { "http" };
    set_forwarded(headers, &conn.forwarded_for, proto, host.as_ref());
    if let Some(host) = host {
        // Kept as the client sent it: upstream's DPoP `htu` and TrustedHost depend on it.
        headers.insert(HOST, host);
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.header().clone());
    // Origin form: the upstream connection writes only the path and query.
    parts.uri = Uri::from(path_and_query);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// Sends the request and returns the upstream response with hop-by-hop fields removed.
pub async fn forward(
    upstream: &UpstreamClient,
    req: Request<Body>,
) -> Result<Response<Body>, UpstreamError> {
    let response = upstream.send(req).await?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::upstream(body)))
}
