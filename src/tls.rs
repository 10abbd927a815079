//! TLS for the listeners (rustls) and the development certificate authority.
//!
//! TLS 1.2 and 1.3 with rustls' safe defaults on the `ring` provider; ALPN offers `h2` then
//! `http/1.1`. In development mode a throw-away CA and a leaf for the configured names are
//! made at start with rcgen; the CA certificate is written where clients can trust it and
//! its SHA-256 fingerprint is logged. The CA key never leaves memory.
//!
//! Certificates are served through a [`CertStore`] (a `ResolvesServerCert` over `arc-swap`,
//! as linkerd2-proxy does): a configuration reload stores a new certificate there, new
//! handshakes get it, and open connections keep the one they were made with.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum TlsSettings {
    /// A certificate chain and key from PEM files.
    Files {
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
    },
    /// A development CA and leaf made at start (rcgen).
    Development {
        write_ca_to: Option<PathBuf>,
        names: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid certificate or key")]
    Rustls(#[source] rustls::Error),
    #[error("cannot generate the development certificate")]
    Generate(#[source] rcgen::Error),
    #[error("cannot write the development CA certificate to {path}")]
    WriteCa {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A development CA with one leaf certificate.
pub struct DevPki {
    /// The CA certificate in PEM, for clients to trust.
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    /// The leaf certificate and its PKCS#8 key in PEM (for writing `cert_file`/`key_file`).
    pub leaf_pem: String,
    pub key_pem: String,
    /// Leaf then CA.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Makes a CA and a leaf certificate valid for `names` (DNS names or IP addresses).
pub fn generate_dev_pki(names: &[String]) -> Result<DevPki, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Generate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "arcp-gateway development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(TlsError::Generate)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(TlsError::Generate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params = CertificateParams::new(names.to_vec()).map_err(TlsError::Generate)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "arcp-gateway development");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(TlsError::Generate)?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(TlsError::Generate)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok(DevPki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        leaf_pem: format!("{}{}", leaf.pem(), ca_cert.pem()),
        key_pem: leaf_key.serialize_pem(),
        chain: vec![leaf.der().clone(), ca_cert.der().clone()],
        key,
    })
}

/// SHA-256 of a DER certificate as colon-separated hex (as browsers show it).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// The certificate a listener serves, replaceable while it serves.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// A store serving the certificate `settings` describe (a development one is made now).
    pub fn new(settings: &TlsSettings) -> Result<Arc<CertStore>, TlsError> {
        Ok(Arc::new(CertStore {
            current: ArcSwap::new(load(settings)?),
        }))
    }

    /// Serves `key` to every handshake from now on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The chain and signing key `settings` describe, checked to belong together. A
/// development setting makes a new CA and leaf (and writes the CA where asked).
pub fn load(settings: &TlsSettings) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = material(settings)?;
    certified_key(chain, key)
}

/// Builds the rustls server configuration for one listener.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(reloadable_server_config(settings)?.0)
}

/// Like [`server_config`], also returning the store its certificate can be replaced in.
pub fn reloadable_server_config(
    settings: &TlsSettings,
) -> Result<(Arc<ServerConfig>, Arc<CertStore>), TlsError> {
    let store = CertStore::new(settings)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), store))
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let signer = provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(TlsError::Rustls)?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(TlsError::Rustls)?;
    Ok(Arc::new(certified))
}

fn material(
    settings: &TlsSettings,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    Ok(match settings {
        TlsSettings::Files { chain, key } => (chain.clone(), key.clone_key()),
        TlsSettings::Development { write_ca_to, names } => {
            let pki = generate_dev_pki(names)?;
            if let Some(path) = write_ca_to {
                write_ca(path, &pki.ca_pem)?;
            }
            tracing::warn!(
                names = ?names,
                ca_sha256 = %sha256_fingerprint(&pki.ca_der),
                leaf_sha256 = %sha256_fingerprint(&pki.chain[0]),
                ca_file = ?write_ca_to,
                "development TLS: serving a certificate from a CA made at start; do not use in production"
            );
            (pki.chain, pki.key)
        }
    })
}

/// A server configuration from a chain and key, with ALPN `h2` and `http/1.1`.
pub fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn write_ca(path: &Path, pem: &str) -> Result<(), TlsError> {
    let io = |source| TlsError::WriteCa {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, pem).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_builds_a_server_config_with_alpn() {
        let pki = generate_dev_pki(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let config = build(pki.chain, pki.key).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_replaced_certificate_is_served_to_the_next_handshake() {
        let first = generate_dev_pki(&["localhost".into()]).unwrap();
        let second = generate_dev_pki(&["localhost".into()]).unwrap();
        let store = CertStore::new(&TlsSettings::Files {
            chain: first.chain.clone(),
            key: Arc::new(first.key.clone_key()),
        })
        .unwrap();
        assert_eq!(store.leaf(), Some(first.chain[0].clone()));
        store.replace(certified_key(second.chain.clone(), second.key.clone_key()).unwrap());
        assert_eq!(store.leaf(), Some(second.chain[0].clone()));
        // A key that does not match the leaf is refused.
        assert!(certified_key(first.chain, second.key).is_err());
    }

    #[test]
    fn fingerprint_format() {
        let fp = sha256_fingerprint(b"x");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.contains(':'));
    }
}
