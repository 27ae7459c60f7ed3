//! The two OpenSSL calls the `openssl` crate does not wrap (decision 0012).
//!
//! - `X509_STORE_add_crl`: the crate can load CRLs into a store only from files; CRLs live in the
//!   database, so they are added as parsed objects.
//! - `X509_STORE_CTX_get0_param`: validation time and purpose are per call (the gateway's injected
//!   clock), while the store is shared between threads; they are set on the context's own copy
//!   of the parameters, never on the shared store.
//!
//! Both are documented, stable OpenSSL 1.1/3.x functions of libcrypto, which `openssl-sys` links.
#![allow(unsafe_code)]

use foreign_types::ForeignTypeRef;
use openssl::x509::store::X509StoreBuilderRef;
use openssl::x509::verify::X509VerifyParamRef;
use openssl::x509::{X509CrlRef, X509StoreContextRef};

unsafe extern "C" {
    fn X509_STORE_add_crl(store: *mut openssl_sys::X509_STORE, crl: *mut openssl_sys::X509_CRL) -> libc::c_int;
    fn X509_STORE_CTX_get0_param(ctx: *mut openssl_sys::X509_STORE_CTX) -> *mut openssl_sys::X509_VERIFY_PARAM;
}

/// Adds `crl` to the store being built. OpenSSL takes its own reference to the CRL.
pub(crate) fn store_add_crl(store: &mut X509StoreBuilderRef, crl: &X509CrlRef) -> Result<(), openssl::error::ErrorStack> {
    // SAFETY: both pointers come from live owned objects borrowed for the call; X509_STORE_add_crl
    // up-references the CRL (it does not take ownership of ours), and the store is not shared yet
    // (a builder is exclusively borrowed).
    let rc = unsafe { X509_STORE_add_crl(store.as_ptr(), crl.as_ptr()) };
    if rc == 1 { Ok(()) } else { Err(openssl::error::ErrorStack::get()) }
}

/// The verification parameters of an initialised context (its own copy, inherited from the store
/// at `X509_STORE_CTX_init`).
pub(crate) fn ctx_param(ctx: &mut X509StoreContextRef) -> &mut X509VerifyParamRef {
    // SAFETY: an initialised X509_STORE_CTX always owns a non-null X509_VERIFY_PARAM that lives as
    // long as the context; the returned borrow is tied to the exclusive borrow of the context.
    unsafe { X509VerifyParamRef::from_ptr_mut(X509_STORE_CTX_get0_param(ctx.as_ptr())) }
}
