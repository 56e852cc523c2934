//! The one place with `unsafe`: the GSSAPI calls the `libgssapi` crate does not
//! wrap.
//!
//! - `gss_acquire_cred_from` with a credential store lets the service account's
//!   credential come from its own keytab into its own memory cache, instead of
//!   from process-wide defaults (the default cache could hold another user's
//!   ticket, which MIT would silently fall back to).
//! - Acceptance (`gss_accept_sec_context`) is done here rather than through
//!   `libgssapi::ServerCtx` because the client's name must be asked for its PAC
//!   attributes (`gss_get_name_attribute`), which needs the raw name handle.
//! - Every credential kcd makes gets the encryption types it may negotiate
//!   (`gss_krb5_set_allowable_enctypes`, `enctypes.rs`), which needs the raw
//!   credential handle: so the impersonation (`gss_acquire_cred_impersonate_name`)
//!   is done here too, and the keytab's key types are read with MIT's keytab
//!   API (libkrb5), the same reading MIT's AS exchange makes.

use std::ffi::{c_char, c_uint, c_void, CStr, CString};
use std::ptr;

use libgssapi::credential::Cred;
use libgssapi::error::{Error, MajorFlags};
use libgssapi_sys::{
    gss_OID, gss_OID_desc, gss_OID_set_desc, gss_accept_sec_context, gss_acquire_cred_from,
    gss_acquire_cred_impersonate_name, gss_buffer_desc, gss_channel_bindings_struct, gss_cred_id_t, gss_ctx_id_t,
    gss_delete_sec_context, gss_display_name, gss_get_name_attribute, gss_import_name, gss_inquire_cred,
    gss_key_value_element_desc, gss_key_value_set_desc, gss_name_t, gss_release_buffer, gss_release_cred,
    gss_release_name, OM_uint32, GSS_S_COMPLETE,
};

/// GSS_KRB5_NT_PRINCIPAL_NAME: 1.2.840.113554.1.2.2.1
const KRB5_NT_PRINCIPAL: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];
/// GSS_KRB5_NT_ENTERPRISE_NAME: 1.2.840.113554.1.2.2.6
const KRB5_NT_ENTERPRISE: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x06];
/// The Kerberos 5 mechanism: 1.2.840.113554.1.2.2
const KRB5_MECH: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
const GSS_C_BOTH: i32 = 0;
const GSS_C_ACCEPT: i32 = 2;
const GSS_C_INITIATE: i32 = 1;
const GSS_C_INDEFINITE: OM_uint32 = 0xffff_ffff;
const GSS_S_CONTINUE_NEEDED: OM_uint32 = 1;
/// Returned by MIT (1.19+) when the initiator's channel bindings were present
/// and matched ours.
pub const GSS_C_CHANNEL_BOUND_FLAG: u32 = 0x800;

// From MIT's <gssapi/gssapi_krb5.h>, which libgssapi-sys does not bind; the
// function is exported by libgssapi_krb5, which it links.
extern "C" {
    fn gss_krb5_set_allowable_enctypes(
        minor_status: *mut OM_uint32,
        cred: gss_cred_id_t,
        num_ktypes: OM_uint32,
        ktypes: *mut i32,
    ) -> OM_uint32;
}

/// Limits the encryption types MIT negotiates with `cred`: the session keys
/// it asks the KDC for (TGS requests), and, when accepting, the session keys
/// and subkeys it takes. MIT copies the list.
fn limit_enctypes(cred: gss_cred_id_t, enctypes: &[i32]) -> Result<(), Error> {
    let mut list = enctypes.to_vec();
    let mut minor: OM_uint32 = 0;
    // SAFETY: `cred` is a live credential handle owned by the caller; `list`
    // holds `len` enctypes and outlives the call, and MIT copies it.
    let major =
        unsafe { gss_krb5_set_allowable_enctypes(&mut minor, cred, list.len() as OM_uint32, list.as_mut_ptr()) };
    check(major, minor)
}

fn check(major: OM_uint32, minor: OM_uint32) -> Result<(), Error> {
    if major == GSS_S_COMPLETE {
        Ok(())
    } else {
        Err(Error { major: MajorFlags::from_bits_retain(major), minor })
    }
}

/// The service account's initiator credential (its TGT), with the limit on
/// its encryption types (`enctypes`; none when RC4 is allowed), which its
/// impersonated credentials get too. `raw` is the handle `cred` owns, for the calls
/// libgssapi does not wrap: valid as long as this value (which holds a clone
/// of `cred`) lives.
#[derive(Clone)]
pub struct ServiceCred {
    cred: Cred,
    raw: gss_cred_id_t,
    enctypes: Option<&'static [i32]>,
}

// SAFETY: as for AcceptorCred below: MIT's credential handles may be used from
// several threads (each has its own lock); `raw` is only ever passed to GSSAPI.
unsafe impl Send for ServiceCred {}
unsafe impl Sync for ServiceCred {}

impl ServiceCred {
    pub fn cred(&self) -> &Cred {
        &self.cred
    }
}

/// An initiator credential for `principal`, with its keys from `client_keytab`
/// (a `FILE:` name) and its tickets in `ccache` (a `MEMORY:` name of its own);
/// `enctypes`, if any, limits the session keys it asks for.
pub fn acquire_from_keytab(
    principal: &str,
    client_keytab: &str,
    ccache: &str,
    enctypes: Option<&'static [i32]>,
) -> Result<ServiceCred, Error> {
    let store = [("client_keytab", client_keytab), ("ccache", ccache)];
    // All mechanisms: impersonation may be asked for SPNEGO or Kerberos.
    let raw = acquire(Some(principal), &store, GSS_C_INITIATE, false)?;
    // SAFETY: `raw` is a credential handle GSSAPI just gave us; Cred owns it
    // from here (and releases it if limiting fails).
    let cred = unsafe { Cred::from_c(raw) };
    if let Some(enctypes) = enctypes {
        limit_enctypes(raw, enctypes)?;
    }
    Ok(ServiceCred { cred, raw, enctypes })
}

