//! gatehouse configurations for tests, built from typed parts instead of
//! `[domain]` and `[accounts]` blocks copied from file to file.
//!
//! ```
//! use testkit::config::{Accounts, Config, Domain, Listener, Site};
//! let text = Config::new()
//!     .domain(Domain::new())
//!     .accounts(Accounts::file("users.ntlm"))
//!     .listener(Listener::plain("public"))
//!     .site(Site::new("ews", "public", "http://127.0.0.1:8080").auth(&["NTLM"]))
//!     .to_string();
//! assert!(text.contains("bind = \"127.0.0.1:0\""));
//! ```
//!
//! Listeners bind port 0 unless told otherwise: the system picks a free port
//! and gatehouse logs it, so tests never race each other for a port. Tests
//! about configuration syntax keep writing TOML by hand; this is for the
//! tests that need a gatehouse, not a file.

use std::fmt::{self, Display, Write};

use crate::lab::LabEnv;

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[&str]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

/// The key/value lines of one table, in the order given.
#[derive(Clone, Default, Debug)]
struct Lines(String);

impl Lines {
    fn raw(mut self, key: &str, value: &str) -> Self {
        let _ = writeln!(self.0, "{key} = {value}");
        self
    }

    fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, &quote(value))
    }
}

/// `[domain]`: the lab's realm and NetBIOS name, with Kerberos when asked.
#[derive(Clone, Debug)]
pub struct Domain(Lines);

impl Domain {
    /// realm AD.TEST, NetBIOS name ADTEST: enough for NTLM against a file.
    pub fn new() -> Domain {
        Domain(Lines::default().str("realm", "AD.TEST").str("netbios_name", "ADTEST"))
    }

    /// The lab's domain with gatehouse's Kerberos identity (svc-proxy, its keytab).
    pub fn lab(env: &LabEnv) -> Domain {
        Domain::new().kerberos(&env["KRB5_CONFIG"], &env["LAB_PROXY_KEYTAB"], "svc-proxy@AD.TEST")
    }

    pub fn kerberos(self, krb5_conf: &str, keytab: &str, service_principal: &str) -> Domain {
        Domain(self.0.str("krb5_conf", krb5_conf).str("keytab", keytab).str("service_principal", service_principal))
    }

    /// The SPN clients ask tickets for (Negotiate, Basic).
    pub fn acceptor_spn(self, spn: &str) -> Domain {
        Domain(self.0.str("acceptor_spn", spn))
    }

    /// Several SPNs clients ask tickets for (one per published name).
    pub fn acceptor_spns(self, spns: &[&str]) -> Domain {
        Domain(self.0.raw("acceptor_spn", &list(spns)))
    }

    /// Any other key, `value` as TOML.
    pub fn set(self, key: &str, value: &str) -> Domain {
        Domain(self.0.raw(key, value))
    }
}

impl Default for Domain {
    fn default() -> Self {
        Self::new()
    }
}

/// `[accounts]`: where NTLM passwords are checked.
#[derive(Clone, Debug)]
pub struct Accounts(Lines);

impl Accounts {
    /// NT hashes or passwords in a file (relative to the config's folder).
    pub fn file(path: &str) -> Accounts {
        Accounts(Lines::default().str("source", "file").str("file", path))
    }

    /// The lab's domain through Samba winbind.
    pub fn winbind(env: &LabEnv) -> Accounts {
        Accounts(Lines::default().str("source", "winbind").str("smb_conf", &env["SMB_CONF"]))
    }

    /// A winbind helper of the test's own (one that fails, or hangs).
    pub fn ntlm_auth(helper: &str, timeout: &str) -> Accounts {
        Accounts(Lines::default().str("source", "winbind").str("ntlm_auth", helper).str("timeout", timeout))
    }

    pub fn set(self, key: &str, value: &str) -> Accounts {
        Accounts(self.0.raw(key, value))
    }
}

