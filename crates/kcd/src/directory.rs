//! Names and SIDs as the domain has them, from LDAP on a domain controller:
//! for access rules written with names (`ADTEST\Finance`) and for `gatehouse
//! doctor`. The PAC gives SIDs, never names; the directory gives both.
//!
//! The bind is SASL GSSAPI (RFC 4752) as gatehouse's own service account,
//! with the TGT kcd already holds from its keytab: no domain join, no
//! password, no winbind. AD and Samba refuse binds without integrity
//! protection unless the connection is TLS, so the security layer is
//! negotiated and set to integrity: every LDAP message after the bind is
//! wrapped (`gss_wrap` without confidentiality) in four-byte length frames.
//! Mutual authentication is required, so the answers come from a holder of
//! the `ldap/<host>` key, and every frame is checked (signature, sequence)
//! before it is read.
//!
//! Bounded: the connect and every request/response exchange by the timeout
//! (and the server's own search time by the same), frames and messages by
//! size, entries by `sizeLimit`, bind legs by count. Blocking, like the rest
//! of kcd: callers run it off their async workers.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap::request::{self, Filter, Scope, Search};
use ldap::{code, code_name, FrameReader, Message, MessageReader, Response, SearchEntry, SecurityLayer};
use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

use crate::error::{Error, Kind};
use crate::{qualify_spn, same_principal, Delegator, Sid};

/// The largest wrapped buffer gatehouse accepts, as it tells the server.
const MAX_FRAME: u32 = 1 << 20;
/// The largest LDAP message accepted (the entries asked for are a few
/// hundred bytes: no member lists are requested).
const MAX_MESSAGE: usize = 1 << 20;
/// Kerberos takes two legs, the security layer one more.
const MAX_BIND_LEGS: usize = 5;
/// Continuation references answered to one search (AD sends one per other
/// naming context: DomainDnsZones, ForestDnsZones, Configuration).
const MAX_REFERENCES: usize = 64;
/// sAMAccountName: 20 characters for users and computers (SAM's limit), up
/// to 256 for groups (the schema's); UPNs up to 1,024.
const MAX_ACCOUNT_CHARS: usize = 256;
const MAX_UPN_BYTES: usize = 1024;
/// Characters AD refuses in a sAMAccountName; `@` makes a name a UPN here.
const NOT_IN_ACCOUNTS: &[char] = &['"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>'];

const ATTRIBUTES: &[&str] = &["objectSid", "sAMAccountName", "objectClass", "userPrincipalName", "userAccountControl"];
/// userAccountControl's ACCOUNTDISABLE.
const UF_ACCOUNTDISABLE: u32 = 0x2;

/// A domain controller's directory, reached as gatehouse's service account.
pub struct Directory {
    delegator: Arc<Delegator>,
    host: String,
    port: u16,
    address: Option<SocketAddr>,
    timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    User,
    Group,
    Computer,
    Other,
}

/// A security principal as the directory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// From objectSid.
    pub sid: Sid,
    /// sAMAccountName as the directory spells it.
    pub account: String,
    /// From objectClass: computer (a subclass of user), user, group.
    pub kind: EntryKind,
    pub dn: String,
    /// userPrincipalName, when the account has one.
    pub upn: Option<String>,
    /// userAccountControl has ACCOUNTDISABLE (users and computers).
    pub disabled: bool,
}

/// What one search looks for.
enum Query {
    Account(String),
    Upn(String),
    Sid(Sid),
}

impl Query {
    /// A name from the caller: a UPN when it has an `@`, else an account name.
    fn name(name: &str) -> Result<Query, Error> {
        let bad =
            |why: &str| Err(Error::new(Kind::BadName, format!("`{}` cannot be looked up: {why}", name.escape_debug())));
        if name.is_empty() || name.chars().any(char::is_control) {
            return bad("empty, or with a control character");
        }
        if name.contains('@') {
            if name.len() > MAX_UPN_BYTES {
                return bad("a UPN longer than 1024 bytes");
            }
            if name.starts_with('@') || name.ends_with('@') {
                return bad("a UPN needs a name and a suffix");
            }
            return Ok(Query::Upn(name.to_owned()));
        }
        if name.chars().count() > MAX_ACCOUNT_CHARS {
            return bad("an account name longer than 256 characters");
        }
        if let Some(c) = name.chars().find(|c| NOT_IN_ACCOUNTS.contains(c)) {
            return bad(&format!("`{c}` is not allowed in an account name (give the domain apart)"));
        }
        Ok(Query::Account(name.to_owned()))
    }

