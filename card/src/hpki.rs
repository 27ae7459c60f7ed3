//! The HPKI card (医師資格証 and other 保健医療福祉分野PKI cards), authentication application only:
//! discovery, certificate, PIN counter, VERIFY, and signing in both command styles seen on real cards
//! (docs/cards.md §2.2–2.4).
//!
//! The card carries two ISO/IEC 7816-15 applications, one for electronic signatures and one for
//! authentication, each with its own PIN, key and certificate. This module only ever uses the
//! authentication application: the signature key is for legally binding signatures, not for logins.

use crate::CardKind;
use crate::apdu::{Command, EXTENDED_NE_MAX, Response, SHORT_NE_MAX, exchange, transmit_ok};
use crate::crypto::{SHA256_DIGEST_INFO_LEN, pkcs1_v15_pad};
use crate::error::{Error, Result};
use crate::iso;
use crate::pin::{Pin, PinStatus};
use crate::transport::CardTransport;

/// The registered application provider identifier all HPKI applications share (ISO 7816-15 RID).
pub const RID: [u8; 5] = [0xE8, 0x28, 0xBD, 0x08, 0x0F];
/// Authentication application on JMA cards (医師会カード): `E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 02`.
pub const JMA_AUTH_AID: [u8; 16] = [
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0xA0, 0x00, 0x00, 0x03, 0x91, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
];
/// Signature application on JMA cards (last byte `01`). Never used for authentication.
pub const JMA_SIGNATURE_AID: [u8; 16] = [
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0xA0, 0x00, 0x00, 0x03, 0x91, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
];
/// Authentication AIDs tried, in order, before enumerating by RID.
pub const KNOWN_AUTH_AIDS: &[&[u8]] = &[&JMA_AUTH_AID];
/// Signature AIDs that enumeration must never pick as the authentication application.
pub const KNOWN_SIGNATURE_AIDS: &[&[u8]] = &[&JMA_SIGNATURE_AID];
/// PIN EF inside each application.
pub const EF_PIN: u16 = 0x0002;
/// Private-key EF inside each application.
pub const EF_KEY: u16 = 0x000C;
/// End-entity certificate EF inside each application.
pub const EF_CERT: u16 = 0x0016;
/// Tries an HPKI PIN starts with (JMA, MEDIS: 15 consecutive errors lock the card).
pub const PIN_MAX_TRIES: u8 = 15;

/// VERIFY P2 `88`: specific reference data number 8, the PIN object's pwdReference on JMA cards.
const VERIFY_P2: u8 = 0x88;
const INS_MSE: u8 = 0x22;
const INS_PSO: u8 = 0x2A;
/// Enumeration stops after this many applications, whatever the card says.
const MAX_APPLICATIONS: usize = 16;

/// How the card wants to be asked for a signature (docs/cards.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignStyle {
    /// "Style J", as on the JPKI card: `80 2A 00 80 <DigestInfo> 00`; the card pads (PKCS#1 v1.5).
    CardPadded,
    /// "Style I", ISO 7816-8: MSE SET DST `00 22 41 B6 04 84 02 00 0C`, then PSO COMPUTE DIGITAL SIGNATURE
    /// `00 2A 9E 9A` with the host-padded block (extended length).
    HostPadded,
}

/// How to find the authentication application and how to sign on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Authentication application AID; `None` tries [`KNOWN_AUTH_AIDS`], then enumerates by [`RID`].
    pub aid: Option<Vec<u8>>,
    /// Signing style; `None` probes: card-padded first, host-padded if the card rejects that command.
    pub style: Option<SignStyle>,
}

/// The HPKI authentication application, selected, on a transport.
pub struct Hpki<'t, T: CardTransport + ?Sized> {
    transport: &'t mut T,
    aid: Vec<u8>,
}

