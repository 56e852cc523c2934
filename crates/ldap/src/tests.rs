//! The decoder and the readers against hand-built messages, and against
//! every truncation and byte change of them.

use super::*;

/// A TLV with the length in Active Directory's style (always `0x84` and
/// four bytes), written independently of the crate's encoder.
fn long(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, 0x84];
    out.extend_from_slice(&(content.len() as u32).to_be_bytes());
    out.extend_from_slice(content);
    out
}

/// A TLV with a short-form length (content under 128 bytes).
fn short(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 0x80);
    let mut out = vec![tag, content.len() as u8];
    out.extend_from_slice(content);
    out
}

fn message(id: u8, op: Vec<u8>) -> Vec<u8> {
    long(0x30, &[vec![0x02, 0x01, id], op].concat())
}

fn result(code: u8, dn: &str, diagnostic: &[u8]) -> Vec<u8> {
    [vec![0x0a, 0x01, code], long(0x04, dn.as_bytes()), long(0x04, diagnostic)].concat()
}

fn bind_in_progress() -> Vec<u8> {
    message(1, long(0x61, &[result(14, "", b""), short(0x87, &[0x6f, 0x81, 0x02, 0xaa])].concat()))
}

fn bind_refused() -> Vec<u8> {
    let diag = b"00002028: LdapErr: DSID-0C090259, comment: The server requires binds to turn on integrity checking\0";
    message(2, long(0x61, &result(8, "", diag)))
}

fn entry() -> Vec<u8> {
    let sid = [1u8, 1, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0];
    let attrs = [
        long(
            0x30,
            &[long(0x04, b"objectClass"), long(0x31, &[long(0x04, b"top"), long(0x04, b"group")].concat())].concat(),
        ),
        long(0x30, &[long(0x04, b"objectSid"), long(0x31, &long(0x04, &sid))].concat()),
        long(0x30, &[long(0x04, b"member"), long(0x31, b"")].concat()),
    ]
    .concat();
    message(3, long(0x64, &[long(0x04, b"CN=Finance,CN=Users,DC=ad,DC=test"), long(0x30, &attrs)].concat()))
}

fn reference() -> Vec<u8> {
    message(3, long(0x73, &long(0x04, b"ldap://ad.test/CN=Configuration,DC=ad,DC=test")))
}

fn done() -> Vec<u8> {
    message(3, long(0x65, &result(0, "", b"")))
}

fn disconnection() -> Vec<u8> {
    let ext = [result(52, "", b"the server is going away"), short(0x8a, b"1.3.6.1.4.1.1466.20036")].concat();
    message(0, long(0x78, &ext))
}

fn with_controls() -> Vec<u8> {
    let control = short(0x30, &short(0x04, b"1.2.840.113556.1.4.319"));
    let body =
        [vec![0x02, 0x01, 0x04], short(0x65, &[0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]), short(0xa0, &control)]
            .concat();
    short(0x30, &body)
}

fn samples() -> Vec<Vec<u8>> {
    vec![bind_in_progress(), bind_refused(), entry(), reference(), done(), disconnection(), with_controls()]
}

#[test]
fn a_bind_in_progress_carries_the_servers_token() {
    let m = decode_message(&bind_in_progress()).unwrap();
    assert_eq!(m.id, 1);
    let Response::Bind(b) = m.op else { panic!("{m:?}") };
    assert_eq!(b.result.code, code::SASL_BIND_IN_PROGRESS);
    assert_eq!(b.server_sasl_creds.as_deref(), Some(&[0x6f, 0x81, 0x02, 0xaa][..]));
}

#[test]
fn a_refused_bind_says_why_without_ads_trailing_nul() {
    let m = decode_message(&bind_refused()).unwrap();
    let Response::Bind(b) = m.op else { panic!("{m:?}") };
    assert_eq!((b.result.code, code_name(b.result.code)), (8, "strongerAuthRequired"));
    assert!(b.result.diagnostic.starts_with("00002028: LdapErr"));
    assert!(b.result.diagnostic.ends_with("integrity checking"), "{:?}", b.result.diagnostic);
    assert_eq!(b.server_sasl_creds, None);
}

