//! The clinic relay (docs/design.md §3.13): request files from the gateway into the OQS terminal's `req` folder,
//! answers out of `res` back to the gateway.
pub mod client;
pub mod folders;
pub mod run;
pub mod status;
pub mod supervisor;
pub mod watch;