impl<'t, T: CardTransport + ?Sized> Hpki<'t, T> {
    /// Finds and selects the authentication application.
    ///
    /// Order: the configured AID (only that one), else the known authentication AIDs, else the first
    /// application found by partial DF-name selection over the HPKI RID (JAHIS A.2.2) that is not a
    /// known signature application. A card without any is [`Error::WrongCard`].
    pub fn select(transport: &'t mut T, options: &Options) -> Result<Hpki<'t, T>> {
        let wrong_card = || Error::WrongCard {
            expected: CardKind::Hpki,
        };
        if let Some(aid) = &options.aid {
            return if select_aid(transport, aid)? {
                Ok(Hpki {
                    transport,
                    aid: aid.clone(),
                })
            } else {
                Err(wrong_card())
            };
        }
        for aid in KNOWN_AUTH_AIDS {
            if select_aid(transport, aid)? {
                return Ok(Hpki {
                    transport,
                    aid: aid.to_vec(),
                });
            }
        }
        let found = list_applications(transport)?
            .into_iter()
            .find(|aid| !KNOWN_SIGNATURE_AIDS.contains(&aid.as_slice()));
        match found {
            Some(aid) if select_aid(transport, &aid)? => Ok(Hpki { transport, aid }),
            _ => Err(wrong_card()),
        }
    }

    /// The AID of the selected application.
    pub fn aid(&self) -> &[u8] {
        &self.aid
    }

    /// Reads the end-entity certificate of the authentication application (DER; no PIN needed).
    pub fn read_certificate(&mut self) -> Result<Vec<u8>> {
        iso::select_ef(self.transport, EF_CERT)?;
        iso::read_certificate(self.transport)
    }

    /// The PIN's state, by an empty VERIFY (spends no try).
    pub fn pin_status(&mut self) -> Result<PinStatus> {
        iso::select_ef(self.transport, EF_PIN)?;
        iso::pin_status(self.transport, VERIFY_P2)
    }

    /// VERIFY the PIN (format checked first: 4–16 printable ASCII characters, never sent otherwise).
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        pin.check_format(CardKind::Hpki)?;
        iso::select_ef(self.transport, EF_PIN)?;
        iso::verify(self.transport, VERIFY_P2, pin)
    }

    /// Signs a SHA-256 DigestInfo with the authentication key. Needs a verified PIN.
    ///
    /// `modulus_len` is the key size in bytes (from the certificate): the host-padded style pads to it,
    /// and the signature must have exactly that length. With `style = None` the card-padded command is
    /// tried first and the host-padded one if the card refuses it as unknown or inapplicable; the style
    /// that worked is returned so callers can remember it.
    pub fn sign(
        &mut self,
        digest_info: &[u8; SHA256_DIGEST_INFO_LEN],
        modulus_len: usize,
        style: Option<SignStyle>,
    ) -> Result<(Vec<u8>, SignStyle)> {
        iso::select_ef(self.transport, EF_KEY)?;
        let (response, used) = match style {
            Some(SignStyle::CardPadded) => {
                (self.sign_card_padded(digest_info)?, SignStyle::CardPadded)
            }
            Some(SignStyle::HostPadded) => (
                self.sign_host_padded(digest_info, modulus_len)?,
                SignStyle::HostPadded,
            ),
            None => {
                let first = self.sign_card_padded(digest_info)?;
                if probe_says_other_style(first.sw.0) {
                    (
                        self.sign_host_padded(digest_info, modulus_len)?,
                        SignStyle::HostPadded,
                    )
                } else {
                    (first, SignStyle::CardPadded)
                }
            }
        };
        let signature = response.into_data(INS_PSO)?;
        if signature.len() != modulus_len {
            return Err(Error::Malformed(
                "signature length differs from the key size",
            ));
        }
        Ok((signature, used))
    }

    fn sign_card_padded(&mut self, digest_info: &[u8]) -> Result<Response> {
        let cmd = Command::new(0x80, INS_PSO, 0x00, 0x80)
            .with_data(digest_info)
            .with_ne(SHORT_NE_MAX);
        exchange(self.transport, &cmd)
    }