/// S4U2Self: a credential in `user`'s name (an enterprise name when
/// `enterprise`), for the Kerberos mechanism, from the service's TGT; limited
/// like the service's own, so that its S4U2Proxy requests ask for allowed
/// session keys only (MIT does not pass the limit on).
pub fn impersonate(service: &ServiceCred, user: &str, enterprise: bool) -> Result<Cred, Error> {
    let mut name = import_name(user, if enterprise { &KRB5_NT_ENTERPRISE } else { &KRB5_NT_PRINCIPAL })?;
    let mut krb5 = oid(&KRB5_MECH);
    let mut mechs = gss_OID_set_desc { count: 1, elements: &mut krb5 };
    let mut minor: OM_uint32 = 0;
    let mut raw: gss_cred_id_t = ptr::null_mut();
    // SAFETY: `service.raw` is alive while `service` is (it holds the owning
    // Cred); `name` was just imported; `mechs` points at `krb5`, which points
    // at a static array; the out-parameter is a local, the others are null.
    let major = unsafe {
        gss_acquire_cred_impersonate_name(
            &mut minor,
            service.raw,
            name,
            GSS_C_INDEFINITE,
            &mut mechs,
            GSS_C_INITIATE,
            &mut raw,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    let mut release_minor: OM_uint32 = 0;
    // SAFETY: `name` came from gss_import_name and is released once.
    unsafe { gss_release_name(&mut release_minor, &mut name) };
    check(major, minor)?;
    // SAFETY: a credential handle GSSAPI just gave us; Cred owns it from here.
    let cred = unsafe { Cred::from_c(raw) };
    if let Some(enctypes) = service.enctypes {
        limit_enctypes(raw, enctypes)?;
    }
    Ok(cred)
}

/// The service's credential for accepting clients' Kerberos tickets: any key in
/// `keytab` (the caller checks which SPN the ticket was for) and, usage "both",
/// the service account's own TGT (`principal`, from the same keytab, in `ccache`)
/// so that MIT can turn a client's forwardable ticket into S4U2Proxy evidence.
/// The acceptor's keys (`keys`) outlive the credential's own handle on them.
pub struct AcceptorCred(
    gss_cred_id_t,
    // Never read: held so that the keys outlive MIT's handle on them.
    #[allow(dead_code)] Option<std::sync::Arc<MemoryKeytab>>,
);

// SAFETY: MIT's credential handles may be used from several threads; gatehouse
// only reads this one after acquiring it.
unsafe impl Send for AcceptorCred {}
unsafe impl Sync for AcceptorCred {}

impl Drop for AcceptorCred {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: the handle came from gss_acquire_cred_from and is released once.
        unsafe { gss_release_cred(&mut minor, &mut self.0) };
    }
}

/// `initiate`: usage "both" (needs the keytab's first principal to get a TGT
/// now, i.e. a KDC and a user principal first in the keytab); otherwise usage
/// "accept" alone, which needs nothing but the keytab.
/// `enctypes`: the session keys and subkeys it accepts (and, for "both", asks for).
/// `keys`: the acceptor's keys in memory, or None to have MIT search the file
/// `client_keytab` at each ticket; the initiator half always takes its key
/// from the file (once per TGT).
pub fn acquire_acceptor(
    keys: Option<std::sync::Arc<MemoryKeytab>>,
    client_keytab: &str,
    ccache: &str,
    initiate: bool,
    enctypes: &'static [i32],
) -> Result<AcceptorCred, Error> {
    // No name: the acceptor half then takes every key in the keytab (every SPN of
    // the account; the caller checks the ticket's SPN), and the initiator half
    // the keytab's first principal. MIT's file replay cache is off: gatehouse
    // keeps its own in memory (`replay.rs`).
    let keytab = keys.as_ref().map_or(client_keytab, |k| k.name());
    let store = [("keytab", keytab), ("client_keytab", client_keytab), ("ccache", ccache), ("rcache", "none:")];
    // Kerberos alone: SPNEGO is unwrapped by gatehouse itself.
    let raw = acquire(None, &store, if initiate { GSS_C_BOTH } else { GSS_C_ACCEPT }, true)?;
    let cred = AcceptorCred(raw, keys);
    limit_enctypes(cred.0, enctypes)?;
    Ok(cred)
}

/// How long the credential's initiator half (its TGT) stays valid; None for an
/// accept-only credential, which does not expire.
pub fn lifetime(cred: &AcceptorCred) -> Option<std::time::Duration> {
    let mut minor: OM_uint32 = 0;
    let mut lifetime: OM_uint32 = 0;
    // SAFETY: `cred.0` is a live credential handle; only the lifetime is asked
    // for (the other out-parameters are null, so nothing needs releasing).
    let major = unsafe {
        gss_inquire_cred(&mut minor, cred.0, ptr::null_mut(), &mut lifetime, ptr::null_mut(), ptr::null_mut())
    };
    (major == GSS_S_COMPLETE && lifetime != GSS_C_INDEFINITE)
        .then(|| std::time::Duration::from_secs(u64::from(lifetime)))
}

fn acquire(
    principal: Option<&str>,
    store: &[(&str, &str)],
    usage: i32,
    krb5_only: bool,
) -> Result<gss_cred_id_t, Error> {
    let nul = || Error { major: MajorFlags::GSS_S_FAILURE, minor: 0 };
    let keys: Vec<CString> =
        store.iter().map(|(k, _)| CString::new(*k)).collect::<Result<_, _>>().map_err(|_| nul())?;
    let values: Vec<CString> =
        store.iter().map(|(_, v)| CString::new(*v)).collect::<Result<_, _>>().map_err(|_| nul())?;
    let mut elements: Vec<gss_key_value_element_desc> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| gss_key_value_element_desc { key: k.as_ptr(), value: v.as_ptr() })
        .collect();
    let store = gss_key_value_set_desc { count: elements.len() as OM_uint32, elements: elements.as_mut_ptr() };
    let mut minor: OM_uint32 = 0;
    let mut name: gss_name_t = ptr::null_mut();
    if let Some(principal) = principal {
        name = import_name(principal, &KRB5_NT_PRINCIPAL)?;
    }
    let mut krb5 = oid(&KRB5_MECH);
    let mut mechs = gss_OID_set_desc { count: 1, elements: &mut krb5 };
    let mut cred: gss_cred_id_t = ptr::null_mut();
    // SAFETY: `name` is null or was just imported; `store` points at `elements`,
    // whose key and value pointers point into `keys` and `values`; `mechs` points
    // at `krb5`, which points at a static array; all alive until after the call.
    let major = unsafe {
        gss_acquire_cred_from(
            &mut minor,
            name,
            GSS_C_INDEFINITE,
            if krb5_only { &mut mechs } else { ptr::null_mut() },
            usage,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if !name.is_null() {
        let mut release_minor: OM_uint32 = 0;
        // SAFETY: `name` came from gss_import_name and is released once.
        unsafe { gss_release_name(&mut release_minor, &mut name) };
    }
    check(major, minor)?;
    Ok(cred)
}

fn oid(bytes: &'static [u8]) -> gss_OID_desc {
    gss_OID_desc { length: bytes.len() as OM_uint32, elements: bytes.as_ptr() as *mut c_void }
}

fn import_name(principal: &str, name_type: &'static [u8]) -> Result<gss_name_t, Error> {
    let mut minor: OM_uint32 = 0;
    let mut name: gss_name_t = ptr::null_mut();
    let mut name_buf = gss_buffer_desc { length: principal.len(), value: principal.as_ptr() as *mut c_void };
    let mut oid = oid(name_type);
    // SAFETY: every pointer refers to a live local for the duration of the call;
    // GSSAPI copies the name and does not keep the buffer.
    check(unsafe { gss_import_name(&mut minor, &mut name_buf, &mut oid, &mut name) }, minor)?;
    Ok(name)
}

/// What accepting one Kerberos AP-REQ told us.
pub struct Accepted {
    /// The AP-REP for mutual authentication (may be empty).
    pub output: Vec<u8>,
    /// The client, e.g. `alice@AD.TEST`.
    pub client: String,
    pub flags: u32,
    /// The PAC's UPN_DNS_INFO buffer, when the ticket had a verified PAC.
    pub upn_dns_info: Option<Vec<u8>>,
    /// The PAC's logon information buffer (KERB_VALIDATION_INFO), likewise.
    pub logon_info: Option<Vec<u8>>,
    /// S4U2Proxy evidence: present when the client's ticket was forwardable.
    pub proxy: Option<Cred>,
}

/// Owns a buffer GSSAPI allocated.
struct OwnedBuf(gss_buffer_desc);

impl OwnedBuf {
    fn new() -> OwnedBuf {
        OwnedBuf(gss_buffer_desc { length: 0, value: ptr::null_mut() })
    }
    fn to_vec(&self) -> Vec<u8> {
        if self.0.value.is_null() || self.0.length == 0 {
            return Vec::new();
        }
        // SAFETY: GSSAPI filled `value` with `length` bytes it owns until release.
        unsafe { std::slice::from_raw_parts(self.0.value as *const u8, self.0.length) }.to_vec()
    }
}

impl Drop for OwnedBuf {
    fn drop(&mut self) {
        if !self.0.value.is_null() {
            let mut minor = 0;
            // SAFETY: the buffer was allocated by GSSAPI and is released once.
            unsafe { gss_release_buffer(&mut minor, &mut self.0) };
        }
    }
}

struct OwnedName(gss_name_t);

impl Drop for OwnedName {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            // SAFETY: the name was returned by GSSAPI and is released once.
            unsafe { gss_release_name(&mut minor, &mut self.0) };
        }
    }
}

