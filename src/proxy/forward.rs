//! Forwarding one admitted request and streaming the answer back.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, HOST};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Response, Version};

use super::headers::{
    client_address, goes_up, strip_hop_by_hop_fields, Listed, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
};
use crate::arcp::{X_CLIENT_FINGERPRINT, X_SESSION_PIN};
use crate::body::Body;
use crate::pipeline::frame::RequestId;
use crate::upstream::codec::RequestHead;
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

/// The upstream request head of a proxied request, written in one pass from the client's
/// parts (`upstream::codec::encode_request`): the client's fields that [`goes_up`] lets
/// through, less the ones the gateway decides (`Host`, `X-Request-ID`, `X-Session-Pin`, the
/// credentials it replaces), then the gateway's own. Nothing is copied or removed from the
/// client's parts, so an admin request replayed after a re-login is written again from them.
pub struct Proxied<'a> {
    parts: &'a Parts,
    target: &'a PathAndQuery,
    credentials: &'a Credentials,
    conn: &'a ConnInfo,
    request_id: &'a RequestId,
    /// Kept as the client sent it: upstream's DPoP `htu` and TrustedHost depend on it.
    host: Option<HeaderValue>,
}

impl<'a> Proxied<'a> {
    pub fn new(
        conn: &'a ConnInfo,
        parts: &'a Parts,
        target: &'a PathAndQuery,
        credentials: &'a Credentials,
        request_id: &'a RequestId,
    ) -> Self {
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        Proxied {
            parts,
            target,
            credentials,
            conn,
            request_id,
            host,
        }
    }

    /// Whether the gateway decides this field instead of the client.
    fn replaced(&self, name: &HeaderName) -> bool {
        let credential = match self.credentials {
            Credentials::Keep => false,
            Credentials::Bearer(_) => name == AUTHORIZATION,
            Credentials::Strip | Credentials::Swap { .. } => {
                name == AUTHORIZATION || name == X_CLIENT_FINGERPRINT
            }
        };
        // The PIN is checked by the gateway; upstream never needs it. (`X-Request-Id` is the
        // codec's to write: `RequestHead::request_id`.)
        credential || name == HOST || name == X_SESSION_PIN
    }
}

impl RequestHead for Proxied<'_> {
    fn method(&self) -> &Method {
        &self.parts.method
    }

    fn target(&self) -> &str {
        self.target.as_str()
    }

    fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    fn fields(&self, field: &mut dyn FnMut(&HeaderName, &HeaderValue)) {
        let headers = &self.parts.headers;
        let listed = Listed::of(headers);
        // HTTP/2 clients may split `Cookie` into several fields; HTTP/1.1 wants one, joined
        // by `; ` (RFC 9113 §8.2.3), and upstream's framework reads only the first.
        let joined = (self.parts.version == Version::HTTP_2)
            .then(|| joined_cookies(headers))
            .flatten();
        let mut joined_sent = false;
        for (name, value) in headers {
            if !goes_up(name, &listed) || self.replaced(name) {
                continue;
            }
            if let (Some(joined), true) = (&joined, name == COOKIE) {
                // Where the first `Cookie` was, once.
                if !joined_sent {
                    field(name, joined);
                    joined_sent = true;
                }
                continue;
            }
            field(name, value);
        }
        match self.credentials {
            Credentials::Strip | Credentials::Keep | Credentials::Bearer(None) => {}
            Credentials::Bearer(Some(bearer)) => field(&AUTHORIZATION, bearer),
            Credentials::Swap {
                authorization,
                fingerprint,
            } => {
                field(&AUTHORIZATION, authorization);
                field(&X_CLIENT_FINGERPRINT, fingerprint);
            }
        }
        field(&X_FORWARDED_FOR, &self.conn.forwarded_for);
        let proto = if self.conn.tls { "https" } else { "http" };
        field(&X_FORWARDED_PROTO, &HeaderValue::from_static(proto));
        if let Some(host) = &self.host {
            field(&X_FORWARDED_HOST, host);
        }
    }

    fn request_id(&self) -> Option<&[u8]> {
        Some(self.request_id.as_bytes())
    }
}

/// The `Cookie` fields of an HTTP/2 request as one value, when there are several.
fn joined_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(COOKIE).iter();
    let first = values.next()?;
    let mut rest = values.peekable();
    rest.peek()?;
    let mut joined = first.as_bytes().to_vec();
    for value in rest {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Sends a proxied request and returns the upstream response with hop-by-hop fields removed.
/// Its fields stay in its body as they came ([`Body::take_upstream_fields`]): the gateway's HTTP/1.1
/// loop writes them from there, and [`fields_into_map`](super::headers::fields_into_map) moves
/// them into the header map for hyper.
pub async fn forward(
    upstream: &UpstreamClient,
    head: &Proxied<'_>,
    body: Body,
) -> Result<Response<Body>, UpstreamError> {
    let response = upstream.send_head(head, body).await?;
    let (parts, mut body) = response.into_parts();
    strip_hop_by_hop_fields(body.fields_mut());
    Ok(Response::from_parts(parts, Body::upstream(body)))
}

#[cfg(test)]
mod tests;