#[test]
fn an_entry_keeps_its_attributes_and_binary_values() {
    let m = decode_message(&entry()).unwrap();
    let Response::Entry(e) = m.op else { panic!("{m:?}") };
    assert_eq!(e.dn, "CN=Finance,CN=Users,DC=ad,DC=test");
    assert_eq!(e.attribute("OBJECTCLASS").unwrap().values, [b"top".to_vec(), b"group".to_vec()]);
    assert_eq!(e.single("objectsid"), Some(&[1u8, 1, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0][..]));
    assert_eq!(e.single("objectClass"), None, "two values are not one");
    assert_eq!(e.single("member"), None, "no value is not one");
    assert!(e.attribute("member").unwrap().values.is_empty());
    assert!(e.attribute("cn").is_none());
}

#[test]
fn references_done_notices_and_controls() {
    assert_eq!(decode_message(&reference()).unwrap().op, Response::Reference);
    let m = decode_message(&done()).unwrap();
    assert_eq!(
        (m.id, m.op),
        (3, Response::Done(LdapResult { code: 0, matched_dn: String::new(), diagnostic: String::new() }))
    );
    let m = decode_message(&disconnection()).unwrap();
    let Response::Extended(x) = m.op else { panic!("{m:?}") };
    assert_eq!((m.id, x.result.code, x.name.as_deref()), (0, 52, Some("1.3.6.1.4.1.1466.20036")));
    assert_eq!(x.result.diagnostic, "the server is going away");
    let m = decode_message(&with_controls()).unwrap();
    assert!(matches!(m.op, Response::Done(LdapResult { code: 0, .. })), "{m:?}");
}

#[test]
fn wrong_tags_and_shapes_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a SEQUENCE", short(0x31, &[0x02, 0x01, 0x01, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00])),
        ("a request, not a response", message(1, long(0x60, &[0x02, 0x01, 0x03]))),
        ("an IntermediateResponse", message(1, short(0x79, &[]))),
        ("resultCode as INTEGER", message(1, short(0x65, &[0x02, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]))),
        ("id as ENUMERATED", long(0x30, &[vec![0x0a, 0x01, 0x01], long(0x65, &result(0, "", b""))].concat())),
        ("a negative id", long(0x30, &[vec![0x02, 0x01, 0xff], long(0x65, &result(0, "", b""))].concat())),
        (
            "an id beyond maxInt",
            long(0x30, &[vec![0x02, 0x05, 0x00, 0x80, 0, 0, 0], long(0x65, &result(0, "", b""))].concat()),
        ),
        ("an empty id", long(0x30, &[vec![0x02, 0x00], long(0x65, &result(0, "", b""))].concat())),
        ("no operation", short(0x30, &[0x02, 0x01, 0x01])),
        ("a constructed diagnostic", message(1, short(0x65, &[0x0a, 0x01, 0x00, 0x04, 0x00, 0x24, 0x00]))),
        ("a result without diagnostic", message(1, short(0x65, &[0x0a, 0x01, 0x00, 0x04, 0x00]))),
        ("bytes after the result", message(1, short(0x65, &[0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00, 0x05, 0x00]))),
        ("a DN that is not UTF-8", message(1, short(0x65, &[0x0a, 0x01, 0x00, 0x04, 0x01, 0xff, 0x04, 0x00]))),
        ("a reference without URIs", message(1, short(0x73, &[]))),
        ("a reference holding a SEQUENCE", message(1, short(0x73, &[0x30, 0x00]))),
        ("creds as OCTET STRING", message(1, long(0x61, &[result(14, "", b""), short(0x04, b"x")].concat()))),
        ("an entry's values as SEQUENCE", {
            let attr = short(0x30, &[short(0x04, b"cn"), short(0x30, &short(0x04, b"x"))].concat());
            message(1, short(0x64, &[short(0x04, b"CN=x"), short(0x30, &attr)].concat()))
        }),
        ("an entry's value as INTEGER", {
            let attr = short(0x30, &[short(0x04, b"cn"), short(0x31, &[0x02, 0x01, 0x01])].concat());
            message(1, short(0x64, &[short(0x04, b"CN=x"), short(0x30, &attr)].concat()))
        }),
        ("bytes after the message", [done(), vec![0x00]].concat()),
        ("controls not [0]", {
            let body =
                [vec![0x02, 0x01, 0x04], short(0x65, &[0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]), short(0xa1, &[])];
            short(0x30, &body.concat())
        }),
        ("indefinite length", vec![0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00]),
        ("a five-byte length", vec![0x30, 0x85, 0, 0, 0, 0, 3, 0x02, 0x01, 0x01]),
        ("a multi-byte tag", vec![0x30, 0x05, 0x02, 0x01, 0x01, 0x7f, 0x00]),
    ];
    for (what, bytes) in cases {
        let e = decode_message(&bytes);
        assert!(matches!(e, Err(Error::Malformed { .. })), "{what}: {e:?}");
    }
}