fn display(name: &OwnedName) -> Result<String, Error> {
    let mut minor = 0;
    let mut out = OwnedBuf::new();
    // SAFETY: `name` is a live name handle; `out` receives a GSSAPI buffer.
    check(unsafe { gss_display_name(&mut minor, name.0, &mut out.0, ptr::null_mut()) }, minor)?;
    Ok(String::from_utf8_lossy(&out.to_vec()).into_owned())
}

/// A name attribute's value, when present and authenticated. For the PAC's
/// buffers (`urn:mspac:<buffer>`), MIT says "authenticated" only when it
/// verified the PAC's server signature with our key and its client name and
/// time against the ticket's; an unverified PAC is never read.
fn attribute(name: &OwnedName, attr: &str) -> Option<Vec<u8>> {
    let mut minor = 0;
    let mut attr_buf = gss_buffer_desc { length: attr.len(), value: attr.as_ptr() as *mut c_void };
    let (mut authenticated, mut complete, mut more) = (0, 0, -1);
    let mut value = OwnedBuf::new();
    // SAFETY: `name` is live; `attr_buf` points at `attr` for the duration of the
    // call; the value buffer is GSSAPI's and freed by OwnedBuf; no display value.
    let major = unsafe {
        gss_get_name_attribute(
            &mut minor,
            name.0,
            &mut attr_buf,
            &mut authenticated,
            &mut complete,
            &mut value.0,
            ptr::null_mut(),
            &mut more,
        )
    };
    (major == GSS_S_COMPLETE && authenticated != 0).then(|| value.to_vec())
}

/// Accepts one Kerberos (RFC 4121) initial context token. The context is single
/// round trip; it is deleted before returning (gatehouse needs no per-message
/// protection from it). The S4U2Proxy evidence credential, if any, is limited
/// to `evidence_enctypes` (MIT does not pass the acceptor's limit on to it).
pub fn accept(
    cred: &AcceptorCred,
    token: &[u8],
    channel_bindings: Option<&[u8]>,
    evidence_enctypes: Option<&[i32]>,
) -> Result<Accepted, Error> {
    let mut minor: OM_uint32 = 0;
    let mut ctx: gss_ctx_id_t = ptr::null_mut();
    let mut input = gss_buffer_desc { length: token.len(), value: token.as_ptr() as *mut c_void };
    let empty = || gss_buffer_desc { length: 0, value: ptr::null_mut() };
    let mut bindings = gss_channel_bindings_struct {
        initiator_addrtype: 0,
        initiator_address: empty(),
        acceptor_addrtype: 0,
        acceptor_address: empty(),
        application_data: empty(),
    };
    let bindings_ptr = match channel_bindings {
        Some(data) => {
            bindings.application_data = gss_buffer_desc { length: data.len(), value: data.as_ptr() as *mut c_void };
            &mut bindings as *mut gss_channel_bindings_struct
        }
        None => ptr::null_mut(),
    };
    let mut source = OwnedName(ptr::null_mut());
    let mut mech: gss_OID = ptr::null_mut();
    let mut output = OwnedBuf::new();
    let mut flags: OM_uint32 = 0;
    let mut delegated: gss_cred_id_t = ptr::null_mut();
    // SAFETY: `input`, `bindings` and the data they point at outlive the call;
    // the out-parameters are locals that GSSAPI fills and we release below.
    let major = unsafe {
        gss_accept_sec_context(
            &mut minor,
            &mut ctx,
            cred.0,
            &mut input,
            bindings_ptr,
            &mut source.0,
            &mut mech,
            &mut output.0,
            &mut flags,
            ptr::null_mut(),
            &mut delegated,
        )
    };
    // Taken before anything can return, so that it is always released.
    // SAFETY: a non-null handle GSSAPI just gave us; Cred owns it from here.
    let proxy = (!delegated.is_null()).then(|| unsafe { Cred::from_c(delegated) });
    // Evidence that cannot be limited is not used (delegation then starts
    // with S4U2Self, which is); the client's ticket itself is still good.
    let proxy = proxy.filter(|_| evidence_enctypes.is_none_or(|e| limit_enctypes(delegated, e).is_ok()));
    if !ctx.is_null() {
        let mut delete_minor = 0;
        // SAFETY: `ctx` is the context GSSAPI created above; deleted once.
        unsafe { gss_delete_sec_context(&mut delete_minor, &mut ctx, ptr::null_mut()) };
    }
    if major == GSS_S_CONTINUE_NEEDED {
        return Err(Error { major: MajorFlags::GSS_S_FAILURE, minor: 0 });
    }
    check(major, minor)?;
    Ok(Accepted {
        output: output.to_vec(),
        client: display(&source)?,
        flags,
        upn_dns_info: attribute(&source, "urn:mspac:upn-dns-info"),
        logon_info: attribute(&source, "urn:mspac:logon-info"),
        proxy,
    })
}

// MIT's keytab API (libkrb5, <krb5/krb5.h>). The two structs are MIT's public
// ABI, field for field: krb5_magic, krb5_enctype and krb5_timestamp are
// 32-bit ints, krb5_kvno an unsigned int, the others pointers.
#[repr(C)]
struct Krb5Keyblock {
    magic: i32,
    enctype: i32,
    length: c_uint,
    contents: *mut u8,
}

#[repr(C)]
struct Krb5KeytabEntry {
    magic: i32,
    principal: *mut c_void,
    timestamp: i32,
    vno: c_uint,
    key: Krb5Keyblock,
}

#[link(name = "krb5")]
extern "C" {
    fn krb5_init_context(context: *mut *mut c_void) -> i32;
    fn krb5_free_context(context: *mut c_void);
    fn krb5_parse_name(context: *mut c_void, name: *const c_char, principal: *mut *mut c_void) -> i32;
    fn krb5_free_principal(context: *mut c_void, principal: *mut c_void);
    fn krb5_principal_compare(context: *mut c_void, a: *const c_void, b: *const c_void) -> c_uint;
    fn krb5_kt_resolve(context: *mut c_void, name: *const c_char, keytab: *mut *mut c_void) -> i32;
    fn krb5_kt_close(context: *mut c_void, keytab: *mut c_void) -> i32;
    fn krb5_kt_start_seq_get(context: *mut c_void, keytab: *mut c_void, cursor: *mut *mut c_void) -> i32;
    fn krb5_kt_next_entry(
        context: *mut c_void,
        keytab: *mut c_void,
        entry: *mut Krb5KeytabEntry,
        cursor: *mut *mut c_void,
    ) -> i32;
    fn krb5_kt_end_seq_get(context: *mut c_void, keytab: *mut c_void, cursor: *mut *mut c_void) -> i32;
    fn krb5_free_keytab_entry_contents(context: *mut c_void, entry: *mut Krb5KeytabEntry) -> i32;
}

/// A krb5 context and what was opened with it, released in reverse order.
struct Krb5 {
    context: *mut c_void,
    principal: *mut c_void,
    keytab: *mut c_void,
}

