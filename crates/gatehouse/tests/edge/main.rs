//! The HTTP edge, one test binary (each binary compiles `common` again):
//! attacks on upgrades, forwarding headers and shared TLS settings; paths read
//! the way the backend reads them; the desync corpus through the binary.

#[path = "../common/mod.rs"]
mod common;

mod desync_corpus;
mod edge;
mod edge_paths;
