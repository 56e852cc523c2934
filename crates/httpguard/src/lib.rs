//! Checks on untrusted HTTP/1 request bytes, with no I/O.
//!
//! Three things live here because each decides what an attacker's bytes *mean*, and a
//! proxy that disagrees with its backend about meaning is a proxy that can be
//! bypassed:
//!
//! - [`framing::RequestStream`] follows the framing of every request on a client
//!   connection (head, Content-Length or chunked body, trailers) and refuses the
//!   request-smuggling shapes before the HTTP server ever sees them.
//! - [`target::routing_path`] turns a request path into the form that sites are
//!   matched on, refusing paths that a Windows backend would read differently
//!   (dot segments, backslashes, encoded separators, the names Windows rewrites).
//! - [`host::parse_host`] checks a Host value or an authority, refusing what two
//!   parsers could split into different hosts (userinfo, stray colons, brackets).
//!
//! No function here panics on any input; the fuzz targets in `fuzz/` hold them to it.

#![forbid(unsafe_code)]

pub mod framing;
pub mod host;
pub mod target;

pub use framing::{Reject, RequestStream};
pub use host::{parse_host, HostError, HostPort};
pub use target::{prefix_matches, routing_path, TargetError};
