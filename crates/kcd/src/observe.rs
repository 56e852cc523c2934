//! What kcd tells whoever counts its work: each request to the KDC (its kind,
//! how long it took, the Kerberos error when it failed). kcd knows no metrics
//! library; gatehouse hands it an observer that feeds its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kinds of KDC exchange kcd makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KdcRequest {
    /// An AS exchange: the service account's TGT from the keytab, or a Basic
    /// user's password checked.
    As,
    /// A ticket to the service itself in a user's name (protocol transition).
    S4u2Self,
    /// A ticket for the backend with the user's evidence ticket. MIT keeps
    /// the answer in the credential: a later call may need no round trip,
    /// and is counted all the same (it is what delegation asked for).
    S4u2Proxy,
    /// RFC 3244 through kpasswd.
    ChangePassword,
}

impl KdcRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            KdcRequest::As => "as",
            KdcRequest::S4u2Self => "s4u2self",
            KdcRequest::S4u2Proxy => "s4u2proxy",
            KdcRequest::ChangePassword => "change_password",
        }
    }
}

/// Told of every KDC request as it ends. Called on the thread that made the
/// request: it must not block.
pub trait KdcObserver: Send + Sync {
    /// `error`: [`crate::Error::code_name`] of the failure (a bounded set of
    /// names such as `KDC_ERR_BADOPTION`), None when it succeeded.
    fn kdc(&self, kind: KdcRequest, took: Duration, error: Option<&'static str>);
}

/// Times `f` and tells `observer`, if any.
pub(crate) fn timed<T>(
    observer: Option<&Arc<dyn KdcObserver>>,
    kind: KdcRequest,
    f: impl FnOnce() -> Result<T, crate::Error>,
) -> Result<T, crate::Error> {
    let started = Instant::now();
    let result = f();
    if let Some(o) = observer {
        o.kdc(kind, started.elapsed(), result.as_ref().err().map(|e| e.code_name()));
    }
    result
}
