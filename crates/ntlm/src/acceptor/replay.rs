//! Test-only (cargo feature `replay`): a handshake rebuilt from captured bytes,
//! so that real clients' messages (Windows SSPI, macOS Heimdal, gss-ntlmssp)
//! go through the code that serves gatehouse's clients.
//!
//! Only dev-dependencies enable the feature (this crate's own, for
//! `tests/captures.rs`, and spnego's); gatehouse's normal dependency on this
//! crate does not, so the gatehouse binary has no way to build a
//! `ChallengeSent` that it did not send: nothing here is reachable from the
//! network. `tests/captures.rs` checks that no manifest enables it outside
//! `[dev-dependencies]`.

use super::{AcceptorConfig, ChallengeSent};
use crate::session::SessionKey;
use crate::{wire, Error};

impl ChallengeSent {
    /// The state after a CHALLENGE that a real server sent to a real client:
    /// `negotiate` and `challenge` are the captured messages, kept byte for
    /// byte, so that the MIC (over NEGOTIATE, CHALLENGE and AUTHENTICATE) is
    /// computed over exactly what the client saw. The server challenge is the
    /// captured one; that it is not fresh is why this is for tests only.
    ///
    /// Everything after it is the serving path, unchanged:
    /// [`ChallengeSent::read_authenticate`], the password check, and
    /// [`crate::AuthenticateReceived::finish`], whose `now` is the injected
    /// clock (the acceptor has no clock of its own: the capture's time goes
    /// where gatehouse passes `FileTime::now()`). `config` supplies the
    /// policies (channel bindings, timestamp window); its names are not used,
    /// the captured CHALLENGE carries the server's.
    pub fn replay(config: &AcceptorConfig, negotiate: &[u8], challenge: &[u8]) -> Result<ChallengeSent, Error> {
        wire::check_header(negotiate, 1)?;
        wire::check_header(challenge, 2)?;
        let server_challenge: [u8; 8] =
            challenge.get(24..32).and_then(|b| b.try_into().ok()).ok_or(Error::Truncated)?;
        // The target info must be where its buffer says, as in a CHALLENGE we send.
        wire::slice_at(challenge, 40)?;
        Ok(ChallengeSent {
            negotiate: negotiate.to_vec(),
            message: challenge.to_vec(),
            server_challenge,
            config: config.clone(),
        })
    }
}

impl SessionKey {
    /// The key a test expects (a capture's ExportedSessionKey and the
    /// AUTHENTICATE's flags), to compare with a finished handshake's, which
    /// is compared in constant time and never shown.
    pub fn expected(exported: [u8; 16], flags: u32) -> SessionKey {
        SessionKey { exported, flags }
    }
}
