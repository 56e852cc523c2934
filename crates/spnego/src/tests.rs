use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// What pyspnego 0.11 sends first for protocol="negotiate" without Kerberos:
/// NTLM alone in the list, its NEGOTIATE as the optimistic token.
const PYSPNEGO_INIT: &str = "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353500001000000378208e200000000280000000000000028000000000c04000000000f";

#[test]
fn reads_a_real_client_init() {
    let ClientToken::Init(init) = parse_client_token(&hex(PYSPNEGO_INIT)).unwrap() else { panic!() };
    assert_eq!(init.mech_types, vec![Oid(NTLMSSP.to_vec())]);
    assert!(init.mech_types[0].is_ntlm());
    assert_eq!(init.mech_types_der, hex("300c060a2b06010401823702020a"));
    assert!(init.mech_token.as_ref().unwrap().starts_with(b"NTLMSSP\0\x01\0\0\0"));
    assert_eq!(init.mech_list_mic, None);
    assert_eq!(init.mech_types[0].to_string(), "1.3.6.1.4.1.311.2.2.10");
}

#[test]
fn windows_style_list_and_round_trips() {
    let token = encode_init(&[MS_KRB5, KRB5, NTLMSSP], Some(b"\x60\x03abc"), None);
    let ClientToken::Init(init) = parse_client_token(&token).unwrap() else { panic!() };
    assert!(init.mech_types[0].is_kerberos() && init.mech_types[1].is_kerberos() && init.mech_types[2].is_ntlm());
    assert_eq!(init.mech_types[0].to_string(), "1.2.840.48018.1.2.2");
    assert_eq!(init.mech_token.as_deref(), Some(&b"\x60\x03abc"[..]));
    let resp = NegTokenResp {
        neg_state: Some(NegState::AcceptIncomplete),
        supported_mech: Some(Oid(NTLMSSP.to_vec())),
        response_token: Some(vec![0x55; 300]),
        mech_list_mic: Some(vec![1; 16]),
    };
    let bytes = encode_resp(&resp);
    assert_eq!(parse_client_token(&bytes), Ok(ClientToken::Resp(resp)));
    let client = encode_client_resp(Some(b"NTLMSSP\0\x03"), Some(&[9; 16]));
    let ClientToken::Resp(r) = parse_client_token(&client).unwrap() else { panic!() };
    assert_eq!(r.response_token.as_deref(), Some(&b"NTLMSSP\0\x03"[..]));
    assert_eq!(r.mech_list_mic.as_deref(), Some(&[9u8; 16][..]));
}

#[test]
fn raw_mechanism_tokens() {
    assert_eq!(parse_client_token(b"NTLMSSP\0\x01\0\0\0"), Ok(ClientToken::RawNtlm));
    let mut krb = vec![0x60, 0x0d, 0x06, 0x09];
    krb.extend_from_slice(KRB5);
    krb.extend_from_slice(&[0x01, 0x00]);
    assert_eq!(parse_client_token(&krb), Ok(ClientToken::RawKerberos));
    let mut other = vec![0x60, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04];
    assert_eq!(parse_client_token(&other), Err(Error::UnknownMechanism));
    other[1] = 0x06;
    assert!(matches!(parse_client_token(&other), Err(Error::Malformed(_))));
}

