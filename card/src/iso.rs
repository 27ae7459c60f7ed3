//! ISO/IEC 7816-4 commands shared by the JPKI and HPKI applications: SELECT (§11.2.2), READ BINARY
//! (§11.3.3) of a whole certificate with length detection, and VERIFY (§11.5.6).

use crate::apdu::{Command, SHORT_NE_MAX, StatusWord, exchange, transmit_ok};
use crate::error::{Error, Result};
use crate::pin::{Pin, PinStatus};
use crate::transport::CardTransport;

pub(crate) const INS_SELECT: u8 = 0xA4;
pub(crate) const INS_READ_BINARY: u8 = 0xB0;
pub(crate) const INS_VERIFY: u8 = 0x20;

/// Largest offset READ BINARY can address with P1 b8 = 0: 15 bits (ISO 7816-4 §11.3.3).
const MAX_OFFSET: usize = 0x7FFF;

/// SELECT an elementary file by its 2-byte identifier under the current DF, no response data
/// (P1 = `02`, P2 = `0C`: docs/cards.md §1.4 "Select EF").
pub(crate) fn select_ef<T: CardTransport + ?Sized>(t: &mut T, fid: u16) -> Result<()> {
    let cmd = Command::new(0x00, INS_SELECT, 0x02, 0x0C).with_data(&fid.to_be_bytes());
    transmit_ok(t, &cmd).map(drop)
}

/// Reads the DER certificate held by the currently selected transparent EF.
///
/// Real cards hold exactly one certificate per EF, followed by unwritten bytes, so the file size says
/// nothing: the DER header gives the length. First `00 B0 00 00 04` (tag + up to a 2-byte length, as
/// OpenSC's jpki driver does), then 256-byte chunks (Le = `00`) at increasing 15-bit offsets.
pub(crate) fn read_certificate<T: CardTransport + ?Sized>(t: &mut T) -> Result<Vec<u8>> {
    let mut der = read_binary(t, 0, 4)?;
    let total = der_total_len(&der)?;
    if total > MAX_OFFSET + 1 {
        return Err(Error::Malformed(
            "certificate longer than a READ BINARY offset can reach",
        ));
    }
    der.truncate(total);
    while der.len() < total {
        let want = (total - der.len()).min(SHORT_NE_MAX);
        let chunk = match read_binary(t, der.len(), want) {
            // `6B 00`: the offset is past the end of the file (docs/cards.md §1.4).
            Err(Error::IncorrectParameters {
                sw: StatusWord(0x6B00),
            }) => {
                return Err(Error::Malformed(
                    "file ends before the certificate's DER length",
                ));
            }
            other => other?,
        };
        if chunk.is_empty() {
            return Err(Error::Malformed(
                "READ BINARY returned no data before the end of the certificate",
            ));
        }
        let take = chunk.len().min(total - der.len());
        der.extend_from_slice(&chunk[..take]);
    }
    Ok(der)
}

fn read_binary<T: CardTransport + ?Sized>(t: &mut T, offset: usize, ne: usize) -> Result<Vec<u8>> {
    let offset = u16::try_from(offset)
        .ok()
        .filter(|o| usize::from(*o) <= MAX_OFFSET)
        .ok_or(Error::Malformed("READ BINARY offset beyond 15 bits"))?;
    let [p1, p2] = offset.to_be_bytes();
    let response = exchange(t, &Command::new(0x00, INS_READ_BINARY, p1, p2).with_ne(ne))?;
    match response.sw.0 {
        // `62 82`: end of file reached before Ne bytes; the data is still valid (ISO 7816-4 table 6).
        0x9000 | 0x6282 => Ok(response.data),
        _ => response.into_data(INS_READ_BINARY),
    }
}

/// Total length (header + content) of the DER element whose first bytes are `head`.
///
/// A certificate is a SEQUENCE (`30`) with a definite length in short form or long form of one or two
/// bytes (X.690 §8.1.3); anything else (an unwritten EF reads as `FF FF …`) is not a certificate.
fn der_total_len(head: &[u8]) -> Result<usize> {
    let not_cert = Error::Malformed("EF does not start with a DER certificate");
    match head {
        [0x30, len, ..] if *len < 0x80 => Ok(2 + usize::from(*len)),
        [0x30, 0x81, len, ..] if *len >= 0x80 => Ok(3 + usize::from(*len)),
        [0x30, 0x82, hi, lo, ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            if len < 0x100 {
                Err(not_cert)
            } else {
                Ok(4 + len)
            }
        }
        _ => Err(not_cert),
    }
}

