use super::*;
use crate::wire::utf16le;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// MS-NLMP 4.2.2.1.2 / 4.2.4: published NTLMv2 test vectors.
#[test]
fn spec_vectors() {
    let nt = crypto::nt_hash("Password");
    assert_eq!(nt.to_vec(), hex("a4f49c406510bdcab6824ee7c30fd852"));
    let key = crypto::ntowf_v2(&nt, "User", "Domain");
    assert_eq!(key.to_vec(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
    let pairs =
        AvPairs(vec![(av::NB_DOMAIN_NAME, utf16le("Domain")), (av::NB_COMPUTER_NAME, utf16le("Server"))]).encode();
    let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
    temp.extend_from_slice(&[0; 8]); // time
    temp.extend_from_slice(&[0xaa; 8]); // client challenge
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(&pairs);
    temp.extend_from_slice(&[0; 4]);
    let server_challenge: [u8; 8] = hex("0123456789abcdef").try_into().unwrap();
    let proof = crypto::nt_proof(&key, &server_challenge, &temp);
    assert_eq!(proof.to_vec(), hex("68cd0ab851e51c96aabc927bebef6a1c"));
    let base = crypto::session_base_key(&key, &proof);
    assert_eq!(base.to_vec(), hex("8de40ccadbc14a82f15cb0ad0de95ca3"));
    // Key exchange: RandomSessionKey 0x55.. wrapped with the key exchange key.
    assert_eq!(crypto::rc4(&base, &[0x55; 16]).to_vec(), hex("c5dad2544fc9799094ce1ce90bc9d03e"));
}

use crate::client::Client;

const NOW: FileTime = FileTime(133_000_000_000_000_000);

fn config(policy: ChannelBindingPolicy) -> AcceptorConfig {
    AcceptorConfig { channel_binding: policy, ..AcceptorConfig::example() }
}

/// Runs a whole handshake; `tamper` may change the AUTHENTICATE before it is read.
fn handshake(
    client: &Client,
    config: &AcceptorConfig,
    server_password: &str,
    expected_bindings: Option<[u8; 16]>,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Result<Authenticated, Error> {
    let negotiate = client.negotiate();
    let sent = Acceptor::challenge(config, &negotiate, [0x42; 8], NOW)?;
    let mut auth = client.authenticate(&negotiate, sent.message());
    tamper(&mut auth);
    let received = sent.read_authenticate(&auth)?;
    let key = received.verify_with_nt_hash(&crypto::nt_hash(server_password))?;
    received.finish(key, expected_bindings, NOW)
}

fn ok(_: &mut Vec<u8>) {}

#[test]
fn good_handshake_is_accepted() {
    let who = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, ok).unwrap();
    assert_eq!((who.user.as_str(), who.domain.as_str(), who.workstation.as_str()), ("bob", "ADTEST", "LAPTOP"));
}

#[test]
fn without_key_exchange_or_mic_is_accepted() {
    let mut c = Client::new("bob", "Bob-Pass1");
    c.flags &= !KEY_EXCH;
    assert!(handshake(&c, &AcceptorConfig::example(), "Bob-Pass1", None, ok).is_ok());
    c.mic = false;
    assert!(handshake(&c, &AcceptorConfig::example(), "Bob-Pass1", None, ok).is_ok());
}

#[test]
fn wrong_password_is_refused() {
    let r = handshake(&Client::new("bob", "guess"), &AcceptorConfig::example(), "Bob-Pass1", None, ok);
    assert_eq!(r, Err(Error::BadProof));
}

#[test]
fn proof_of_another_user_is_refused() {
    // alice's valid proof presented under bob's name
    let mut c = Client::new("bob", "Alice-Pass1");
    c.proof_user = "alice";
    assert_eq!(handshake(&c, &AcceptorConfig::example(), "Alice-Pass1", None, ok), Err(Error::BadProof));
    assert_eq!(handshake(&c, &AcceptorConfig::example(), "Bob-Pass1", None, ok), Err(Error::BadProof));
}

/// Samba's rule: the proof may be over the domain as sent, in capitals, or
/// none; never over another one.
#[test]
fn proof_over_the_domain_in_capitals_or_none_is_accepted_and_no_other() {
    let with = |domain: &'static str, proof_domain: &'static str| {
        let mut c = Client::new("bob", "Bob-Pass1");
        c.domain = domain;
        c.proof_domain = Some(proof_domain);
        handshake(&c, &AcceptorConfig::example(), "Bob-Pass1", None, ok)
    };
    for (domain, proof_domain) in [("adtest", "adtest"), ("adtest", "ADTEST"), ("ADTEST", ""), ("", "")] {
        let who = with(domain, proof_domain).unwrap_or_else(|e| panic!("{domain:?} over {proof_domain:?}: {e}"));
        // The names stay the ones sent; the MIC, keyed by the session key of
        // the domain that matched, verified.
        assert_eq!((who.user.as_str(), who.domain.as_str()), ("bob", domain));
    }
    for (domain, proof_domain) in [("ADTEST", "adtest"), ("ADTEST", "OTHER"), ("", "ADTEST"), ("ADTEST", "ADTEST ")] {
        assert_eq!(with(domain, proof_domain), Err(Error::BadProof), "{domain:?} over {proof_domain:?}");
    }
    // The rule is about the domain only: the user name is always the one sent.
    let mut c = Client::new("bob", "Bob-Pass1");
    c.proof_user = "BOB@ADTEST";
    c.proof_domain = Some("");
    assert_eq!(handshake(&c, &AcceptorConfig::example(), "Bob-Pass1", None, ok), Err(Error::BadProof));
}

#[test]
fn garbage_proof_is_refused() {
    // The sspi-rs bug: a proof that is never compared.
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        let (off, _) = wire::buffer_at(m, 20).unwrap();
        m[off..off + 16].fill(0x41);
    });
    assert_eq!(r, Err(Error::BadProof));
}

