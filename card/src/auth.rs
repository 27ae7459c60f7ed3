//! The high-level operations the card agent performs: detect what card is inserted, read a PIN's
//! state, and authenticate (verify the PIN and sign a message with the authentication key).

use crate::CardKind;
use crate::crypto::{rsa_modulus_len, sha256_digest_info};
use crate::error::{Error, Result};
use crate::hpki::{self, Hpki, SignStyle};
use crate::jpki::{self, Jpki};
use crate::pin::{Pin, PinStatus};
use crate::transport::CardTransport;

/// What [`authenticate`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSignature {
    /// The card kind that signed.
    pub kind: CardKind,
    /// RSASSA-PKCS1-v1_5 signature with SHA-256 over the message (RFC 8017 §8.2), as long as the modulus.
    pub signature: Vec<u8>,
    /// The authentication certificate (DER) whose key made the signature.
    pub certificate: Vec<u8>,
    /// Further certificates from the card, issuer first (JPKI: the user-authentication CA from EF 000B;
    /// HPKI: empty — the card's CA certificates have no documented location). Never trust anchors.
    pub chain: Vec<Vec<u8>>,
    /// For HPKI, the signing style that worked (worth remembering per card); `None` for JPKI.
    pub hpki_style: Option<SignStyle>,
}

/// Options for [`authenticate_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOptions {
    /// HPKI application and signing-style selection.
    pub hpki: hpki::Options,
}

/// Proves possession of the card: verifies `pin` and signs SHA-256(`message`) with the card's
/// authentication key (JPKI user-authentication key, or the HPKI authentication application's key).
///
/// The PIN format is checked before any command reaches the card. Certificates are read before the
/// PIN is verified, so a wrong or broken card fails without spending a try. Run this inside one
/// transaction (see `pcsc::PcscCard::transaction`), and reset the card afterwards so the verified PIN
/// does not outlive the call.
pub fn authenticate<T: CardTransport + ?Sized>(
    transport: &mut T,
    kind: CardKind,
    pin: &Pin,
    message: &[u8],
) -> Result<CardSignature> {
    authenticate_with(transport, kind, pin, message, &AuthOptions::default())
}

/// [`authenticate`] with explicit options (HPKI AID and signing style).
pub fn authenticate_with<T: CardTransport + ?Sized>(
    transport: &mut T,
    kind: CardKind,
    pin: &Pin,
    message: &[u8],
    options: &AuthOptions,
) -> Result<CardSignature> {
    pin.check_format(kind)?;
    let digest_info = sha256_digest_info(message);
    match kind {
        CardKind::Jpki => {
            let mut card = Jpki::select(transport)?;
            let certificate = card.read_certificate(jpki::Certificate::UserAuthentication)?;
            let ca = card.read_certificate(jpki::Certificate::UserAuthenticationCa)?;
            let modulus_len = rsa_modulus_len(&certificate)?;
            card.verify_pin(pin)?;
            let signature = card.sign(&digest_info)?;
            if signature.len() != modulus_len {
                return Err(Error::Malformed(
                    "signature length differs from the key size",
                ));
            }
            Ok(CardSignature {
                kind,
                signature,
                certificate,
                chain: vec![ca],
                hpki_style: None,
            })
        }
        CardKind::Hpki => {
            let mut card = Hpki::select(transport, &options.hpki)?;
            let certificate = card.read_certificate()?;
            let modulus_len = rsa_modulus_len(&certificate)?;
            card.verify_pin(pin)?;
            let (signature, style) = card.sign(&digest_info, modulus_len, options.hpki.style)?;
            Ok(CardSignature {
                kind,
                signature,
                certificate,
                chain: Vec::new(),
                hpki_style: Some(style),
            })
        }
    }
}