#[test]
fn every_truncation_is_refused_and_the_reader_waits_for_the_rest() {
    for sample in samples() {
        for len in 0..sample.len() {
            let cut = &sample[..len];
            assert!(decode_message(cut).is_err(), "{len} of {}", sample.len());
            let mut r = MessageReader::new(1 << 16);
            r.feed(cut);
            assert_eq!(r.next_message(), Ok(None), "{len} of {}", sample.len());
            r.feed(&sample[len..]);
            assert_eq!(r.next_message().unwrap().unwrap(), decode_message(&sample).unwrap());
            assert_eq!(r.buffered(), 0);
        }
    }
}

#[test]
fn every_byte_flipped_never_panics_and_the_streams_agree() {
    for sample in samples() {
        for i in 0..sample.len() {
            // Lengths one off either way, and the values that change a
            // length's form.
            let b = sample[i];
            for value in [0x00, 0xff, b ^ 0x01, b ^ 0x80, b.wrapping_add(1), b.wrapping_sub(1), 0x80, 0x84, 0x7f] {
                let mut bytes = sample.clone();
                bytes[i] = value;
                fuzz_one(&bytes);
            }
        }
        fuzz_one(&sample);
    }
}

#[test]
fn the_message_reader_splits_and_bounds() {
    let mut r = MessageReader::new(1 << 16);
    r.feed(&[entry(), reference(), done()].concat());
    assert!(matches!(r.next_message().unwrap().unwrap().op, Response::Entry(_)));
    assert_eq!(r.next_message().unwrap().unwrap().op, Response::Reference);
    assert!(matches!(r.next_message().unwrap().unwrap().op, Response::Done(_)));
    assert_eq!(r.next_message(), Ok(None));

    // Refused at the header, before the content is there.
    let big = entry();
    let mut r = MessageReader::new(big.len() - 1);
    r.feed(&big[..6]);
    assert!(matches!(r.next_message(), Err(Error::TooLarge { .. })));
    let mut r = MessageReader::new(big.len());
    r.feed(&big);
    assert!(r.next_message().unwrap().is_some(), "exactly the limit is accepted");

    // A stream that is not LDAP.
    let mut r = MessageReader::new(1 << 16);
    r.feed(b"HTTP/1.1 400 Bad Request\r\n");
    assert!(matches!(r.next_message(), Err(Error::Malformed { at: 0, .. })));
    // A bad second message is placed in the stream.
    let mut r = MessageReader::new(1 << 16);
    let first = done();
    r.feed(&first);
    r.feed(&[0x30, 0x03, 0x02, 0x01, 0x01]);
    r.next_message().unwrap().unwrap();
    let Err(Error::Malformed { at, .. }) = r.next_message() else { panic!() };
    assert!(at >= first.len(), "{at}");
}

#[test]
fn frames_across_feeds_several_per_feed_and_bounded() {
    let a = frame(b"first").unwrap();
    let b = frame(&[7u8; 300]).unwrap();
    assert_eq!(&a[..4], [0, 0, 0, 5]);
    assert_eq!(&b[..4], [0, 0, 1, 44]);
    let stream = [a.clone(), b.clone()].concat();
    for split in 0..stream.len() {
        let mut r = FrameReader::new(1000);
        r.feed(&stream[..split]);
        let mut got = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            got.push(f);
        }
        r.feed(&stream[split..]);
        while let Some(f) = r.next_frame().unwrap() {
            got.push(f);
        }
        assert_eq!(got, [b"first".to_vec(), vec![7u8; 300]], "split at {split}");
        assert_eq!(r.buffered(), 0);
    }
    // Refused on the length alone.
    let mut r = FrameReader::new(299);
    r.feed(&b[..4]);
    assert_eq!(r.next_frame(), Err(Error::TooLarge { what: "a security layer frame", len: 300, max: 299 }));
    let mut r = FrameReader::new(1000);
    r.feed(&[0, 0, 0, 0]);
    assert!(matches!(r.next_frame(), Err(Error::Malformed { .. })), "an empty frame");
    let mut r = FrameReader::new(usize::MAX);
    r.feed(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
    assert_eq!(r.next_frame(), Ok(None), "a huge frame under a huge limit just waits");
}

