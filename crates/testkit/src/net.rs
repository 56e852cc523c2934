//! Addresses for tests that need a port where nothing answers.

use std::net::SocketAddr;

/// A loopback port that refuses connections for as long as this value lives.
///
/// Binding a port and dropping the listener (the usual `free_port()`) hands the
/// port back to the system, which gives it to the next test that binds port 0:
/// the "dead" backend then answers. This keeps a socket bound without
/// listening and without `SO_REUSEADDR`, so connecting gets a reset and nobody
/// else can bind the port.
pub struct ClosedPort {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind a loopback port");
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        ClosedPort { addr, _socket: socket }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_refuses_and_cannot_be_taken() {
        let closed = ClosedPort::new();
        let err = std::net::TcpStream::connect(closed.addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        // std's bind sets SO_REUSEADDR, as gatehouse's and tokio's do.
        assert!(std::net::TcpListener::bind(closed.addr).is_err(), "another listener took the closed port");
    }
}
