//! HTTP/2 at the edge (ALPN h2 on TLS listeners), with curl as the client:
//! anonymous requests and per-request schemes (Kerberos, Basic) run on h2;
//! a connection-bound scheme (NTLM) gets its stream reset with
//! HTTP_1_1_REQUIRED and the client retries on HTTP/1.1, as with IIS.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use testkit::Backend;

/// curl with `args` against `https://proxy.ad.test:port{path}`; returns the
/// verbose trace and the body.
fn curl(ca: &Path, port: u16, path: &str, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://proxy.ad.test:{port}{path}"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A TLS listener `public` (certificate for proxy.ad.test) and an anonymous
/// site in front of `backend`; the caller adds a domain and more sites.
fn config(backend: &str, listener: Listener) -> Config {
    Config::new().listener(listener).site(Site::new("anon", "public", backend))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_ntlm_over_http2() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test", "127.0.0.1"])]);
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let origin = format!("http://{}", backend.addr);
    let text = config(&origin, Listener::tls("public", "proxy"))
        .domain(Domain::new())
        .accounts(Accounts::file("users.ntlm"))
        .site(
            Site::new("ntlm", "public", &origin).path_prefix("/ews").auth(&["NTLM"]).identity_header("X-Remote-User"),
        );
    let g = Gatehouse::start_in(dir, &text.to_string());
    let port = g.port();
    let ca = &ca;

    // Anonymous: h2 end to end at the edge, HTTP/1.1 to the backend.
    let (trace, body) = curl(ca, port, "/x", &["--http2"], &[]);
    assert!(trace.contains("ALPN: server accepted h2") && trace.contains("< HTTP/2 200"), "{trace}");
    assert!(body.contains("\"path\":\"/x\""), "{body}");
    // A body up, a larger one down, streamed chunks through.
    let big = vec![b'z'; 1 << 20];
    let file = g.path("up.bin");
    std::fs::write(&file, &big).unwrap();
    let (trace, body) = curl(ca, port, "/up", &["--http2", "--data-binary", &format!("@{}", file.display())], &[]);
    assert!(
        trace.contains("< HTTP/2 200") && body.contains(&format!("\"body_bytes\":{}", big.len())),
        "{trace}\n{body}"
    );
    let (trace, body) = curl(ca, port, "/bytes/3000000", &["--http2"], &[]);
    assert!(trace.contains("< HTTP/2 200") && body.len() == 3_000_000, "{}", body.len());
    let (trace, body) = curl(ca, port, "/chunks/3/50", &["--http2"], &[]);
    assert!(trace.contains("< HTTP/2 200") && body == "chunk-0\nchunk-1\nchunk-2\n", "{body}");

    // httpx, a browser-grade HTTP/2 client library, agrees.
    let python = std::env::var("GATEHOUSE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/httpx_h2.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("https://127.0.0.1:{port}/bytes/100000"))
        .arg(ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if std::env::var_os("GATEHOUSE_LAB_REQUIRED").is_some() || out.status.success() {
        // (scripts/test.sh installs httpx; elsewhere it may be missing)
        assert!(text.starts_with("HTTP/2\n200\n"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.len(), "HTTP/2\n200\n".len() + 100_000);
    }

    // NTLM started on h2: the stream is reset, curl retries on HTTP/1.1 and gets in.
    let (trace, body) = curl(ca, port, "/ews/who", &["--http2", "--ntlm", "-u", "ADTEST\\bob:Bob-Pass1"], &[]);
    assert!(trace.contains("HTTP_1_1_REQUIRED"), "{trace}");
    assert!(trace.contains("< HTTP/1.1 200"), "{trace}");
    assert!(body.contains("\"x-remote-user\":\"ADTEST\\\\bob\""), "{body}");
    g.wait_for(|| g.stderr().contains("HTTP/2 stream reset with HTTP_1_1_REQUIRED"), "the reset in the log");
    assert!(g.stderr().contains("NTLM is connection-bound"), "{}", g.stderr());
    // An NTLM message on h2 never reached the backend.
    assert!(backend.seen().iter().all(|s| s.header("authorization").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_can_be_switched_off() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let text = config(&format!("http://{}", backend.addr), Listener::tls("public", "proxy").set("http2", "false"));
    let g = Gatehouse::start_in(dir, &text.to_string());
    let port = g.port();
    let (trace, _) = curl(&ca, port, "/x", &["--http2"], &[]);
    assert!(trace.contains("ALPN: server accepted http/1.1") && trace.contains("< HTTP/1.1 200"), "{trace}");
}

/// Kerberos (a ticket per request) and Basic run on h2 itself, against the lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kerberos_and_basic_over_http2() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let cc = kinit(&env, dir.path(), "alice", "Alice-Pass1", &[]);
    let text = config(&env["LAB_BACKEND"], Listener::tls("public", "proxy"))
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .site(Site::lab_kcd("kerberos", "public", &env).path_prefix("/owa").auth(&["Negotiate"]))
        .site(Site::lab_kcd("basic", "public", &env).path_prefix("/Microsoft-Server-ActiveSync").auth(&["Basic"]));
    let g = Gatehouse::start_in(dir, &text.to_string());
    let port = g.port();
    let krb = [("KRB5_CONFIG", env["KRB5_CONFIG"].as_str()), ("KRB5CCNAME", cc.as_str())];
    let (trace, body) = curl(&ca, port, "/owa/", &["--http2", "--negotiate", "-u", ":"], &krb);
    assert!(trace.contains("< HTTP/2 200") && !trace.contains("HTTP_1_1_REQUIRED"), "{trace}\n{}", g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}");
    let (trace, body) =
        curl(&ca, port, "/Microsoft-Server-ActiveSync", &["--http2", "--basic", "-u", "bob:Bob-Pass1"], &[]);
    assert!(trace.contains("< HTTP/2 200"), "{trace}\n{}", g.stderr());
    assert!(body.contains("REMOTE_USER=bob@AD.TEST"), "{body}");
}
