//! The JPKI application (公的個人認証AP) of the My Number card, user-authentication side only:
//! certificates, PIN counter, VERIFY and signing with the user-authentication key (docs/cards.md §1).
//!
//! The signing key (EF 001A), its password (EF 001B) and the signing certificate (EF 0001, which carries
//! name, address and date of birth) are deliberately not reachable through this module.

use crate::CardKind;
use crate::apdu::{Command, transmit_ok};
use crate::crypto::SHA256_DIGEST_INFO_LEN;
use crate::error::{Error, Result};
use crate::iso;
use crate::pin::{Pin, PinStatus};
use crate::transport::CardTransport;

/// AID of the JPKI application: `D3 92 F0 00 26 01 00 00 00 01`.
pub const AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// EF holding the user-authentication certificate (利用者証明用電子証明書).
pub const EF_AUTH_CERT: u16 = 0x000A;
/// EF holding the certificate of the CA that issued the user-authentication certificate.
pub const EF_AUTH_CA_CERT: u16 = 0x000B;
/// Private-key EF of the user-authentication key.
pub const EF_AUTH_KEY: u16 = 0x0017;
/// PIN EF of the user-authentication PIN (4 digits, 3 tries).
pub const EF_AUTH_PIN: u16 = 0x0018;
/// Token-information EF (32 bytes ASCII, `JPKIAPICCTOKEN2` on a physical card).
pub const EF_TOKEN: u16 = 0x0006;
/// Tries the user-authentication PIN starts with.
pub const AUTH_PIN_MAX_TRIES: u8 = 3;

/// VERIFY P2 `80`: "specific reference data, current EF" — the PIN EF selected just before.
const VERIFY_P2: u8 = 0x80;
const INS_SIGN: u8 = 0x2A;

/// The certificates of the user-authentication side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificate {
    /// EF 000A, the user-authentication certificate.
    UserAuthentication,
    /// EF 000B, its issuing CA certificate as stored on the card (not a trust anchor).
    UserAuthenticationCa,
}

impl Certificate {
    fn fid(self) -> u16 {
        match self {
            Certificate::UserAuthentication => EF_AUTH_CERT,
            Certificate::UserAuthenticationCa => EF_AUTH_CA_CERT,
        }
    }
}

/// The JPKI application, selected, on a transport.
///
/// Every method selects the EF it needs; PIN state survives EF selection inside the application but is
/// lost when another DF is selected or the card is reset (docs/cards.md §1.4), so verify and sign in one go.
pub struct Jpki<'t, T: CardTransport + ?Sized> {
    transport: &'t mut T,
}

