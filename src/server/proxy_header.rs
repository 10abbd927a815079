//! The PROXY protocol (v1 text and v2 binary) from the load balancers a listener trusts
//! (`listeners[].proxy_protocol.trusted`).
//!
//! A TCP load balancer in front of the gateway hides the client's address: every
//! connection comes from the balancer. Per-address caps and login throttling would then
//! count all clients as one (one attacker locks everyone out of a lockout shared by all).
//! A balancer configured to send the PROXY header (HAProxy `send-proxy-v2`, nginx stream
//! `proxy_protocol on`, most cloud network balancers) states the client's address first.
//!
//! * Only connections **from a trusted address** are read for a header, and they **must**
//!   start with one (a connection from a balancer without it is closed: it would otherwise
//!   count every client as the balancer). Connections from anywhere else are served as
//!   direct clients; a PROXY header from them is just bytes that fail the TLS handshake,
//!   so nobody can claim an address by sending one.
//! * The header is read exactly (no byte of the TLS handshake behind it is consumed),
//!   within the listener's handshake timeout, and is at most [`MAX_V2_PAYLOAD`] bytes of
//!   addresses and TLVs.
//! * `LOCAL` (v2) and `UNKNOWN` (v1), which balancers send for their own health checks,
//!   keep the balancer's address.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The most address and TLV bytes a v2 header may carry here (balancers send a few dozen).
pub const MAX_V2_PAYLOAD: usize = 1024;

/// The addresses whose connections start with a PROXY header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(Vec<IpNet>);

impl Trusted {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Trusted(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a trusted connection was closed before TLS.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection does not start with a PROXY header")]
    Missing,
    #[error("malformed PROXY header")]
    Malformed,
    #[error("PROXY header longer than {MAX_V2_PAYLOAD} bytes")]
    TooLong,
}

/// Reads one PROXY header from the start of `stream`: the client address it names, or
/// `None` when it names none (`LOCAL`, `UNKNOWN`, or a non-IP family).
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, HeaderError> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head[..6]).await?;
    if &head[..6] == b"PROXY " {
        let mut line = head[..6].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(HeaderError::Malformed);
            }
            line.push(stream.read_u8().await?);
        }
        return v1_address(&line);
    }
    if head[..6] != V2_SIGNATURE[..6] {
        return Err(HeaderError::Missing);
    }
    stream.read_exact(&mut head[6..]).await?;
    if head[..12] != V2_SIGNATURE {
        return Err(HeaderError::Missing);
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_V2_PAYLOAD {
        return Err(HeaderError::TooLong);
    }
    let mut whole = head.to_vec();
    whole.resize(16 + len, 0);
    stream.read_exact(&mut whole[16..]).await?;
    v2_address(&whole)
}

fn v1_address(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(line).map_err(|_| HeaderError::Malformed)?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unknown => None,
    })
}

fn v2_address(bytes: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|_| HeaderError::Malformed)?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests;
