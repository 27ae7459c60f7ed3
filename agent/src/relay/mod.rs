//! The clinic relay's file-system side: request files into the OQS terminal's `req` folder, answers out of `res`.
pub mod folders;
pub mod watch;
