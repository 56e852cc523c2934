//! gatehouse: an authenticating reverse proxy for Windows-authenticated web
//! applications.
//!
//! A request travels: `listener` (TCP, TLS) -> `connection` (its bytes through
//! `guarded_io`'s framing checks, HTTP/1 or HTTP/2, clocks) -> `pipeline`
//! (route -> authenticate -> authorize -> prepare -> delegate -> send ->
//! filter response) -> `backend` (pooled connection per identity) ->
//! `response_body` (streamed back). docs/design.md follows one request through.

#![forbid(unsafe_code)]

/// jemalloc instead of glibc's malloc: docs/design.md, "The allocator".
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod access;
mod accounts;
mod admin;
mod auth;
mod backend;
mod cert_watch;
mod config;
mod conn;
mod connection;
mod control;
mod doctor;
mod farm;
mod generation;
mod guarded_io;
mod keytab;
mod listener;
mod memory;
mod metrics;
mod mfa;
mod net;
mod notify;
mod oidc;
mod pages;
mod pem;
mod pem_hint;
mod pipeline;
mod redirect;
mod request_body;
mod response_body;
mod route;
mod server;
mod session;
mod shared;
mod signin_page;
mod telemetry;
mod tls;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  gatehouse run -c FILE      serve (SIGHUP reloads FILE, SIGTERM drains and exits)
  gatehouse check -c FILE [--offline]
                             validate FILE; print every problem with file:line:column;
                             --offline: do not look the names in allow/deny up
  gatehouse doctor -c FILE [--user NAME [--password-stdin]]
                             check Kerberos delegation and the NTLM side step by
                             step, with fixes; --password-stdin reads NAME's
                             password from standard input for a test logon
  gatehouse backend drain SITE BACKEND -c FILE
                             no new sessions to BACKEND of SITE in the gatehouse
                             serving FILE (through its [control] socket); the
                             open ones continue
  gatehouse backend undrain SITE BACKEND -c FILE
  gatehouse backend status -c FILE
                             each backend: up, down, ejected, drained, in flight
  gatehouse ntlm-hash         print the NT hash of a password read from standard input
  gatehouse sessions list -c FILE
  gatehouse sessions revoke USER -c FILE
                             the running gatehouse's sign-in sessions (through
                             its [control] socket): list them, or end USER's
  gatehouse sessions new-key  print a new key for [forms] key_file
  gatehouse mfa list USER -c FILE
  gatehouse mfa reset USER -c FILE
  gatehouse mfa issue-code USER -c FILE
                             USER's second factors in the running gatehouse's
                             [mfa] store (through its [control] socket): list
                             them, remove them all, or issue a one-time
                             enrolment code (shown once)
  gatehouse mfa counters -c FILE
                             second-factor counts since start
  gatehouse --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str);
    let file = match args.get(1..) {
        Some([flag, file]) if flag == "-c" || flag == "--config" => Some(PathBuf::from(file)),
        _ => None,
    };
    let offline = match args.get(1..) {
        Some([flag, file, offline]) if (flag == "-c" || flag == "--config") && offline == "--offline" => {
            Some(PathBuf::from(file))
        }
        _ => None,
    };
    match (command, file) {
        (Some("run"), Some(file)) => run(file),
        (Some("check"), Some(file)) => check(file, access::Names::LookUp),
        (Some("check"), None) if offline.is_some() => check(offline.unwrap_or_default(), access::Names::Offline),
        (Some("ntlm-hash"), None) => ntlm_hash(),
        (Some("sessions"), _) => sessions(&args[1..]),
        (Some("mfa"), _) => mfa(&args[1..]),
        (Some("doctor"), _) => doctor(&args[1..]),
        (Some("backend"), _) => backend(&args[1..]),
        (Some("--version"), None) => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `backend drain|undrain SITE BACKEND -c FILE`, `backend status -c FILE`:
/// one request to the running gatehouse's control socket.
fn backend(args: &[String]) -> ExitCode {
    let (mut words, mut file) = (Vec::new(), None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-c" | "--config" => file = rest.next(),
            w => words.push(w),
        }
    }
    let valid = matches!(words.as_slice(), ["status"] | ["drain" | "undrain", _, _]);
    let (Some(file), true) = (file, valid) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let config = match config::load(std::path::Path::new(file)) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let Some(control) = config.control else {
        eprintln!("{file} has no [control] socket: add one (see docs/configuration.md) and restart gatehouse");
        return ExitCode::FAILURE;
    };
    match control::request(&control.socket, &words) {
        Ok(answer) => {
            print!("{answer}");
            if answer.lines().last() == Some("ok") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one line (the password) from standard input and prints its NT hash, for
/// an smbpasswd-style `[accounts] file`. The password is never echoed or logged.
fn ntlm_hash() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("cannot read a password from standard input");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let hash = ntlm::crypto::nt_hash(password);
    println!("{}", hash.iter().map(|b| format!("{b:02X}")).collect::<String>());
    ExitCode::SUCCESS
}

/// `sessions list -c FILE`, `sessions revoke USER -c FILE`, `sessions new-key`.
fn sessions(args: &[String]) -> ExitCode {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (words, file): (Vec<&str>, &str) = match args.as_slice() {
        ["new-key"] => {
            let mut key = [0u8; 32];
            if let Err(e) = getrandom::fill(&mut key) {
                eprintln!("no randomness: {e}");
                return ExitCode::FAILURE;
            }
            println!("{}", websession::Keys::line(&key));
            return ExitCode::SUCCESS;
        }
        ["list", "-c" | "--config", file] => (vec!["sessions", "list"], *file),
        ["revoke", user, "-c" | "--config", file] if !user.is_empty() && !user.contains(['\t', '\n', '\r']) => {
            (vec!["sessions", "revoke", *user], *file)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    ask_control(file, &words)
}

/// `mfa list|reset|issue-code USER -c FILE`.
fn mfa(args: &[String]) -> ExitCode {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["counters", "-c" | "--config", file] => ask_control(file, &["mfa", "counters"]),
        [verb @ ("list" | "reset" | "issue-code"), user, "-c" | "--config", file]
            if !user.is_empty() && !user.contains(['\t', '\n', '\r']) =>
        {
            ask_control(file, &["mfa", verb, user])
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Sends `words` to the control socket of the gatehouse serving `file`.
fn ask_control(file: &str, words: &[&str]) -> ExitCode {
    match control::socket_of(std::path::Path::new(file)).and_then(|socket| control::ask(&socket, words)) {
        Ok((ok, text)) => {
            print!("{text}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: PathBuf, names: access::Names) -> ExitCode {
    // check looks names up in the directory with gatehouse's own Kerberos
    // credential, as run does.
    kerberos_environment(config::load(&file).ok().as_ref());
    match server::load_as(&file, &Default::default(), None, names) {
        Ok(generation) => {
            let c = &generation.config;
            println!("{}: OK ({} listeners, {} sites)", file.display(), c.listeners.len(), c.sites.len());
            let written = c.sites.iter().flat_map(|s| s.rules.allow.iter().chain(&s.rules.deny));
            if names == access::Names::Offline && written.clone().any(|p| matches!(p.who, config::Who::Name { .. })) {
                println!("  --offline: the names in allow and deny were not looked up in the directory");
            }
            // Every site as it will be served, presets expanded.
            for line in config::describe_sites(c) {
                println!("  {line}");
            }
            for l in &c.listeners {
                if let Some(to) = &l.redirect_to {
                    println!("  listener {}: every request redirected to https on listener {to}", l.name);
                }
            }
            println!("  {}", c.describe_passwords());
            if let Some(a) = &c.admin {
                let allow: Vec<String> = a.allow.iter().map(|n| n.to_string()).collect();
                let status = if a.status_page { ", /status" } else { "" };
                println!("  admin: http://{}/metrics, /healthz, /readyz{status} for {}", a.bind, allow.join(", "));
                if let Some(s) = &a.sign_in {
                    let schemes: Vec<&str> = s.auth.iter().map(|x| x.name()).collect();
                    let who: Vec<&str> = s.rules.allow.iter().map(|p| p.written.as_str()).collect();
                    let deny: Vec<&str> = s.rules.deny.iter().map(|p| p.written.as_str()).collect();
                    let deny = if deny.is_empty() { String::new() } else { format!(", not {}", deny.join(", ")) };
                    println!("  admin: /status after sign-in ({}) for {}{deny}", schemes.join(", "), who.join(", "));
                }
            }
            if let Some(m) = &c.mfa {
                let required: Vec<&str> = c.sites.iter().filter(|s| s.mfa).map(|s| s.name.as_str()).collect();
                println!(
                    "  mfa: factors kept in {}; enrolment codes good for {}; second factor required on {}",
                    m.store.display(),
                    humantime::format_duration(m.enrol_code_lifetime),
                    if required.is_empty() {
                        "no site".to_owned()
                    } else {
                        format!("site {}", required.join(", site "))
                    }
                );
                let cookie_domain = c.forms.as_ref().and_then(|f| f.cookie_domain.as_deref());
                match m.passkey_rp_id.as_deref().or(cookie_domain) {
                    Some(id) => println!("  mfa: passkeys made for relying party id {id} (on hosts under it)"),
                    None => println!("  mfa: passkeys made for each host's own name (relying party id = the host)"),
                }
                for s in c.sites.iter().filter(|s| s.mfa) {
                    let weak = s.password_only_outside(&m.exempt_networks);
                    if !weak.is_empty() {
                        let names: Vec<&str> = weak.iter().map(|w| w.name()).collect();
                        println!(
                            "  warning: site {} requires a second factor, but offers {} to clients outside [mfa] \
                             exempt_networks: they reach it with a password alone (Outlook, ActiveSync and scripts \
                             cannot carry a second factor); offer those schemes only to exempt networks with \
                             [[site.auth_for]] client_ip, or accept it",
                            s.name,
                            names.join(", ")
                        );
                    }
                }
            }
            if let Some(f) = &c.forms {
                let cookie = match &f.cookie_domain {
                    Some(d) => format!("one sign-in for every host under {d}"),
                    None => "a sign-in per host".to_owned(),
                };
                println!(
                    "  forms: sign-in page \"{}\"; {cookie}; keys {} from {} (the first seals)",
                    f.title,
                    f.keys.ids().join(", "),
                    f.key_file.display()
                );
            }
            // Publishing without a sign-in is a choice that must be seen: TMG's
            // rules said "all users" in the rule itself.
            let anonymous: Vec<&str> = c.sites.iter().filter(|s| s.auth.is_empty()).map(|s| s.name.as_str()).collect();
            if !anonymous.is_empty() {
                println!(
                    "  anonymous: no sign-in at gatehouse on site {} (anyone who reaches it gets to the backend; set auth to require one)",
                    anonymous.join(", site ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprint!("{problems}");
            if !problems.ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}

/// MIT krb5 reads its configuration and default cache from the environment,
/// per process; set them before any thread exists. The default cache points
/// at an empty memory cache so that GSSAPI can never fall back to whatever
/// tickets the account running gatehouse happens to have.
fn kerberos_environment(config: Option<&config::Config>) {
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-no-default-credentials");
    if let Some(conf) = config.and_then(|c| c.domain.as_ref()).and_then(|d| d.krb5_conf.as_ref()) {
        std::env::set_var("KRB5_CONFIG", conf);
    }
}

fn run(file: PathBuf) -> ExitCode {
    let initial = config::load(&file).ok();
    let level = initial.as_ref().map_or_else(|| "info".into(), |c| c.log.level.clone());
    telemetry::init_tracing(&level);
    kerberos_environment(initial.as_ref());
    // The main thread runs listeners, signals and housekeeping; connections run on
    // the worker threads (worker.rs).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `doctor -c FILE [--user NAME] [--password-stdin]`: the password only ever
/// from standard input (a command line is visible to every local user).
fn doctor(args: &[String]) -> ExitCode {
    let usage = || {
        eprintln!("{USAGE}");
        ExitCode::from(2)
    };
    let (mut file, mut user, mut password_stdin) = (None, None, false);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-c" | "--config" => file = rest.next(),
            "--user" => user = rest.next(),
            "--password-stdin" => password_stdin = true,
            _ => return usage(),
        }
    }
    let Some(file) = file else { return usage() };
    if password_stdin && user.is_none() {
        eprintln!("--password-stdin needs --user NAME");
        return ExitCode::from(2);
    }
    let mut password = String::new();
    if password_stdin {
        if let Err(e) = std::io::stdin().read_line(&mut password) {
            eprintln!("cannot read the password from standard input: {e}");
            return ExitCode::from(2);
        }
        let kept = password.trim_end_matches(['\r', '\n']).len();
        password.truncate(kept);
        if password.is_empty() {
            eprintln!("--password-stdin: standard input held no password");
            return ExitCode::from(2);
        }
    }
    let logon = user.map(|u| doctor::Logon { user: u, password: password_stdin.then_some(password.as_str()) });
    doctor::run(std::path::Path::new(file), logon.as_ref())
}
