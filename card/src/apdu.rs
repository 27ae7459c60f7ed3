//! ISO/IEC 7816-4 APDUs: command encoding (§5.1, short and extended length), response parsing, status
//! words (§5.6) and [`exchange`], which handles the transport-level retries `61 xx` and `6C xx`.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::transport::CardTransport;

/// Largest Ne a short APDU can express (Le = `00`).
pub const SHORT_NE_MAX: usize = 256;
/// Largest Ne an extended APDU can express (Le = `00 00`).
pub const EXTENDED_NE_MAX: usize = 65536;

/// A command APDU.
///
/// The data field is held in a zeroizing buffer: for VERIFY it *is* the PIN, and every encoded copy made by
/// [`Command::encode`] is zeroized too. [`fmt::Debug`] prints the header and the data length, never the data.
#[derive(Clone)]
pub struct Command {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: Zeroizing<Vec<u8>>,
    ne: usize,
}

impl Command {
    /// A command without data and without Le (ISO 7816-4 case 1).
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Command {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(Vec::new()),
            ne: 0,
        }
    }

    /// Sets the command data field (Lc is derived from its length).
    pub fn with_data(mut self, data: &[u8]) -> Command {
        self.data = Zeroizing::new(data.to_vec());
        self
    }

    /// Sets Ne, the maximum number of response bytes expected (0 = no Le field).
    pub fn with_ne(mut self, ne: usize) -> Command {
        self.ne = ne;
        self
    }

    /// The class byte.
    pub fn cla(&self) -> u8 {
        self.cla
    }

    /// The instruction byte.
    pub fn ins(&self) -> u8 {
        self.ins
    }

    /// Encodes the command, choosing short length fields when data ≤ 255 bytes and Ne ≤ 256, extended
    /// otherwise (ISO 7816-4 §5.1, table 1).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let nc = self.data.len();
        if nc > 0xFFFF {
            return Err(Error::InvalidCommand("data field longer than 65535 bytes"));
        }
        if self.ne > EXTENDED_NE_MAX {
            return Err(Error::InvalidCommand("Ne larger than 65536"));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(4 + 3 + nc + 3));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        let extended = nc > 0xFF || self.ne > SHORT_NE_MAX;
        if !extended {
            if nc > 0 {
                out.push(nc as u8);
                out.extend_from_slice(&self.data);
            }
            if self.ne > 0 {
                // Le = 00 means 256 in a short APDU.
                out.push((self.ne % SHORT_NE_MAX) as u8);
            }
        } else {
            if nc > 0 {
                out.push(0x00);
                out.extend_from_slice(&(nc as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if self.ne > 0 {
                // Extended Le is two bytes after an extended Lc, three (leading 00) when there is no Lc;
                // 00 00 means 65536.
                if nc == 0 {
                    out.push(0x00);
                }
                out.extend_from_slice(&((self.ne % EXTENDED_NE_MAX) as u16).to_be_bytes());
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the data: for VERIFY it is the PIN (docs/design.md §6).
        write!(
            f,
            "Command({:02X} {:02X} {:02X} {:02X}, Nc={}, Ne={})",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.ne
        )
    }
}

/// A status word SW1-SW2 (ISO 7816-4 §5.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// `90 00`, normal processing.
    pub const OK: StatusWord = StatusWord(0x9000);

    /// Builds a status word from SW1 and SW2.
    pub fn new(sw1: u8, sw2: u8) -> StatusWord {
        StatusWord(u16::from_be_bytes([sw1, sw2]))
    }

    /// SW1.
    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// SW2.
    pub fn sw2(self) -> u8 {
        self.0 as u8
    }

    /// The two bytes, SW1 first.
    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X} {:02X}", self.sw1(), self.sw2())
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusWord({self})")
    }
}

/// A response APDU: data followed by the status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response data field (may be empty).
    pub data: Vec<u8>,
    /// SW1-SW2.
    pub sw: StatusWord,
}

impl Response {
    /// Splits raw response bytes into data and status word.
    pub fn parse(mut raw: Vec<u8>) -> Result<Response> {
        if raw.len() < 2 {
            return Err(Error::Malformed("response shorter than a status word"));
        }
        let sw2 = raw.pop().unwrap_or_default();
        let sw1 = raw.pop().unwrap_or_default();
        Ok(Response {
            data: raw,
            sw: StatusWord::new(sw1, sw2),
        })
    }