    /// Every filter also wants the attribute that makes the object a
    /// principal with a name: a foreign security principal (a SID of
    /// another domain, held as a placeholder) is not found by SID.
    fn filter(&self) -> Filter {
        let (attribute, value, also) = match self {
            Query::Account(a) => ("sAMAccountName", a.as_bytes().to_vec(), "objectSid"),
            Query::Upn(u) => ("userPrincipalName", u.as_bytes().to_vec(), "objectSid"),
            Query::Sid(s) => ("objectSid", s.to_bytes(), "sAMAccountName"),
        };
        Filter::And(vec![Filter::equal(attribute, value), Filter::present(also)])
    }

    fn describe(&self) -> String {
        match self {
            Query::Account(a) => format!("sAMAccountName {a}"),
            Query::Upn(u) => format!("userPrincipalName {u}"),
            Query::Sid(s) => format!("objectSid {s}"),
        }
    }
}

impl Directory {
    /// host: the DC's DNS name (SPN ldap/<host>); address: where to connect
    /// instead of resolving host (None: resolve host:port). Contacts nothing.
    pub fn new(
        delegator: Arc<Delegator>,
        host: &str,
        port: u16,
        address: Option<SocketAddr>,
        timeout: Duration,
    ) -> Directory {
        Directory {
            delegator,
            host: host.to_owned(),
            port,
            address,
            // Zero would mean "no timeout" to some socket calls, an error to others.
            timeout: timeout.max(Duration::from_millis(1)),
        }
    }

    /// One connection and bind for the whole batch. Each name is a
    /// sAMAccountName (no domain part: the caller strips `DOMAIN\` after
    /// checking the domain) or a UPN containing '@' (searched as
    /// userPrincipalName, so an account without one is not found by
    /// `account@dns.domain`). None: no such object. Base DN: the rootDSE's
    /// defaultNamingContext. A name that cannot be an account name or UPN
    /// is a [`Kind::BadName`] error, before anything is contacted. Blocks.
    pub fn lookup(&self, names: &[&str]) -> Result<Vec<Option<Entry>>, Error> {
        let queries = names.iter().map(|n| Query::name(n)).collect::<Result<Vec<_>, _>>()?;
        self.run(&queries)
    }

    /// Entries for these SIDs (searched by objectSid, binary), same order,
    /// None where unknown. Blocks.
    pub fn by_sid(&self, sids: &[Sid]) -> Result<Vec<Option<Entry>>, Error> {
        let queries: Vec<Query> = sids.iter().cloned().map(Query::Sid).collect();
        let found = self.run(&queries)?;
        // The filter matched the bytes; the entry must say the same SID.
        for (sid, entry) in sids.iter().zip(&found) {
            if let Some(e) = entry.as_ref().filter(|e| e.sid != *sid) {
                return Err(Error::new(Kind::Directory, format!("asked for {sid}, the directory answered {}", e.sid)));
            }
        }
        Ok(found)
    }