impl Drop for Krb5 {
    fn drop(&mut self) {
        // SAFETY: each handle is null or was returned by the matching call
        // on this context, and is released once, before the context.
        unsafe {
            if !self.keytab.is_null() {
                krb5_kt_close(self.context, self.keytab);
            }
            if !self.principal.is_null() {
                krb5_free_principal(self.context, self.principal);
            }
            krb5_free_context(self.context);
        }
    }
}

/// The acceptor's keys, copied from the keytab file into a `MEMORY:` keytab
/// of their own when the delegator starts and on each reload: MIT searches a
/// `FILE:` keytab by opening and reading the file at every accepted ticket,
/// a memory one is a list in the process. One per load, never changed after
/// it is filled (MIT's memory keytab is not safe to change while another
/// thread searches it). MIT destroys a memory keytab, keys zeroed, when its
/// last handle is closed: this value holds one (`handle`), and every
/// credential made with it holds an Arc of this value, so the keys go when
/// the last of them does.
pub struct MemoryKeytab {
    name: CString,
    entries: usize,
    // Never read: held open so that MIT keeps the keys.
    #[allow(dead_code)]
    handle: Krb5,
}

// SAFETY: after loading, the context and handle in `handle` are only used by
// Drop (which has the value to itself); MIT's memory keytabs lock their own
// data for the credentials that search them from any thread.
unsafe impl Send for MemoryKeytab {}
unsafe impl Sync for MemoryKeytab {}

impl MemoryKeytab {
    /// The name to give GSSAPI (`MEMORY:gatehouse-kt-...`).
    pub fn name(&self) -> &str {
        self.name.to_str().unwrap_or_default()
    }

    /// How many keys it holds.
    pub fn entries(&self) -> usize {
        self.entries
    }
}

#[link(name = "krb5")]
extern "C" {
    fn krb5_kt_add_entry(context: *mut c_void, keytab: *mut c_void, entry: *mut Krb5KeytabEntry) -> i32;
}

/// A krb5 context with one keytab resolved on it; both released by Drop.
fn open_keytab(name: &CStr) -> Result<Krb5, i32> {
    let mut k = Krb5 { context: ptr::null_mut(), principal: ptr::null_mut(), keytab: ptr::null_mut() };
    // SAFETY: the out-parameter is a field of `k`; on failure MIT leaves it
    // null, and dropping `k` frees a null context, which MIT allows.
    let code = unsafe { krb5_init_context(&mut k.context) };
    if code != 0 {
        return Err(code);
    }
    // SAFETY: the context is live; the name is NUL-terminated and outlives
    // the call; the handle is closed by `k`'s Drop.
    let code = unsafe { krb5_kt_resolve(k.context, name.as_ptr(), &mut k.keytab) };
    if code != 0 {
        return Err(code);
    }
    Ok(k)
}

/// Every entry of the keytab `from` (a `FILE:` name), copied into a new
/// memory keytab called `to` (a `MEMORY:` name not used before in this
/// process). A krb5 error code when the file cannot be read or holds no key
/// (nothing is kept then: the handle is closed and MIT destroys the copy).
pub fn load_keytab(from: &str, to: &str) -> Result<MemoryKeytab, i32> {
    let (Ok(from), Ok(to)) = (CString::new(from), CString::new(to)) else {
        return Err(crate::codes::KRB5_KT_BADNAME);
    };
    let file = open_keytab(&from)?;
    let handle = open_keytab(&to)?;
    match copy_entries(&file, &handle)? {
        0 => Err(crate::codes::KRB5_KT_NOTFOUND),
        entries => Ok(MemoryKeytab { name: to, entries, handle }),
    }
}

/// Copies in the file's order: MIT's memory keytab puts each added entry
/// first, so they are added last to first. (The order matters: MIT takes
/// "the keytab's first principal" for the acceptor's TGT; in reverse it was
/// an SPN's, whose TGT cannot do S4U2Proxy.)
fn copy_entries(file: &Krb5, memory: &Krb5) -> Result<usize, i32> {
    let mut cursor: *mut c_void = ptr::null_mut();
    // SAFETY: context and keytab are live; the cursor is a local that is
    // ended below once it was started.
    let code = unsafe { krb5_kt_start_seq_get(file.context, file.keytab, &mut cursor) };
    if code != 0 {
        return Err(code);
    }
    let mut read = Vec::new();
    let mut result = loop {
        // SAFETY: an all-zero entry is a valid out-parameter (null pointers,
        // zero numbers); MIT fills it on success.
        let mut entry: Krb5KeytabEntry = unsafe { std::mem::zeroed() };
        // SAFETY: context, keytab and the started cursor are live.
        let code = unsafe { krb5_kt_next_entry(file.context, file.keytab, &mut entry, &mut cursor) };
        if code != 0 {
            break if code == crate::codes::KRB5_KT_END { Ok(read.len()) } else { Err(code) };
        }
        read.push(entry);
    };
    // SAFETY: the cursor was started on this keytab and is ended once.
    unsafe { krb5_kt_end_seq_get(file.context, file.keytab, &mut cursor) };
    for entry in read.iter_mut().rev() {
        if result.is_ok() {
            // SAFETY: `memory` is a live memory keytab on its own context;
            // MIT copies the entry's principal and key into its list (under
            // the keytab's lock), so the entry stays ours to free.
            let code = unsafe { krb5_kt_add_entry(memory.context, memory.keytab, entry) };
            if code != 0 {
                result = Err(code);
            }
        }
        // SAFETY: each entry was filled by krb5_kt_next_entry and is freed
        // (its key zeroed by MIT) once, here.
        unsafe { krb5_free_keytab_entry_contents(file.context, entry) };
    }
    result
}

/// The encryption types of `principal`'s keys in `keytab` (a `FILE:` name)
/// with the highest key version number: the keys MIT's AS exchange offers
/// (`krb5_get_init_creds_keytab` takes the newest kvno's). A krb5 error code
/// when the keytab cannot be read. The keys are freed (and zeroed by MIT) at
/// once; only their types are kept.
pub fn keytab_enctypes(keytab: &str, principal: &str) -> Result<Vec<i32>, i32> {
    let (keytab, principal) = match (CString::new(keytab), CString::new(principal)) {
        (Ok(k), Ok(p)) => (k, p),
        _ => return Err(crate::codes::KRB5_KT_BADNAME),
    };
    let mut k = Krb5 { context: ptr::null_mut(), principal: ptr::null_mut(), keytab: ptr::null_mut() };
    // SAFETY: the out-parameter is a local; on failure MIT leaves it null.
    let code = unsafe { krb5_init_context(&mut k.context) };
    if code != 0 {
        // Dropping `k` frees a null context, which MIT allows.
        return Err(code);
    }
    // SAFETY: the context is live; the names are NUL-terminated and outlive
    // the calls; the out-parameters are fields of `k`, released by its Drop.
    let code = unsafe { krb5_parse_name(k.context, principal.as_ptr(), &mut k.principal) };
    if code != 0 {
        return Err(code);
    }
    // SAFETY: as above.
    let code = unsafe { krb5_kt_resolve(k.context, keytab.as_ptr(), &mut k.keytab) };
    if code != 0 {
        return Err(code);
    }
    let mut cursor: *mut c_void = ptr::null_mut();
    // SAFETY: context and keytab are live; the cursor is a local that is
    // ended below once it was started.
    let code = unsafe { krb5_kt_start_seq_get(k.context, k.keytab, &mut cursor) };
    if code != 0 {
        return Err(code);
    }
    let (mut newest, mut enctypes) = (0, Vec::new());
    let result = loop {
        // SAFETY: an all-zero entry is a valid out-parameter (null pointers,
        // zero numbers); MIT fills it on success.
        let mut entry: Krb5KeytabEntry = unsafe { std::mem::zeroed() };
        // SAFETY: context, keytab and the started cursor are live.
        let code = unsafe { krb5_kt_next_entry(k.context, k.keytab, &mut entry, &mut cursor) };
        if code != 0 {
            break if code == crate::codes::KRB5_KT_END { Ok(()) } else { Err(code) };
        }
        // SAFETY: `entry.principal` was filled by MIT and is live until the
        // entry's contents are freed, right after.
        let mine = unsafe { krb5_principal_compare(k.context, entry.principal, k.principal) } != 0;
        if mine && entry.vno > newest {
            (newest, enctypes) = (entry.vno, Vec::new());
        }
        if mine && entry.vno == newest {
            enctypes.push(entry.key.enctype);
        }
        // SAFETY: the entry was filled by krb5_kt_next_entry and is freed once.
        unsafe { krb5_free_keytab_entry_contents(k.context, &mut entry) };
    };
    // SAFETY: the cursor was started on this keytab and is ended once.
    unsafe { krb5_kt_end_seq_get(k.context, k.keytab, &mut cursor) };
    result.map(|()| enctypes)
}

