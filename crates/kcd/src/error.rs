//! kcd's error: the message for people, and the kind for code. The kind is
//! decided once, here, from the GSS major status and the krb5 error code MIT
//! returns as the minor status, never from the message: the message starts
//! with kcd's own words ("acquiring the service credential from the keytab:
//! ...") and ends with whatever MIT's translation says, and neither is a
//! stable interface.

use std::fmt;

use libgssapi::error::MajorFlags;

use crate::codes::{self, *};

/// What went wrong, in the terms a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No KDC answered, none could be found for the realm, or the KDC said it
    /// cannot serve now: nothing was decided about the user.
    Unreachable,
    /// The KDC refused an option: for S4U, the account may not delegate (to
    /// this SPN, or this user).
    BadOption,
    /// The KDC does not know the client (user or service account).
    ClientUnknown,
    /// The KDC does not know the SPN, or more than one account has it.
    ServerUnknown,
    /// The clocks of this machine and the KDC (or the client) differ too much.
    Skew,
    /// The keys on the two sides share no encryption type.
    EtypeNoSupp,
    /// The key or password was wrong: preauthentication, or decrypting the
    /// KDC's answer, failed.
    PreauthFailed,
    /// The account is disabled, locked out or expired.
    Revoked,
    /// The account's password has expired.
    KeyExpired,
    /// The keytab is missing, empty, unreadable, not a keytab, or lacks the
    /// key (of this version) that was needed.
    Keytab,
    /// No credential where one was expected (an empty or missing cache).
    NoCredentials,
    /// krb5.conf cannot be read or names no default realm.
    Config,
    /// A ticket or authenticator that was seen before.
    Replay,
    /// A ticket for another principal than the one served.
    WrongPrincipal,
    /// A ticket that has expired or is not valid yet.
    TicketExpired,
    /// Channel bindings that do not match this connection's.
    BadBindings,
    /// A token that is not a well-formed Kerberos message, or that was
    /// tampered with.
    BadToken,
    /// A principal or SPN that is not a well-formed name.
    BadName,
    /// MIT answered with a credential that is not the one asked for.
    WrongCredential,
    /// The directory (LDAP on a domain controller) could not be reached in
    /// time, refused the bind or a search, or answered with something that
    /// is not the LDAP asked for. Failures of the Kerberos part of its bind
    /// keep their Kerberos kinds.
    Directory,
    /// Anything else.
    Other,
}

impl Kind {
    /// The kind's name, for logs and counters when there is no Kerberos code.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Unreachable => "unreachable",
            Kind::BadOption => "bad option",
            Kind::ClientUnknown => "client unknown",
            Kind::ServerUnknown => "server unknown",
            Kind::Skew => "clock skew",
            Kind::EtypeNoSupp => "no common encryption type",
            Kind::PreauthFailed => "preauthentication failed",
            Kind::Revoked => "account revoked",
            Kind::KeyExpired => "password expired",
            Kind::Keytab => "keytab",
            Kind::NoCredentials => "no credentials",
            Kind::Config => "krb5.conf",
            Kind::Replay => "replay",
            Kind::WrongPrincipal => "wrong principal",
            Kind::TicketExpired => "ticket expired",
            Kind::BadBindings => "channel bindings",
            Kind::BadToken => "bad token",
            Kind::BadName => "bad name",
            Kind::WrongCredential => "wrong credential",
            Kind::Directory => "directory",
            Kind::Other => "other",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of kcd: `Display` is the message for people; [`Error::kind`],
/// [`Error::major`], [`Error::minor`] and [`Error::code_name`] are for code,
/// logs and counters.
#[derive(Debug, Clone)]
pub struct Error {
    kind: Kind,
    major: u32,
    minor: u32,
    message: String,
}

impl Error {
    /// A failure kcd found itself (no GSS call failed).
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error { kind, major: 0, minor: 0, message: message.into() }
    }