    fn run(&self, queries: &[Query]) -> Result<Vec<Option<Entry>>, Error> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.open()?;
        let base = conn.naming_context()?;
        let found = queries.iter().map(|q| conn.find(&base, q)).collect::<Result<Vec<_>, _>>();
        conn.close();
        found
    }

    /// Connected and bound, with the integrity layer in place.
    fn open(&self) -> Result<Connection, Error> {
        // The ticket first: a missing SPN or a broken service account is
        // found without touching the DC.
        let spn = qualify_spn(&format!("ldap/{}", self.host), &self.delegator.realm)?;
        let service = self.delegator.service()?;
        let target =
            Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| Error::gss("the directory's SPN", e))?;
        // RFC 4752 3.1: a security layer needs integrity, mutual
        // authentication and sequencing; replay detection on top.
        let flags = CtxFlags::GSS_C_MUTUAL_FLAG
            | CtxFlags::GSS_C_INTEG_FLAG
            | CtxFlags::GSS_C_SEQUENCE_FLAG
            | CtxFlags::GSS_C_REPLAY_FLAG;
        let mut ctx = ClientCtx::new(Some(service.cred().clone()), target, flags, Some(GSS_MECH_KRB5));
        let first = ctx
            .step(None, None)
            .map_err(|e| Error::gss(&format!("getting a ticket for the directory ({spn})"), e))?
            .map(|t| t.to_vec())
            .ok_or_else(|| Error::new(Kind::Other, "GSSAPI produced no token for the directory"))?;
        let (stream, peer) = self.connect()?;
        let mut conn = Connection {
            stream,
            who: format!("directory {} at {peer}", self.host),
            timeout: self.timeout,
            next_id: 0,
            messages: MessageReader::new(MAX_MESSAGE),
            layer: None,
        };
        conn.bind(ctx, first, &self.delegator.principal)?;
        tracing::debug!(directory = %conn.who, "ldap: bound as {} with integrity protection", self.delegator.principal);
        Ok(conn)
    }

    fn connect(&self) -> Result<(TcpStream, SocketAddr), Error> {
        let addresses: Vec<SocketAddr> = match self.address {
            Some(a) => vec![a],
            None => (self.host.as_str(), self.port)
                .to_socket_addrs()
                .map_err(|e| {
                    Error::new(Kind::Directory, format!("cannot resolve the directory's host {}: {e}", self.host))
                })?
                .collect(),
        };
        let mut failures = Vec::new();
        for a in &addresses {
            match TcpStream::connect_timeout(a, self.timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, *a));
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    failures.push(format!("{a}: no answer within {} ms", self.timeout.as_millis()))
                }
                Err(e) => failures.push(format!("{a}: {e}")),
            }
        }
        if failures.is_empty() {
            failures.push(format!("{} resolves to no address", self.host));
        }
        Err(Error::new(
            Kind::Directory,
            format!("cannot connect to the directory {} ({})", self.host, failures.join("; ")),
        ))
    }
}

/// The integrity layer, once negotiated.
struct Layer {
    ctx: ClientCtx,
    frames: FrameReader,
    /// The largest wrapped buffer the server accepts.
    server_max: u32,
}

struct Connection {
    stream: TcpStream,
    /// `directory dc1.ad.test at 127.0.0.21:389`, for messages.
    who: String,
    timeout: Duration,
    next_id: u32,
    messages: MessageReader,
    layer: Option<Layer>,
}

/// Entries found by one search; `complete` unless the server stopped at the size limit.
struct Found {
    entries: Vec<SearchEntry>,
    complete: bool,
}