#[test]
fn security_layer_messages() {
    let offer = SecurityLayer::decode(&[0x07, 0x98, 0x96, 0x80]).unwrap();
    assert_eq!(offer, SecurityLayer { layers: 0x07, max_size: 10_000_000 });
    for bad in [&[][..], &[0x07, 0, 0], &[0x07, 0, 0, 1, 0]] {
        assert!(SecurityLayer::decode(bad).is_err(), "{bad:?}");
    }
    let choice = choose_integrity(&offer, 1 << 20).unwrap();
    assert_eq!(choice, SecurityLayer { layers: LAYER_INTEGRITY, max_size: 1 << 20 });
    assert_eq!(choice.encode(b"").unwrap(), [0x02, 0x10, 0x00, 0x00]);
    assert_eq!(choice.encode(b"u:x").unwrap(), [0x02, 0x10, 0x00, 0x00, b'u', b':', b'x']);
    assert_eq!(choose_integrity(&offer, u32::MAX).unwrap().max_size, MAX_SIZE);
    assert!(SecurityLayer { layers: 2, max_size: MAX_SIZE + 1 }.encode(b"").is_err());

    for (layers, max) in [(LAYER_NONE, 0), (LAYER_CONFIDENTIALITY, 65536), (LAYER_NONE | LAYER_CONFIDENTIALITY, 1)] {
        let e = choose_integrity(&SecurityLayer { layers, max_size: max }, 1 << 20).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{layers}: {e}");
    }
    let e = choose_integrity(&SecurityLayer { layers: LAYER_INTEGRITY, max_size: 0 }, 1 << 20).unwrap_err();
    assert!(e.to_string().contains("size 0"), "{e}");
}

/// What the crate sends, read back by its own decoder's BER reader: the
/// requests are well-formed elements with nothing after them.
#[test]
fn requests_are_single_well_formed_messages() {
    let filter = Filter::And(vec![Filter::equal("sAMAccountName", "alice"), Filter::present("objectSid")]);
    let attrs = ["objectSid"; 40];
    let s = Search {
        base: "DC=ad,DC=test",
        scope: Scope::Subtree,
        size_limit: 2,
        time_limit: 10,
        filter: &filter,
        attributes: &attrs,
    };
    for bytes in [request::bind_sasl(1, "GSSAPI", Some(&[0u8; 3000])), request::search(2, &s), request::unbind(3)] {
        let mut r = ber::Reader::new(&bytes);
        let mut m = r.expect(0x30, "message").unwrap();
        r.finish("after").unwrap();
        m.small_uint(0x02, "id").unwrap();
        m.any("op").unwrap();
        m.finish("after op").unwrap();
    }
}

/// Bytes cut out, repeated and overwritten at random places of every
/// sample, through the fuzz entry (which also checks that the stream
/// reader agrees with the one-shot decoder).
#[test]
fn generated_mutations_through_the_fuzz_entry() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut decoded = 0;
    for sample in samples() {
        for _ in 0..2000 {
            let mut b = sample.clone();
            for _ in 0..1 + next() % 3 {
                if b.is_empty() {
                    break;
                }
                let i = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[i] = next() as u8,
                    1 => {
                        let n = (next() as usize % 8).min(b.len() - i);
                        b.drain(i..i + n);
                    }
                    _ => {
                        let chunk: Vec<u8> = b[i..(i + 6).min(b.len())].to_vec();
                        b.splice(i..i, chunk);
                    }
                }
            }
            decoded += usize::from(decode_message(&b).is_ok());
            fuzz_one(&b);
        }
    }
    // Some mutations keep a valid message (a changed value byte): the
    // decoder is not refusing everything.
    assert!(decoded > 0);
}
