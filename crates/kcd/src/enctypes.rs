//! Which Kerberos encryption types gatehouse uses: AES, and RC4 only when the
//! configuration says so (`[domain] allow_rc4`). Active Directory is
//! disabling RC4 (2026); a gatehouse that quietly worked with RC4 keys
//! would stop on that day, and RC4 tickets are weak (their key is the NT
//! hash). DES and RC4-EXP are never used.
//!
//! Two mechanisms enforce it. MIT's own: the allowed list is set on every
//! credential kcd hands to GSSAPI (`gss_krb5_set_allowable_enctypes`, in
//! `ffi.rs`), so that MIT asks the KDC for such session keys only (TGS
//! requests: S4U2Self, S4U2Proxy, tickets for gatehouse's own SPN) and,
//! when accepting, refuses a ticket whose session key or subkey is of
//! another type (`KRB5_NOPERM_ETYPE`). (With RC4 allowed, the credentials
//! that ask the KDC keep MIT's defaults: see [`Policy::initiator`].) MIT's
//! list does not cover the ticket's own encryption (the acceptor decrypts
//! any ticket its keytab has a key for), so kcd checks that itself, in the
//! AP-REQ, before MIT decrypts anything ([`Policy::check_ticket`]); and
//! before an AS exchange, that the keytab holds a key of an allowed type for
//! the account (MIT's AS request takes whatever the keytab holds).

use crate::codes::KRB5_NOPERM_ETYPE;
use crate::error::{Error, Kind};

const AES256_SHA1: i32 = 18;
const AES128_SHA1: i32 = 17;
const AES256_SHA384: i32 = 20;
const AES128_SHA256: i32 = 19;
const RC4: i32 = 23;

/// In MIT's order of preference.
const AES: [i32; 4] = [AES256_SHA1, AES128_SHA1, AES256_SHA384, AES128_SHA256];
const AES_AND_RC4: [i32; 5] = [AES256_SHA1, AES128_SHA1, AES256_SHA384, AES128_SHA256, RC4];

/// The escape hatch, for the log lines that refuse RC4.
pub(crate) const HATCH: &str = "set [domain] allow_rc4 = true only for a domain that cannot issue AES tickets";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    rc4: bool,
}

impl Policy {
    pub(crate) fn new(rc4: bool) -> Policy {
        Policy { rc4 }
    }

    /// What MIT may negotiate when accepting, strongest first.
    pub(crate) fn allowed(self) -> &'static [i32] {
        if self.rc4 {
            &AES_AND_RC4
        } else {
            &AES
        }
    }

    /// The limit for credentials that ask the KDC for tickets: AES, or with
    /// RC4 allowed none (MIT's defaults). MIT's S4U2Self asks for the first
    /// type of a limited credential alone, and a domain that needs RC4 may
    /// have no AES session keys at all.
    pub(crate) fn initiator(self) -> Option<&'static [i32]> {
        (!self.rc4).then_some(&AES[..])
    }

    pub(crate) fn allows(self, enctype: i32) -> bool {
        self.allowed().contains(&enctype)
    }

    /// A ticket (`what`: "the client's ticket") encrypted with `enctype`.
    pub(crate) fn check_ticket(self, what: &str, enctype: i32) -> Result<(), Error> {
        if self.allows(enctype) {
            return Ok(());
        }
        Err(refused(format!("{what} is encrypted with {}, {}", describe(enctype), self.why(enctype))))
    }

    /// The enctypes of the keytab's newest keys for `principal`: refused
    /// when there are some and none is allowed. None at all is MIT's to
    /// report (its message names the keytab and the principal).
    pub(crate) fn check_keytab(self, principal: &str, enctypes: &[i32]) -> Result<(), Error> {
        if enctypes.is_empty() || enctypes.iter().any(|e| self.allows(*e)) {
            return Ok(());
        }
        let held: Vec<String> = enctypes.iter().map(|e| describe(*e)).collect();
        let why = self.why(enctypes[0]);
        Err(refused(format!(
            "the keytab holds no AES key for {principal}, only {}, {why}; export the account's AES keys",
            held.join(", ")
        )))
    }

    /// Said after MIT's own refusal (`KRB5_NOPERM_ETYPE`), whose words
    /// ("Encryption type arcfour-hmac not permitted") do not say whose rule it is.
    pub(crate) fn after_mit_refusal(self) -> String {
        if self.rc4 {
            " (gatehouse accepts AES and, with allow_rc4, RC4 session keys only)".into()
        } else {
            format!(" (a session key that is not AES: gatehouse refuses RC4; {HATCH})")
        }
    }

    /// Said after the KDC's `KDC_ERR_ETYPE_NOSUPP` to a request of ours,
    /// which asked for AES session keys only (none when RC4 is allowed).
    pub(crate) fn after_kdc_refusal(self) -> Option<String> {
        (!self.rc4).then(|| {
            format!(
                " (gatehouse asked for AES only: the account has no AES keys, or its \
                 msDS-SupportedEncryptionTypes leaves AES out; {HATCH})"
            )
        })
    }

    fn why(self, enctype: i32) -> String {
        match enctype {
            RC4 if !self.rc4 => format!("which gatehouse refuses; {HATCH}"),
            1 | 2 | 3 | 24 => "which gatehouse never accepts (broken)".into(),
            _ if self.rc4 => "which gatehouse does not accept (AES or RC4 only)".into(),
            _ => "which gatehouse does not accept (AES only)".into(),
        }
    }
}

