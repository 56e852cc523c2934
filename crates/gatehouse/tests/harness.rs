//! The test harness itself: what every other integration test relies on. No
//! gatehouse outlives its test, however the test ends and whatever the
//! launch; listeners on port 0 are found from the log and keep their ports
//! over a reload.

mod common;

use std::net::SocketAddr;

use common::*;
use testkit::process::alive;
use testkit::Backend;

fn sites(backend: SocketAddr, listeners: &[&str]) -> String {
    let mut config = Config::new();
    for name in listeners {
        config = config.listener(Listener::plain(name)).site(Site::new(name, name, &format!("http://{backend}")));
    }
    config.to_string()
}

/// The process the harness holds is gatehouse itself, also with the clock
/// ahead (the `faketime` wrapper forked, and the harness stopped the wrapper
/// and left gatehouse running); a panicking test takes it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gatehouse_with_its_clock_ahead_does_not_outlive_a_panicking_test() {
    let b = Backend::start().await;
    let text = sites(b.addr, &["l"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let g = Gatehouse::launch(tempfile::tempdir().unwrap(), &text, Launch::clock_ahead("+11h"));
        tx.send((g.pid(), g.addr())).unwrap();
        panic!("the test fails while gatehouse runs");
    });
    assert!(test.join().is_err());
    let (pid, addr) = rx.recv().unwrap();
    assert!(!alive(pid), "gatehouse {pid} outlived its panicking test");
    assert!(std::net::TcpStream::connect(addr).is_err(), "something still listens on {addr}");

    let g = Gatehouse::launch(tempfile::tempdir().unwrap(), &sites(b.addr, &["l"]), Launch::clock_ahead("+11h"));
    let exe = std::fs::read_link(format!("/proc/{}/exe", g.pid())).unwrap();
    assert_eq!(exe, std::path::Path::new(env!("CARGO_BIN_EXE_gatehouse")), "the harness holds a wrapper");
    assert_eq!(request(g.addr(), &get("a", "/")).await.status, 200);
    let pid = g.pid();
    drop(g);
    assert!(!alive(pid), "gatehouse {pid} outlived its test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_on_port_0_are_read_from_the_log_and_keep_their_ports_over_a_reload() {
    let b = Backend::start().await;
    let g = Gatehouse::start(&sites(b.addr, &["one", "two"]));
    let (one, two) = (g.addr_of("one"), g.addr_of("two"));
    assert_ne!(one.port(), two.port());
    for addr in [one, two] {
        assert_eq!(request(addr, &get("a", "/")).await.status, 200);
    }
    // The same listeners again (port 0 still): the same sockets.
    let mut kept = Conn::open(one).await;
    g.reload(&sites(b.addr, &["one", "two"]));
    assert_eq!((g.addr_of("one"), g.addr_of("two")), (one, two));
    kept.send(get("a", "/kept").as_bytes()).await;
    assert_eq!(kept.response().await.status, 200);
    // A listener added by a reload is found too.
    g.reload(&sites(b.addr, &["one", "two", "three"]));
    let three = g.addr_of("three");
    assert!(three != one && three != two);
    assert_eq!(request(three, &get("a", "/")).await.status, 200);
    assert_eq!(request(one, &get("a", "/")).await.status, 200);
}
