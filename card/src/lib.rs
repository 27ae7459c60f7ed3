//! Smart-card protocol for My Number (JPKI) and HPKI cards: APDUs, status words, the two card
//! applications, a PC/SC transport (feature `pcsc`) and a card simulator on the real PC/SC stack
//! (feature `sim`). No HTTP, no SQL, no tokio: everything here is blocking and runs on the caller's thread.
//!
//! The card agent calls [`detect`], [`pin_status`] and [`authenticate`] over a [`CardTransport`];
//! with the `pcsc` feature, `pcsc::with_card` runs them inside one PC/SC transaction. [`ClientData`] is the
//! exact message a card signs to log in; the gateway checks a signed login with `verify` (feature `verify`).
//!
//! Never logged, never put in an error: PINs and the data of VERIFY commands. [`Pin`] and
//! [`apdu::Command`] keep their bytes in zeroizing buffers and redact them in `Debug`.
#![cfg_attr(not(feature = "pcsc"), forbid(unsafe_code))]

pub mod apdu;
mod auth;
pub mod client_data;
pub mod crypto;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hpki;
mod iso;
pub mod jpki;
#[cfg(feature = "pcsc")]
pub mod pcsc;
mod pin;
#[cfg(feature = "sim")]
pub mod sim;
mod transport;
#[cfg(feature = "verify")]
pub mod verify;

#[cfg(test)]
mod testutil;


pub use auth::{AuthOptions, CardSignature, authenticate, authenticate_with, detect, pin_status};
pub use client_data::{ClientData, ClientDataError};
pub use error::{Error, Result};
pub use pin::{Pin, PinStatus};
pub use transport::CardTransport;

/// The two card kinds the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantNames, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum CardKind {
    /// My Number card, JPKI user-authentication certificate (4-digit PIN, 3 tries).
    Jpki,
    /// HPKI card (医師資格証 etc.), authentication application (4–16 character PIN, 15 tries).
    Hpki,
}

impl CardKind {
    /// The lowercase name used in JSON and on the command line: `jpki` or `hpki`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The PIN rule, for messages.
    pub fn pin_rule(self) -> &'static str {
        match self {
            CardKind::Jpki => "exactly 4 digits",
            CardKind::Hpki => "4 to 16 printable ASCII characters",
        }
    }

    /// Tries a fresh PIN of this kind has.
    pub fn pin_max_tries(self) -> u8 {
        match self {
            CardKind::Jpki => jpki::AUTH_PIN_MAX_TRIES,
            CardKind::Hpki => hpki::PIN_MAX_TRIES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in [CardKind::Jpki, CardKind::Hpki] {
            assert_eq!(kind.as_str().parse::<CardKind>().unwrap(), kind);
        }
        assert!("JPKI".parse::<CardKind>().is_err());
        assert_eq!(CardKind::Hpki.pin_max_tries(), 15);
        assert_eq!(CardKind::Jpki.pin_max_tries(), 3);
    }
}
