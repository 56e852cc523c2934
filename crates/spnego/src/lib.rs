//! SPNEGO (RFC 4178) as an HTTP `Negotiate` acceptor meets it: the tokens a
//! client sends, parsed as untrusted DER (definite lengths only, every length
//! checked, nothing panics), and the responses gatehouse sends.
//!
//! What clients send in `Authorization: Negotiate`:
//!
//! - an InitialContextToken `[APPLICATION 0] { SPNEGO OID, NegTokenInit }`, with
//!   the client's mechanisms in order of preference and usually an optimistic
//!   token for the first;
//! - a bare `NegTokenResp` (`[1]`) on later legs;
//! - or no SPNEGO at all: a raw Kerberos token (`[APPLICATION 0] { krb5 OID,
//!   ... }`), or a raw NTLM message (`NTLMSSP\0...`), which some clients send
//!   under the Negotiate name.
//!
//! The mechanism choice and the mechListMIC check live with the caller (the
//! mechanisms are gatehouse's); this crate gives it the exact bytes the MIC
//! covers ([`NegTokenInit::mech_types_der`]).

#![forbid(unsafe_code)]

mod der;

use der::{Reader, Writer};

/// An object identifier, as its DER content bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Oid(pub Vec<u8>);

impl std::fmt::Debug for Oid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Oid({})", self)
    }
}

impl std::fmt::Display for Oid {
    /// Dotted form, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((&first, rest)) = self.0.split_first() else { return f.write_str("(empty)") };
        write!(f, "{}.{}", first / 40, first % 40)?;
        let mut arc: u64 = 0;
        for &b in rest {
            arc = arc.saturating_mul(128).saturating_add(u64::from(b & 0x7f));
            if b & 0x80 == 0 {
                write!(f, ".{arc}")?;
                arc = 0;
            }
        }
        Ok(())
    }
}

/// 1.3.6.1.5.5.2
pub const SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// 1.2.840.113554.1.2.2
pub const KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// 1.2.840.48018.1.2.2: the Kerberos OID as Windows 2000 miswrote it; Windows
/// clients still list it first.
pub const MS_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// 1.3.6.1.4.1.311.2.2.10
pub const NTLMSSP: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];

impl Oid {
    pub fn is_kerberos(&self) -> bool {
        self.0 == KRB5 || self.0 == MS_KRB5
    }
    pub fn is_ntlm(&self) -> bool {
        self.0 == NTLMSSP
    }
}

/// The most mechanisms a client may list; real ones list two to four.
pub const MAX_MECHS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegTokenInit {
    pub mech_types: Vec<Oid>,
    /// The MechTypeList exactly as received (tag and length included): what
    /// the mechListMIC is computed over.
    pub mech_types_der: Vec<u8>,
    pub mech_token: Option<Vec<u8>>,
    pub mech_list_mic: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegState {
    AcceptCompleted = 0,
    AcceptIncomplete = 1,
    Reject = 2,
    RequestMic = 3,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegTokenResp {
    pub neg_state: Option<NegState>,
    pub supported_mech: Option<Oid>,
    pub response_token: Option<Vec<u8>>,
    pub mech_list_mic: Option<Vec<u8>>,
}

/// What arrived in `Authorization: Negotiate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientToken {
    Init(NegTokenInit),
    Resp(NegTokenResp),
    /// A Kerberos initial context token without SPNEGO (RFC 4121 framing).
    RawKerberos,
    /// An NTLM message without SPNEGO.
    RawNtlm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Bytes that are not DER as SPNEGO uses it (bad tag, length, nesting).
    Malformed(&'static str),
    /// A framed token of a mechanism that is neither SPNEGO nor Kerberos.
    UnknownMechanism,
    TooManyMechanisms,
    /// A NegTokenInit that lists no mechanism.
    NoMechanisms,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "malformed SPNEGO token: {what}"),
            Error::UnknownMechanism => f.write_str("a framed token of an unknown mechanism"),
            Error::TooManyMechanisms => write!(f, "more than {MAX_MECHS} mechanisms listed"),
            Error::NoMechanisms => f.write_str("NegTokenInit lists no mechanism"),
        }
    }
}

