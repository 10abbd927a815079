//! A response head's fields as the upstream sent them: the head's bytes, and where each field
//! lies in them.
//!
//! The gateway's own HTTP/1.1 loop writes an upstream response's fields to the client straight
//! from these bytes; only a response served through hyper (HTTP/2, or a connection hyper
//! serves) needs them as an [`http::HeaderMap`] ([`Fields::into_map`]). Names are compared
//! without regard to case and written as they came.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::proxy::headers::is_hop_by_hop_name;

/// The fields of one response head, in the order they came.
///
/// Each name is a token and each value holds no control byte but tab: the parser refuses any
/// other head, so every field converts to `http` types.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    head: Bytes,
    spans: Vec<Span>,
}

/// Where one field lies in the head (name and value as byte ranges), and what its name is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    name: (u32, u32),
    value: (u32, u32),
    kind: Kind,
}

impl Span {
    /// The field `name` whose name starts at `at` and whose value at `value`, in the head.
    pub(super) fn new(name: &[u8], at: usize, value: usize, value_len: usize) -> Self {
        Span {
            name: (offset(at), offset(at + name.len())),
            value: (offset(value), offset(value + value_len)),
            kind: Kind::of(name),
        }
    }
}

/// The fields the framing and hop-by-hop rules name, told apart once, when the head is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connection,
    ContentLength,
    TransferEncoding,
    Date,
    /// On the fixed hop-by-hop list (RFC 9110 §7.6.1), other than `Connection` and
    /// `Transfer-Encoding`.
    HopByHop,
    Other,
}

impl Kind {
    /// What the field `name` is, whatever its case.
    pub fn of(name: &[u8]) -> Kind {
        match name.len() {
            4 if is(name, "date") => Kind::Date,
            10 if is(name, "connection") => Kind::Connection,
            14 if is(name, "content-length") => Kind::ContentLength,
            17 if is(name, "transfer-encoding") => Kind::TransferEncoding,
            _ if is_hop_by_hop_name(name) => Kind::HopByHop,
            _ => Kind::Other,
        }
    }

    /// Hop-by-hop: never forwarded as it came.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Kind::Connection | Kind::TransferEncoding | Kind::HopByHop
        )
    }
}

impl Fields {
    /// The fields that `spans` locate in `head`.
    pub(super) fn new(head: Bytes, spans: Vec<Span>) -> Self {
        Fields { head, spans }
    }

    /// Each field's name and value, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (self.bytes(s.name), self.bytes(s.value)))
    }

    /// Each field's kind, name and value, in order.
    pub fn kinds(&self) -> impl DoubleEndedIterator<Item = (Kind, &[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (s.kind, self.bytes(s.name), self.bytes(s.value)))
    }

    /// The values of the fields of kind `kind`, in order.
    pub fn values(&self, kind: Kind) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .filter(move |s| s.kind == kind)
            .map(|s| self.bytes(s.value))
    }

    /// Whether a field of kind `kind` is there.
    pub fn has(&self, kind: Kind) -> bool {
        self.spans.iter().any(|s| s.kind == kind)
    }

    /// The values of the fields named `name` (lower case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| is(n, name))
            .map(|(_, v)| v)
    }

    /// Whether a field named `name` (lower case) is there.
    pub fn contains(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// Keeps the fields whose kind `keep` says so.
    pub fn retain_kinds(&mut self, mut keep: impl FnMut(Kind) -> bool) {
        self.spans.retain(|s| keep(s.kind));
    }

    /// Keeps the fields for which `keep(index)` says so (indices as [`iter`](Self::iter)
    /// counts them).
    pub fn retain_indexed(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut at = 0;
        self.spans.retain(|_| {
            at += 1;
            keep(at - 1)
        });
    }

    /// The fields as a header map; the values share the head's bytes.
    pub fn into_map(self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.spans.len());
        for span in &self.spans {
            let name = HeaderName::from_bytes(self.bytes(span.name));
            let value = HeaderValue::from_maybe_shared(
                self.head
                    .slice(span.value.0 as usize..span.value.1 as usize),
            );
            // The parser accepted only tokens and values `http` accepts.
            debug_assert!(name.is_ok() && value.is_ok(), "a field the parser refuses");
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }

    fn bytes(&self, (from, to): (u32, u32)) -> &[u8] {
        slice(&self.head, (from, to))
    }
}

fn slice(head: &Bytes, (from, to): (u32, u32)) -> &[u8] {
    &head[from as usize..to as usize]
}

/// A head is at most `MAX_HEAD_BYTES` long, far inside `u32`.
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// Whether the field name `name` is `lower` (a lower-case name), whatever its case.
pub fn is(name: &[u8], lower: &str) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower.as_bytes())
}
