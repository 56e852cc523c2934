//! Pre-authentication at the edge, one test binary (each binary compiles
//! `common` again): NTLM against a file of passwords, Basic against the lab's
//! KDC, and the extranet lockout and log hygiene that both depend on.

#[path = "../common/mod.rs"]
mod common;

mod basic;
mod lockout_and_logs;
mod ntlm;