// ---- Changing a password: MIT krb5's own API (RFC 3244 through kpasswd) ----
//
// GSSAPI has no password change, so these few krb5 calls are declared here
// by hand (libgssapi-sys binds GSSAPI alone). Every handle is made and freed
// inside `change_password`; nothing krb5 leaves this function.

type Krb5Context = *mut c_void;
type Krb5Principal = *mut c_void;
type Krb5InitCredsOpt = *mut c_void;

/// `krb5_data`.
#[repr(C)]
struct Krb5Data {
    magic: i32,
    length: u32,
    data: *mut std::ffi::c_char,
}

impl Krb5Data {
    fn empty() -> Krb5Data {
        Krb5Data { magic: 0, length: 0, data: ptr::null_mut() }
    }

    /// The bytes, as text (lossy: the KDC's words are for people).
    fn text(&self) -> String {
        if self.data.is_null() || self.length == 0 {
            return String::new();
        }
        // SAFETY: MIT sets `data` to `length` bytes it owns until
        // krb5_free_data_contents, which the caller runs after this.
        let bytes = unsafe { std::slice::from_raw_parts(self.data as *const u8, self.length as usize) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Room for a `krb5_creds`, which callers of krb5_get_init_creds_password
/// allocate: 120 bytes on LP64 in MIT 1.20's krb5.h; 512, 8-aligned, zeroed
/// (as MIT expects before the call). `tests::krb5_creds_fits` compiles a
/// C check of the size against the installed krb5.h.
#[repr(C, align(8))]
struct CredsSpace([u8; CREDS_SPACE]);
const CREDS_SPACE: usize = 512;
#[cfg(test)]
pub const CREDS_ROOM: usize = CREDS_SPACE;

const KRB5_PRINCIPAL_PARSE_ENTERPRISE: i32 = 0x4;

#[link(name = "krb5")]
extern "C" {
    fn krb5_parse_name_flags(
        context: Krb5Context,
        name: *const std::ffi::c_char,
        flags: i32,
        out: *mut Krb5Principal,
    ) -> i32;
    fn krb5_get_init_creds_opt_alloc(context: Krb5Context, opt: *mut Krb5InitCredsOpt) -> i32;
    fn krb5_get_init_creds_opt_free(context: Krb5Context, opt: Krb5InitCredsOpt);
    fn krb5_get_init_creds_opt_set_tkt_life(opt: Krb5InitCredsOpt, lifetime: i32);
    fn krb5_get_init_creds_opt_set_forwardable(opt: Krb5InitCredsOpt, forwardable: i32);
    fn krb5_get_init_creds_opt_set_proxiable(opt: Krb5InitCredsOpt, proxiable: i32);
    #[allow(clippy::too_many_arguments)]
    fn krb5_get_init_creds_password(
        context: Krb5Context,
        creds: *mut CredsSpace,
        client: Krb5Principal,
        password: *const std::ffi::c_char,
        prompter: *const c_void,
        data: *mut c_void,
        start_time: i32,
        in_tkt_service: *const std::ffi::c_char,
        options: Krb5InitCredsOpt,
    ) -> i32;
    fn krb5_free_cred_contents(context: Krb5Context, creds: *mut CredsSpace);
    fn krb5_change_password(
        context: Krb5Context,
        creds: *mut CredsSpace,
        newpw: *const std::ffi::c_char,
        result_code: *mut i32,
        result_code_string: *mut Krb5Data,
        result_string: *mut Krb5Data,
    ) -> i32;
    fn krb5_chpw_message(
        context: Krb5Context,
        server_string: *const Krb5Data,
        message_out: *mut *mut std::ffi::c_char,
    ) -> i32;
    fn krb5_free_string(context: Krb5Context, string: *mut std::ffi::c_char);
    fn krb5_free_data_contents(context: Krb5Context, data: *mut Krb5Data);
    fn krb5_get_error_message(context: Krb5Context, code: i32) -> *const std::ffi::c_char;
    fn krb5_free_error_message(context: Krb5Context, message: *const std::ffi::c_char);
}

/// What the password server said: `code` 0 is done; otherwise RFC 3244's
/// result code with the server's words.
pub struct ChangeAnswer {
    pub code: i32,
    pub code_words: String,
    pub words: String,
}

/// A krb5 failure: the code and MIT's message for it.
pub struct Krb5Failure {
    pub code: i32,
    pub step: &'static str,
    pub message: String,
}

/// A password, held so that its bytes are overwritten when it goes.
struct Secret(Vec<u8>);

impl Secret {
    fn new(text: &str) -> Option<Secret> {
        if text.as_bytes().contains(&0) {
            return None;
        }
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        Some(Secret(bytes))
    }

    fn as_ptr(&self) -> *const std::ffi::c_char {
        self.0.as_ptr() as *const std::ffi::c_char
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference into our
            // own buffer; the volatile write keeps the compiler from dropping
            // the overwrite of memory about to be freed.
            unsafe { ptr::write_volatile(b, 0) };
        }
    }
}

/// Frees what `change_password` made, in reverse order, whatever happened.
struct Krb5Handles {
    context: Krb5Context,
    client: Krb5Principal,
    opt: Krb5InitCredsOpt,
    creds: Option<Box<CredsSpace>>,
}

impl Drop for Krb5Handles {
    fn drop(&mut self) {
        // SAFETY: each handle is null or was made by the matching krb5 call
        // on this context, and is freed once, before the context itself;
        // `creds` holds credentials only after krb5_get_init_creds_password
        // succeeded (it is taken out otherwise), and krb5_free_cred_contents
        // frees what they point to, not the space.
        unsafe {
            if let Some(creds) = self.creds.as_mut() {
                krb5_free_cred_contents(self.context, &mut **creds);
            }
            if !self.opt.is_null() {
                krb5_get_init_creds_opt_free(self.context, self.opt);
            }
            if !self.client.is_null() {
                krb5_free_principal(self.context, self.client);
            }
            if !self.context.is_null() {
                krb5_free_context(self.context);
            }
        }
    }
}

impl Krb5Handles {
    fn failure(&self, code: i32, step: &'static str) -> Krb5Failure {
        // SAFETY: the context is live; MIT returns a string we free with the
        // matching call after copying it (never null: MIT falls back to a
        // generic text).
        let message = unsafe {
            let text = krb5_get_error_message(self.context, code);
            let copied = if text.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned()
            };
            krb5_free_error_message(self.context, text);
            copied
        };
        Krb5Failure { code, step, message }
    }
}

/// Changes `principal`'s password from `old` to `new` with the Kerberos
/// change-password protocol: an initial ticket for `kadmin/changepw` with the
/// old password (which works when the password has expired), then
/// `krb5_change_password` to the realm's kpasswd server. `enterprise`: the
/// name is a UPN. Blocks; talks to the KDC. Reads the process's krb5.conf.
pub fn change_password(principal: &str, enterprise: bool, old: &str, new: &str) -> Result<ChangeAnswer, Krb5Failure> {
    let bad = |step| Krb5Failure { code: 0, step, message: "a NUL byte in the name or a password".into() };
    let name = CString::new(principal).map_err(|_| bad("the user's name"))?;
    let old = Secret::new(old).ok_or_else(|| bad("the current password"))?;
    let new = Secret::new(new).ok_or_else(|| bad("the new password"))?;
    let service = CString::new("kadmin/changepw").map_err(|_| bad("the service name"))?;
    let mut h = Krb5Handles { context: ptr::null_mut(), client: ptr::null_mut(), opt: ptr::null_mut(), creds: None };
    // SAFETY: krb5_init_context writes a new context to the out-pointer;
    // on failure it leaves it null, which Drop skips.
    let code = unsafe { krb5_init_context(&mut h.context) };
    if code != 0 {
        return Err(Krb5Failure { code, step: "a krb5 context", message: "krb5_init_context failed".into() });
    }
    let flags = if enterprise { KRB5_PRINCIPAL_PARSE_ENTERPRISE } else { 0 };
    // SAFETY: a live context, a NUL-terminated name that outlives the call,
    // and an out-pointer for the principal, freed by Drop.
    let code = unsafe { krb5_parse_name_flags(h.context, name.as_ptr(), flags, &mut h.client) };
    if code != 0 {
        return Err(h.failure(code, "the user's name"));
    }
    // SAFETY: as above; the options are freed by Drop.
    let code = unsafe { krb5_get_init_creds_opt_alloc(h.context, &mut h.opt) };
    if code != 0 {
        return Err(h.failure(code, "ticket options"));
    }
    // SAFETY: `h.opt` was just allocated; these set plain fields. A short,
    // plain ticket: it is used for this one change and dropped.
    unsafe {
        krb5_get_init_creds_opt_set_tkt_life(h.opt, 300);
        krb5_get_init_creds_opt_set_forwardable(h.opt, 0);
        krb5_get_init_creds_opt_set_proxiable(h.opt, 0);
    }
    let mut creds = Box::new(CredsSpace([0; CREDS_SPACE]));
    // SAFETY: a live context, principal and options; `creds` is zeroed room
    // larger than krb5_creds (see CredsSpace); the password and service
    // strings are NUL-terminated and outlive the call; no prompter.
    let code = unsafe {
        krb5_get_init_creds_password(
            h.context,
            &mut *creds,
            h.client,
            old.as_ptr(),
            ptr::null(),
            ptr::null_mut(),
            0,
            service.as_ptr(),
            h.opt,
        )
    };
    if code != 0 {
        return Err(h.failure(code, "signing in to the password service with the current password"));
    }
    h.creds = Some(creds);
    let (mut result_code, mut code_string, mut result_string) = (0i32, Krb5Data::empty(), Krb5Data::empty());
    let creds = h.creds.as_mut().map_or(ptr::null_mut(), |c| &mut **c as *mut CredsSpace);
    // SAFETY: live context and credentials for kadmin/changepw; the new
    // password is NUL-terminated and outlives the call; the three outputs
    // are ours and the two krb5_data are freed below.
    let code = unsafe {
        krb5_change_password(h.context, creds, new.as_ptr(), &mut result_code, &mut code_string, &mut result_string)
    };
    if code != 0 {
        return Err(h.failure(code, "changing the password"));
    }
    let code_words = code_string.text();
    let mut message: *mut std::ffi::c_char = ptr::null_mut();
    // SAFETY: `result_string` came from krb5_change_password; MIT writes a
    // new string (AD's binary policy in words, or the server's text) that
    // is copied and freed here.
    let words = unsafe {
        let words = if result_code != 0
            && krb5_chpw_message(h.context, &result_string, &mut message) == 0
            && !message.is_null()
        {
            let text = std::ffi::CStr::from_ptr(message).to_string_lossy().into_owned();
            krb5_free_string(h.context, message);
            text
        } else {
            result_string.text()
        };
        krb5_free_data_contents(h.context, &mut code_string);
        krb5_free_data_contents(h.context, &mut result_string);
        words
    };
    Ok(ChangeAnswer { code: result_code, code_words, words })
}

extern "C" {
    /// glibc's `malloc_trim`.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

/// Hands the free pages of every malloc arena back to the system (glibc's
/// `malloc_trim(0)`). Not Kerberos: it is here because this file is the
/// project's one place for `unsafe`. gatehouse calls it after idle
/// connections have freed their buffers (docs/design.md, "Idle connections
/// park"): glibc keeps freed chunks that sit among live ones resident.
pub fn release_free_memory() {
    // SAFETY: no arguments to check beyond the padding, no pointers; glibc
    // takes each arena's lock in turn, so other threads may allocate meanwhile.
    unsafe {
        malloc_trim(0);
    }
}

// ---- Accepting on a long-lived krb5 context (the quick acceptor) ----
//
// `gss_accept_sec_context` sets up a krb5 context for every call and frees it
// after: the profile checked for changes, the authdata plugins looked up,
// the per-message keys of the context derived, a sequence window and names
// copied, all thrown away at once by gatehouse, which needs none of them
// (docs/performance.md, "Kerberos at the edge on a quiet machine"). The quick
// acceptor makes the same AP-REQ checks with MIT's krb5 API on one context
// per worker thread, kept with the acceptor's in-memory keys: `krb5_rd_req`
// (ticket and authenticator decrypted and checked, clock skew, ticket times,
// client names matched, the PAC verified by MIT's authdata module), then the
// GSS checksum (`gss_checksum.rs`), then the AP-REP. It answers only for the
// common case and only with success: for anything else (a delegated TGT,
// unusual checksums, a refusal of any kind) it declines, and the caller asks
// MIT's GSS layer, whose answer, error included, is the authoritative one.

/// `krb5_checksum`.
#[repr(C)]
struct Krb5Checksum {
    magic: i32,
    checksum_type: i32,
    length: c_uint,
    contents: *mut u8,
}

/// `krb5_authdata`.
#[repr(C)]
struct Krb5Authdata {
    magic: i32,
    ad_type: i32,
    length: c_uint,
    contents: *mut u8,
}

/// `krb5_authenticator`.
#[repr(C)]
struct Krb5Authenticator {
    magic: i32,
    client: *mut c_void,
    checksum: *mut Krb5Checksum,
    cusec: i32,
    ctime: i32,
    subkey: *mut Krb5Keyblock,
    seq_number: u32,
    authorization_data: *mut *mut Krb5Authdata,
}

#[cfg(test)]
pub mod layout {
    //! The offsets of the mirrored structs, for a test that compares them
    //! with the installed krb5.h.
    pub fn rust() -> String {
        use super::*;
        use std::mem::{offset_of, size_of};
        format!(
            "{} {} {} {} {} {} {} {} {} {}",
            size_of::<Krb5Checksum>(),
            offset_of!(Krb5Checksum, checksum_type),
            offset_of!(Krb5Checksum, contents),
            size_of::<Krb5Authdata>(),
            offset_of!(Krb5Authdata, contents),
            size_of::<Krb5Authenticator>(),
            offset_of!(Krb5Authenticator, checksum),
            offset_of!(Krb5Authenticator, subkey),
            offset_of!(Krb5Authenticator, authorization_data),
            size_of::<Krb5Keyblock>(),
        )
    }
    pub const C: &str = "printf(\"%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\", sizeof(krb5_checksum), \
        offsetof(krb5_checksum, checksum_type), offsetof(krb5_checksum, contents), sizeof(krb5_authdata), \
        offsetof(krb5_authdata, contents), sizeof(krb5_authenticator), offsetof(krb5_authenticator, checksum), \
        offsetof(krb5_authenticator, subkey), offsetof(krb5_authenticator, authorization_data), \
        sizeof(krb5_keyblock));";
}

const KRB5_AUTH_CONTEXT_DO_SEQUENCE: i32 = 4;
const KRB5_AUTHDATA_AP_OPTIONS: i32 = 143;

#[link(name = "krb5")]
extern "C" {
    fn krb5_auth_con_init(context: *mut c_void, auth_context: *mut *mut c_void) -> i32;
    fn krb5_auth_con_free(context: *mut c_void, auth_context: *mut c_void) -> i32;
    fn krb5_auth_con_setflags(context: *mut c_void, auth_context: *mut c_void, flags: i32) -> i32;
    fn krb5_rd_req(
        context: *mut c_void,
        auth_context: *mut *mut c_void,
        inbuf: *const Krb5Data,
        server: *const c_void,
        keytab: *mut c_void,
        ap_req_options: *mut i32,
        ticket: *mut *mut c_void,
    ) -> i32;
    fn krb5_auth_con_getauthenticator(
        context: *mut c_void,
        auth_context: *mut c_void,
        authenticator: *mut *mut Krb5Authenticator,
    ) -> i32;
    fn krb5_free_authenticator(context: *mut c_void, authenticator: *mut Krb5Authenticator);
    fn krb5_auth_con_getkey(context: *mut c_void, auth_context: *mut c_void, key: *mut *mut Krb5Keyblock) -> i32;
    fn krb5_free_keyblock(context: *mut c_void, key: *mut Krb5Keyblock);
    fn krb5_find_authdata(
        context: *mut c_void,
        ticket_authdata: *const *mut Krb5Authdata,
        ap_req_authdata: *const *mut Krb5Authdata,
        ad_type: i32,
        results: *mut *mut *mut Krb5Authdata,
    ) -> i32;
    fn krb5_free_authdata(context: *mut c_void, authdata: *mut *mut Krb5Authdata);
    fn krb5_mk_rep(context: *mut c_void, auth_context: *mut c_void, outbuf: *mut Krb5Data) -> i32;
    fn krb5_unparse_name(context: *mut c_void, principal: *const c_void, name: *mut *mut c_char) -> i32;
    fn krb5_free_unparsed_name(context: *mut c_void, name: *mut c_char);
    // Exported by libkrb5 (version node krb5_3_MIT) and used by MIT's own GSS
    // layer for `gss_get_name_attribute`; declared in MIT's internal header,
    // so by hand here. The authdata context belongs to the auth context.
    fn krb5_auth_con_get_authdata_context(
        context: *mut c_void,
        auth_context: *mut c_void,
        ad_context: *mut *mut c_void,
    ) -> i32;
    #[allow(clippy::too_many_arguments)]
    fn krb5_authdata_get_attribute(
        context: *mut c_void,
        ad_context: *mut c_void,
        attribute: *const Krb5Data,
        authenticated: *mut c_uint,
        complete: *mut c_uint,
        value: *mut Krb5Data,
        display_value: *mut Krb5Data,
        more: *mut std::ffi::c_int,
    ) -> i32;
}

/// One worker thread's krb5 context, with the acceptor's memory keytab
/// resolved on it. MIT's contexts are not to be shared between threads: each
/// thread has its own, made at its first ticket and again when the keys change.
struct QuickContext {
    keys: std::sync::Arc<MemoryKeytab>,
    krb5: Krb5,
}

thread_local! {
    static QUICK: std::cell::RefCell<Option<QuickContext>> = const { std::cell::RefCell::new(None) };
}

/// The per-call handles, released in reverse order on every path.
struct QuickCall<'a> {
    context: *mut c_void,
    auth_context: *mut c_void,
    authenticator: *mut Krb5Authenticator,
    found: *mut *mut Krb5Authdata,
    _on: std::marker::PhantomData<&'a Krb5>,
}

impl Drop for QuickCall<'_> {
    fn drop(&mut self) {
        // SAFETY: each handle is null or was returned on `context` during this
        // call, and is released once, before the context (which outlives us).
        unsafe {
            if !self.found.is_null() {
                krb5_free_authdata(self.context, self.found);
            }
            if !self.authenticator.is_null() {
                krb5_free_authenticator(self.context, self.authenticator);
            }
            if !self.auth_context.is_null() {
                krb5_auth_con_free(self.context, self.auth_context);
            }
        }
    }
}