    fn sign_host_padded(&mut self, digest_info: &[u8], modulus_len: usize) -> Result<Response> {
        // MSE SET (P1 41: computation, decipherment, internal authentication and key agreement) for the
        // digital signature template (P2 B6), key reference 84 = the private-key EF (ISO 7816-4 §11.5.11).
        let [k1, k2] = EF_KEY.to_be_bytes();
        let mse = Command::new(0x00, INS_MSE, 0x41, 0xB6).with_data(&[0x84, 0x02, k1, k2]);
        transmit_ok(self.transport, &mse)?;
        // PSO COMPUTE DIGITAL SIGNATURE (ISO 7816-8 §11): P1 9E = return the signature,
        // P2 9A = the data field is the input to sign, here the complete EMSA-PKCS1-v1_5 block.
        let block = pkcs1_v15_pad(digest_info, modulus_len)?;
        let pso = Command::new(0x00, INS_PSO, 0x9E, 0x9A)
            .with_data(&block)
            .with_ne(EXTENDED_NE_MAX);
        exchange(self.transport, &pso)
    }
}

/// Status words with which a card refuses the card-padded command because it does not implement it
/// (unknown INS or CLA, function or P1-P2 not supported, no key referenced or security environment not set).
/// `69 82` is included: a host-padded card may report a missing MSE that way, and the host-padded
/// attempt that follows reports the real state.
fn probe_says_other_style(sw: u16) -> bool {
    matches!(
        sw,
        0x6D00 | 0x6E00 | 0x6A81 | 0x6A86 | 0x6A88 | 0x6985 | 0x6982
    )
}