impl std::error::Error for Error {}

const APPLICATION_0: u8 = 0x60;
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
const BIT_STRING: u8 = 0x03;
const INTEGER: u8 = 0x02;

const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// Parses what a client sent under `Negotiate`.
pub fn parse_client_token(bytes: &[u8]) -> Result<ClientToken, Error> {
    if bytes.starts_with(b"NTLMSSP\0") {
        return Ok(ClientToken::RawNtlm);
    }
    let mut outer = Reader::new(bytes);
    let tag = outer.peek_tag().ok_or(Error::Malformed("empty token"))?;
    match tag {
        APPLICATION_0 => {
            // RFC 2743 3.1: the framing's contents are the mechanism OID and
            // then the mechanism's own bytes, which need not be DER.
            let framed = outer.expect(APPLICATION_0, "initial context token")?;
            outer.finish("bytes after the initial context token")?;
            let mut r = Reader::new(framed);
            let mech = Oid(r.expect(OID, "mechanism OID")?.to_vec());
            if mech.0 == SPNEGO {
                let mut choice = Reader::new(r.rest());
                let init = choice.expect(context(0), "negTokenInit")?;
                choice.finish("bytes after negTokenInit")?;
                parse_init(init).map(ClientToken::Init)
            } else if mech.is_kerberos() {
                Ok(ClientToken::RawKerberos)
            } else {
                Err(Error::UnknownMechanism)
            }
        }
        t if t == context(1) => {
            let resp = outer.expect(context(1), "negTokenResp")?;
            outer.finish("bytes after negTokenResp")?;
            parse_resp(resp).map(ClientToken::Resp)
        }
        _ => Err(Error::Malformed("neither an initial context token nor a negTokenResp")),
    }
}

fn parse_init(bytes: &[u8]) -> Result<NegTokenInit, Error> {
    let mut outer = Reader::new(bytes);
    let seq = outer.expect(SEQUENCE, "NegTokenInit")?;
    outer.finish("bytes after NegTokenInit")?;
    let mut fields = Reader::new(seq);
    let mut mech_types = None;
    let (mut mech_token, mut mech_list_mic) = (None, None);
    let mut last = None;
    while !fields.is_empty() {
        let (tag, value) = fields.any("NegTokenInit field")?;
        if tag & 0xe0 != 0xa0 {
            return Err(Error::Malformed("NegTokenInit field is not context-tagged"));
        }
        let n = tag & 0x1f;
        if last.is_some_and(|l| n <= l) {
            return Err(Error::Malformed("NegTokenInit fields out of order or repeated"));
        }
        last = Some(n);
        match n {
            0 => {
                let mut r = Reader::new(value);
                let start = r.position();
                let list = r.expect(SEQUENCE, "MechTypeList")?;
                let der = value[start..r.position()].to_vec();
                r.finish("bytes after MechTypeList")?;
                let mut oids = Reader::new(list);
                let mut mechs = Vec::new();
                while !oids.is_empty() {
                    if mechs.len() == MAX_MECHS {
                        return Err(Error::TooManyMechanisms);
                    }
                    mechs.push(Oid(oids.expect(OID, "mechanism OID")?.to_vec()));
                }
                mech_types = Some((mechs, der));
            }
            1 => {
                Reader::new(value).expect(BIT_STRING, "reqFlags")?;
            }
            2 => mech_token = Some(octets(value, "mechToken")?),
            3 => mech_list_mic = Some(octets(value, "mechListMIC")?),
            // Later extensions (negHints is server-only): ignored.
            _ => {}
        }
    }
    let (mech_types, mech_types_der) = mech_types.ok_or(Error::Malformed("NegTokenInit without mechTypes"))?;
    if mech_types.is_empty() {
        return Err(Error::NoMechanisms);
    }
    Ok(NegTokenInit { mech_types, mech_types_der, mech_token, mech_list_mic })
}

