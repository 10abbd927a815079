//! Header surgery as small pure functions.
//!
//! * Hop-by-hop fields (RFC 9110 §7.6.1) describe one connection and must not be forwarded:
//!   the fixed list plus every name listed in `Connection`.
//! * Fields a client could use to lie about itself (`X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, client-certificate headers that ARCP's mTLS code trusts) are removed and
//!   then set from facts the gateway observed.

use std::collections::HashSet;
use std::net::IpAddr;

use http::header::{Entry, GetAll, HeaderMap, HeaderName, HeaderValue, CONNECTION};

use crate::upstream::codec::{Fields, Kind, MAX_HEADERS};

/// Hop-by-hop fields of RFC 9110 §7.6.1 plus the legacy ones peers still send.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client-certificate fields ARCP reads (`utils/mtls.py`); only the gateway may set them.
pub const CLIENT_CERT_HEADERS: [&str; 4] = [
    "x-client-cert",
    "x-ssl-client-cert",
    "x-forwarded-client-cert",
    "x-client-certificate",
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop fields, including the names listed in `Connection` (RFC 9110 §7.6.1).
///
/// What `Connection` lists is read from its values as they came, before anything is removed;
/// each listed name costs one lookup, and nothing is allocated unless `Connection` comes more
/// than once.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Entry::Occupied(connection) = headers.entry(CONNECTION) {
        // Taken out first, so the scan of the fixed list below usually finds nothing.
        let mut values = connection.remove_entry_mult().1;
        let first = values.next();
        let more: Vec<HeaderValue> = values.collect();
        for value in first.iter().chain(&more) {
            for token in value.as_bytes().split(|&b| b == b',') {
                // Looked up case-insensitively; a token that is no field name finds nothing.
                if let Ok(name) = std::str::from_utf8(token.trim_ascii()) {
                    headers.remove(name);
                }
            }
        }
    }
    while let Some(name) = headers.keys().find(|&n| is_hop_by_hop(n)).cloned() {
        headers.remove(name);
    }
}

/// [`strip_hop_by_hop`] for an upstream response's fields as they came: a field goes if it is
/// on the fixed list or `Connection` lists its name, whatever the case of its name.
pub fn strip_hop_by_hop_fields(fields: &mut Fields) {
    const _: () = assert!(MAX_HEADERS <= 128, "one bit per field");
    let mut gone = 0u128;
    let mut connection = false;
    for (i, (kind, _, _)) in fields.kinds().enumerate() {
        if kind.is_hop_by_hop() {
            gone |= 1 << i;
            connection |= kind == Kind::Connection;
        }
    }
    if connection {
        gone |= listed_in_connection(fields);
    }
    if gone != 0 {
        fields.retain_indexed(|i| gone & (1 << i) == 0);
    }
}

/// The fields whose names `Connection` lists, one bit each.
fn listed_in_connection(fields: &Fields) -> u128 {
    // The names listed, but for those on the fixed list (`keep-alive`): gone already.
    let listed = || {
        fields
            .values(Kind::Connection)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty() && !is_hop_by_hop_name(t))
    };
    let mut few: [&[u8]; FEW_LISTED] = [&[]; FEW_LISTED];
    let mut count = 0;
    for token in listed() {
        if count == FEW_LISTED {
            return listed_many(fields, listed());
        }
        few[count] = token;
        count += 1;
    }
    // A few (the usual case): each compared with the names, nothing allocated.
    let mut gone = 0u128;
    for token in &few[..count] {
        for (i, (name, _)) in fields.iter().enumerate() {
            if name.eq_ignore_ascii_case(token) {
                gone |= 1 << i;
            }
        }
    }
    gone
}

/// [`listed_in_connection`] for many names (a head can list thousands): each looked up once
/// among the fields' names.
fn listed_many<'a>(fields: &Fields, listed: impl Iterator<Item = &'a [u8]>) -> u128 {
    let names: Vec<Option<HeaderName>> = fields
        .iter()
        .map(|(name, _)| HeaderName::from_bytes(name).ok())
        .collect();
    let present: HashSet<&HeaderName> = names.iter().flatten().collect();
    let listed: HashSet<HeaderName> = listed
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .filter(|name| present.contains(name))
        .collect();
    let mut gone = 0u128;
    for (i, name) in names.iter().enumerate() {
        if name.as_ref().is_some_and(|n| listed.contains(n)) {
            gone |= 1 << i;
        }
    }
    gone
}

/// Up to this many names listed in `Connection` are compared with each field name; more are
/// looked up in a set.
const FEW_LISTED: usize = 8;

/// Moves an upstream response's fields ([`Fields`], held by its body) into its header map,
/// for a response served through hyper. A field the gateway set in the map (`X-Request-Id`,
/// `Connection`) replaces the upstream's of the same name.
pub fn fields_into_map(headers: &mut HeaderMap, fields: Fields) {
    let own = std::mem::replace(headers, fields.into_map());
    let mut last = None;
    for (name, value) in own {
        match name {
            Some(name) => {
                headers.insert(name.clone(), value);
                last = Some(name);
            }
            None => {
                if let Some(name) = &last {
                    headers.append(name, value);
                }
            }
        }
    }
}

/// Whether a request field goes up: not hop-by-hop (the fixed list or a name `Connection`
/// lists) and not one only the gateway may set.
pub fn goes_up(name: &HeaderName, listed: &Listed<'_>) -> bool {
    !is_hop_by_hop(name) && !is_spoofable(name) && !listed.names(name)
}

/// On the fixed hop-by-hop list.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // `HOP_BY_HOP` as a match: by length first, then one comparison.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// On the fixed hop-by-hop list, whatever the case of `name`.
pub fn is_hop_by_hop_name(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| hop.len() == name.len() && name.eq_ignore_ascii_case(hop.as_bytes()))
}

/// A field only the gateway may set.
pub fn is_spoofable(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || CLIENT_CERT_HEADERS.contains(&n)
}

/// The names a message's `Connection` fields list, read in place (nothing is allocated).
pub struct Listed<'a>(GetAll<'a, HeaderValue>);

impl<'a> Listed<'a> {
    pub fn of(headers: &'a HeaderMap) -> Self {
        Listed(headers.get_all(CONNECTION))
    }

    /// Whether `name` is listed.
    pub fn names(&self, name: &HeaderName) -> bool {
        self.token(name.as_str().as_bytes())
    }

    /// Whether `token` (`close`, a field name) is listed, case-insensitively; read as bytes, so a
    /// value with obs-text still lists its names.
    pub fn token(&self, token: &[u8]) -> bool {
        lists(self.0.iter().map(HeaderValue::as_bytes), token)
    }
}

/// Whether one of the comma-separated `values` (of `Connection`, say) is `token`,
/// case-insensitively.
pub fn lists<'v>(values: impl IntoIterator<Item = &'v [u8]>, token: &[u8]) -> bool {
    values.into_iter().any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// A client address as `X-Forwarded-For` carries it (IPv4-mapped IPv6 as IPv4).
pub fn client_address(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    // An address always formats to visible ASCII.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests;
