//! Plumbing the gateway and the remote signer share (decision 0015): the injected clock, the
//! mTLS gate, secret files, the key-encryption key, the keyed audit chain, database connections
//! and migrations, and configuration layering. Nothing here knows either service's tables,
//! routes or rules.
#![forbid(unsafe_code)]

pub mod audit_chain;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod db;
pub mod kek;
pub mod secret_file;
pub mod serve;
pub mod tls;
