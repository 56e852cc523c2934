//! Reading TLS material from PEM files: certificate chains with their keys,
//! and CA bundles; with messages that say what is wrong with a file. A leaf:
//! the configuration reader checks files with it, `tls` builds configs from it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

pub enum PemError {
    Cert(String),
    Key(String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain and its private key, and checks they belong
/// together. A file in another form (DER, PKCS#12, an encrypted key) is named
/// as such, with the `openssl` command that converts it.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, PemError> {
    let cert_bytes = std::fs::read(cert).map_err(|e| PemError::Cert(e.to_string()))?;
    if let Some(hint) = crate::pem_hint::for_cert(cert, &cert_bytes) {
        return Err(PemError::Cert(hint));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::Cert(pem_message(e)))?;
    if chain.is_empty() {
        return Err(PemError::Cert("no CERTIFICATE block in the file".into()));
    }
    let key_bytes = std::fs::read(key).map_err(|e| PemError::Key(e.to_string()))?;
    if let Some(hint) = crate::pem_hint::for_key(key, &key_bytes) {
        return Err(PemError::Key(hint));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| PemError::Key(pem_message(e)))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| PemError::Key(format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| PemError::Key("the key does not belong to the certificate".into()))?;
    Ok(Arc::new(ck))
}

/// Reads a PEM bundle of CA certificates.
pub fn load_ca_bundle(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(pem_message)? {
        let cert = cert.map_err(pem_message)?;
        store.add(cert).map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    if store.is_empty() {
        return Err("no CERTIFICATE block in the file".into());
    }
    Ok(store)
}

fn pem_message(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no matching PEM block in the file".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}