impl Connection {
    fn fail(&self, what: impl std::fmt::Display) -> Error {
        Error::new(Kind::Directory, format!("{}: {what}", self.who))
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn timed_out(&self) -> Error {
        self.fail(format!("no answer within {} ms", self.timeout.as_millis()))
    }

    /// SASL GSSAPI: the Kerberos legs, then the security layer (RFC 4752 3.3).
    fn bind(&mut self, mut ctx: ClientCtx, first: Vec<u8>, principal: &str) -> Result<(), Error> {
        let mut token = first;
        let mut server_max = None;
        for _ in 0..MAX_BIND_LEGS {
            let id = self.id();
            let deadline = self.deadline();
            self.send(&request::bind_sasl(id, "GSSAPI", Some(&token)), deadline)?;
            let m = self.receive(deadline)?;
            let Response::Bind(b) = self.answer(id, m)? else {
                return Err(self.fail("answered the bind with another operation"));
            };
            match b.result.code {
                code::SUCCESS => {
                    let Some(server_max) = server_max else {
                        // An unprotected connection is not used, whoever offered it.
                        return Err(self.fail("completed the bind before a security layer was negotiated"));
                    };
                    if self.messages.buffered() != 0 {
                        return Err(self.fail("sent unprotected bytes after the bind"));
                    }
                    self.layer = Some(Layer { ctx, frames: FrameReader::new(MAX_FRAME as usize), server_max });
                    return Ok(());
                }
                code::SASL_BIND_IN_PROGRESS => {
                    let creds = b.server_sasl_creds.unwrap_or_default();
                    if !ctx.is_complete() {
                        token = ctx
                            .step(Some(&creds), None)
                            .map_err(|e| Error::gss(&format!("{}: completing the Kerberos bind", self.who), e))?
                            .map(|t| t.to_vec())
                            // Complete with nothing to say: RFC 4752 wants an empty response.
                            .unwrap_or_default();
                        if ctx.is_complete() {
                            self.check_context(&ctx, principal)?;
                        }
                    } else if server_max.is_none() {
                        let plain = ctx
                            .unwrap(&creds)
                            .map_err(|e| Error::gss(&format!("{}: reading its security layer offer", self.who), e))?;
                        let offer = SecurityLayer::decode(&plain).map_err(|e| self.fail(e))?;
                        let choice = ldap::choose_integrity(&offer, MAX_FRAME).map_err(|e| self.fail(e))?;
                        let answer = choice.encode(b"").map_err(|e| self.fail(e))?;
                        token = ctx
                            .wrap(false, &answer)
                            .map_err(|e| Error::gss(&format!("{}: choosing the security layer", self.who), e))?
                            .to_vec();
                        server_max = Some(offer.max_size);
                    } else {
                        return Err(self.fail("asked for another bind step after the security layer was chosen"));
                    }
                }
                c => {
                    return Err(self.fail(format!(
                        "refused the bind as {principal}: result {c} ({}){}",
                        code_name(c),
                        diagnostic(&b.result.diagnostic)
                    )))
                }
            }
        }
        Err(self.fail(format!("did not complete the bind in {MAX_BIND_LEGS} steps")))
    }

    /// The context must be the one a security layer needs, and ours: MIT
    /// may fall back to another credential when it lacks the mechanism.
    fn check_context(&self, ctx: &ClientCtx, principal: &str) -> Result<(), Error> {
        let flags = ctx.flags().map_err(|e| Error::gss("inspecting the directory's Kerberos context", e))?;
        for (flag, name) in
            [(CtxFlags::GSS_C_MUTUAL_FLAG, "mutual authentication"), (CtxFlags::GSS_C_INTEG_FLAG, "integrity")]
        {
            if !flags.contains(flag) {
                return Err(Error::new(Kind::Other, format!("{}: the Kerberos context lacks {name}", self.who)));
            }
        }
        let source = ctx
            .source_name()
            .and_then(|n| n.display_name())
            .map_err(|e| Error::gss("inspecting the directory's Kerberos context", e))?;
        let source = String::from_utf8_lossy(&source);
        if !same_principal(&source, principal) {
            return Err(Error::new(
                Kind::WrongCredential,
                format!("{}: the Kerberos context is {source}'s, not {principal}'s", self.who),
            ));
        }
        Ok(())
    }

    /// A message for request `id`: the unsolicited notice of disconnection
    /// and answers to other requests are failures.
    fn answer(&self, id: u32, m: Message) -> Result<Response, Error> {
        if let Response::Extended(x) = &m.op {
            if m.id == 0 {
                return Err(self.fail(format!(
                    "is closing the connection: result {} ({}){}",
                    x.result.code,
                    code_name(x.result.code),
                    diagnostic(&x.result.diagnostic)
                )));
            }
        }
        if m.id != id {
            return Err(self.fail(format!("answered request {} while {id} was asked", m.id)));
        }
        Ok(m.op)
    }

    fn naming_context(&mut self) -> Result<String, Error> {
        let filter = Filter::present("objectClass");
        let found = self.search(&Search {
            base: "",
            scope: Scope::Base,
            size_limit: 1,
            time_limit: self.time_limit(),
            filter: &filter,
            attributes: &["defaultNamingContext"],
        })?;
        let value = found.entries.first().and_then(|e| e.single("defaultNamingContext"));
        match value.map(std::str::from_utf8) {
            Some(Ok(dn)) if !dn.is_empty() => Ok(dn.to_owned()),
            _ => Err(self.fail("its root DSE has no defaultNamingContext")),
        }
    }

    fn time_limit(&self) -> u32 {
        u32::try_from(self.timeout.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    fn find(&mut self, base: &str, q: &Query) -> Result<Option<Entry>, Error> {
        let filter = q.filter();
        // Two, to see a second match: sAMAccountName and objectSid are unique
        // in a domain, a UPN should be but AD does not enforce it.
        let found = self.search(&Search {
            base,
            scope: Scope::Subtree,
            size_limit: 2,
            time_limit: self.time_limit(),
            filter: &filter,
            attributes: ATTRIBUTES,
        })?;
        if found.entries.len() > 1 || !found.complete {
            let dns: Vec<&str> = found.entries.iter().map(|e| e.dn.as_str()).collect();
            return Err(self.fail(format!("more than one object has {}: {}", q.describe(), dns.join("; "))));
        }
        found.entries.first().map(|e| entry(e).map_err(|why| self.fail(format!("{}: {why}", e.dn)))).transpose()
    }

    fn search(&mut self, s: &Search<'_>) -> Result<Found, Error> {
        let id = self.id();
        let deadline = self.deadline();
        self.send(&request::search(id, s), deadline)?;
        let mut entries = Vec::new();
        let mut references = 0;
        loop {
            let m = self.receive(deadline)?;
            match self.answer(id, m)? {
                Response::Entry(e) => {
                    if entries.len() >= s.size_limit as usize {
                        return Err(self.fail(format!("sent more than the {} entries asked for", s.size_limit)));
                    }
                    entries.push(e);
                }
                Response::Reference => {
                    references += 1;
                    if references > MAX_REFERENCES {
                        return Err(self.fail(format!("sent more than {MAX_REFERENCES} references to one search")));
                    }
                }
                Response::Done(r) => {
                    return match r.code {
                        code::SUCCESS => Ok(Found { entries, complete: true }),
                        code::SIZE_LIMIT_EXCEEDED => Ok(Found { entries, complete: false }),
                        c => Err(self.fail(format!(
                            "refused a search under `{}`: result {c} ({}){}",
                            s.base,
                            code_name(c),
                            diagnostic(&r.diagnostic)
                        ))),
                    };
                }
                Response::Bind(_) | Response::Extended(_) => {
                    return Err(self.fail("answered a search with another operation"));
                }
            }
        }
    }

    fn close(mut self) {
        let id = self.id();
        let deadline = self.deadline();
        // Courtesy only: the server drops the connection either way.
        let _ = self.send(&request::unbind(id), deadline);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn send(&mut self, pdu: &[u8], deadline: Instant) -> Result<(), Error> {
        let bytes = match &mut self.layer {
            None => pdu.to_vec(),
            Some(layer) => {
                let wrapped = layer
                    .ctx
                    .wrap(false, pdu)
                    .map_err(|e| Error::gss(&format!("{}: signing a request", self.who), e))?;
                if wrapped.len() > layer.server_max as usize {
                    let (len, max) = (wrapped.len(), layer.server_max);
                    return Err(self.fail(format!("a request of {len} bytes exceeds the {max} the server accepts")));
                }
                ldap::frame(&wrapped).map_err(|e| self.fail(e))?
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        self.stream.set_write_timeout(Some(left)).map_err(|e| self.fail(e))?;
        match self.stream.write_all(&bytes) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(self.timed_out()),
            Err(e) => Err(self.fail(format!("sending: {e}"))),
        }
    }

    /// The next message, through the integrity layer once it is in place.
    fn receive(&mut self, deadline: Instant) -> Result<Message, Error> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(m) = self.messages.next_message().map_err(|e| self.fail(e))? {
                return Ok(m);
            }
            let n = self.read(&mut buf, deadline)?;
            let bytes = buf.get(..n).unwrap_or_default();
            let Some(layer) = self.layer.as_mut() else {
                self.messages.feed(bytes);
                continue;
            };
            layer.frames.feed(bytes);
            loop {
                let frame = match layer.frames.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(Error::new(Kind::Directory, format!("{}: {e}", self.who))),
                };
                // A frame that fails its signature or comes out of sequence
                // (MIT reports both) ends the connection.
                let plain = layer
                    .ctx
                    .unwrap(&frame)
                    .map_err(|e| Error::gss(&format!("{}: checking the signature of its answer", self.who), e))?;
                self.messages.feed(&plain);
            }
        }
    }

    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, Error> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            self.stream.set_read_timeout(Some(left)).map_err(|e| self.fail(e))?;
            return match self.stream.read(buf) {
                Ok(0) => Err(self.fail("closed the connection")),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(self.timed_out()),
                Err(e) => Err(self.fail(format!("reading: {e}"))),
            };
        }
    }
}

