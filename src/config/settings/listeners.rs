//! `listeners:`: addresses and TLS material.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Spanned;

use super::super::raw;
use super::super::{ConfigError, Ctx};
use crate::server::proxy_header::Trusted;
use crate::server::ListenerSettings;
use crate::tls::TlsSettings;

const DEFAULT_DEV_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

pub(super) fn listener(
    l: &Spanned<raw::RawListener>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<ListenerSettings, ConfigError> {
    let tls = match (&l.value.tls, l.value.plain_http) {
        (Some(_), true) => {
            return Err(ctx.err(
                l.referenced,
                path,
                "a listener has either `tls` or `plain_http: true`, not both",
                None,
            ))
        }
        (None, false) => {
            return Err(ctx.err(
                l.referenced,
                path,
                "listener has no `tls` block",
                Some("add `tls:` with `cert_file`/`key_file` (or `development: {}`), or set `plain_http: true` behind a TLS load balancer"),
            ))
        }
        (None, true) => None,
        (Some(tls), false) => Some(tls_settings(tls, &format!("{path}.tls"), ctx)?),
    };
    Ok(ListenerSettings {
        address: l.value.address.value,
        tls,
        proxy_protocol: proxy_protocol(&l.value.proxy_protocol, path, ctx)?,
    })
}

/// `listeners[].proxy_protocol`: the load balancers trusted to name the client.
fn proxy_protocol(
    raw: &Option<Spanned<raw::RawProxyProtocol>>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<Trusted, ConfigError> {
    let Some(p) = raw else {
        return Ok(Trusted::default());
    };
    if p.value.trusted.is_empty() {
        return Err(ctx.err(
            p.referenced,
            format!("{path}.proxy_protocol.trusted"),
            "list the addresses of the load balancers that send the PROXY header",
            Some("for example `trusted: [10.0.0.0/8]`; without balancers, remove `proxy_protocol`"),
        ));
    }
    let mut nets = Vec::with_capacity(p.value.trusted.len());
    for (i, t) in p.value.trusted.iter().enumerate() {
        let text = t.value.trim();
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ctx.err(
                    t.referenced,
                    format!("{path}.proxy_protocol.trusted[{i}]"),
                    format!("`{text}` is not an IP address or a CIDR range"),
                    Some("for example `10.0.0.5` or `10.0.0.0/8`"),
                )
            })?;
        if net.prefix_len() == 0 {
            return Err(ctx.err(
                t.referenced,
                format!("{path}.proxy_protocol.trusted[{i}]"),
                format!("`{text}` trusts every address: any client could name any address"),
                Some("list the load balancers' own addresses or subnets"),
            ));
        }
        // `::ffff:10.0.0.0/104` means 10.0.0.0/8: peers are matched as IPv4.
        let net = match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).unwrap_or_default())
                }
                _ => IpNet::V6(v6),
            },
            v4 => v4,
        };
        nets.push(net.trunc());
    }
    Ok(Trusted::new(nets))
}

fn tls_settings(
    tls: &Spanned<raw::RawTls>,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<TlsSettings, ConfigError> {
    let t = &tls.value;
    match (&t.cert_file, &t.key_file, &t.development) {
        (Some(_), Some(_), None) if ctx.structure_only => Ok(TlsSettings::Development {
            write_ca_to: None,
            names: Vec::new(),
        }),
        (Some(cert), Some(key), None) => {
            let cert_path = ctx.resolve(cert);
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ctx.err(
                        tls.referenced,
                        format!("{path}.cert_file"),
                        format!(
                            "cannot read certificates from `{}`: {e}",
                            cert_path.display()
                        ),
                        Some("a PEM file with the leaf certificate first, then intermediates"),
                    )
                })?;
            if chain.is_empty() {
                return Err(ctx.err(
                    tls.referenced,
                    format!("{path}.cert_file"),
                    format!("`{}` holds no certificate", cert_path.display()),
                    None,
                ));
            }
            let key_path = ctx.resolve(key);
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                ctx.err(
                    tls.referenced,
                    format!("{path}.key_file"),
                    format!(
                        "cannot read a private key from `{}`: {e}",
                        key_path.display()
                    ),
                    Some("a PEM file with one PKCS#8, PKCS#1 or SEC1 private key"),
                )
            })?;
            Ok(TlsSettings::Files {
                chain,
                key: Arc::new(key),
            })
        }
        (None, None, Some(dev)) => Ok(TlsSettings::Development {
            write_ca_to: dev.write_ca_to.as_deref().map(|p| ctx.resolve(p)),
            names: dev
                .names
                .clone()
                .unwrap_or_else(|| DEFAULT_DEV_NAMES.iter().map(|s| (*s).to_owned()).collect()),
        }),
        _ => Err(ctx.err(
            tls.referenced,
            path,
            "give `cert_file` and `key_file`, or `development`",
            Some("`development: {write_ca_to: target/dev-ca.pem}` makes a self-signed CA at start"),
        )),
    }
}
