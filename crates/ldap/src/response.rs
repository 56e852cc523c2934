//! LDAPMessages from the server (RFC 4511 4.1.1, 4.1.9, 4.2.2, 4.5.2, 4.5.3,
//! 4.12), decoded from untrusted bytes: the responses to gatehouse's own
//! requests, and the unsolicited notice a server sends before it drops the
//! connection. The grammar is walked by hand, so nesting is fixed by it
//! (message, operation, attribute list, attribute, value set, value);
//! controls and referrals are checked to be elements and skipped.

use crate::ber::Reader;
use crate::Error;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
const BIND_RESPONSE: u8 = 0x61;
const SEARCH_RESULT_ENTRY: u8 = 0x64;
const SEARCH_RESULT_DONE: u8 = 0x65;
const SEARCH_RESULT_REFERENCE: u8 = 0x73;
const EXTENDED_RESPONSE: u8 = 0x78;
/// LDAPResult's `referral [3] Referral OPTIONAL`.
const REFERRAL: u8 = 0xa3;
/// BindResponse's `serverSaslCreds [7] OCTET STRING OPTIONAL`.
const SERVER_SASL_CREDS: u8 = 0x87;
/// ExtendedResponse's `responseName [10]` and `responseValue [11]`.
const RESPONSE_NAME: u8 = 0x8a;
const RESPONSE_VALUE: u8 = 0x8b;
/// LDAPMessage's `controls [0] Controls OPTIONAL`.
const CONTROLS: u8 = 0xa0;

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The id of the request it answers; 0 for an unsolicited notification.
    pub id: u32,
    pub op: Response,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Bind(BindResponse),
    Entry(SearchEntry),
    /// A continuation reference (to another naming context or domain): its
    /// URIs are not kept, gatehouse searches one domain.
    Reference,
    Done(LdapResult),
    /// An ExtendedResponse: unsolicited (id 0), it is the Notice of
    /// Disconnection (RFC 4511 4.4.1).
    Extended(ExtendedResponse),
}

/// LDAPResult (RFC 4511 4.1.9); a referral, when present, is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapResult {
    pub code: u32,
    pub matched_dn: String,
    /// As sent, except for the NUL that Active Directory ends it with;
    /// invalid UTF-8 replaced. Untrusted text: escape it before logging.
    pub diagnostic: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindResponse {
    pub result: LdapResult,
    pub server_sasl_creds: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEntry {
    pub dn: String,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute description as the server spells it.
    pub name: String,
    pub values: Vec<Vec<u8>>,
}

impl SearchEntry {
    /// The attribute named `name` (attribute descriptions are case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The one value of a single-valued attribute; None when it is absent or
    /// has other than one value.
    pub fn single(&self, name: &str) -> Option<&[u8]> {
        match self.attribute(name)?.values.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedResponse {
    pub result: LdapResult,
    pub name: Option<String>,
}

/// Result codes (RFC 4511 4.1.9, Appendix A) that gatehouse acts on.
pub mod code {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const STRONGER_AUTH_REQUIRED: u32 = 8;
    pub const REFERRAL: u32 = 10;
    pub const SASL_BIND_IN_PROGRESS: u32 = 14;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INVALID_CREDENTIALS: u32 = 49;
}

/// A result code's name, for messages.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        14 => "saslBindInProgress",
        16 => "noSuchAttribute",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "unknown result code",
    }
}

/// Decodes exactly one LDAPMessage: `bytes` must hold it and nothing else.
pub fn decode_message(bytes: &[u8]) -> Result<Message, Error> {
    let mut outer = Reader::new(bytes);
    let mut msg = outer.expect(SEQUENCE, "an LDAPMessage (a SEQUENCE)")?;
    outer.finish("bytes after the LDAPMessage")?;
    let id = msg.small_uint(INTEGER, "the message id")?;
    let op_at = msg.at();
    let (tag, mut body) = msg.any("the protocol operation")?;
    let op = match tag {
        BIND_RESPONSE => {
            let result = ldap_result(&mut body)?;
            let creds = body.optional(SERVER_SASL_CREDS, "serverSaslCreds")?.map(|r| r.bytes().to_vec());
            body.finish("bytes after the BindResponse")?;
            Response::Bind(BindResponse { result, server_sasl_creds: creds })
        }
        SEARCH_RESULT_ENTRY => Response::Entry(search_entry(&mut body)?),
        SEARCH_RESULT_REFERENCE => {
            // SEQUENCE SIZE (1..MAX) OF URI.
            if body.is_empty() {
                return Err(Error::malformed("a SearchResultReference without URIs", body.at()));
            }
            while !body.is_empty() {
                body.octets(OCTET_STRING, "a SearchResultReference URI")?;
            }
            Response::Reference
        }
        SEARCH_RESULT_DONE => {
            let result = ldap_result(&mut body)?;
            body.finish("bytes after the SearchResultDone")?;
            Response::Done(result)
        }
        EXTENDED_RESPONSE => {
            let result = ldap_result(&mut body)?;
            let name = match body.peek_tag() {
                Some(RESPONSE_NAME) => Some(body.text(RESPONSE_NAME, "responseName")?),
                _ => None,
            };
            body.optional(RESPONSE_VALUE, "responseValue")?;
            body.finish("bytes after the ExtendedResponse")?;
            Response::Extended(ExtendedResponse { result, name })
        }
        _ => return Err(Error::malformed("a protocol operation this client never asks for", op_at)),
    };
    // Controls are not asked for; a server's are checked to be one element.
    msg.optional(CONTROLS, "the controls")?;
    msg.finish("bytes after the protocol operation")?;
    Ok(Message { id, op })
}

fn ldap_result(r: &mut Reader<'_>) -> Result<LdapResult, Error> {
    let code = r.small_uint(ENUMERATED, "a resultCode")?;
    let matched_dn = r.text(OCTET_STRING, "a matchedDN")?;
    let diagnostic = r.octets(OCTET_STRING, "a diagnosticMessage")?;
    let diagnostic = String::from_utf8_lossy(diagnostic).trim_end_matches('\0').to_owned();
    r.optional(REFERRAL, "a referral")?;
    Ok(LdapResult { code, matched_dn, diagnostic })
}

fn search_entry(r: &mut Reader<'_>) -> Result<SearchEntry, Error> {
    let dn = r.text(OCTET_STRING, "an entry's objectName")?;
    let mut list = r.expect(SEQUENCE, "an entry's attribute list")?;
    r.finish("bytes after the SearchResultEntry")?;
    let mut attributes = Vec::new();
    while !list.is_empty() {
        let mut attr = list.expect(SEQUENCE, "a PartialAttribute")?;
        let name = attr.text(OCTET_STRING, "an attribute description")?;
        let mut vals = attr.expect(SET, "an attribute's value set")?;
        attr.finish("bytes after an attribute's values")?;
        let mut values = Vec::new();
        while !vals.is_empty() {
            values.push(vals.octets(OCTET_STRING, "an attribute value")?.to_vec());
        }
        attributes.push(Attribute { name, values });
    }
    Ok(SearchEntry { dn, attributes })
}
