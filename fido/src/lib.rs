//! WebAuthn (FIDO2) ceremonies and policy for the gateway: no HTTP, no SQL.
#![forbid(unsafe_code)]