#[test]
fn replay_on_a_new_handshake_is_refused() {
    let c = Client::new("bob", "Bob-Pass1");
    let cfg = AcceptorConfig::example();
    let negotiate = c.negotiate();
    let first = Acceptor::challenge(&cfg, &negotiate, [1; 8], NOW).unwrap();
    let captured = c.authenticate(&negotiate, first.message());
    let second = Acceptor::challenge(&cfg, &negotiate, [2; 8], NOW).unwrap();
    let received = second.read_authenticate(&captured).unwrap();
    assert_eq!(received.verify_with_nt_hash(&crypto::nt_hash("Bob-Pass1")).unwrap_err(), Error::BadProof);
}

#[test]
fn stripped_mic_is_refused() {
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        m[72..88].fill(0)
    });
    assert_eq!(r, Err(Error::BadMic));
}

#[test]
fn tampered_flags_are_refused() {
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        let flags = wire::u32_at(m, 60).unwrap() & !(SIGN | SEAL);
        m[60..64].copy_from_slice(&flags.to_le_bytes());
    });
    assert_eq!(r, Err(Error::BadMic));
}

#[test]
fn removing_the_mic_announcement_breaks_the_proof() {
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        // Flip MsvAvFlags' MIC bit inside the blob.
        let (off, len) = wire::buffer_at(m, 20).unwrap();
        let nt = &m[off..off + len];
        let pos = nt.windows(8).position(|w| w == [6, 0, 4, 0, 2, 0, 0, 0]).unwrap();
        m[off + pos + 4] = 0;
    });
    assert_eq!(r, Err(Error::BadProof));
}

#[test]
fn ntlm_v1_and_anonymous_are_refused() {
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        // point the NT response at 24 bytes: an NTLMv1-shaped response
        m[20..22].copy_from_slice(&24u16.to_le_bytes());
    });
    assert_eq!(r.unwrap_err(), Error::NtlmV1);
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        m[36..38].copy_from_slice(&0u16.to_le_bytes()); // empty user name
    });
    assert_eq!(r.unwrap_err(), Error::Anonymous);
    let r = handshake(&Client::new("bob", "Bob-Pass1"), &AcceptorConfig::example(), "Bob-Pass1", None, |m| {
        let flags = wire::u32_at(m, 60).unwrap() | ANONYMOUS;
        m[60..64].copy_from_slice(&flags.to_le_bytes());
    });
    assert_eq!(r.unwrap_err(), Error::Anonymous);
}

#[test]
fn channel_binding_policies() {
    let right = crypto::tls_channel_bindings(&[0xab; 32]);
    let wrong = crypto::tls_channel_bindings(&[0xcd; 32]);
    let mut with = Client::new("bob", "Bob-Pass1");
    with.bindings = Some(right);
    let without = Client::new("bob", "Bob-Pass1");
    let run = |c: &Client, p| handshake(c, &config(p), "Bob-Pass1", Some(right), ok);
    use ChannelBindingPolicy::*;
    assert!(run(&with, Required).is_ok());
    assert_eq!(run(&without, Required), Err(Error::ChannelBindingsMissing));
    assert!(run(&without, WhenSupported).is_ok());
    assert!(run(&with, WhenSupported).is_ok());
    let mut wrong_client = with.clone();
    wrong_client.bindings = Some(wrong);
    assert_eq!(run(&wrong_client, Required), Err(Error::ChannelBindingsMismatch));
    assert_eq!(run(&wrong_client, WhenSupported), Err(Error::ChannelBindingsMismatch));
    assert!(run(&wrong_client, Off).is_ok());
    // Zero bindings count as absent (clients that know no TLS send zeros).
    let mut zero = with.clone();
    zero.bindings = Some([0; 16]);
    assert!(run(&zero, WhenSupported).is_ok());
    assert_eq!(run(&zero, Required), Err(Error::ChannelBindingsMissing));
    // Bindings sent over plain HTTP, where there is nothing to compare with.
    assert_eq!(handshake(&with, &config(WhenSupported), "Bob-Pass1", None, ok), Err(Error::ChannelBindingsMismatch));
}

