//! The requests gatehouse sends (RFC 4511 4.2, 4.3, 4.5.1): a SASL bind, a
//! search, an unbind. Filters are built as values, never parsed from text:
//! a name from the configuration is an assertion value, whatever characters
//! it holds, so no escaping exists that could be got wrong.

use crate::ber::{integer, tlv};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
const BOOLEAN: u8 = 0x01;
const BIND_REQUEST: u8 = 0x60;
const UNBIND_REQUEST: u8 = 0x42;
const SEARCH_REQUEST: u8 = 0x63;
/// AuthenticationChoice `sasl [3] SaslCredentials`.
const AUTH_SASL: u8 = 0xa3;
const FILTER_AND: u8 = 0xa0;
const FILTER_EQUALITY: u8 = 0xa3;
const FILTER_PRESENT: u8 = 0x87;

/// A search filter (RFC 4511 4.5.1.7), the kinds gatehouse needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every filter matches.
    And(Vec<Filter>),
    /// `attribute` has a value equal to `value` (by the attribute's matching rule:
    /// case-insensitive for names in AD).
    Equal { attribute: String, value: Vec<u8> },
    /// `attribute` has a value.
    Present(String),
}

impl Filter {
    pub fn equal(attribute: &str, value: impl Into<Vec<u8>>) -> Filter {
        Filter::Equal { attribute: attribute.to_owned(), value: value.into() }
    }

    pub fn present(attribute: &str) -> Filter {
        Filter::Present(attribute.to_owned())
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Filter::And(parts) => tlv(FILTER_AND, &parts.iter().map(Filter::encode).collect::<Vec<_>>().concat()),
            Filter::Equal { attribute, value } => {
                tlv(FILTER_EQUALITY, &[tlv(OCTET_STRING, attribute.as_bytes()), tlv(OCTET_STRING, value)].concat())
            }
            Filter::Present(attribute) => tlv(FILTER_PRESENT, attribute.as_bytes()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base object alone (the root DSE).
    Base,
    /// The base object and everything below it.
    Subtree,
}

/// A SearchRequest. Aliases are never dereferenced; types come with values.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub base: &'a str,
    pub scope: Scope,
    /// At most this many entries (0: the server's own limit).
    pub size_limit: u32,
    /// At most this many seconds of the server's time (0: its own limit).
    pub time_limit: u32,
    pub filter: &'a Filter,
    pub attributes: &'a [&'a str],
}

/// The highest message id (RFC 4511 4.1.1: `MessageID ::= INTEGER (0 .. maxInt)`).
pub const MAX_MESSAGE_ID: u32 = i32::MAX as u32;

fn message(id: u32, op: Vec<u8>) -> Vec<u8> {
    // Ids come from the caller's counter, which starts at 1; one beyond
    // maxInt would be a caller's bug, and is kept in range rather than sent.
    let id = i64::from(id.min(MAX_MESSAGE_ID));
    tlv(SEQUENCE, &[integer(INTEGER, id), op].concat())
}

/// A SASL BindRequest (LDAPv3, empty name) for `mechanism`, with the
/// credentials of this step (None on none).
pub fn bind_sasl(id: u32, mechanism: &str, credentials: Option<&[u8]>) -> Vec<u8> {
    let mut sasl = tlv(OCTET_STRING, mechanism.as_bytes());
    if let Some(c) = credentials {
        sasl.extend(tlv(OCTET_STRING, c));
    }
    let bind = [integer(INTEGER, 3), tlv(OCTET_STRING, b""), tlv(AUTH_SASL, &sasl)].concat();
    message(id, tlv(BIND_REQUEST, &bind))
}

pub fn search(id: u32, s: &Search<'_>) -> Vec<u8> {
    let scope = match s.scope {
        Scope::Base => 0,
        Scope::Subtree => 2,
    };
    let attributes: Vec<u8> = s.attributes.iter().flat_map(|a| tlv(OCTET_STRING, a.as_bytes())).collect();
    let body = [
        tlv(OCTET_STRING, s.base.as_bytes()),
        integer(ENUMERATED, scope),
        // derefAliases: neverDerefAliases.
        integer(ENUMERATED, 0),
        integer(INTEGER, i64::from(s.size_limit.min(MAX_MESSAGE_ID))),
        integer(INTEGER, i64::from(s.time_limit.min(MAX_MESSAGE_ID))),
        // typesOnly: FALSE.
        tlv(BOOLEAN, &[0x00]),
        s.filter.encode(),
        tlv(SEQUENCE, &attributes),
    ]
    .concat();
    message(id, tlv(SEARCH_REQUEST, &body))
}