fn parse_resp(bytes: &[u8]) -> Result<NegTokenResp, Error> {
    let mut outer = Reader::new(bytes);
    let seq = outer.expect(SEQUENCE, "NegTokenResp")?;
    outer.finish("bytes after NegTokenResp")?;
    let mut fields = Reader::new(seq);
    let mut resp = NegTokenResp::default();
    let mut last = None;
    while !fields.is_empty() {
        let (tag, value) = fields.any("NegTokenResp field")?;
        if tag & 0xe0 != 0xa0 {
            return Err(Error::Malformed("NegTokenResp field is not context-tagged"));
        }
        let n = tag & 0x1f;
        if last.is_some_and(|l| n <= l) {
            return Err(Error::Malformed("NegTokenResp fields out of order or repeated"));
        }
        last = Some(n);
        match n {
            0 => {
                let mut r = Reader::new(value);
                let state = r.expect(ENUMERATED, "negState")?;
                r.finish("bytes after negState")?;
                resp.neg_state = Some(match state {
                    [0] => NegState::AcceptCompleted,
                    [1] => NegState::AcceptIncomplete,
                    [2] => NegState::Reject,
                    [3] => NegState::RequestMic,
                    _ => return Err(Error::Malformed("unknown negState")),
                });
            }
            1 => {
                let mut r = Reader::new(value);
                resp.supported_mech = Some(Oid(r.expect(OID, "supportedMech")?.to_vec()));
                r.finish("bytes after supportedMech")?;
            }
            2 => resp.response_token = Some(octets(value, "responseToken")?),
            3 => resp.mech_list_mic = Some(octets(value, "mechListMIC")?),
            _ => {}
        }
    }
    Ok(resp)
}

fn octets(value: &[u8], what: &'static str) -> Result<Vec<u8>, Error> {
    let mut r = Reader::new(value);
    let v = r.expect(OCTET_STRING, what)?;
    r.finish(what)?;
    Ok(v.to_vec())
}

/// A NegTokenResp as gatehouse sends it (the `[1]` choice, no framing).
pub fn encode_resp(resp: &NegTokenResp) -> Vec<u8> {
    let mut fields = Writer::new();
    if let Some(state) = resp.neg_state {
        fields.tagged(context(0), &Writer::tlv(ENUMERATED, &[state as u8]));
    }
    if let Some(mech) = &resp.supported_mech {
        fields.tagged(context(1), &Writer::tlv(OID, &mech.0));
    }
    if let Some(token) = &resp.response_token {
        fields.tagged(context(2), &Writer::tlv(OCTET_STRING, token));
    }
    if let Some(mic) = &resp.mech_list_mic {
        fields.tagged(context(3), &Writer::tlv(OCTET_STRING, mic));
    }
    Writer::tlv(context(1), &Writer::tlv(SEQUENCE, &fields.into_bytes()))
}

/// An InitialContextToken with a NegTokenInit: what a client sends. For tests
/// and for wrapping a Kerberos token towards a backend.
pub fn encode_init(mechs: &[&[u8]], mech_token: Option<&[u8]>, mech_list_mic: Option<&[u8]>) -> Vec<u8> {
    let mut list = Writer::new();
    for m in mechs {
        list.raw(&Writer::tlv(OID, m));
    }
    let mut fields = Writer::new();
    fields.tagged(context(0), &Writer::tlv(SEQUENCE, &list.into_bytes()));
    if let Some(t) = mech_token {
        fields.tagged(context(2), &Writer::tlv(OCTET_STRING, t));
    }
    if let Some(m) = mech_list_mic {
        fields.tagged(context(3), &Writer::tlv(OCTET_STRING, m));
    }
    let init = Writer::tlv(context(0), &Writer::tlv(SEQUENCE, &fields.into_bytes()));
    let mut inner = Writer::tlv(OID, SPNEGO);
    inner.extend_from_slice(&init);
    Writer::tlv(APPLICATION_0, &inner)
}

