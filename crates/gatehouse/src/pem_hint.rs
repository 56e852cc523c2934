//! What a certificate or key file is when it is not the PEM gatehouse reads:
//! a DER file, a PKCS#12 (.pfx) export, an encrypted key, or the other half
//! of the pair; each named with the `openssl` command that converts it. Only
//! the outermost DER header is looked at, bounds-checked: the bytes are the
//! administrator's, but may be anything.

use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq)]
enum Form {
    Pkcs12,
    DerCertificate,
    DerKey,
    EncryptedKey,
    PemKeyOnly,
    PemCertificateOnly,
    /// PEM with both, or something unknown: left to the PEM reader.
    Other,
}

/// A message for a `cert` file that is not a PEM certificate chain.
pub fn for_cert(path: &Path, bytes: &[u8]) -> Option<String> {
    match form(path, bytes) {
        Form::Pkcs12 => Some(pkcs12(path)),
        Form::DerCertificate => Some(format!(
            "this is DER (binary), not PEM: convert it with `openssl x509 -inform der -in {} -out {}`, then add the \
             intermediate CA certificates after it in the same file",
            path.display(),
            sibling(path, "", "pem").display()
        )),
        Form::DerKey | Form::PemKeyOnly | Form::EncryptedKey => {
            Some("this file holds a private key, not a certificate (are cert and key the wrong way round?)".into())
        }
        Form::PemCertificateOnly | Form::Other => None,
    }
}

/// A message for a `key` file that is not an unencrypted PEM private key.
pub fn for_key(path: &Path, bytes: &[u8]) -> Option<String> {
    match form(path, bytes) {
        Form::Pkcs12 => Some(pkcs12(path)),
        Form::DerKey => Some(format!(
            "this is a DER (binary) key, not PEM: convert it with `openssl pkey -inform der -in {} -out {}`",
            path.display(),
            sibling(path, "-pem", "key").display()
        )),
        Form::EncryptedKey => {
            let out = sibling(path, "-plain", "key");
            Some(format!(
                "the private key is encrypted with a password: write it decrypted with `openssl pkey -in {} -out {}` \
                 (it asks for the password; then `chmod 600 {}`), as gatehouse starts without anyone to type it",
                path.display(),
                out.display(),
                out.display()
            ))
        }
        Form::DerCertificate | Form::PemCertificateOnly => {
            Some("this file holds a certificate, not its private key (are cert and key the wrong way round?)".into())
        }
        Form::PemKeyOnly | Form::Other => None,
    }
}

fn pkcs12(path: &Path) -> String {
    let (p, cert, key) = (path.display(), sibling(path, "", "pem"), sibling(path, "", "key"));
    let (c, k) = (cert.display(), key.display());
    format!(
        "this is a PKCS#12 (.pfx) file, as Windows exports certificates; gatehouse reads PEM. Convert it with three \
         commands, each asking for the PFX password (if OpenSSL answers \"unsupported\", as OpenSSL 3 does for older \
         Windows exports, add -legacy to each): `openssl pkcs12 -in {p} -clcerts -nokeys -out {c}` (the certificate), \
         `openssl pkcs12 -in {p} -cacerts -nokeys >> {c}` (its CA certificates after it), \
         `openssl pkcs12 -in {p} -nocerts -nodes -out {k}` (the key, unencrypted: then `chmod 600 {k}`); then set \
         cert = \"{c}\" and key = \"{k}\""
    )
}

/// `dir/stem{suffix}.{ext}`, never `path` itself.
fn sibling(path: &Path, suffix: &str, ext: &str) -> PathBuf {
    let stem = path.file_stem().map_or_else(|| "converted".into(), |s| s.to_string_lossy().into_owned());
    let out = path.with_file_name(format!("{stem}{suffix}.{ext}"));
    if out == path {
        path.with_file_name(format!("{stem}-converted.{ext}"))
    } else {
        out
    }
}

fn form(path: &Path, bytes: &[u8]) -> Form {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("pfx" | "p12")) {
        return Form::Pkcs12;
    }
    if let Some(form) = der_form(bytes) {
        return form;
    }
    let text = String::from_utf8_lossy(bytes);
    let has = |label: &str| text.contains(&format!("-----BEGIN {label}"));
    if has("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Form::EncryptedKey;
    }
    let key = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"].iter().any(|l| has(l));
    match (has("CERTIFICATE-----"), key) {
        (false, true) => Form::PemKeyOnly,
        (true, false) => Form::PemCertificateOnly,
        _ => Form::Other,
    }
}

/// The form of a DER file from its first element: a SEQUENCE whose first
/// member is a SEQUENCE (a certificate's tbsCertificate), INTEGER 3 (PFX
/// version 3) or INTEGER 0 or 1 (PKCS#8, PKCS#1 and SEC1 key versions).
fn der_form(bytes: &[u8]) -> Option<Form> {
    if *bytes.first()? != 0x30 {
        return None;
    }
    let header = match *bytes.get(1)? {
        n if n < 0x80 => 2,
        n @ 0x81..=0x84 => 2 + usize::from(n - 0x80),
        _ => return None,
    };
    let inner = bytes.get(header..)?;
    match inner {
        [0x30, ..] => Some(Form::DerCertificate),
        [0x02, 0x01, 3, ..] => Some(Form::Pkcs12),
        [0x02, 0x01, 0 | 1, ..] => Some(Form::DerKey),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_headers_are_read_without_panic() {
        assert_eq!(der_form(&[0x30, 0x03, 0x02, 0x01, 0x03]), Some(Form::Pkcs12));
        assert_eq!(der_form(&[0x30, 0x82, 0x01, 0x00, 0x30, 0x82]), Some(Form::DerCertificate));
        assert_eq!(der_form(&[0x30, 0x81, 0x80, 0x02, 0x01, 0x00]), Some(Form::DerKey));
        for short in [&[][..], &[0x30], &[0x30, 0x84, 1, 2], &[0x30, 0x85], &[0x30, 0x80, 0x30], b"-----BEGIN"] {
            assert_eq!(der_form(short), None, "{short:?}");
        }
    }

    #[test]
    fn outputs_never_overwrite_the_input() {
        assert_eq!(sibling(Path::new("/c/mail.pem"), "", "pem"), Path::new("/c/mail-converted.pem"));
        assert_eq!(sibling(Path::new("/c/mail.cer"), "", "pem"), Path::new("/c/mail.pem"));
        assert_eq!(sibling(Path::new("/c/mail.key"), "-plain", "key"), Path::new("/c/mail-plain.key"));
    }
}
