//! systemd's notify protocol (`Type=notify`, sd_notify(3)): one datagram
//! to `$NOTIFY_SOCKET` per state change. Written here, on std's Unix
//! datagram socket, rather than with libsystemd or a crate: the protocol is
//! a line of text to a socket, and this needs no `unsafe` and no C library.
//! Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;

/// `READY=1`: serving (after the listeners are bound).
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// `RELOADING=1` with the monotonic time systemd wants (systemd 253's
/// `Type=notify-reload` checks it; older ones ignore it), before a reload.
pub fn reloading() {
    let usec = monotonic_usec();
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"));
}

/// `STOPPING=1`: draining.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining connections");
}

/// CLOCK_MONOTONIC in microseconds, read from `/proc/uptime`'s clock
/// source: std's `Instant` does not expose its value, and libc would need
/// `unsafe`. /proc/uptime is CLOCK_BOOTTIME, which equals CLOCK_MONOTONIC
/// unless the machine slept; systemd only compares it with its own clock
/// within a reload, so a suspended laptop is the only case it is off.
fn monotonic_usec() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()))
        .map_or(0, |s| (s * 1e6) as u64)
}

fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (systemd's usual choice).
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| socket.send_to_addr(message.as_bytes(), &a))
    } else {
        socket.send_to(message.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot tell systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_datagrams_reach_a_socket_named_in_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // The only test in the binary that sets it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        super::ready();
        super::reloading();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let n = socket.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let usec: u64 = text.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..].parse().unwrap();
        assert!(usec > 0);
    }
}