/// Empty VERIFY: asks for the retry counter without spending a try (ISO 7816-4 §11.5.6, data absent).
pub(crate) fn pin_status<T: CardTransport + ?Sized>(t: &mut T, p2: u8) -> Result<PinStatus> {
    let response = exchange(t, &Command::new(0x00, INS_VERIFY, 0x00, p2))?;
    match Error::from_status(INS_VERIFY, response.sw) {
        _ if response.sw == StatusWord::OK => Ok(PinStatus::Verified),
        Error::WrongPin { tries_left } => Ok(PinStatus::TriesLeft(tries_left)),
        Error::PinLocked => Ok(PinStatus::Locked),
        other => Err(other),
    }
}

/// VERIFY with the PIN as raw ASCII, no padding. The command (and its encoding) is zeroized on drop.
pub(crate) fn verify<T: CardTransport + ?Sized>(t: &mut T, p2: u8, pin: &Pin) -> Result<()> {
    let cmd = Command::new(0x00, INS_VERIFY, 0x00, p2).with_data(pin.as_bytes());
    exchange(t, &cmd)?.check(INS_VERIFY)
}

/// Walks an FCI template (ISO 7816-4 §5.3.3, tag `6F`) and returns the DF name (tag `84`).
pub(crate) fn fci_df_name(fci: &[u8]) -> Result<Vec<u8>> {
    let malformed = Error::Malformed("FCI without a DF name");
    let (tag, body, _) = tlv(fci).ok_or(Error::Malformed("FCI is not a TLV"))?;
    if tag != 0x6F {
        return Err(malformed);
    }
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, value, next) = tlv(rest).ok_or(Error::Malformed("FCI is not a TLV"))?;
        if tag == 0x84 {
            return Ok(value.to_vec());
        }
        rest = next;
    }
    Err(malformed)
}

