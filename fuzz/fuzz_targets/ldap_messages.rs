#![no_main]
use libfuzzer_sys::fuzz_target;

// The LDAP message decoder and stream reader, the security-layer framing
// and negotiation (ldap::fuzz_one), and the binary SID of objectSid.
fuzz_target!(|data: &[u8]| {
    ldap::fuzz_one(data);
    if let Some(sid) = kcd::Sid::from_bytes(data) {
        assert_eq!(sid.to_bytes(), data);
    }
});