/// A key's encryption type; the key itself is freed (and zeroed) at once.
fn key_enctype(context: *mut c_void, key: *mut Krb5Keyblock) -> Option<i32> {
    if key.is_null() {
        return None;
    }
    // SAFETY: a keyblock MIT just allocated for us; read, then freed once.
    unsafe {
        let enctype = (*key).enctype;
        krb5_free_keyblock(context, key);
        Some(enctype)
    }
}

/// Accepts `ap_req` (the bare AP-REQ, without its GSS framing) on this
/// thread's long-lived context with `keys`, for the common case only; None
/// whenever MIT's GSS layer should judge the token instead (see above). The
/// session key and the client's subkey must be of `enctypes`. Never builds
/// S4U2Proxy evidence (`proxy` is None): callers use it only where the
/// evidence would not be used.
pub fn accept_quick(
    keys: &std::sync::Arc<MemoryKeytab>,
    ap_req: &[u8],
    channel_bindings: Option<&[u8]>,
    enctypes: &[i32],
) -> Option<Accepted> {
    QUICK.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        if slot.as_ref().is_none_or(|q| !std::sync::Arc::ptr_eq(&q.keys, keys)) {
            // A new context for new keys: also picks up krb5.conf again (the
            // clock skew) at a reload, as MIT's GSS layer would at every call.
            *slot = None;
            let krb5 = open_keytab(&keys.name).ok()?;
            *slot = Some(QuickContext { keys: keys.clone(), krb5 });
        }
        let quick = slot.as_ref()?;
        accept_on(&quick.krb5, ap_req, channel_bindings, enctypes)
    })
}