pub fn unbind(id: u32) -> Vec<u8> {
    message(id, tlv(UNBIND_REQUEST, b""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written out by hand from RFC 4511's ASN.1, element by element.
    #[test]
    fn a_sasl_bind_as_rfc_4511_spells_it() {
        let got = bind_sasl(1, "GSSAPI", Some(&[0xde, 0xad]));
        #[rustfmt::skip]
        let want = [
            0x30, 0x18,                         // LDAPMessage
              0x02, 0x01, 0x01,                 //   messageID 1
              0x60, 0x13,                       //   [APPLICATION 0] BindRequest
                0x02, 0x01, 0x03,               //     version 3
                0x04, 0x00,                     //     name ""
                0xa3, 0x0c,                     //     [3] SaslCredentials
                  0x04, 0x06, b'G', b'S', b'S', b'A', b'P', b'I',
                  0x04, 0x02, 0xde, 0xad,       //       credentials
        ];
        assert_eq!(got, want);
        // No credentials: the element is left out, not sent empty.
        let none = bind_sasl(2, "GSSAPI", None);
        assert_eq!(&none[..7], [0x30, 0x14, 0x02, 0x01, 0x02, 0x60, 0x0f]);
        assert!(!none.ends_with(&[0x04, 0x00]));
        let empty = bind_sasl(2, "GSSAPI", Some(b""));
        assert!(empty.ends_with(&[b'I', 0x04, 0x00]));
    }

    #[test]
    fn a_search_with_an_and_filter_as_rfc_4511_spells_it() {
        let filter = Filter::And(vec![Filter::equal("cn", "a*)(b"), Filter::present("objectSid")]);
        let got = search(
            7,
            &Search {
                base: "DC=x",
                scope: Scope::Subtree,
                size_limit: 2,
                time_limit: 300,
                filter: &filter,
                attributes: &["cn", "sn"],
            },
        );
        #[rustfmt::skip]
        let want = [
            0x30, 0x3f,
              0x02, 0x01, 0x07,
              0x63, 0x3a,
                0x04, 0x04, b'D', b'C', b'=', b'x',
                0x0a, 0x01, 0x02,                  // wholeSubtree
                0x0a, 0x01, 0x00,                  // neverDerefAliases
                0x02, 0x01, 0x02,                  // sizeLimit 2
                0x02, 0x02, 0x01, 0x2c,            // timeLimit 300
                0x01, 0x01, 0x00,                  // typesOnly FALSE
                0xa0, 0x18,                        // and
                  0xa3, 0x0b,                      //   equalityMatch
                    0x04, 0x02, b'c', b'n',
                    0x04, 0x05, b'a', b'*', b')', b'(', b'b',
                  0x87, 0x09, b'o', b'b', b'j', b'e', b'c', b't', b'S', b'i', b'd',
                0x30, 0x08,
                  0x04, 0x02, b'c', b'n',
                  0x04, 0x02, b's', b'n',
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_base_search_and_an_unbind() {
        let filter = Filter::present("objectClass");
        let got = search(
            1,
            &Search { base: "", scope: Scope::Base, size_limit: 1, time_limit: 0, filter: &filter, attributes: &[] },
        );
        assert_eq!(&got[..9], [0x30, 0x25, 0x02, 0x01, 0x01, 0x63, 0x20, 0x04, 0x00]);
        assert_eq!(&got[9..12], [0x0a, 0x01, 0x00], "baseObject");
        assert!(got.ends_with(&[0x30, 0x00]), "no attributes asked");
        assert_eq!(unbind(3), [0x30, 0x05, 0x02, 0x01, 0x03, 0x42, 0x00]);
    }

    #[test]
    fn message_ids_stay_in_range() {
        let top = unbind(u32::MAX);
        assert_eq!(top, unbind(MAX_MESSAGE_ID));
        assert_eq!(&top[2..8], [0x02, 0x04, 0x7f, 0xff, 0xff, 0xff]);
        let big = unbind(0x80);
        assert_eq!(&big[2..6], [0x02, 0x02, 0x00, 0x80], "a leading zero keeps it positive");
    }
}