    /// The data if the status is `90 00`, else the typed error for the status word.
    pub fn into_data(self, ins: u8) -> Result<Vec<u8>> {
        if self.sw == StatusWord::OK {
            Ok(self.data)
        } else {
            Err(Error::from_status(ins, self.sw))
        }
    }

    /// `Ok(())` if the status is `90 00`, else the typed error for the status word.
    pub fn check(self, ins: u8) -> Result<()> {
        self.into_data(ins).map(drop)
    }
}

/// Upper bound on GET RESPONSE rounds, so a misbehaving card cannot keep us looping.
const MAX_GET_RESPONSE_ROUNDS: usize = 64;

/// Sends `command` and returns the complete response, whatever its status word.
///
/// Handles the two transport-level answers of ISO 7816-4 §5.1.3 / ISO 7816-3 §12.2 transparently:
/// `6C xx` (wrong Le: resend with Ne = xx) and `61 xx` (more data: fetch it with GET RESPONSE).
/// Over PC/SC with T=1 neither should occur, but T=0 readers and some cards produce them.
pub fn exchange<T: CardTransport + ?Sized>(
    transport: &mut T,
    command: &Command,
) -> Result<Response> {
    let mut response = Response::parse(transport.transmit(&command.encode()?)?)?;
    if response.sw.sw1() == 0x6C {
        let retry = command.clone().with_ne(ne_from_sw2(response.sw.sw2()));
        response = Response::parse(transport.transmit(&retry.encode()?)?)?;
    }
    let mut rounds = 0;
    while response.sw.sw1() == 0x61 {
        rounds += 1;
        if rounds > MAX_GET_RESPONSE_ROUNDS {
            return Err(Error::Malformed("card keeps answering 61 xx"));
        }
        let get = Command::new(0x00, 0xC0, 0x00, 0x00).with_ne(ne_from_sw2(response.sw.sw2()));
        let more = Response::parse(transport.transmit(&get.encode()?)?)?;
        response.data.extend_from_slice(&more.data);
        response.sw = more.sw;
    }
    Ok(response)
}

/// Sends `command` and returns its data, mapping any non-`90 00` status word to an [`Error`].
pub fn transmit_ok<T: CardTransport + ?Sized>(
    transport: &mut T,
    command: &Command,
) -> Result<Vec<u8>> {
    exchange(transport, command)?.into_data(command.ins())
}

