//! PINs: held in zeroizing memory, redacted in `Debug`, and checked against each card kind's format
//! before anything reaches the card (a malformed PIN must never cost a try).

use std::fmt;

use zeroize::Zeroizing;

use crate::CardKind;
use crate::error::{Error, Result};

/// A card PIN as the user typed it.
///
/// The bytes live in a [`Zeroizing`] buffer and are wiped on drop. `Debug` never shows them.
#[derive(Clone)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    /// Takes ownership of the string's buffer (no copy is left behind).
    pub fn new(pin: String) -> Pin {
        Pin(Zeroizing::new(pin.into_bytes()))
    }

    /// Wraps already-zeroizing bytes.
    pub fn from_bytes(pin: Zeroizing<Vec<u8>>) -> Pin {
        Pin(pin)
    }

    /// The raw bytes sent in VERIFY (ASCII, no padding: docs/cards.md §1.3, §2.2 storedLength 0).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Checks the PIN against the rule for `kind`, returning [`Error::PinFormat`] if it does not fit.
    ///
    /// - JPKI user-authentication PIN (EF 0018): exactly 4 ASCII digits.
    /// - HPKI: 4 to 16 characters (the card's PIN object allows 4–16; JMA cards are numeric, but the
    ///   JAHIS guideline allows other ASCII types), printable ASCII without spaces.
    pub fn check_format(&self, kind: CardKind) -> Result<()> {
        let bytes = self.as_bytes();
        let ok = match kind {
            CardKind::Jpki => bytes.len() == 4 && bytes.iter().all(u8::is_ascii_digit),
            CardKind::Hpki => {
                (4..=16).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::PinFormat {
                kind,
                rule: kind.pin_rule(),
            })
        }
    }
}

impl From<String> for Pin {
    fn from(pin: String) -> Pin {
        Pin::new(pin)
    }
}

impl From<Zeroizing<String>> for Pin {
    fn from(pin: Zeroizing<String>) -> Pin {
        Pin(Zeroizing::new(pin.as_bytes().to_vec()))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// What an empty VERIFY (ISO 7816-4 §11.5.6, no data field) says about a PIN, without spending a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// `90 00`: already verified in the current session.
    Verified,
    /// `63 Cx`: not verified, x tries left.
    TriesLeft(u8),
    /// `63 C0`, `69 83` or `69 84`: blocked.
    Locked,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CardKind, pin: &str) -> bool {
        Pin::new(pin.to_owned()).check_format(kind).is_ok()
    }

    #[test]
    fn jpki_pin_is_four_digits() {
        assert!(check(CardKind::Jpki, "1234"));
        assert!(check(CardKind::Jpki, "0000"));
        for bad in ["123", "12345", "12a4", "", "１２３４", " 123"] {
            assert!(!check(CardKind::Jpki, bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn hpki_pin_is_four_to_sixteen_printable() {
        assert!(check(CardKind::Hpki, "1234"));
        assert!(check(CardKind::Hpki, "abcdEFGH12345678"));
        for bad in ["123", "abcdEFGH123456789", "12 34", "ｐｉｎ１", "12\n34"] {
            assert!(!check(CardKind::Hpki, bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_error_names_the_rule() {
        let err = Pin::new("12".into())
            .check_format(CardKind::Jpki)
            .unwrap_err();
        assert!(matches!(
            err,
            Error::PinFormat {
                kind: CardKind::Jpki,
                ..
            }
        ));
        assert!(err.to_string().contains("4 digits"), "{err}");
    }

    #[test]
    fn debug_is_redacted() {
        let shown = format!("{:?}", Pin::new("9876".into()));
        assert!(!shown.contains("9876"));
    }
}