/// The client side's NegTokenResp (`[1]`), for tests.
pub fn encode_client_resp(response_token: Option<&[u8]>, mech_list_mic: Option<&[u8]>) -> Vec<u8> {
    encode_resp(&NegTokenResp {
        neg_state: None,
        supported_mech: None,
        response_token: response_token.map(<[u8]>::to_vec),
        mech_list_mic: mech_list_mic.map(<[u8]>::to_vec),
    })
}

/// Fuzzer entry: any bytes, parsed; what parses is encoded back. Must never panic.
pub fn fuzz_one(data: &[u8]) {
    let _ = kerberos_ap_req(data);
    if let Ok(ClientToken::Resp(r)) = parse_client_token(data) {
        let again = encode_resp(&r);
        assert_eq!(parse_client_token(&again), Ok(ClientToken::Resp(r)));
    }
}

#[cfg(test)]
mod tests;

/// What gatehouse reads from a Kerberos AP-REQ before MIT checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApReq<'a> {
    /// The ticket's service name, components joined by `/` (`HTTP/mail.ad.test`),
    /// and realm. In clear text: the service key, which MIT checks, is what
    /// binds the ticket; the name says which of the account's SPNs the client
    /// asked for.
    pub service: String,
    pub realm: String,
    /// The encryption type of the ticket's enc-part (RFC 3961 numbers: 18
    /// aes256-cts-hmac-sha1-96, 23 arcfour-hmac). In clear text, and yet what
    /// the acceptor decrypts with: MIT picks the key and the cipher by this
    /// number, so a ticket relabelled with another type does not decrypt.
    pub ticket_enctype: i32,
    /// The ciphertext of the authenticator: unique per authentication and
    /// bound by its integrity check, so it identifies a replay however the
    /// outer encoding is varied.
    pub authenticator: &'a [u8],
    /// The whole AP-REQ message (its DER, tag included), without the GSS
    /// framing around it: what `krb5_rd_req` reads.
    pub message: &'a [u8],
}

