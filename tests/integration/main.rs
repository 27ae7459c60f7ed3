//! The one integration test binary: starts the real gateway in-process on a random port with
//! certificates generated per run and talks real mTLS to it, on SQLite and on PostgreSQL.

mod helpers;

mod admin_cli;
mod audit;
mod demo;
mod e2e;
mod fido_login;
mod login;
mod schema;
mod soft;
mod tls_gate;
mod tokens;