fn accept_on(krb5: &Krb5, ap_req: &[u8], channel_bindings: Option<&[u8]>, enctypes: &[i32]) -> Option<Accepted> {
    use crate::gss_checksum::{self as gss, Bound, Reading};
    let context = krb5.context;
    let mut call = QuickCall {
        context,
        auth_context: ptr::null_mut(),
        authenticator: ptr::null_mut(),
        found: ptr::null_mut(),
        _on: std::marker::PhantomData,
    };
    // SAFETY: the context is live (owned by `krb5`, borrowed for this call);
    // the out-parameter is released by `call`.
    if unsafe { krb5_auth_con_init(context, &mut call.auth_context) } != 0 {
        return None;
    }
    // No DO_TIME: MIT would otherwise open its default (file) replay cache;
    // gatehouse keeps its own (`replay.rs`). The clock skew and the ticket's
    // times are checked by krb5_rd_req either way.
    // SAFETY: a live auth context of this context.
    unsafe { krb5_auth_con_setflags(context, call.auth_context, 0) };
    let input = Krb5Data { magic: 0, length: u32::try_from(ap_req.len()).ok()?, data: ap_req.as_ptr() as *mut c_char };
    let mut options: i32 = 0;
    // SAFETY: `input` points at `ap_req`, which MIT only reads during the
    // call; no server principal (any key of the keytab, as the GSS acceptor
    // without a name: the caller checked the ticket's SPN); the keytab is
    // resolved on this context; no ticket copy is asked for.
    let code = unsafe {
        krb5_rd_req(context, &mut call.auth_context, &input, ptr::null(), krb5.keytab, &mut options, ptr::null_mut())
    };
    if code != 0 {
        return None;
    }
    // The encryption types MIT's GSS acceptor would have been limited to.
    let mut key: *mut Krb5Keyblock = ptr::null_mut();
    // SAFETY: live auth context after a successful krb5_rd_req; the key copy
    // is freed by key_enctype.
    unsafe { krb5_auth_con_getkey(context, call.auth_context, &mut key) };
    if !key_enctype(context, key).is_some_and(|e| enctypes.contains(&e)) {
        return None;
    }
    // SAFETY: as above; the copy of the authenticator is freed by `call`.
    if unsafe { krb5_auth_con_getauthenticator(context, call.auth_context, &mut call.authenticator) } != 0
        || call.authenticator.is_null()
    {
        return None;
    }
    // SAFETY: MIT filled the authenticator; its pointers are null or point at
    // data it owns until krb5_free_authenticator (in `call`'s Drop).
    let authenticator = unsafe { &*call.authenticator };
    if !authenticator.subkey.is_null() {
        // SAFETY: a keyblock inside the authenticator, read only.
        let subkey = unsafe { (*authenticator.subkey).enctype };
        if !enctypes.contains(&subkey) {
            return None;
        }
    }
    if authenticator.checksum.is_null() {
        return None;
    }
    // SAFETY: non-null checksum of the authenticator: `length` bytes at
    // `contents` (or none).
    let checksum = unsafe {
        let c = &*authenticator.checksum;
        let bytes =
            if c.contents.is_null() { &[][..] } else { std::slice::from_raw_parts(c.contents, c.length as usize) };
        gss::read(c.checksum_type, bytes)
    };
    let Reading::Common(checksum) = checksum else { return None };
    let channel_bound = match gss::bound(&checksum, channel_bindings) {
        Bound::Yes => true,
        Bound::Mismatch => return None,
        Bound::No => {
            // MS-KILE's KERB_AP_OPTIONS_CBT: a client that says it sent
            // bindings must have sent ours (MIT refuses otherwise).
            if channel_bindings.is_some() {
                // SAFETY: the authenticator's authdata list (null-terminated,
                // or null); the results are freed by `call`.
                let code = unsafe {
                    krb5_find_authdata(
                        context,
                        ptr::null(),
                        authenticator.authorization_data,
                        KRB5_AUTHDATA_AP_OPTIONS,
                        &mut call.found,
                    )
                };
                if code != 0 || (!call.found.is_null() && ap_options_ask_for_bindings(call.found)) {
                    return None;
                }
            }
            false
        }
    };
    let mut flags = checksum.flags | gss::TRANS;
    if channel_bound {
        flags |= GSS_C_CHANNEL_BOUND_FLAG;
    }
    let output = if checksum.flags & gss::MUTUAL != 0 {
        flags |= gss::PROT_READY;
        // As MIT's acceptor: sequence numbers in the AP-REP. No acceptor
        // subkey: RFC 4121 makes it optional, and gatehouse protects no
        // messages with this context.
        // SAFETY: live auth context; the reply is MIT's until freed below.
        unsafe { krb5_auth_con_setflags(context, call.auth_context, KRB5_AUTH_CONTEXT_DO_SEQUENCE) };
        let mut reply = Krb5Data::empty();
        // SAFETY: as above; `reply` receives MIT's allocation.
        if unsafe { krb5_mk_rep(context, call.auth_context, &mut reply) } != 0 {
            return None;
        }
        let framed = if reply.data.is_null() {
            None
        } else {
            // SAFETY: `length` bytes MIT owns until krb5_free_data_contents.
            let bytes = unsafe { std::slice::from_raw_parts(reply.data as *const u8, reply.length as usize) };
            Some(gss::frame_ap_rep(bytes))
        };
        // SAFETY: MIT's allocation, freed once.
        unsafe { krb5_free_data_contents(context, &mut reply) };
        framed?
    } else {
        Vec::new()
    };
    let client = unparse(context, authenticator.client)?;
    let mut ad_context: *mut c_void = ptr::null_mut();
    // SAFETY: live auth context; the authdata context stays the auth
    // context's (freed with it), we only read through it.
    if unsafe { krb5_auth_con_get_authdata_context(context, call.auth_context, &mut ad_context) } != 0 {
        return None;
    }
    Some(Accepted {
        output,
        client,
        flags,
        upn_dns_info: pac_attribute(context, ad_context, "urn:mspac:upn-dns-info"),
        logon_info: pac_attribute(context, ad_context, "urn:mspac:logon-info"),
        proxy: None,
    })
}