/// One `[[listener]]`, on 127.0.0.1 port 0 unless told otherwise.
#[derive(Clone, Debug)]
pub struct Listener {
    name: String,
    lines: Lines,
}

impl Listener {
    pub fn plain(name: &str) -> Listener {
        Listener { name: name.into(), lines: Lines::default().str("bind", "127.0.0.1:0") }
    }

    /// TLS with `{cert}.pem` and `{cert}.key` from the config's folder.
    pub fn tls(name: &str, cert: &str) -> Listener {
        Listener::plain(name).set(
            "tls",
            &format!("{{ cert = {}, key = {} }}", quote(&format!("{cert}.pem")), quote(&format!("{cert}.key"))),
        )
    }

    pub fn channel_binding(self, policy: &str) -> Listener {
        Listener { lines: self.lines.str("channel_binding", policy), ..self }
    }

    pub fn set(self, key: &str, value: &str) -> Listener {
        Listener { lines: self.lines.raw(key, value), ..self }
    }
}

/// One `[[site]]`.
#[derive(Clone, Debug)]
pub struct Site {
    lines: Lines,
    /// Lines after the site's own (`[[site.auth_for]]` tables, say).
    tail: String,
}

impl Site {
    pub fn new(name: &str, listener: &str, backend: &str) -> Site {
        Site {
            lines: Lines::default().str("name", name).str("listener", listener).str("backend", backend),
            tail: String::new(),
        }
    }

    /// A site that delegates with KCD to the lab's Kerberos-only Apache
    /// (`$LAB_BACKEND`, Host `backend.ad.test`, SPN `HTTP/backend.ad.test`).
    pub fn lab_kcd(name: &str, listener: &str, env: &LabEnv) -> Site {
        Site::new(name, listener, &env["LAB_BACKEND"])
            .host_header("backend.ad.test")
            .delegation("kcd")
            .backend_spn("HTTP/backend.ad.test")
    }

    pub fn hosts(self, hosts: &[&str]) -> Site {
        self.set("hosts", &list(hosts))
    }

    pub fn path_prefix(self, prefix: &str) -> Site {
        self.set_str("path_prefix", prefix)
    }

    pub fn host_header(self, host: &str) -> Site {
        self.set_str("host_header", host)
    }

    pub fn auth(self, schemes: &[&str]) -> Site {
        self.set("auth", &list(schemes))
    }

    pub fn delegation(self, how: &str) -> Site {
        self.set_str("delegation", how)
    }

    pub fn backend_spn(self, spn: &str) -> Site {
        self.set_str("backend_spn", spn)
    }

    /// `allow`: who may use the site (names or SIDs).
    pub fn allow(self, who: &[&str]) -> Site {
        Site { lines: self.lines.raw("allow", &list(who)), ..self }
    }

    pub fn deny(self, who: &[&str]) -> Site {
        Site { lines: self.lines.raw("deny", &list(who)), ..self }
    }

    pub fn identity_header(self, name: &str) -> Site {
        self.set_str("identity_header", name)
    }

    /// Any other key, `value` as TOML.
    pub fn set(self, key: &str, value: &str) -> Site {
        Site { lines: self.lines.raw(key, value), ..self }
    }

    pub fn set_str(self, key: &str, value: &str) -> Site {
        Site { lines: self.lines.str(key, value), ..self }
    }

    /// TOML text after the site: its own sub-tables, or plain keys of the site
    /// when the text starts with keys.
    pub fn then(self, text: &str) -> Site {
        Site { tail: self.tail + text + "\n", ..self }
    }
}

/// A whole configuration. `Display` writes the TOML.
#[derive(Clone, Debug, Default)]
pub struct Config {
    domain: Option<Domain>,
    accounts: Option<Accounts>,
    /// Tables given as text (`[limits]`, `[lockout]`, ...): (name, body), in order.
    tables: Vec<(String, String)>,
    listeners: Vec<Listener>,
    sites: Vec<Site>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    pub fn domain(self, domain: Domain) -> Config {
        Config { domain: Some(domain), ..self }
    }

