//! Any bytes as a provider's JWT (and as a JWKS document): checked against a
//! fixed key set; nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    idtoken::fuzz(data);
});