/// Reads a Kerberos initial context token (RFC 4121 framing around an AP-REQ,
/// RFC 4120 5.5.1).
pub fn kerberos_ap_req(token: &[u8]) -> Result<ApReq<'_>, Error> {
    const AP_REQ: u8 = 0x6e; // [APPLICATION 14]
    const TICKET: u8 = 0x61; // [APPLICATION 1]
    const GENERAL_STRING: u8 = 0x1b;
    let mut outer = Reader::new(token);
    let framed = outer.expect(APPLICATION_0, "initial context token")?;
    outer.finish("bytes after the initial context token")?;
    let mut r = Reader::new(framed);
    if !Oid(r.expect(OID, "mechanism OID")?.to_vec()).is_kerberos() {
        return Err(Error::UnknownMechanism);
    }
    let rest = r.rest();
    // TOK_ID 01 00: AP-REQ.
    if rest.get(..2) != Some(&[0x01, 0x00]) {
        return Err(Error::Malformed("not a Kerberos AP-REQ token"));
    }
    let message = &rest[2..];
    let mut r = Reader::new(message);
    let ap_req = r.expect(AP_REQ, "AP-REQ")?;
    r.finish("bytes after AP-REQ")?;
    let fields = Reader::new(ap_req).expect(SEQUENCE, "AP-REQ")?;
    let (mut ticket, mut authenticator) = (None, None);
    let mut fields = Reader::new(fields);
    while !fields.is_empty() {
        let (tag, value) = fields.any("AP-REQ field")?;
        if tag == context(3) {
            ticket = Some(Reader::new(value).expect(TICKET, "Ticket")?);
        } else if tag == context(4) {
            authenticator = Some(encrypted_data(value, "authenticator")?.1);
        }
    }
    let ticket = ticket.ok_or(Error::Malformed("AP-REQ without a ticket"))?;
    let authenticator = authenticator.ok_or(Error::Malformed("AP-REQ without an authenticator"))?;
    let (mut realm, mut service, mut ticket_enctype) = (None, None, None);
    let mut t = Reader::new(Reader::new(ticket).expect(SEQUENCE, "Ticket")?);
    while !t.is_empty() {
        let (tag, value) = t.any("Ticket field")?;
        if tag == context(1) {
            realm = Some(text(Reader::new(value).expect(GENERAL_STRING, "realm")?, "realm")?);
        } else if tag == context(2) {
            let mut name = Reader::new(Reader::new(value).expect(SEQUENCE, "PrincipalName")?);
            let mut parts = Vec::new();
            while !name.is_empty() {
                let (tag, value) = name.any("PrincipalName field")?;
                if tag == context(1) {
                    let mut strings = Reader::new(Reader::new(value).expect(SEQUENCE, "name-string")?);
                    while !strings.is_empty() {
                        if parts.len() == 8 {
                            return Err(Error::Malformed("service name with too many components"));
                        }
                        parts.push(text(strings.expect(GENERAL_STRING, "name component")?, "name component")?);
                    }
                }
            }
            if parts.is_empty() {
                return Err(Error::Malformed("empty service name"));
            }
            service = Some(parts.join("/"));
        } else if tag == context(3) {
            ticket_enctype = Some(encrypted_data(value, "ticket cipher")?.0);
        }
    }
    Ok(ApReq {
        service: service.ok_or(Error::Malformed("ticket without a service name"))?,
        realm: realm.ok_or(Error::Malformed("ticket without a realm"))?,
        ticket_enctype: ticket_enctype.ok_or(Error::Malformed("ticket without an enc-part"))?,
        authenticator,
        message,
    })
}

/// EncryptedData (RFC 4120 5.2.9): `etype [0] Int32` first, as MIT's decoder
/// requires, then the cipher `[2]`. Returns both.
fn encrypted_data<'a>(encrypted_data: &'a [u8], what: &'static str) -> Result<(i32, &'a [u8]), Error> {
    let mut parts = Reader::new(Reader::new(encrypted_data).expect(SEQUENCE, "EncryptedData")?);
    let etype = int32(Reader::new(parts.expect(context(0), "EncryptedData etype")?).expect(INTEGER, "etype")?)?;
    while !parts.is_empty() {
        let (tag, value) = parts.any("EncryptedData field")?;
        if tag == context(2) {
            let cipher = Reader::new(value).expect(OCTET_STRING, what)?;
            if cipher.is_empty() {
                return Err(Error::Malformed("empty ciphertext"));
            }
            return Ok((etype, cipher));
        }
    }
    Err(Error::Malformed("EncryptedData without a cipher"))
}

/// A DER INTEGER's content as an Int32: one to four bytes, two's complement.
/// (Longer encodings, which DER forbids for these values, are refused rather
/// than read differently from MIT.)
fn int32(bytes: &[u8]) -> Result<i32, Error> {
    let first = *bytes.first().ok_or(Error::Malformed("empty INTEGER"))?;
    if bytes.len() > 4 {
        return Err(Error::Malformed("INTEGER longer than an Int32"));
    }
    let sign = if first & 0x80 != 0 { -1i32 } else { 0 };
    Ok(bytes.iter().fold(sign, |acc, &b| (acc << 8) | i32::from(b)))
}

/// Names in tickets: printable ASCII only (AD's SPNs and realms are).
fn text(bytes: &[u8], what: &'static str) -> Result<String, Error> {
    if bytes.is_empty() || !bytes.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(Error::Malformed(what));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}