/// `: <the server's words>`, escaped (they are untrusted and go to logs).
fn diagnostic(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.escape_debug())
    }
}

fn text(e: &SearchEntry, attribute: &str) -> Result<Option<String>, String> {
    match e.attribute(attribute) {
        None => Ok(None),
        Some(_) => {
            let value = e.single(attribute).ok_or_else(|| format!("{attribute} has more than one value"))?;
            let s = std::str::from_utf8(value).map_err(|_| format!("{attribute} is not UTF-8"))?;
            if s.chars().any(char::is_control) {
                return Err(format!("{attribute} holds a control character"));
            }
            Ok(Some(s.to_owned()))
        }
    }
}

fn entry(e: &SearchEntry) -> Result<Entry, String> {
    let sid = e.single("objectSid").ok_or("no single objectSid")?;
    let sid = Sid::from_bytes(sid).ok_or("an objectSid that is not a SID")?;
    let account = text(e, "sAMAccountName")?.ok_or("no sAMAccountName")?;
    let classes = e.attribute("objectClass").map(|a| a.values.as_slice()).unwrap_or_default();
    let is = |class: &str| classes.iter().any(|c| c.eq_ignore_ascii_case(class.as_bytes()));
    // objectClass lists the whole chain: a computer is a user too.
    let kind = if is("computer") {
        EntryKind::Computer
    } else if is("user") {
        EntryKind::User
    } else if is("group") {
        EntryKind::Group
    } else {
        EntryKind::Other
    };
    let disabled = match text(e, "userAccountControl")? {
        // INTEGER syntax: a 32-bit flag set, written signed in decimal.
        Some(uac) => {
            let value: i64 = uac.parse().map_err(|_| format!("userAccountControl `{uac}` is not a number"))?;
            let flags = u32::try_from(value & 0xffff_ffff).unwrap_or_default();
            matches!(kind, EntryKind::User | EntryKind::Computer) && flags & UF_ACCOUNTDISABLE != 0
        }
        None => false,
    };
    Ok(Entry { sid, account, kind, dn: e.dn.clone(), upn: text(e, "userPrincipalName")?, disabled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap::Attribute;

    fn attr(name: &str, values: &[&[u8]]) -> Attribute {
        Attribute { name: name.into(), values: values.iter().map(|v| v.to_vec()).collect() }
    }

    fn sample(extra: Vec<Attribute>) -> SearchEntry {
        let sid = Sid::parse("S-1-5-21-1-2-3-1107").unwrap().to_bytes();
        let mut attributes = vec![attr("objectSid", &[&sid]), attr("sAMAccountName", &[b"carol"])];
        attributes.extend(extra);
        SearchEntry { dn: "CN=carol,CN=Users,DC=ad,DC=test".into(), attributes }
    }

    #[test]
    fn kinds_from_the_object_class_chain_and_disabled_from_the_flags() {
        let classes = |c: &[&[u8]]| attr("objectClass", c);
        let user = entry(&sample(vec![
            classes(&[b"top", b"person", b"organizationalPerson", b"user"]),
            attr("userAccountControl", &[b"514"]),
            attr("userPrincipalName", &[b"carol@ad.test"]),
        ]))
        .unwrap();
        assert_eq!(
            user,
            Entry {
                sid: Sid::parse("S-1-5-21-1-2-3-1107").unwrap(),
                account: "carol".into(),
                kind: EntryKind::User,
                dn: "CN=carol,CN=Users,DC=ad,DC=test".into(),
                upn: Some("carol@ad.test".into()),
                disabled: true,
            }
        );
        let computer =
            entry(&sample(vec![classes(&[b"top", b"user", b"computer"]), attr("userAccountControl", &[b"4096"])]))
                .unwrap();
        assert_eq!((computer.kind, computer.disabled, computer.upn), (EntryKind::Computer, false, None));
        // A group's flags never make it disabled; a negative (high-bit) value is read.
        let group = entry(&sample(vec![classes(&[b"top", b"GROUP"]), attr("userAccountControl", &[b"2"])])).unwrap();
        assert_eq!((group.kind, group.disabled), (EntryKind::Group, false));
        let high = entry(&sample(vec![classes(&[b"user"]), attr("userAccountControl", &[b"-2147483646"])])).unwrap();
        assert!(high.disabled);
        assert_eq!(entry(&sample(vec![classes(&[b"foreignSecurityPrincipal"])])).unwrap().kind, EntryKind::Other);
    }

    #[test]
    fn entries_the_directory_should_not_send_are_refused() {
        let mut no_sid = sample(vec![]);
        no_sid.attributes.remove(0);
        assert!(entry(&no_sid).unwrap_err().contains("objectSid"));
        let mut bad_sid = sample(vec![]);
        bad_sid.attributes[0] = attr("objectSid", &[b"S-1-5-21"]);
        assert!(entry(&bad_sid).unwrap_err().contains("not a SID"));
        let mut two = sample(vec![]);
        two.attributes[1] = attr("sAMAccountName", &[b"a", b"b"]);
        assert!(entry(&two).unwrap_err().contains("more than one"));
        let mut control = sample(vec![]);
        control.attributes[1] = attr("sAMAccountName", &[b"car\nol"]);
        assert!(entry(&control).unwrap_err().contains("control"));
        let uac = sample(vec![attr("userAccountControl", &[b"0x2"])]);
        assert!(entry(&uac).unwrap_err().contains("not a number"));
        let upn = sample(vec![attr("userPrincipalName", &[&[0xff, 0xfe]])]);
        assert!(entry(&upn).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn names_become_queries_or_are_refused() {
        assert!(matches!(Query::name("alice"), Ok(Query::Account(a)) if a == "alice"));
        assert!(matches!(Query::name("Domain Users"), Ok(Query::Account(_))));
        assert!(matches!(Query::name("carol.jones@corp.example"), Ok(Query::Upn(_))));
        let long_group = "g".repeat(256);
        assert!(matches!(Query::name(&long_group), Ok(Query::Account(_))));
        for bad in ["", "ADTEST\\alice", "a\u{0}b", "a\nb", "@corp", "carol@", "x*", "a,b", &"g".repeat(257)] {
            let e = Query::name(bad).err().unwrap_or_else(|| panic!("{bad:?}"));
            assert_eq!(e.kind(), Kind::BadName, "{bad:?}: {e}");
        }
        let upn = format!("{}@x", "u".repeat(1024));
        assert_eq!(Query::name(&upn).err().map(|e| e.kind()), Some(Kind::BadName));
    }

    #[test]
    fn filters_are_values_not_strings() {
        // Filter metacharacters stay bytes of the value: nothing to inject.
        let Filter::And(parts) = Query::Upn("*)(objectClass=*".into()).filter() else { panic!() };
        assert_eq!(parts[0], Filter::equal("userPrincipalName", "*)(objectClass=*"));
        let sid = Sid::parse("S-1-5-21-1-2-3-512").unwrap();
        let Filter::And(parts) = Query::Sid(sid.clone()).filter() else { panic!() };
        assert_eq!(parts, [Filter::equal("objectSid", sid.to_bytes()), Filter::present("sAMAccountName")]);
    }

    /// Callers share one directory and run it on blocking threads.
    #[test]
    fn a_directory_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Directory>();
        shared::<Entry>();
    }

    /// A bad name is refused before any KDC or directory is asked; an empty
    /// batch asks nothing either.
    #[test]
    fn bad_names_and_empty_batches_contact_nothing() {
        let d = Arc::new(Delegator::new("svc@NO.REALM", "/nonexistent/kcd-unit.keytab", "NO.REALM"));
        let dir = Directory::new(d, "dc.no.realm", 1, None, Duration::from_secs(1));
        assert_eq!(dir.lookup(&["alice", "NO\\bob"]).unwrap_err().kind(), Kind::BadName);
        assert!(dir.lookup(&[]).unwrap().is_empty());
        assert!(dir.by_sid(&[]).unwrap().is_empty());
        // A host that makes no SPN.
        let dir = Directory::new(
            Arc::new(Delegator::new("svc@NO.REALM", "/nonexistent/kcd-unit.keytab", "NO.REALM")),
            "dc one",
            389,
            None,
            Duration::from_secs(1),
        );
        assert_eq!(dir.lookup(&["alice"]).unwrap_err().kind(), Kind::BadName);
    }
}