/// One BER-TLV with a one-byte tag and a short or 1–2-byte long-form length: (tag, value, rest).
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0x00..=0x7F => (usize::from(first), rest),
        0x81 => {
            let (&l, rest) = rest.split_first()?;
            (usize::from(l), rest)
        }
        0x82 => {
            let (l, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), rest)
        }
        _ => return None,
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Script, hex};

    /// A fake "certificate": SEQUENCE with a 2-byte long-form length and `len` content bytes.
    fn fake_cert(len: usize) -> Vec<u8> {
        let mut der = vec![0x30, 0x82];
        der.extend_from_slice(&(len as u16).to_be_bytes());
        der.extend((0..len).map(|i| i as u8));
        der
    }

    fn ok(mut data: Vec<u8>) -> Vec<u8> {
        data.extend_from_slice(&[0x90, 0x00]);
        data
    }

    #[test]
    fn reads_a_certificate_in_chunks() {
        let cert = fake_cert(723); // 727 bytes, like the card OpenSC read (docs/cards.md §1.4)
        let mut card = Script::new()
            .expect_bytes(hex("00 B0 00 00 04"), ok(cert[..4].to_vec()))
            .expect_bytes(hex("00 B0 00 04 00"), ok(cert[4..260].to_vec()))
            .expect_bytes(hex("00 B0 01 04 00"), ok(cert[260..516].to_vec()))
            .expect_bytes(hex("00 B0 02 04 D3"), ok(cert[516..].to_vec()));
        assert_eq!(read_certificate(&mut card).unwrap(), cert);
        card.finish();
    }

    #[test]
    fn tolerates_short_chunks_and_trailing_bytes() {
        let cert = fake_cert(300);
        let mut tail = cert[200..].to_vec();
        tail.extend_from_slice(&[0xFF; 4]); // unwritten bytes after the certificate
        let mut card = Script::new()
            .expect_bytes(hex("00 B0 00 00 04"), ok(cert[..4].to_vec()))
            .expect_bytes(hex("00 B0 00 04 00"), ok(cert[4..200].to_vec()))
            .expect_bytes(hex("00 B0 00 C8 68"), {
                let mut r = tail;
                r.extend_from_slice(&[0x62, 0x82]);
                r
            });
        assert_eq!(read_certificate(&mut card).unwrap(), cert);
    }

    #[test]
    fn short_file_is_malformed() {
        let cert = fake_cert(300);
        let mut card = Script::new()
            .expect_bytes(hex("00 B0 00 00 04"), ok(cert[..4].to_vec()))
            .expect_bytes(hex("00 B0 00 04 00"), ok(cert[4..100].to_vec()))
            .expect("00 B0 00 64 CC", "6B 00");
        assert!(matches!(
            read_certificate(&mut card),
            Err(Error::Malformed(_))
        ));

        let mut card = Script::new()
            .expect_bytes(hex("00 B0 00 00 04"), ok(cert[..4].to_vec()))
            .expect("00 B0 00 04 00", "90 00");
        assert!(matches!(
            read_certificate(&mut card),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn unwritten_ef_is_not_a_certificate() {
        let mut card = Script::new().expect("00 B0 00 00 04", "FF FF FF FF 90 00");
        assert!(matches!(
            read_certificate(&mut card),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn read_errors_are_typed() {
        let mut card = Script::new().expect("00 B0 00 00 04", "69 82");
        assert!(matches!(
            read_certificate(&mut card),
            Err(Error::SecurityStatusNotSatisfied)
        ));
        let mut card = Script::new().expect("00 B0 00 00 04", "69 86");
        assert!(matches!(
            read_certificate(&mut card),
            Err(Error::UnexpectedStatus { ins: 0xB0, .. })
        ));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_total_len(&[0x30, 0x05, 0, 0]).unwrap(), 7);
        assert_eq!(der_total_len(&[0x30, 0x81, 0x90, 0]).unwrap(), 0x93);
        assert_eq!(der_total_len(&[0x30, 0x82, 0x02, 0xD3]).unwrap(), 727);
        assert!(der_total_len(&[0x30, 0x81, 0x05, 0]).is_err()); // non-minimal
        assert!(der_total_len(&[0x30, 0x83, 0x01, 0x00]).is_err());
        assert!(der_total_len(&[0x31, 0x05, 0, 0]).is_err());
        assert!(der_total_len(&[0x30]).is_err());
    }

    #[test]
    fn pin_status_paths() {
        for (sw, want) in [
            ("90 00", PinStatus::Verified),
            ("63 C3", PinStatus::TriesLeft(3)),
            ("63 C0", PinStatus::Locked),
            ("69 83", PinStatus::Locked),
            ("69 84", PinStatus::Locked),
        ] {
            let mut card = Script::new().expect("00 20 00 80", sw);
            assert_eq!(pin_status(&mut card, 0x80).unwrap(), want, "{sw}");
        }
        let mut card = Script::new().expect("00 20 00 88", "6A 88");
        assert!(matches!(
            pin_status(&mut card, 0x88),
            Err(Error::UnexpectedStatus { .. })
        ));
    }

    #[test]
    fn verify_paths() {
        let pin = Pin::new("1234".into());
        let mut card = Script::new().expect("00 20 00 80 04 31 32 33 34", "90 00");
        verify(&mut card, 0x80, &pin).unwrap();
        let mut card = Script::new().expect("00 20 00 80 04 31 32 33 34", "63 C1");
        assert!(matches!(
            verify(&mut card, 0x80, &pin),
            Err(Error::WrongPin { tries_left: 1 })
        ));
        let mut card = Script::new().expect("00 20 00 80 04 31 32 33 34", "63 C0");
        assert!(matches!(
            verify(&mut card, 0x80, &pin),
            Err(Error::PinLocked)
        ));
    }

    #[test]
    fn fci_parsing() {
        let fci = hex("6F 12 84 10 E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 02");
        assert_eq!(
            fci_df_name(&fci).unwrap(),
            hex("E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 02")
        );
        let with_other = hex("6F 09 82 01 38 84 04 01 02 03 04");
        assert_eq!(fci_df_name(&with_other).unwrap(), hex("01 02 03 04"));
        assert!(fci_df_name(&hex("6F 03 82 01 38")).is_err());
        assert!(fci_df_name(&hex("62 03 84 01 01")).is_err());
        assert!(fci_df_name(&hex("6F 05 84 09 01")).is_err());
    }
}
