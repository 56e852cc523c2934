//! TLS material: server certificates chosen by SNI, and client configs for HTTPS
//! backends. rustls with the aws-lc-rs provider throughout (docs/design.md, "TLS").

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{BackendTls, ListenerTls};
use crate::pem::{load_ca_bundle, provider};

/// Picks the first certificate whose names cover the SNI name; the first
/// certificate otherwise.
#[derive(Debug)]
struct SniResolver {
    certificates: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        choose(&self.certificates, hello.server_name()).cloned()
    }
}

/// The certificate a listener presents for an SNI name: the first whose names
/// cover it, else the first.
pub fn choose<'a>(certificates: &'a [Arc<CertifiedKey>], sni: Option<&str>) -> Option<&'a Arc<CertifiedKey>> {
    let first = certificates.first()?;
    if certificates.len() == 1 {
        return Some(first);
    }
    let Some(name) = sni.and_then(|n| ServerName::try_from(n).ok()) else {
        return Some(first);
    };
    let covers = |ck: &&Arc<CertifiedKey>| {
        ck.end_entity_cert()
            .ok()
            .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
            .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
    };
    Some(certificates.iter().find(covers).unwrap_or(first))
}

/// RFC 5929 `tls-server-end-point`: the hash of the certificate, with the hash
/// function of its signature algorithm, but SHA-256 for MD5, SHA-1 and SHA-256.
pub fn server_end_point(cert_der: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match signature_hash(cert_der) {
        Some(384) => sha2::Sha384::digest(cert_der).to_vec(),
        Some(512) => sha2::Sha512::digest(cert_der).to_vec(),
        _ => sha2::Sha256::digest(cert_der).to_vec(),
    }
}

/// The hash size named by the certificate's signatureAlgorithm, read from the
/// DER: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }.
fn signature_hash(der: &[u8]) -> Option<u16> {
    fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        if first < 0x80 {
            return Some((tag, 2, first));
        }
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        Some((tag, 2 + n, len))
    }
    let (tag, h, _) = header(der)?;
    if tag != 0x30 {
        return None;
    }
    let rest = der.get(h..)?;
    let (_, th, tlen) = header(rest)?; // tbsCertificate
    let alg = rest.get(th.checked_add(tlen)?..)?;
    let (tag, ah, _) = header(alg)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oh, olen) = header(alg.get(ah..)?)?;
    if tag != 0x06 {
        return None;
    }
    let oid = alg.get(ah + oh..(ah + oh).checked_add(olen)?)?;
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    if SHA384.contains(&oid) {
        Some(384)
    } else if SHA512.contains(&oid) {
        Some(512)
    } else {
        Some(256)
    }
}

pub fn server_config(tls: &ListenerTls, http2: bool) -> Arc<rustls::ServerConfig> {
    let provider = if tls.aes128_first { aes128_first(provider()) } else { provider() };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certificates: tls.certificates.clone() }));
    // The server's order instead of the client's: curl, Windows and rustls
    // offer TLS_AES_256_GCM_SHA384 first, whose SHA-384 key schedule runs
    // without vector code on CPUs where SHA-256 has its own instructions
    // (docs/performance.md, issue 20 goal 3).
    config.ignore_client_order = tls.aes128_first;
    // h2 first when offered: clients that need a connection-bound scheme (NTLM)
    // are sent back to HTTP/1.1 per request (HTTP_1_1_REQUIRED), as IIS does.
    config.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    // Stateless session tickets (as nginx's default): a returning client
    // resumes however many other clients came between, where rustls's default
    // names entries of a 256-entry cache that they push out (docs/design.md, "TLS").
    match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(e) => tracing::warn!(error = %e, "no session ticket keys; TLS resumption by session cache only"),
    }
    Arc::new(config)
}

/// The provider with TLS_AES_128_GCM_SHA256 moved first, the others in their
/// order (AES-256-GCM, ChaCha20-Poly1305, then TLS 1.2's).
fn aes128_first(provider: Arc<rustls::crypto::CryptoProvider>) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = Arc::unwrap_or_clone(provider);
    provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Client config for one HTTPS backend.
pub fn client_config(tls: &BackendTls) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions");
    let mut config = if !tls.verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider()))).with_no_client_auth()
    } else {
        let roots = match &tls.ca {
            Some(ca) => load_ca_bundle(ca)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no system CA certificates found (install ca-certificates, or set backend_tls.ca)".into());
    }
    Ok(store)
}

/// `verify = false`: for lab backends with self-signed certificates. Signatures are
/// still checked so that the handshake itself is sound; only the chain and name are not.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A certificate's first DNS name (or its subject's common name) and when
/// it expires (seconds since the Unix epoch), for the metrics and the
/// status page.
pub fn expiry(ck: &CertifiedKey) -> Option<(String, i64)> {
    let der = ck.end_entity_cert().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let dns = cert.subject_alternative_name().ok().flatten().and_then(|san| {
        san.value.general_names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
    });
    let cn = || cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_owned);
    let name = dns.or_else(cn).unwrap_or_else(|| "-".into());
    Some((name, cert.validity().not_after.timestamp()))
}
