//! The card simulator (feature `sim`): a JPKI or HPKI card ([`card`]) loaded from PEM files
//! ([`files`]) and attached to pcscd through vsmartcard's vpcd reader ([`vpcd`]); the `card-sim`
//! binary wires these together. With the `pcsc` feature too, [`harness`] runs an isolated pcscd with
//! simulated cards for tests.
//!
//! The simulator is a test device. Its keys are test keys, its PIN comparison is not constant-time, and
//! its RSA operations use the `rsa` crate without blinding (RUSTSEC-2023-0071 is irrelevant here).

pub mod card;
pub mod cli;
pub mod files;
#[cfg(feature = "pcsc")]
pub mod harness;
pub mod vpcd;

#[cfg(test)]
mod tests;

pub use card::{Profile, SimCard, SimConfig};
pub use files::SimFiles;