impl<'t, T: CardTransport + ?Sized> Jpki<'t, T> {
    /// SELECT the JPKI application by AID (`00 A4 04 0C 0A D3 92 …`, no FCI). A card without it is
    /// [`Error::WrongCard`].
    pub fn select(transport: &'t mut T) -> Result<Jpki<'t, T>> {
        let cmd = Command::new(0x00, iso::INS_SELECT, 0x04, 0x0C).with_data(&AID);
        match transmit_ok(transport, &cmd) {
            Ok(_) => Ok(Jpki { transport }),
            Err(Error::FileNotFound) => Err(Error::WrongCard {
                expected: CardKind::Jpki,
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads one certificate (DER). No PIN is needed for these EFs on a card.
    pub fn read_certificate(&mut self, which: Certificate) -> Result<Vec<u8>> {
        iso::select_ef(self.transport, which.fid())?;
        iso::read_certificate(self.transport)
    }

    /// The user-authentication PIN's state, by an empty VERIFY (spends no try).
    pub fn pin_status(&mut self) -> Result<PinStatus> {
        iso::select_ef(self.transport, EF_AUTH_PIN)?;
        iso::pin_status(self.transport, VERIFY_P2)
    }

    /// VERIFY the user-authentication PIN. The format (4 digits) is checked first; a PIN that fails the
    /// check is never sent, so it costs no try.
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        pin.check_format(CardKind::Jpki)?;
        iso::select_ef(self.transport, EF_AUTH_PIN)?;
        iso::verify(self.transport, VERIFY_P2, pin)
    }

    /// Signs a SHA-256 DigestInfo with the user-authentication key: `80 2A 00 80 33 <DigestInfo> 00`.
    /// The card applies PKCS#1 v1.5 type-1 padding itself (docs/cards.md §1.4). Needs a verified PIN.
    pub fn sign(&mut self, digest_info: &[u8; SHA256_DIGEST_INFO_LEN]) -> Result<Vec<u8>> {
        iso::select_ef(self.transport, EF_AUTH_KEY)?;
        let cmd = Command::new(0x80, INS_SIGN, 0x00, 0x80)
            .with_data(digest_info)
            .with_ne(256);
        transmit_ok(self.transport, &cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Script;

    const SELECT_AP: &str = "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01";

    #[test]
    fn select_paths() {
        let mut card = Script::new().expect(SELECT_AP, "90 00");
        Jpki::select(&mut card).unwrap();
        let mut card = Script::new().expect(SELECT_AP, "6A 82");
        assert!(matches!(
            Jpki::select(&mut card),
            Err(Error::WrongCard {
                expected: CardKind::Jpki
            })
        ));
        let mut card = Script::new().expect(SELECT_AP, "6E 00");
        assert!(matches!(
            Jpki::select(&mut card),
            Err(Error::ClaNotSupported)
        ));
    }

    #[test]
    fn certificate_efs() {
        let mut card = Script::new()
            .expect(SELECT_AP, "90 00")
            .expect("00 A4 02 0C 02 00 0B", "90 00")
            .expect("00 B0 00 00 04", "30 02 05 00 90 00");
        let mut jpki = Jpki::select(&mut card).unwrap();
        assert_eq!(
            jpki.read_certificate(Certificate::UserAuthenticationCa)
                .unwrap(),
            vec![0x30, 0x02, 0x05, 0x00]
        );
        let mut card = Script::new()
            .expect(SELECT_AP, "90 00")
            .expect("00 A4 02 0C 02 00 0A", "6A 82");
        let mut jpki = Jpki::select(&mut card).unwrap();
        assert!(matches!(
            jpki.read_certificate(Certificate::UserAuthentication),
            Err(Error::FileNotFound)
        ));
    }

    #[test]
    fn pin_status_selects_the_pin_ef() {
        let mut card = Script::new()
            .expect(SELECT_AP, "90 00")
            .expect("00 A4 02 0C 02 00 18", "90 00")
            .expect("00 20 00 80", "63 C2");
        let mut jpki = Jpki::select(&mut card).unwrap();
        assert_eq!(jpki.pin_status().unwrap(), PinStatus::TriesLeft(2));
    }

    #[test]
    fn verify_checks_format_before_the_card() {
        let mut card = Script::new().expect(SELECT_AP, "90 00");
        let mut jpki = Jpki::select(&mut card).unwrap();
        for bad in ["123", "12345", "abcd"] {
            let err = jpki.verify_pin(&Pin::new(bad.into())).unwrap_err();
            assert!(matches!(
                err,
                Error::PinFormat {
                    kind: CardKind::Jpki,
                    ..
                }
            ));
        }
        assert_eq!(card.sent(), 1, "only the SELECT reached the card");
    }

    #[test]
    fn verify_paths() {
        for (sw, check) in [
            (
                "90 00",
                (|r| matches!(r, Ok(()))) as fn(&Result<()>) -> bool,
            ),
            ("63 C2", |r| {
                matches!(r, Err(Error::WrongPin { tries_left: 2 }))
            }),
            ("63 C0", |r| matches!(r, Err(Error::PinLocked))),
            ("69 84", |r| matches!(r, Err(Error::PinLocked))),
            ("69 83", |r| matches!(r, Err(Error::PinLocked))),
        ] {
            let mut card = Script::new()
                .expect(SELECT_AP, "90 00")
                .expect("00 A4 02 0C 02 00 18", "90 00")
                .expect("00 20 00 80 04 31 32 33 34", sw);
            let result = Jpki::select(&mut card)
                .unwrap()
                .verify_pin(&Pin::new("1234".into()));
            assert!(check(&result), "{sw}: {result:?}");
        }
    }

    #[test]
    fn sign_command_is_byte_exact() {
        let di = crate::crypto::sha256_digest_info(b"hello");
        let mut expected = crate::testutil::hex("80 2A 00 80 33");
        expected.extend_from_slice(&di);
        expected.push(0x00);
        let mut reply = vec![0x5A; 256];
        reply.extend_from_slice(&[0x90, 0x00]);
        let mut card = Script::new()
            .expect(SELECT_AP, "90 00")
            .expect("00 A4 02 0C 02 00 17", "90 00")
            .expect_bytes(expected.clone(), reply);
        assert_eq!(
            Jpki::select(&mut card).unwrap().sign(&di).unwrap(),
            vec![0x5A; 256]
        );

        let mut card = Script::new()
            .expect(SELECT_AP, "90 00")
            .expect("00 A4 02 0C 02 00 17", "90 00")
            .expect_bytes(expected, vec![0x69, 0x82]);
        assert!(matches!(
            Jpki::select(&mut card).unwrap().sign(&di),
            Err(Error::SecurityStatusNotSatisfied)
        ));
    }
}
