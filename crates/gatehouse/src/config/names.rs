//! Whether a TLS listener's certificates cover the names its sites are
//! published under. A name no certificate covers is an error, not a warning:
//! every client of an Exchange site (browsers, Outlook, phones) refuses the
//! connection, so the site cannot work as written; an address in `hosts` is
//! judged the same way, against the certificate's IP addresses, as clients do.

use super::reader::Reader;
use super::validate::Origin;
use super::{Config, Site};

use rustls::pki_types::ServerName;

/// One problem per name of `site` that no certificate of its listener covers,
/// at the name in `hosts`.
pub fn check_hosts(r: &mut Reader<'_>, config: &Config, site: &Site, origin: &Origin, name: &str) {
    let Some(tls) = config.listeners.iter().find(|l| l.name == site.listener).and_then(|l| l.tls.as_ref()) else {
        return;
    };
    let certs: Vec<webpki::EndEntityCert<'_>> = tls
        .certificates
        .iter()
        .filter_map(|ck| ck.end_entity_cert().ok())
        .filter_map(|der| webpki::EndEntityCert::try_from(der).ok())
        .collect();
    for host in &site.hosts {
        // Not a name TLS could carry: reported by the hosts check, if at all.
        let Ok(server_name) = ServerName::try_from(host.as_str()) else {
            continue;
        };
        if certs.iter().any(|c| c.verify_is_valid_for_subject_name(&server_name).is_ok()) {
            continue;
        }
        let covered: Vec<String> = certs
            .iter()
            .zip(&tls.files)
            .map(|(c, file)| {
                let names: Vec<&str> = c.valid_dns_names().collect();
                if names.is_empty() {
                    format!(
                        "{} covers no DNS name: browsers and Outlook read only its subjectAltName, never its CN",
                        file.display()
                    )
                } else {
                    format!("{} covers {}", file.display(), names.join(", "))
                }
            })
            .collect();
        let span = origin.hosts.iter().find(|(h, _)| h == host).map_or(origin.span.clone(), |(_, s)| s.clone());
        r.problem(
            span,
            &format!("site[{}].hosts", origin.index),
            format!(
                "site `{name}`: no certificate of listener `{}` covers `{host}` ({}); clients would refuse the \
                 connection: use a certificate with `{host}` in its subjectAltName (or add one under `sni`), or \
                 remove `{host}` from hosts",
                site.listener,
                covered.join("; ")
            ),
        );
    }
}