/// In `61 xx` and `6C xx`, xx = 00 stands for 256.
fn ne_from_sw2(sw2: u8) -> usize {
    if sw2 == 0 {
        SHORT_NE_MAX
    } else {
        usize::from(sw2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Script;

    #[test]
    fn encodes_the_four_short_cases() {
        let case1 = Command::new(0x00, 0x20, 0x00, 0x80);
        assert_eq!(&*case1.encode().unwrap(), &[0x00, 0x20, 0x00, 0x80]);
        let case2 = Command::new(0x00, 0xB0, 0x01, 0x00).with_ne(256);
        assert_eq!(&*case2.encode().unwrap(), &[0x00, 0xB0, 0x01, 0x00, 0x00]);
        let case3 = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&[0x00, 0x0A]);
        assert_eq!(
            &*case3.encode().unwrap(),
            &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A]
        );
        let case4 = Command::new(0x80, 0x2A, 0x00, 0x80)
            .with_data(&[1, 2])
            .with_ne(256);
        assert_eq!(
            &*case4.encode().unwrap(),
            &[0x80, 0x2A, 0x00, 0x80, 0x02, 1, 2, 0x00]
        );
    }

    #[test]
    fn encodes_extended_length_when_needed() {
        let data = vec![0xAB; 256];
        let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A)
            .with_data(&data)
            .with_ne(EXTENDED_NE_MAX);
        let raw = cmd.encode().unwrap();
        assert_eq!(&raw[..7], &[0x00, 0x2A, 0x9E, 0x9A, 0x00, 0x01, 0x00]);
        assert_eq!(&raw[7..263], &data[..]);
        assert_eq!(&raw[263..], &[0x00, 0x00]);

        let no_data = Command::new(0x00, 0xB0, 0x00, 0x00).with_ne(1000);
        assert_eq!(
            &*no_data.encode().unwrap(),
            &[0x00, 0xB0, 0x00, 0x00, 0x00, 0x03, 0xE8]
        );
    }

    #[test]
    fn rejects_unencodable_commands() {
        let too_long = Command::new(0, 0xD6, 0, 0).with_data(&vec![0; 65536]);
        assert!(matches!(too_long.encode(), Err(Error::InvalidCommand(_))));
        let big_ne = Command::new(0, 0xB0, 0, 0).with_ne(EXTENDED_NE_MAX + 1);
        assert!(matches!(big_ne.encode(), Err(Error::InvalidCommand(_))));
    }

    #[test]
    fn debug_never_shows_data() {
        let verify = Command::new(0x00, 0x20, 0x00, 0x80).with_data(b"1234");
        let shown = format!("{verify:?}");
        assert!(!shown.contains("31") && !shown.contains("1234"), "{shown}");
        assert!(shown.contains("Nc=4"));
    }

    #[test]
    fn parses_responses() {
        let r = Response::parse(vec![1, 2, 0x90, 0x00]).unwrap();
        assert_eq!(r.data, vec![1, 2]);
        assert_eq!(r.sw, StatusWord::OK);
        assert!(matches!(
            Response::parse(vec![0x90]),
            Err(Error::Malformed(_))
        ));
        assert_eq!(StatusWord(0x6A82).to_string(), "6A 82");
    }

    #[test]
    fn maps_every_status_word_class() {
        let map = |sw| Error::from_status(0x20, StatusWord(sw));
        assert!(matches!(map(0x63C2), Error::WrongPin { tries_left: 2 }));
        assert!(matches!(map(0x63CF), Error::WrongPin { tries_left: 15 }));
        assert!(matches!(map(0x63C0), Error::PinLocked));
        assert!(matches!(map(0x6983), Error::PinLocked));
        assert!(matches!(map(0x6984), Error::PinLocked));
        assert!(matches!(map(0x6982), Error::SecurityStatusNotSatisfied));
        assert!(matches!(map(0x6985), Error::ConditionsNotSatisfied));
        assert!(matches!(map(0x6A82), Error::FileNotFound));
        assert!(matches!(map(0x6700), Error::WrongLength));
        assert!(matches!(map(0x6D00), Error::InsNotSupported));
        assert!(matches!(map(0x6E00), Error::ClaNotSupported));
        assert!(matches!(map(0x6B00), Error::IncorrectParameters { .. }));
        assert!(matches!(map(0x6A86), Error::IncorrectParameters { .. }));
        assert!(matches!(
            map(0x6F00),
            Error::UnexpectedStatus {
                ins: 0x20,
                sw: StatusWord(0x6F00)
            }
        ));
    }

    #[test]
    fn resends_with_the_le_the_card_asks_for() {
        let mut card = Script::new()
            .expect("00 B0 00 00 00", "6C 02")
            .expect("00 B0 00 00 02", "AA BB 90 00");
        let data = transmit_ok(&mut card, &Command::new(0, 0xB0, 0, 0).with_ne(256)).unwrap();
        assert_eq!(data, vec![0xAA, 0xBB]);
        card.finish();
    }

    #[test]
    fn collects_data_with_get_response() {
        let mut card = Script::new()
            .expect("80 2A 00 80 01 11 00", "01 61 02")
            .expect("00 C0 00 00 02", "02 03 61 00")
            .expect("00 C0 00 00 00", "04 90 00");
        let cmd = Command::new(0x80, 0x2A, 0x00, 0x80)
            .with_data(&[0x11])
            .with_ne(256);
        assert_eq!(transmit_ok(&mut card, &cmd).unwrap(), vec![1, 2, 3, 4]);
        card.finish();
    }

    #[test]
    fn gives_up_on_endless_get_response() {
        let mut card = Script::new().expect("00 B0 00 00 00", "61 01");
        for _ in 0..MAX_GET_RESPONSE_ROUNDS {
            card = card.expect("00 C0 00 00 01", "00 61 01");
        }
        let err = transmit_ok(&mut card, &Command::new(0, 0xB0, 0, 0).with_ne(256)).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)));
    }
}