    pub fn accounts(self, accounts: Accounts) -> Config {
        Config { accounts: Some(accounts), ..self }
    }

    /// `[name]` with `body` (key = value lines), e.g. `table("lockout",
    /// "max_failures_per_user = 2")`. A table given twice keeps its place and
    /// takes the later body, so a test can vary one table of a shared config.
    pub fn table(mut self, name: &str, body: &str) -> Config {
        let body = body.trim_end().to_owned();
        match self.tables.iter_mut().find(|(n, _)| n == name) {
            Some(t) => t.1 = body,
            None => self.tables.push((name.to_owned(), body)),
        }
        self
    }

    pub fn listener(mut self, listener: Listener) -> Config {
        self.listeners.push(listener);
        self
    }

    pub fn site(mut self, site: Site) -> Config {
        self.sites.push(site);
        self
    }
}

impl Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.domain {
            writeln!(f, "[domain]\n{}", d.0 .0)?;
        }
        if let Some(a) = &self.accounts {
            writeln!(f, "[accounts]\n{}", a.0 .0)?;
        }
        for (name, body) in &self.tables {
            writeln!(f, "[{name}]\n{body}\n")?;
        }
        for l in &self.listeners {
            writeln!(f, "[[listener]]\nname = {}\n{}", quote(&l.name), l.lines.0)?;
        }
        for s in &self.sites {
            writeln!(f, "[[site]]\n{}{}", s.lines.0, s.tail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_land_in_their_tables_in_order() {
        let text = Config::new()
            .domain(Domain::new().acceptor_spn("HTTP/proxy.ad.test"))
            .accounts(Accounts::file("users.ntlm"))
            .table("lockout", "max_failures_per_user = 3\n")
            .listener(Listener::tls("public", "mail").channel_binding("required"))
            .site(
                Site::new("ews", "public", "http://127.0.0.1:1")
                    .auth(&["Negotiate", "NTLM"])
                    .then("[[site.auth_for]]\nuser_agent = \"*x*\"\nauth = [\"NTLM\"]"),
            )
            .to_string();
        let expected = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nacceptor_spn = \"HTTP/proxy.ad.test\"\n\n\
            [accounts]\nsource = \"file\"\nfile = \"users.ntlm\"\n\n\
            [lockout]\nmax_failures_per_user = 3\n\n\
            [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\ntls = { cert = \"mail.pem\", key = \"mail.key\" }\nchannel_binding = \"required\"\n\n\
            [[site]]\nname = \"ews\"\nlistener = \"public\"\nbackend = \"http://127.0.0.1:1\"\nauth = [\"Negotiate\", \"NTLM\"]\n[[site.auth_for]]\nuser_agent = \"*x*\"\nauth = [\"NTLM\"]\n\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_table_given_again_is_replaced_in_place() {
        let text = Config::new()
            .table("lockout", "max_failures_per_user = 3")
            .table("limits", "handshake_body = 1")
            .table("lockout", "max_failures_per_user = 100")
            .accounts(Accounts::file("a"))
            .accounts(Accounts::file("b"))
            .to_string();
        assert_eq!(
            text,
            "[accounts]\nsource = \"file\"\nfile = \"b\"\n\n[lockout]\nmax_failures_per_user = 100\n\n[limits]\nhandshake_body = 1\n\n"
        );
    }

    #[test]
    fn strings_are_quoted_for_toml() {
        assert_eq!(quote(r#"C:\dir "x""#), r#""C:\\dir \"x\"""#);
        let text = Config::new().site(Site::new("s", "l", "http://b").identity_header("X-\"User\"")).to_string();
        assert!(text.contains(r#"identity_header = "X-\"User\"""#), "{text}");
    }
}
