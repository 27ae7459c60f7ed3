//! Smart-card protocol for My Number (JPKI) and HPKI cards: no HTTP, no SQL, no tokio.
#![cfg_attr(not(feature = "pcsc"), forbid(unsafe_code))]
