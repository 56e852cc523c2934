//! The one place with `unsafe`: the GSSAPI call the `libgssapi` crate does not
//! wrap. `gss_acquire_cred_from` with a credential store lets the service
//! account's credential come from its own keytab into its own memory cache,
//! instead of from process-wide defaults (the default cache could hold another
//! user's ticket, which MIT would silently fall back to).

use std::ffi::{c_void, CString};
use std::ptr;

use libgssapi::credential::Cred;
use libgssapi::error::{Error, MajorFlags};
use libgssapi_sys::{
    gss_OID_desc, gss_acquire_cred_from, gss_buffer_desc, gss_cred_id_t, gss_import_name, gss_key_value_element_desc,
    gss_key_value_set_desc, gss_name_t, gss_release_name, OM_uint32, GSS_S_COMPLETE,
};

/// GSS_KRB5_NT_PRINCIPAL_NAME: 1.2.840.113554.1.2.2.1
const KRB5_NT_PRINCIPAL: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];
const GSS_C_INITIATE: i32 = 1;
const GSS_C_INDEFINITE: OM_uint32 = 0xffff_ffff;

fn check(major: OM_uint32, minor: OM_uint32) -> Result<(), Error> {
    if major == GSS_S_COMPLETE {
        Ok(())
    } else {
        Err(Error { major: MajorFlags::from_bits_retain(major), minor })
    }
}

/// An initiator credential for `principal`, with its keys from `client_keytab`
/// (a `FILE:` name) and its tickets in `ccache` (a `MEMORY:` name of its own).
pub fn acquire_from_keytab(principal: &str, client_keytab: &str, ccache: &str) -> Result<Cred, Error> {
    let keys = [CString::new("client_keytab"), CString::new("ccache")];
    let values = [CString::new(client_keytab), CString::new(ccache)];
    let nul = || Error { major: MajorFlags::GSS_S_FAILURE, minor: 0 };
    let keys: Vec<CString> = keys.into_iter().collect::<Result<_, _>>().map_err(|_| nul())?;
    let values: Vec<CString> = values.into_iter().collect::<Result<_, _>>().map_err(|_| nul())?;
    let mut elements: Vec<gss_key_value_element_desc> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| gss_key_value_element_desc { key: k.as_ptr(), value: v.as_ptr() })
        .collect();
    let store = gss_key_value_set_desc { count: elements.len() as OM_uint32, elements: elements.as_mut_ptr() };
    let mut minor: OM_uint32 = 0;
    let mut name: gss_name_t = ptr::null_mut();
    let mut name_buf = gss_buffer_desc { length: principal.len(), value: principal.as_ptr() as *mut c_void };
    let mut oid = gss_OID_desc {
        length: KRB5_NT_PRINCIPAL.len() as OM_uint32,
        elements: KRB5_NT_PRINCIPAL.as_ptr() as *mut c_void,
    };
    // SAFETY: every pointer refers to a live local for the duration of the call;
    // GSSAPI copies the name and does not keep the buffer.
    check(unsafe { gss_import_name(&mut minor, &mut name_buf, &mut oid, &mut name) }, minor)?;
    let mut cred: gss_cred_id_t = ptr::null_mut();
    // SAFETY: `name` was just imported; `store` points at `elements`, whose key and
    // value pointers point into `keys` and `values`, all alive until after the call.
    let major = unsafe {
        gss_acquire_cred_from(
            &mut minor,
            name,
            GSS_C_INDEFINITE,
            ptr::null_mut(),
            GSS_C_INITIATE,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    let mut release_minor: OM_uint32 = 0;
    // SAFETY: `name` came from gss_import_name and is released once.
    unsafe { gss_release_name(&mut release_minor, &mut name) };
    check(major, minor)?;
    // SAFETY: `cred` is a credential handle GSSAPI just gave us; Cred owns it from here.
    Ok(unsafe { Cred::from_c(cred) })
}