/// SELECT by full DF name with FCI requested (`00 A4 04 00 Lc AID 00`, as the JMA card flow does).
/// `Ok(false)` if the card has no such application.
fn select_aid<T: CardTransport + ?Sized>(t: &mut T, aid: &[u8]) -> Result<bool> {
    let cmd = Command::new(0x00, iso::INS_SELECT, 0x04, 0x00)
        .with_data(aid)
        .with_ne(SHORT_NE_MAX);
    match transmit_ok(t, &cmd) {
        Ok(_) => Ok(true),
        Err(Error::FileNotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Lists the AIDs of all applications under the HPKI RID by partial DF-name selection:
/// `00 A4 04 00 05 <RID> 00` for the first, `00 A4 04 02 …` for each next one (ISO 7816-4 §11.2.2,
/// P2 b2-b1 = 10 "next occurrence"), until `6A 82`. EF.DIR does not exist on HPKI cards (JAHIS B.2).
pub fn list_applications<T: CardTransport + ?Sized>(transport: &mut T) -> Result<Vec<Vec<u8>>> {
    let mut found: Vec<Vec<u8>> = Vec::new();
    for p2 in std::iter::once(0x00)
        .chain(std::iter::repeat(0x02))
        .take(MAX_APPLICATIONS)
    {
        let cmd = Command::new(0x00, iso::INS_SELECT, 0x04, p2)
            .with_data(&RID)
            .with_ne(SHORT_NE_MAX);
        let fci = match transmit_ok(transport, &cmd) {
            Ok(fci) => fci,
            // Not found, or a card that does not do partial selection at all.
            Err(Error::FileNotFound | Error::IncorrectParameters { .. }) => break,
            Err(e) => return Err(e),
        };
        let aid = iso::fci_df_name(&fci)?;
        if !aid.starts_with(&RID) || found.contains(&aid) {
            break;
        }
        found.push(aid);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sha256_digest_info;
    use crate::testutil::{Script, hex};

    const SELECT_JMA_AUTH: &str =
        "00 A4 04 00 10 E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 02 00";
    const FIRST: &str = "00 A4 04 00 05 E8 28 BD 08 0F 00";
    const NEXT: &str = "00 A4 04 02 05 E8 28 BD 08 0F 00";

    fn fci(aid: &str) -> String {
        let aid = hex(aid);
        format!(
            "6F {:02X} 84 {:02X} {} 90 00",
            aid.len() + 2,
            aid.len(),
            aid.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }

    #[test]
    fn selects_the_known_auth_aid() {
        let mut card = Script::new().expect(
            SELECT_JMA_AUTH,
            &fci("E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 02"),
        );
        let hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert_eq!(hpki.aid(), JMA_AUTH_AID);
    }

    #[test]
    fn configured_aid_is_the_only_one_tried() {
        let mut card = Script::new().expect("00 A4 04 00 06 E8 28 BD 08 0F 77 00", "6A 82");
        let opts = Options {
            aid: Some(hex("E8 28 BD 08 0F 77")),
            style: None,
        };
        assert!(matches!(
            Hpki::select(&mut card, &opts),
            Err(Error::WrongCard {
                expected: CardKind::Hpki
            })
        ));
        card.finish();
    }

    #[test]
    fn enumerates_by_rid_and_skips_signature_aps() {
        let mut card = Script::new()
            .expect(SELECT_JMA_AUTH, "6A 82")
            .expect(
                FIRST,
                &fci("E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 01"),
            )
            .expect(NEXT, &fci("E8 28 BD 08 0F 11 22 33"))
            .expect(NEXT, "6A 82")
            .expect(
                "00 A4 04 00 08 E8 28 BD 08 0F 11 22 33 00",
                &fci("E8 28 BD 08 0F 11 22 33"),
            );
        let hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert_eq!(hpki.aid(), hex("E8 28 BD 08 0F 11 22 33"));
        card.finish();
    }

    #[test]
    fn no_hpki_application_is_wrong_card() {
        let mut card = Script::new()
            .expect(SELECT_JMA_AUTH, "6A 82")
            .expect(FIRST, "6A 82");
        assert!(matches!(
            Hpki::select(&mut card, &Options::default()),
            Err(Error::WrongCard { .. })
        ));
        let mut card = Script::new()
            .expect(SELECT_JMA_AUTH, "6A 82")
            .expect(
                FIRST,
                &fci("E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 01"),
            )
            .expect(
                NEXT,
                &fci("E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 01"),
            );
        assert!(matches!(
            Hpki::select(&mut card, &Options::default()),
            Err(Error::WrongCard { .. })
        ));
    }

    #[test]
    fn enumeration_rejects_a_bad_fci() {
        let mut card = Script::new().expect(FIRST, "6F 02 83 00 90 00");
        assert!(matches!(
            list_applications(&mut card),
            Err(Error::Malformed(_))
        ));
        let mut card = Script::new().expect(FIRST, "6A 86");
        assert!(list_applications(&mut card).unwrap().is_empty());
    }

    fn selected(card: Script) -> Script {
        card.expect(SELECT_JMA_AUTH, "90 00")
    }

    #[test]
    fn pin_paths() {
        let mut card = selected(Script::new())
            .expect("00 A4 02 0C 02 00 02", "90 00")
            .expect("00 20 00 88", "63 CF")
            .expect("00 A4 02 0C 02 00 02", "90 00")
            .expect("00 20 00 88 06 31 32 33 34 35 36", "63 CE")
            .expect("00 A4 02 0C 02 00 02", "90 00")
            .expect("00 20 00 88 04 61 62 63 64", "69 84");
        let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert_eq!(hpki.pin_status().unwrap(), PinStatus::TriesLeft(15));
        assert!(matches!(
            hpki.verify_pin(&Pin::new("123456".into())),
            Err(Error::WrongPin { tries_left: 14 })
        ));
        assert!(matches!(
            hpki.verify_pin(&Pin::new("abcd".into())),
            Err(Error::PinLocked)
        ));
        assert!(matches!(
            hpki.verify_pin(&Pin::new("123".into())),
            Err(Error::PinFormat { .. })
        ));
        card.finish();
    }

    fn card_padded_cmd(di: &[u8]) -> Vec<u8> {
        let mut cmd = hex("80 2A 00 80 33");
        cmd.extend_from_slice(di);
        cmd.push(0);
        cmd
    }

    fn host_padded_cmd(di: &[u8]) -> Vec<u8> {
        let mut cmd = hex("00 2A 9E 9A 00 01 00");
        cmd.extend_from_slice(&pkcs1_v15_pad(di, 256).unwrap());
        cmd.extend_from_slice(&[0, 0]);
        cmd
    }

    fn sig_reply() -> Vec<u8> {
        let mut r = vec![0x42; 256];
        r.extend_from_slice(&[0x90, 0x00]);
        r
    }

    #[test]
    fn sign_card_padded() {
        let di = sha256_digest_info(b"m");
        let mut card = selected(Script::new())
            .expect("00 A4 02 0C 02 00 0C", "90 00")
            .expect_bytes(card_padded_cmd(&di), sig_reply());
        let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        let (sig, style) = hpki.sign(&di, 256, None).unwrap();
        assert_eq!((sig.len(), style), (256, SignStyle::CardPadded));
        card.finish();
    }

    #[test]
    fn sign_probe_falls_back_to_host_padded() {
        let di = sha256_digest_info(b"m");
        for refusal in ["6E 00", "6D 00", "69 85", "6A 86"] {
            let mut card = selected(Script::new())
                .expect("00 A4 02 0C 02 00 0C", "90 00")
                .expect_bytes(card_padded_cmd(&di), hex(refusal))
                .expect("00 22 41 B6 04 84 02 00 0C", "90 00")
                .expect_bytes(host_padded_cmd(&di), sig_reply());
            let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
            let (_, style) = hpki.sign(&di, 256, None).unwrap();
            assert_eq!(style, SignStyle::HostPadded, "{refusal}");
            card.finish();
        }
    }

    #[test]
    fn sign_configured_host_padded_skips_the_probe() {
        let di = sha256_digest_info(b"m");
        let mut card = selected(Script::new())
            .expect("00 A4 02 0C 02 00 0C", "90 00")
            .expect("00 22 41 B6 04 84 02 00 0C", "90 00")
            .expect_bytes(host_padded_cmd(&di), hex("69 82"));
        let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert!(matches!(
            hpki.sign(&di, 256, Some(SignStyle::HostPadded)),
            Err(Error::SecurityStatusNotSatisfied)
        ));
        card.finish();
    }

    #[test]
    fn sign_configured_card_padded_reports_the_card_error() {
        let di = sha256_digest_info(b"m");
        let mut card = selected(Script::new())
            .expect("00 A4 02 0C 02 00 0C", "90 00")
            .expect_bytes(card_padded_cmd(&di), hex("6E 00"));
        let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert!(matches!(
            hpki.sign(&di, 256, Some(SignStyle::CardPadded)),
            Err(Error::ClaNotSupported)
        ));
    }

    #[test]
    fn mse_failure_and_short_signature() {
        let di = sha256_digest_info(b"m");
        let mut card = selected(Script::new())
            .expect("00 A4 02 0C 02 00 0C", "90 00")
            .expect("00 22 41 B6 04 84 02 00 0C", "6A 80");
        let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert!(matches!(
            hpki.sign(&di, 256, Some(SignStyle::HostPadded)),
            Err(Error::UnexpectedStatus { ins: 0x22, .. })
        ));

        let mut card = selected(Script::new())
            .expect("00 A4 02 0C 02 00 0C", "90 00")
            .expect_bytes(card_padded_cmd(&di), hex("01 02 90 00"));
        let mut hpki = Hpki::select(&mut card, &Options::default()).unwrap();
        assert!(matches!(
            hpki.sign(&di, 256, None),
            Err(Error::Malformed(_))
        ));
    }
}