/// kcd's refusals carry MIT's code for the same refusal, so that logs and
/// counters show one name whichever side refused.
fn refused(message: String) -> Error {
    Error::with_code(Kind::EtypeNoSupp, KRB5_NOPERM_ETYPE, message)
}

fn describe(enctype: i32) -> String {
    let name = match enctype {
        AES256_SHA1 => "AES256 (aes256-cts-hmac-sha1-96",
        AES128_SHA1 => "AES128 (aes128-cts-hmac-sha1-96",
        AES256_SHA384 => "AES256 (aes256-cts-hmac-sha384-192",
        AES128_SHA256 => "AES128 (aes128-cts-hmac-sha256-128",
        RC4 => "RC4 (arcfour-hmac",
        24 => "RC4-EXP (arcfour-hmac-exp",
        1 => "DES (des-cbc-crc",
        2 => "DES (des-cbc-md4",
        3 => "DES (des-cbc-md5",
        16 => "triple DES (des3-cbc-sha1",
        _ => return format!("encryption type {enctype}"),
    };
    format!("{name}, enctype {enctype})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_only_unless_rc4_is_allowed_and_never_des() {
        let (strict, hatch) = (Policy::default(), Policy::new(true));
        for aes in AES {
            assert!(strict.check_ticket("t", aes).is_ok() && hatch.check_ticket("t", aes).is_ok());
        }
        let e = strict.check_ticket("the client's ticket", 23).unwrap_err();
        assert_eq!((e.kind(), e.code_name()), (Kind::EtypeNoSupp, "KRB5_NOPERM_ETYPE"));
        assert_eq!(
            e.to_string(),
            "the client's ticket is encrypted with RC4 (arcfour-hmac, enctype 23), which gatehouse refuses; \
             set [domain] allow_rc4 = true only for a domain that cannot issue AES tickets"
        );
        assert!(hatch.check_ticket("t", 23).is_ok());
        for weak in [1, 2, 3, 24] {
            for p in [strict, hatch] {
                let e = p.check_ticket("t", weak).unwrap_err();
                assert!(e.to_string().ends_with("which gatehouse never accepts (broken)"), "{e}");
            }
        }
        for other in [16, 25, 26, 0, -128] {
            assert!(strict.check_ticket("t", other).unwrap_err().to_string().contains("(AES only)"));
            assert!(hatch.check_ticket("t", other).unwrap_err().to_string().contains("(AES or RC4 only)"));
        }
        assert_eq!(strict.allowed(), &[18, 17, 20, 19]);
        assert_eq!(hatch.allowed(), &[18, 17, 20, 19, 23]);
        assert_eq!(strict.initiator(), Some(&[18, 17, 20, 19][..]));
        assert_eq!(hatch.initiator(), None);
    }

    #[test]
    fn a_keytab_of_rc4_keys_only_is_refused_one_with_aes_is_not() {
        let strict = Policy::default();
        let e = strict.check_keytab("svc-proxy@AD.TEST", &[23]).unwrap_err();
        assert_eq!(e.kind(), Kind::EtypeNoSupp);
        assert!(e.to_string().starts_with("the keytab holds no AES key for svc-proxy@AD.TEST, only RC4 (arcfour-hmac, enctype 23), which gatehouse refuses; set [domain] allow_rc4 = true"), "{e}");
        assert!(strict.check_keytab("svc-proxy@AD.TEST", &[23, 18]).is_ok());
        assert!(strict.check_keytab("svc-proxy@AD.TEST", &[]).is_ok(), "no key at all: MIT says so");
        assert!(Policy::new(true).check_keytab("svc-proxy@AD.TEST", &[23]).is_ok());
        assert!(Policy::new(true).check_keytab("svc-proxy@AD.TEST", &[3, 1]).is_err());
    }
}