/// Which kind of card is inserted: `Some(Jpki)` if the JPKI application can be selected (OpenSC's
/// fallback test too), else `Some(Hpki)` if an HPKI authentication application is found, else `None`.
/// Sends only SELECT commands; spends no PIN try.
pub fn detect<T: CardTransport + ?Sized>(transport: &mut T) -> Result<Option<CardKind>> {
    match Jpki::select(transport) {
        Ok(_) => return Ok(Some(CardKind::Jpki)),
        Err(Error::WrongCard { .. }) => {}
        Err(e) => return Err(e),
    }
    match Hpki::select(transport, &hpki::Options::default()) {
        Ok(_) => Ok(Some(CardKind::Hpki)),
        Err(Error::WrongCard { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The authentication PIN's state on a card of `kind`, without spending a try.
pub fn pin_status<T: CardTransport + ?Sized>(
    transport: &mut T,
    kind: CardKind,
    options: &AuthOptions,
) -> Result<PinStatus> {
    match kind {
        CardKind::Jpki => Jpki::select(transport)?.pin_status(),
        CardKind::Hpki => Hpki::select(transport, &options.hpki)?.pin_status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Script;

    const SELECT_JPKI: &str = "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01";
    const SELECT_HPKI: &str = "00 A4 04 00 10 E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 02 00";

    #[test]
    fn bad_pin_format_sends_nothing() {
        let mut card = Script::new();
        let err =
            authenticate(&mut card, CardKind::Jpki, &Pin::new("12345".into()), b"m").unwrap_err();
        assert!(matches!(err, Error::PinFormat { .. }));
        let err =
            authenticate(&mut card, CardKind::Hpki, &Pin::new("12".into()), b"m").unwrap_err();
        assert!(matches!(err, Error::PinFormat { .. }));
        assert_eq!(card.sent(), 0);
    }

    #[test]
    fn wrong_card_fails_before_the_pin() {
        let mut card = Script::new().expect(SELECT_JPKI, "6A 82");
        let err =
            authenticate(&mut card, CardKind::Jpki, &Pin::new("1234".into()), b"m").unwrap_err();
        assert!(matches!(
            err,
            Error::WrongCard {
                expected: CardKind::Jpki
            }
        ));
        card.finish();
    }

    #[test]
    fn a_non_certificate_fails_before_the_pin() {
        let mut card = Script::new()
            .expect(SELECT_JPKI, "90 00")
            .expect("00 A4 02 0C 02 00 0A", "90 00")
            .expect("00 B0 00 00 04", "30 02 05 00 90 00")
            .expect("00 A4 02 0C 02 00 0B", "90 00")
            .expect("00 B0 00 00 04", "30 02 05 00 90 00");
        let err =
            authenticate(&mut card, CardKind::Jpki, &Pin::new("1234".into()), b"m").unwrap_err();
        assert!(matches!(err, Error::Malformed(_)));
        card.finish();
    }

    #[test]
    fn transport_errors_pass_through() {
        let mut card = Script::new().fail(SELECT_JPKI, || Error::CardRemoved);
        assert!(matches!(detect(&mut card), Err(Error::CardRemoved)));
    }

    #[test]
    fn detect_paths() {
        let mut card = Script::new().expect(SELECT_JPKI, "90 00");
        assert_eq!(detect(&mut card).unwrap(), Some(CardKind::Jpki));

        let mut card = Script::new()
            .expect(SELECT_JPKI, "6A 82")
            .expect(SELECT_HPKI, "90 00");
        assert_eq!(detect(&mut card).unwrap(), Some(CardKind::Hpki));

        let mut card = Script::new()
            .expect(SELECT_JPKI, "6A 82")
            .expect(SELECT_HPKI, "6A 82")
            .expect("00 A4 04 00 05 E8 28 BD 08 0F 00", "6A 82");
        assert_eq!(detect(&mut card).unwrap(), None);
        card.finish();
    }

    #[test]
    fn pin_status_per_kind() {
        let mut card = Script::new()
            .expect(SELECT_JPKI, "90 00")
            .expect("00 A4 02 0C 02 00 18", "90 00")
            .expect("00 20 00 80", "63 C3");
        assert_eq!(
            pin_status(&mut card, CardKind::Jpki, &AuthOptions::default()).unwrap(),
            PinStatus::TriesLeft(3)
        );
        let mut card = Script::new()
            .expect(SELECT_HPKI, "90 00")
            .expect("00 A4 02 0C 02 00 02", "90 00")
            .expect("00 20 00 88", "69 84");
        assert_eq!(
            pin_status(&mut card, CardKind::Hpki, &AuthOptions::default()).unwrap(),
            PinStatus::Locked
        );
    }
}