/// Whether any AD-AUTH-DATA-AP-OPTIONS element found asks for bindings.
fn ap_options_ask_for_bindings(found: *mut *mut Krb5Authdata) -> bool {
    let mut i = 0;
    loop {
        // SAFETY: `found` is a null-terminated array from krb5_find_authdata,
        // alive until freed by the caller; each element's `length` bytes.
        let element = unsafe { *found.add(i) };
        if element.is_null() {
            return false;
        }
        // SAFETY: as above.
        let value = unsafe {
            let e = &*element;
            if e.contents.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(e.contents, e.length as usize)
            }
        };
        if crate::gss_checksum::asks_for_bindings(value) {
            return true;
        }
        i += 1;
    }
}

fn unparse(context: *mut c_void, principal: *const c_void) -> Option<String> {
    if principal.is_null() {
        return None;
    }
    let mut name: *mut c_char = ptr::null_mut();
    // SAFETY: a principal MIT owns (inside the authenticator); the name is
    // MIT's allocation, freed once below.
    if unsafe { krb5_unparse_name(context, principal, &mut name) } != 0 || name.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string from krb5_unparse_name.
    let text = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    // SAFETY: freed once.
    unsafe { krb5_free_unparsed_name(context, name) };
    Some(text)
}

/// A PAC buffer, as `attribute` reads it through GSS: only when MIT's
/// authdata module verified the PAC (its server signature with our key, its
/// client name and time against the ticket's).
fn pac_attribute(context: *mut c_void, ad_context: *mut c_void, attr: &str) -> Option<Vec<u8>> {
    if ad_context.is_null() {
        return None;
    }
    let name = Krb5Data { magic: 0, length: attr.len() as u32, data: attr.as_ptr() as *mut c_char };
    let (mut authenticated, mut complete, mut more) = (0, 0, -1);
    let (mut value, mut display) = (Krb5Data::empty(), Krb5Data::empty());
    // SAFETY: live contexts; `name` points at `attr` during the call; MIT
    // fills `value` and `display` with its allocations, freed below.
    let code = unsafe {
        krb5_authdata_get_attribute(
            context,
            ad_context,
            &name,
            &mut authenticated,
            &mut complete,
            &mut value,
            &mut display,
            &mut more,
        )
    };
    let bytes = (code == 0 && authenticated != 0 && !value.data.is_null()).then(|| {
        // SAFETY: `length` bytes MIT owns until freed below.
        unsafe { std::slice::from_raw_parts(value.data as *const u8, value.length as usize) }.to_vec()
    });
    // SAFETY: MIT's allocations (or empty), each freed once.
    unsafe {
        krb5_free_data_contents(context, &mut value);
        krb5_free_data_contents(context, &mut display);
    }
    bytes
}
