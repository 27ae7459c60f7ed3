//! The one integration test binary: starts the real gateway in-process on a random port with
//! certificates generated per run and talks real mTLS to it, on SQLite and on PostgreSQL.

// Test code (the async bodies behind `db_tests!` included, which clippy does not see as tests):
// a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod admin_cli;
mod agent_releases;
mod agent_setup;
mod agent_update;
mod asvs_doc;
mod audit;
mod card_login;
mod check;
mod connections;
mod demo;
mod deploy;
mod e2e;
mod faults;
mod fido_login;
mod login;
mod login_form;
mod login_ids;
mod metrics;
mod oidc_login;
mod oqs;
mod oqs_relay;
mod schema;
mod scim;
mod sessions;
mod signer;
mod signer_harness;
mod signdoc;
mod signer_process;
mod tls_gate;
mod tokens;