#[test]
fn stale_timestamp_is_refused() {
    let c = Client::new("bob", "Bob-Pass1");
    let cfg = AcceptorConfig::example();
    let negotiate = c.negotiate();
    let sent = Acceptor::challenge(&cfg, &negotiate, [3; 8], NOW).unwrap();
    let auth = c.authenticate(&negotiate, sent.message());
    let received = sent.read_authenticate(&auth).unwrap();
    let key = received.verify_with_nt_hash(&crypto::nt_hash("Bob-Pass1")).unwrap();
    let later = FileTime(NOW.0 + 10 * 60 * 10_000_000);
    assert_eq!(received.finish(key, None, later), Err(Error::StaleTimestamp));
}

#[test]
fn oem_only_negotiate_is_answered_in_unicode_but_an_oem_authenticate_is_refused() {
    let mut c = Client::new("bob", "Bob-Pass1");
    c.flags = (c.flags & !UNICODE) | OEM;
    let sent = Acceptor::challenge(&AcceptorConfig::example(), &c.negotiate(), [0; 8], NOW).unwrap();
    assert!(wire::u32_at(sent.message(), 20).unwrap() & UNICODE != 0);
    let r = handshake(&c, &AcceptorConfig::example(), "Bob-Pass1", None, ok);
    assert_eq!(r, Err(Error::NoUnicode));
}

#[test]
fn challenge_carries_names_and_time() {
    let c = Client::new("bob", "Bob-Pass1");
    let sent = Acceptor::challenge(&AcceptorConfig::example(), &c.negotiate(), [9; 8], NOW).unwrap();
    let m = sent.message();
    assert_eq!(&m[24..32], &[9; 8]);
    let info = AvPairs::parse(wire::slice_at(m, 40).unwrap()).unwrap();
    assert_eq!(info.get(av::NB_DOMAIN_NAME).unwrap(), utf16le("ADTEST").as_slice());
    assert_eq!(info.get(av::DNS_COMPUTER_NAME).unwrap(), utf16le("gatehouse.ad.test").as_slice());
    assert_eq!(info.get(av::TIMESTAMP).unwrap(), NOW.0.to_le_bytes().as_slice());
    assert_eq!(wire::slice_at(m, 12).unwrap(), utf16le("ADTEST").as_slice());
    let flags = wire::u32_at(m, 20).unwrap();
    assert!(flags & UNICODE != 0 && flags & TARGET_INFO != 0 && flags & OEM == 0);
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let c = Client::new("bob", "Bob-Pass1");
    let cfg = AcceptorConfig::example();
    let negotiate = c.negotiate();
    let auth = c.authenticate(&negotiate, Acceptor::challenge(&cfg, &negotiate, [4; 8], NOW).unwrap().message());
    for cut in 0..auth.len() {
        let sent = Acceptor::challenge(&cfg, &negotiate, [4; 8], NOW).unwrap();
        let result = sent
            .read_authenticate(&auth[..cut])
            .and_then(|r| r.verify_with_nt_hash(&crypto::nt_hash("Bob-Pass1")).map(|_| ()));
        assert!(result.is_err(), "accepted a message cut at {cut}");
    }
    for cut in 0..negotiate.len().min(16) {
        assert!(Acceptor::challenge(&cfg, &negotiate[..cut], [4; 8], NOW).is_err());
    }
}

#[test]
fn fuzz_entry_on_noise() {
    let c = Client::new("bob", "Bob-Pass1");
    let negotiate = c.negotiate();
    let auth = c.authenticate(
        &negotiate,
        Acceptor::challenge(&AcceptorConfig::example(), &negotiate, [7; 8], FileTime(0)).unwrap().message(),
    );
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..5_000 {
        let mut data = negotiate.clone();
        data.extend_from_slice(&auth);
        for _ in 0..(seed % 6) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % data.len();
            data[i] = (seed >> 32) as u8;
        }
        crate::fuzz_one(&data);
    }
}