    /// A failure kcd found itself that MIT has a krb5 error code for (`code`,
    /// e.g. `KRB5_NOPERM_ETYPE`): named by that code in logs and counters.
    pub(crate) fn with_code(kind: Kind, code: i32, message: impl Into<String>) -> Error {
        Error { kind, major: 0, minor: code as u32, message: message.into() }
    }

    /// A failed GSS call during `step`. The message is taken now: MIT keeps
    /// the extended text of a krb5 error (which KDC, which realm) per thread,
    /// until the next call.
    pub fn gss(step: &str, e: libgssapi::error::Error) -> Error {
        let (major, minor) = (e.major.bits(), e.minor);
        Error {
            kind: classify(major, minor),
            major,
            minor,
            message: format!("{step}: {e} (major 0x{major:x}, minor {minor})"),
        }
    }

    /// A failed krb5 call (not GSSAPI): its code as the minor status.
    pub(crate) fn krb5(kind: Kind, code: i32, message: String) -> Error {
        Error { kind, major: 0, minor: code as u32, message }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The GSS major status; 0 when no GSS call failed.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The GSS minor status: for the Kerberos mechanism, a krb5 error code
    /// (as an unsigned number); 0 when there is none.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// The Kerberos error's name (`KDC_ERR_BADOPTION`, `KRB5_KDC_UNREACH`),
    /// else the GSS routine error's (`GSS_S_DEFECTIVE_TOKEN`), else the kind's.
    pub fn code_name(&self) -> &'static str {
        codes::name(self.minor as i32).or_else(|| major_name(self.major)).unwrap_or(self.kind.as_str())
    }

    /// No KDC answered: the domain is unavailable, nothing was decided.
    pub fn is_unreachable(&self) -> bool {
        self.kind == Kind::Unreachable
    }

    /// The KDC's answer shows that the account exists (its password, or its
    /// state, was what failed), as opposed to an unknown name or no answer.
    pub fn names_an_account(&self) -> bool {
        matches!(self.kind, Kind::PreauthFailed | Kind::Revoked | Kind::KeyExpired)
    }

    /// For a credential asked for from a keytab into a new, empty memory
    /// cache: MIT, finding no usable key, falls back to that cache and reports
    /// it empty (`KRB5_FCC_NOFILE`), which here can only mean the keytab.
    pub(crate) fn behind_keytab(mut self) -> Error {
        if self.kind == Kind::NoCredentials {
            self.kind = Kind::Keytab;
        }
        self
    }

