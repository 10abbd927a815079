//! The one TLS client configuration every suite uses: rustls with the ring provider and its
//! safe default protocol versions, trusting only the test's own CA, offering exactly one ALPN
//! protocol, without a client certificate.
//!
//! It does not connect, name the server or speak HTTP; [`super::TlsClient`] and the
//! end-to-end suite's blocking client do that on top. It depends on rustls alone, so the
//! end-to-end suite (which has no use for the rest of the harness) includes this file by path.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

/// A connector that trusts the certificates in `ca` and nothing else (no platform roots: a
/// test trusts the CA it generated) and offers `alpn` (`b"http/1.1"`, `b"h2"`).
///
/// A CA rustls cannot use fails the test: that is a bug in the test's PKI.
pub fn connector(
    ca: impl IntoIterator<Item = CertificateDer<'static>>,
    alpn: &[u8],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert)
            .expect("the test CA is a usable trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring offers the safe TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}
