//! The crate's one error type: status words, PIN rules, transport and reader conditions a caller can act on.

use crate::CardKind;
use crate::apdu::StatusWord;

/// Everything that can go wrong talking to a card.
///
/// Variants are chosen so that the card agent can map each one to a distinct user-facing error code
/// (`wrong_pin`, `pin_locked`, `no_card`, `wrong_card`, `card_removed`, …) without parsing messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// VERIFY failed; the card says how many tries remain (ISO 7816-4 §11.5.6, SW `63 Cx`, x > 0).
    #[error("wrong PIN: {tries_left} tries left")]
    WrongPin {
        /// Tries left before the PIN locks.
        tries_left: u8,
    },
    /// The PIN is blocked: SW `63 C0`, `69 83` (authentication method blocked) or `69 84` (reference data not usable).
    #[error("PIN locked")]
    PinLocked,
    /// The PIN does not have the format the card kind requires; nothing was sent to the card.
    #[error("PIN format not accepted for {kind} cards: {rule}")]
    PinFormat {
        /// The card kind whose rule was applied.
        kind: CardKind,
        /// Human-readable rule, e.g. "exactly 4 digits".
        rule: &'static str,
    },
    /// SW `69 82`: the command needs a verified PIN (or other security condition) first.
    #[error("security status not satisfied (SW 69 82)")]
    SecurityStatusNotSatisfied,
    /// SW `69 85`: conditions of use not satisfied (e.g. no key selected for the operation).
    #[error("conditions of use not satisfied (SW 69 85)")]
    ConditionsNotSatisfied,
    /// SW `6A 82`: file or application not found.
    #[error("file or application not found (SW 6A 82)")]
    FileNotFound,
    /// SW `67 00`: wrong length (Lc or Le).
    #[error("wrong length (SW 67 00)")]
    WrongLength,
    /// SW `6D 00`: instruction code not supported.
    #[error("instruction not supported (SW 6D 00)")]
    InsNotSupported,
    /// SW `6E 00`: class not supported.
    #[error("class not supported (SW 6E 00)")]
    ClaNotSupported,
    /// SW `6A 86` / `6B 00`: incorrect P1-P2 (for READ BINARY: offset outside the file).
    #[error("incorrect parameters P1-P2 (SW {sw})")]
    IncorrectParameters {
        /// The status word the card returned.
        sw: StatusWord,
    },
    /// Any other non-success status word.
    #[error("card returned SW {sw} to INS {ins:02X}")]
    UnexpectedStatus {
        /// Instruction byte of the failing command (never its data).
        ins: u8,
        /// The status word.
        sw: StatusWord,
    },
    /// The card answered something that does not fit the protocol (too short, bad DER header, bad FCI …).
    #[error("malformed card response: {0}")]
    Malformed(&'static str),
    /// A command could not be encoded (data or Ne too long for ISO 7816-4 extended length).
    #[error("command cannot be encoded: {0}")]
    InvalidCommand(&'static str),
    /// The card in the reader is not of the requested kind (the application is absent).
    #[error("the card is not a {expected} card")]
    WrongCard {
        /// The kind that was asked for.
        expected: CardKind,
    },
    /// The card was removed while we were talking to it.
    #[error("card removed")]
    CardRemoved,
    /// Another application reset the card; security state (verified PIN) is lost. Retrying is safe.
    #[error("card was reset by another application")]
    CardReset,
    /// The reader has no card.
    #[error("no card in the reader")]
    NoCard,
    /// No such reader, or no reader at all.
    #[error("no card reader")]
    NoReader,
    /// The PC/SC service (pcscd) is not running or not reachable.
    #[error("PC/SC service unavailable")]
    ServiceUnavailable,
    /// Any other transport failure.
    #[error("card transport error")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Maps a non-success status word to an error (ISO 7816-4 §5.6, tables 5 and 6).
    ///
    /// `63 C0`, `69 83` and `69 84` are all treated as "PIN locked": real JPKI cards are only documented to
    /// answer `63 Cx`, emulators keep answering `63 C0`, and ISO (and the JAHIS HPKI guideline) use `69 83`/`69 84`.
    pub fn from_status(ins: u8, sw: StatusWord) -> Error {
        match sw.0 {
            0x63C0 | 0x6983 | 0x6984 => Error::PinLocked,
            0x63C1..=0x63CF => Error::WrongPin {
                tries_left: (sw.0 & 0x0F) as u8,
            },
            0x6982 => Error::SecurityStatusNotSatisfied,
            0x6985 => Error::ConditionsNotSatisfied,
            0x6A82 => Error::FileNotFound,
            0x6700 => Error::WrongLength,
            0x6D00 => Error::InsNotSupported,
            0x6E00 => Error::ClaNotSupported,
            0x6A86 | 0x6B00 => Error::IncorrectParameters { sw },
            _ => Error::UnexpectedStatus { ins, sw },
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