    /// The same failure, with more said about it.
    pub(crate) fn context(mut self, more: &str) -> Error {
        self.message.push_str(more);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

const ROUTINE_MASK: u32 = 0x00ff_0000;

/// The kind of a GSS failure: the krb5 code when it is one kcd knows, else
/// the routine error.
pub(crate) fn classify(major: u32, minor: u32) -> Kind {
    if let Some(kind) = krb5_kind(minor as i32) {
        return kind;
    }
    let routine = |flags: &[MajorFlags]| flags.iter().any(|f| f.bits() == major & ROUTINE_MASK);
    if routine(&[MajorFlags::GSS_S_BAD_BINDINGS]) {
        Kind::BadBindings
    } else if routine(&[MajorFlags::GSS_S_DEFECTIVE_TOKEN, MajorFlags::GSS_S_BAD_MIC]) {
        Kind::BadToken
    } else if routine(&[MajorFlags::GSS_S_BAD_NAME, MajorFlags::GSS_S_BAD_NAMETYPE]) {
        Kind::BadName
    } else if routine(&[MajorFlags::GSS_S_CREDENTIALS_EXPIRED, MajorFlags::GSS_S_CONTEXT_EXPIRED]) {
        Kind::TicketExpired
    } else if routine(&[MajorFlags::GSS_S_NO_CRED]) {
        Kind::NoCredentials
    } else if major & MajorFlags::GSS_S_DUPLICATE_TOKEN.bits() != 0 {
        Kind::Replay
    } else {
        Kind::Other
    }
}

fn krb5_kind(code: i32) -> Option<Kind> {
    Some(match code {
        KRB5_KDC_UNREACH
        | KRB5_REALM_UNKNOWN
        | KRB5_REALM_CANT_RESOLVE
        | KRB5KDC_ERR_SVC_UNAVAILABLE
        | KRB5_EAI_FAIL
        | KRB5_EAI_NODATA
        | KRB5_EAI_NONAME
        | KRB5_EAI_SERVICE => Kind::Unreachable,
        KRB5KDC_ERR_BADOPTION | KRB5KDC_ERR_POLICY => Kind::BadOption,
        KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN => Kind::ClientUnknown,
        KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN | KRB5KDC_ERR_PRINCIPAL_NOT_UNIQUE => Kind::ServerUnknown,
        KRB5KRB_AP_ERR_SKEW | KRB5_KDCREP_SKEW => Kind::Skew,
        KRB5KDC_ERR_ETYPE_NOSUPP | KRB5_PROG_ETYPE_NOSUPP | KRB5_NOPERM_ETYPE | KRB5_CONFIG_ETYPE_NOSUPP => {
            Kind::EtypeNoSupp
        }
        KRB5KDC_ERR_PREAUTH_FAILED | KRB5KRB_AP_ERR_BAD_INTEGRITY => Kind::PreauthFailed,
        KRB5KDC_ERR_CLIENT_REVOKED | KRB5KDC_ERR_NAME_EXP => Kind::Revoked,
        KRB5KDC_ERR_KEY_EXP => Kind::KeyExpired,
        KRB5_KT_NOTFOUND
        | KRB5_KT_END
        | KRB5_KT_IOERR
        | KRB5_KT_BADNAME
        | KRB5_KT_UNKNOWN_TYPE
        | KRB5_KT_FORMAT
        | KRB5_KEYTAB_BADVNO
        | KRB5_KT_KVNONOTFOUND
        | KRB5KRB_AP_ERR_BADKEYVER
        | KRB5KRB_AP_ERR_NOKEY => Kind::Keytab,
        KRB5_CC_NOTFOUND | KRB5_CC_END | KRB5_FCC_NOFILE => Kind::NoCredentials,
        KRB5_CONFIG_CANTOPEN | KRB5_CONFIG_BADFORMAT | KRB5_CONFIG_NODEFREALM => Kind::Config,
        KRB5KRB_AP_ERR_REPEAT | KRB5_RC_REPLAY => Kind::Replay,
        KRB5KRB_AP_ERR_NOT_US | KRB5KRB_AP_ERR_BADMATCH | KRB5KRB_AP_WRONG_PRINC | KRB5KDC_ERR_WRONG_REALM => {
            Kind::WrongPrincipal
        }
        KRB5KRB_AP_ERR_TKT_EXPIRED | KRB5KRB_AP_ERR_TKT_NYV => Kind::TicketExpired,
        KRB5KRB_AP_ERR_MODIFIED => Kind::BadToken,
        KRB5_PARSE_ILLCHAR | KRB5_PARSE_MALFORMED => Kind::BadName,
        _ => return None,
    })
}

fn major_name(major: u32) -> Option<&'static str> {
    [
        (MajorFlags::GSS_S_BAD_MECH, "GSS_S_BAD_MECH"),
        (MajorFlags::GSS_S_BAD_NAME, "GSS_S_BAD_NAME"),
        (MajorFlags::GSS_S_BAD_NAMETYPE, "GSS_S_BAD_NAMETYPE"),
        (MajorFlags::GSS_S_BAD_BINDINGS, "GSS_S_BAD_BINDINGS"),
        (MajorFlags::GSS_S_BAD_MIC, "GSS_S_BAD_MIC"),
        (MajorFlags::GSS_S_NO_CRED, "GSS_S_NO_CRED"),
        (MajorFlags::GSS_S_DEFECTIVE_TOKEN, "GSS_S_DEFECTIVE_TOKEN"),
        (MajorFlags::GSS_S_DEFECTIVE_CREDENTIAL, "GSS_S_DEFECTIVE_CREDENTIAL"),
        (MajorFlags::GSS_S_CREDENTIALS_EXPIRED, "GSS_S_CREDENTIALS_EXPIRED"),
        (MajorFlags::GSS_S_CONTEXT_EXPIRED, "GSS_S_CONTEXT_EXPIRED"),
        (MajorFlags::GSS_S_FAILURE, "GSS_S_FAILURE"),
        (MajorFlags::GSS_S_UNAVAILABLE, "GSS_S_UNAVAILABLE"),
    ]
    .into_iter()
    .find(|(m, _)| m.bits() == major & ROUTINE_MASK)
    .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gss(major: MajorFlags, code: i32) -> Error {
        Error::gss("a step", libgssapi::error::Error { major, minor: code as u32 })
    }

    #[test]
    fn each_krb5_code_gives_its_kind_and_name() {
        let failure = MajorFlags::GSS_S_FAILURE;
        for (code, kind, name) in [
            (KRB5_KDC_UNREACH, Kind::Unreachable, "KRB5_KDC_UNREACH"),
            (KRB5_REALM_UNKNOWN, Kind::Unreachable, "KRB5_REALM_UNKNOWN"),
            (KRB5_REALM_CANT_RESOLVE, Kind::Unreachable, "KRB5_REALM_CANT_RESOLVE"),
            (KRB5KDC_ERR_BADOPTION, Kind::BadOption, "KDC_ERR_BADOPTION"),
            (KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN, Kind::ClientUnknown, "KDC_ERR_C_PRINCIPAL_UNKNOWN"),
            (KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, Kind::ServerUnknown, "KDC_ERR_S_PRINCIPAL_UNKNOWN"),
            (KRB5KRB_AP_ERR_SKEW, Kind::Skew, "KRB_AP_ERR_SKEW"),
            (KRB5KDC_ERR_ETYPE_NOSUPP, Kind::EtypeNoSupp, "KDC_ERR_ETYPE_NOSUPP"),
            (KRB5KDC_ERR_PREAUTH_FAILED, Kind::PreauthFailed, "KDC_ERR_PREAUTH_FAILED"),
            (KRB5KRB_AP_ERR_BAD_INTEGRITY, Kind::PreauthFailed, "KRB_AP_ERR_BAD_INTEGRITY"),
            (KRB5KDC_ERR_CLIENT_REVOKED, Kind::Revoked, "KDC_ERR_CLIENT_REVOKED"),
            (KRB5KDC_ERR_KEY_EXP, Kind::KeyExpired, "KDC_ERR_KEY_EXPIRED"),
            (KRB5_KT_NOTFOUND, Kind::Keytab, "KRB5_KT_NOTFOUND"),
            (KRB5_KT_END, Kind::Keytab, "KRB5_KT_END"),
            (KRB5_KEYTAB_BADVNO, Kind::Keytab, "KRB5_KEYTAB_BADVNO"),
            (KRB5KRB_AP_ERR_BADKEYVER, Kind::Keytab, "KRB_AP_ERR_BADKEYVER"),
            (KRB5_CC_NOTFOUND, Kind::NoCredentials, "KRB5_CC_NOTFOUND"),
            (KRB5_CONFIG_NODEFREALM, Kind::Config, "KRB5_CONFIG_NODEFREALM"),
            (KRB5KRB_AP_ERR_REPEAT, Kind::Replay, "KRB_AP_ERR_REPEAT"),
            (KRB5KRB_AP_ERR_TKT_EXPIRED, Kind::TicketExpired, "KRB_AP_ERR_TKT_EXPIRED"),
            (KRB5KRB_AP_ERR_NOT_US, Kind::WrongPrincipal, "KRB_AP_ERR_NOT_US"),
        ] {
            let e = gss(failure, code);
            assert_eq!((e.kind(), e.code_name()), (kind, name), "{name}");
            assert_eq!((e.major(), e.minor()), (failure.bits(), code as u32));
            assert_eq!(e.is_unreachable(), kind == Kind::Unreachable);
        }
    }

    /// The message is not read: kcd's own words about the keytab, or MIT's
    /// text, cannot change the kind.
    #[test]
    fn the_kind_comes_from_the_codes_never_the_words() {
        let e = Error::gss(
            "acquiring the service credential from the keytab (no key table entry found; Preauthentication failed)",
            libgssapi::error::Error { major: MajorFlags::GSS_S_FAILURE, minor: KRB5_KDC_UNREACH as u32 },
        );
        assert_eq!(e.kind(), Kind::Unreachable);
        let e = Error::new(Kind::Other, "Cannot contact any KDC for realm 'AD.TEST'");
        assert!(!e.is_unreachable());
        assert_eq!(e.code_name(), "other");
    }

    #[test]
    fn without_a_known_krb5_code_the_routine_error_decides() {
        for (major, kind, name) in [
            (MajorFlags::GSS_S_DEFECTIVE_TOKEN, Kind::BadToken, "GSS_S_DEFECTIVE_TOKEN"),
            (MajorFlags::GSS_S_BAD_BINDINGS, Kind::BadBindings, "GSS_S_BAD_BINDINGS"),
            (MajorFlags::GSS_S_NO_CRED, Kind::NoCredentials, "GSS_S_NO_CRED"),
            (MajorFlags::GSS_S_BAD_NAME, Kind::BadName, "GSS_S_BAD_NAME"),
            (MajorFlags::GSS_S_FAILURE, Kind::Other, "GSS_S_FAILURE"),
        ] {
            let e = gss(major, 0);
            assert_eq!((e.kind(), e.code_name()), (kind, name), "{name}");
        }
        // A krb5 code outranks the routine error: GSS_S_NO_CRED from an empty keytab.
        assert_eq!(gss(MajorFlags::GSS_S_NO_CRED, KRB5_KT_NOTFOUND).kind(), Kind::Keytab);
        // An unknown minor (another mechanism's, or an errno) is not guessed at.
        assert_eq!(gss(MajorFlags::GSS_S_FAILURE, 111).kind(), Kind::Other);
    }

    #[test]
    fn only_answers_about_an_existing_account_name_one() {
        for code in [KRB5KDC_ERR_PREAUTH_FAILED, KRB5KDC_ERR_CLIENT_REVOKED, KRB5KDC_ERR_KEY_EXP] {
            assert!(gss(MajorFlags::GSS_S_FAILURE, code).names_an_account());
        }
        for code in [KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN, KRB5_KDC_UNREACH, KRB5KDC_ERR_BADOPTION, 0] {
            assert!(!gss(MajorFlags::GSS_S_FAILURE, code).names_an_account());
        }
    }

    #[test]
    fn an_empty_cache_behind_a_keytab_is_the_keytab() {
        let e = gss(MajorFlags::GSS_S_NO_CRED, KRB5_FCC_NOFILE);
        assert_eq!(e.kind(), Kind::NoCredentials);
        let e = e.behind_keytab();
        assert_eq!((e.kind(), e.code_name()), (Kind::Keytab, "KRB5_FCC_NOFILE"));
        // Other kinds are kept: the keytab was fine, the KDC did not answer.
        assert_eq!(gss(MajorFlags::GSS_S_NO_CRED, KRB5_KDC_UNREACH).behind_keytab().kind(), Kind::Unreachable);
    }

    #[test]
    fn context_keeps_the_kind_and_codes() {
        let e = gss(MajorFlags::GSS_S_FAILURE, KRB5_KDC_UNREACH).context(" (an attempt 1 s ago)");
        assert_eq!((e.kind(), e.code_name()), (Kind::Unreachable, "KRB5_KDC_UNREACH"));
        assert!(e.to_string().ends_with(" (an attempt 1 s ago)"));
    }
}