#[test]
fn refuses_malformed_tokens() {
    let good = hex(PYSPNEGO_INIT);
    // Every truncation is refused, none panics.
    for n in 0..good.len() {
        assert!(parse_client_token(&good[..n]).is_err(), "truncated to {n}");
    }
    // Trailing bytes.
    let mut b = good.clone();
    b.push(0);
    assert!(parse_client_token(&b).is_err());
    // Indefinite length (BER).
    let mut b = good.clone();
    b[1] = 0x80;
    assert_eq!(parse_client_token(&b), Err(Error::Malformed("indefinite length")));
    // A length far past the end, and a five-byte length.
    assert!(parse_client_token(&[0x60, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(parse_client_token(&[0x60, 0x85, 0, 0, 0, 0, 1, 0]).is_err());
    // No mechanisms.
    let empty = encode_init(&[], None, None);
    assert_eq!(parse_client_token(&empty), Err(Error::NoMechanisms));
    // Too many mechanisms.
    let many: Vec<&[u8]> = vec![KRB5; MAX_MECHS + 1];
    assert_eq!(parse_client_token(&encode_init(&many, None, None)), Err(Error::TooManyMechanisms));
    // Fields repeated or out of order.
    let resp = encode_client_resp(Some(b"x"), Some(b"y"));
    let ClientToken::Resp(_) = parse_client_token(&resp).unwrap() else { panic!() };
    let swapped = {
        // [1] { SEQ { [3] mic, [2] token } }
        let mic = der::Writer::tlv(0xa3, &der::Writer::tlv(0x04, b"y"));
        let tok = der::Writer::tlv(0xa2, &der::Writer::tlv(0x04, b"x"));
        der::Writer::tlv(0xa1, &der::Writer::tlv(0x30, &[mic, tok].concat()))
    };
    assert!(matches!(parse_client_token(&swapped), Err(Error::Malformed(_))));
    // An unknown negState.
    let bad_state = der::Writer::tlv(0xa1, &der::Writer::tlv(0x30, &der::Writer::tlv(0xa0, &[0x0a, 0x01, 0x07])));
    assert_eq!(parse_client_token(&bad_state), Err(Error::Malformed("unknown negState")));
    // Garbage.
    assert!(parse_client_token(&[]).is_err());
    assert!(parse_client_token(&[0x30, 0x00]).is_err());
}

#[test]
fn every_byte_flip_is_an_answer_not_a_panic() {
    let good = hex(PYSPNEGO_INIT);
    for i in 0..good.len() {
        for v in [0u8, 0x01, 0x7f, 0x80, 0x81, 0x84, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            let _ = parse_client_token(&b);
            fuzz_one(&b);
        }
    }
}

#[test]
fn kerberos_ap_req_fields_are_found_and_bad_shapes_refused() {
    use der::Writer as W;
    let enc = |c: &[u8]| W::tlv(0x30, &[W::tlv(0xa0, &W::tlv(0x02, &[18])), W::tlv(0xa2, &W::tlv(0x04, c))].concat());
    let sname = W::tlv(
        0x30,
        &[
            W::tlv(0xa0, &W::tlv(0x02, &[2])),
            W::tlv(0xa1, &W::tlv(0x30, &[W::tlv(0x1b, b"HTTP"), W::tlv(0x1b, b"mail.ad.test")].concat())),
        ]
        .concat(),
    );
    let ticket = W::tlv(
        0x61,
        &W::tlv(
            0x30,
            &[
                W::tlv(0xa0, &W::tlv(0x02, &[5])),
                W::tlv(0xa1, &W::tlv(0x1b, b"AD.TEST")),
                W::tlv(0xa2, &sname),
                W::tlv(0xa3, &enc(b"ticket cipher")),
            ]
            .concat(),
        ),
    );
    let ap_req_fields = |with_auth: bool| {
        let mut f = [
            W::tlv(0xa0, &W::tlv(0x02, &[5])),
            W::tlv(0xa1, &W::tlv(0x02, &[14])),
            W::tlv(0xa2, &W::tlv(0x03, &[0, 0, 0, 0, 0])),
            W::tlv(0xa3, &ticket),
        ]
        .concat();
        if with_auth {
            f.extend_from_slice(&W::tlv(0xa4, &enc(b"authenticator cipher")));
        }
        W::tlv(0x6e, &W::tlv(0x30, &f))
    };
    let token = |mech: &[u8], tok_id: &[u8], body: &[u8]| {
        W::tlv(0x60, &[W::tlv(0x06, mech), tok_id.to_vec(), body.to_vec()].concat())
    };
    let good = token(KRB5, &[1, 0], &ap_req_fields(true));
    let a = kerberos_ap_req(&good).unwrap();
    assert_eq!((a.service.as_str(), a.realm.as_str()), ("HTTP/mail.ad.test", "AD.TEST"));
    assert_eq!(a.authenticator, b"authenticator cipher");
    assert_eq!(a.ticket_enctype, 18);
    assert!(kerberos_ap_req(&token(MS_KRB5, &[1, 0], &ap_req_fields(true))).is_ok());
    assert_eq!(kerberos_ap_req(&token(NTLMSSP, &[1, 0], &ap_req_fields(true))), Err(Error::UnknownMechanism));
    assert!(kerberos_ap_req(&token(KRB5, &[2, 0], &ap_req_fields(true))).is_err(), "AP-REP is not an AP-REQ");
    assert_eq!(
        kerberos_ap_req(&token(KRB5, &[1, 0], &ap_req_fields(false))),
        Err(Error::Malformed("AP-REQ without an authenticator"))
    );
    for n in 0..good.len() {
        assert!(kerberos_ap_req(&good[..n]).is_err());
    }
    for i in 0..good.len() {
        for v in [0u8, 0x0a, 0x1b, 0x7f, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            let _ = kerberos_ap_req(&b);
        }
    }
}

/// The ticket's encryption type, which kcd refuses RC4 by before MIT decrypts
/// anything: read as MIT reads it, or the token is refused.
#[test]
fn the_ticket_enctype_is_read_as_an_int32_or_refused() {
    use der::Writer as W;
    let sname = W::tlv(0x30, &W::tlv(0xa1, &W::tlv(0x30, &[W::tlv(0x1b, b"HTTP"), W::tlv(0x1b, b"h")].concat())));
    let with_etype = |etype: Option<&[u8]>, ticket_enc_part: bool| {
        let mut enc = Vec::new();
        if let Some(e) = etype {
            enc.extend(W::tlv(0xa0, &W::tlv(0x02, e)));
        }
        enc.extend(W::tlv(0xa2, &W::tlv(0x04, b"cipher")));
        let enc = W::tlv(0x30, &enc);
        let mut fields = [W::tlv(0xa1, &W::tlv(0x1b, b"AD.TEST")), W::tlv(0xa2, &sname)].concat();
        if ticket_enc_part {
            fields.extend(W::tlv(0xa3, &enc));
        }
        let ticket = W::tlv(0x61, &W::tlv(0x30, &fields));
        let auth = W::tlv(0x30, &[W::tlv(0xa0, &W::tlv(0x02, &[18])), W::tlv(0xa2, &W::tlv(0x04, b"a"))].concat());
        let ap = W::tlv(0x6e, &W::tlv(0x30, &[W::tlv(0xa3, &ticket), W::tlv(0xa4, &auth)].concat()));
        W::tlv(0x60, &[W::tlv(0x06, KRB5), vec![1, 0], ap].concat())
    };
    for (bytes, value) in [
        (&[23][..], 23),
        (&[18], 18),
        (&[0x00, 0x80], 128),
        (&[0xff], -1),
        (&[0x80], -128),
        (&[0xff, 0x79], -135),
        (&[0x7f, 0xff, 0xff, 0xff], i32::MAX),
        (&[0x80, 0, 0, 0], i32::MIN),
    ] {
        assert_eq!(kerberos_ap_req(&with_etype(Some(bytes), true)).unwrap().ticket_enctype, value, "{bytes:x?}");
    }
    for (token, why) in [
        (with_etype(Some(&[]), true), "empty INTEGER"),
        (with_etype(Some(&[0, 0, 0, 0, 23]), true), "INTEGER longer than an Int32"),
        (with_etype(None, true), "EncryptedData etype"),
        (with_etype(Some(&[23]), false), "ticket without an enc-part"),
    ] {
        assert_eq!(kerberos_ap_req(&token), Err(Error::Malformed(why)));
    }
}
