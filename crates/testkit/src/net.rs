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

/// A TCP relay: connections to `addr` are carried to `to`, byte for byte. The
/// lab's one Apache, reached through a relay on another loopback address, is
/// a second backend with the same keytab and SPN; stopping the relay is that
/// backend going down (listener closed, open connections cut).
pub struct Relay {
    pub addr: SocketAddr,
    stopped: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    pub async fn start(on: SocketAddr, to: SocketAddr) -> std::io::Result<Relay> {
        let listener = tokio::net::TcpListener::bind(on).await?;
        let addr = listener.local_addr()?;
        let stopped = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let mut stop = stopped.subscribe();
        let relays = stopped.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                let Ok((mut client, _)) = accepted else { continue };
                let mut stop = relays.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(to).await else { return };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        Ok(Relay { addr, stopped })
    }

    pub fn stop(&self) {
        let _ = self.stopped.send(true);
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
