//! The simulated card itself: JPKI or HPKI applications as a pure APDU state machine (no I/O), with
//! persistent PIN counters, volatile security state, and real RSA signatures.
//!
//! Behaviour follows docs/cards.md §4.2. Where real cards are undocumented the simulator picks one plausible
//! answer and says so: a locked JPKI PIN answers `63 C0` (as the MYNA dummy card does), a locked HPKI PIN
//! `69 84` (JAHIS); the client treats both alike.

use std::collections::{BTreeMap, BTreeSet};

use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};

use crate::error::Result;
use crate::hpki::{self, SignStyle};
use crate::jpki;
use crate::sim::files::SimFiles;
use crate::transport::CardTransport;

/// ATR of a real My Number card on the contact interface, as pcsc-tools' ATR list has it
/// (`/usr/share/pcsc/smartcard_list.txt`, pcsc-tools 1.6.2: "My Number Card (The Social Security and
/// Tax Number System in JAPAN) (eID)"): T=1 (TD1 81, TD2 31), IFSC FB, ten historical bytes, TCK 3B.
/// OpenSC's jpki driver does not list it (its table has only the old 住基カード ATR
/// `3B E0 00 FF 81 31 FE 45 14`), so OpenSC recognises the card the way it recognises real My Number
/// cards: by SELECT of the JPKI application. Client code never keys on the ATR.
pub const JPKI_ATR: [u8; 19] = [
    0x3B, 0xDA, 0x13, 0xFF, 0x81, 0x31, 0xFB, 0x46, 0x80, 0x12, 0x39, 0x2F, 0x31, 0xC1, 0x73, 0xC6, 0x01, 0xC0, 0x3B,
];
/// A minimal valid T=1 ATR for the HPKI card (TS 3B, T0 80, TD1 80, TD2 01, TCK 01); real HPKI ATRs
/// vary by card generation and are not used for detection.
pub const HPKI_ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// Token-information EF 0006 of a physical My Number card: `JPKIAPICCTOKEN2` padded with spaces to 32.
pub const JPKI_TOKEN: &[u8; 32] = b"JPKIAPICCTOKEN2                 ";

/// EF 001B (signing password) and the optional signing-key EFs of the JPKI application.
const JPKI_EF_SIGN_CERT: u16 = 0x0001;
const JPKI_EF_SIGN_CA_CERT: u16 = 0x0002;
const JPKI_EF_SIGN_KEY: u16 = 0x001A;
const JPKI_EF_SIGN_PIN: u16 = 0x001B;
const JPKI_SIGN_PIN_MAX_TRIES: u8 = 5;

/// Which card to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// My Number card (JPKI application).
    Jpki,
    /// HPKI card with a signature and an authentication application, signing in the given style.
    Hpki(SignStyle),
}

/// Everything the simulated card holds.
pub struct SimConfig {
    /// Card type.
    pub profile: Profile,
    /// Certificates and keys (see [`SimFiles`]).
    pub files: SimFiles,
    /// User-authentication PIN (JPKI EF 0018, HPKI authentication application).
    pub pin: Vec<u8>,
    /// Signing PIN (JPKI signing password EF 001B, HPKI signature application).
    pub sign_pin: Vec<u8>,
    /// AID of the HPKI authentication application (default [`hpki::JMA_AUTH_AID`]).
    pub hpki_auth_aid: Vec<u8>,
}

struct PinObject {
    value: Vec<u8>,
    max: u8,
    left: u8,
}

enum Ef {
    Binary {
        data: Vec<u8>,
        read_pin: Option<u16>,
    },
    Pin(PinObject),
    Key {
        key: Box<RsaPrivateKey>,
        pin: u16,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AppKind {
    /// JPKI: VERIFY P2 80 on the current PIN EF; sign with `80 2A 00 80`.
    Jpki,
    /// HPKI: VERIFY P2 88 on the application's PIN; sign in the given style.
    Hpki(SignStyle),
}

struct App {
    aid: Vec<u8>,
    kind: AppKind,
    efs: BTreeMap<u16, Ef>,
    /// The PIN must be verified afresh for every signature (HPKI signature application, JAHIS userConsent 1).
    one_shot: bool,
}

/// A parsed command APDU (ISO 7816-4 §5.1).
struct Apdu<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    ne: usize,
}

type Sw = u16;
const SW_OK: Sw = 0x9000;

/// The simulated card.
pub struct SimCard {
    atr: Vec<u8>,
    apps: Vec<App>,
    locked_sw: Sw,
    // Volatile state, cleared by reset and by selecting an application.
    current_app: Option<usize>,
    current_ef: Option<u16>,
    verified: BTreeSet<(usize, u16)>,
    mse_key: Option<u16>,
}

impl SimCard {
    /// Builds the card's file system from `config`.
    pub fn new(config: SimConfig) -> SimCard {
        let SimConfig {
            profile,
            files,
            pin,
            sign_pin,
            hpki_auth_aid,
        } = config;
        let pin_object = |value: Vec<u8>, max| {
            Ef::Pin(PinObject {
                value,
                max,
                left: max,
            })
        };
        let binary = |data| Ef::Binary {
            data,
            read_pin: None,
        };
        let key = |key| Ef::Key {
            key: Box::new(key),
            pin: hpki::EF_PIN,
        };
        match profile {
            Profile::Jpki => {
                let mut efs = BTreeMap::new();
                efs.insert(jpki::EF_TOKEN, binary(JPKI_TOKEN.to_vec()));
                efs.insert(jpki::EF_AUTH_CERT, binary(files.auth_cert));
                if let Some(ca) = files.ca_cert {
                    efs.insert(jpki::EF_AUTH_CA_CERT, binary(ca));
                }
                efs.insert(
                    jpki::EF_AUTH_KEY,
                    Ef::Key {
                        key: Box::new(files.auth_key),
                        pin: jpki::EF_AUTH_PIN,
                    },
                );
                efs.insert(jpki::EF_AUTH_PIN, pin_object(pin, jpki::AUTH_PIN_MAX_TRIES));
                // OpenSC reads the signing password's counter at enumeration: EF 001B must exist (docs/cards.md §1.2).
                efs.insert(
                    JPKI_EF_SIGN_PIN,
                    pin_object(sign_pin, JPKI_SIGN_PIN_MAX_TRIES),
                );
                if let Some((cert, sign_key)) = files.sign {
                    efs.insert(
                        JPKI_EF_SIGN_CERT,
                        Ef::Binary {
                            data: cert,
                            read_pin: Some(JPKI_EF_SIGN_PIN),
                        },
                    );
                    efs.insert(
                        JPKI_EF_SIGN_KEY,
                        Ef::Key {
                            key: Box::new(sign_key),
                            pin: JPKI_EF_SIGN_PIN,
                        },
                    );
                }
                if let Some(ca) = files.sign_ca_cert {
                    efs.insert(JPKI_EF_SIGN_CA_CERT, binary(ca));
                }
                SimCard::with_apps(
                    JPKI_ATR.to_vec(),
                    vec![App {
                        aid: jpki::AID.to_vec(),
                        kind: AppKind::Jpki,
                        efs,
                        one_shot: false,
                    }],
                    0x63C0,
                )
            }
            Profile::Hpki(style) => {
                let mut sign_efs = BTreeMap::new();
                sign_efs.insert(hpki::EF_PIN, pin_object(sign_pin, hpki::PIN_MAX_TRIES));
                if let Some((cert, sign_key)) = files.sign {
                    sign_efs.insert(hpki::EF_CERT, binary(cert));
                    sign_efs.insert(hpki::EF_KEY, key(sign_key));
                }
                let mut auth_efs = BTreeMap::new();
                auth_efs.insert(hpki::EF_PIN, pin_object(pin, hpki::PIN_MAX_TRIES));
                auth_efs.insert(hpki::EF_CERT, binary(files.auth_cert));
                auth_efs.insert(hpki::EF_KEY, key(files.auth_key));
                let apps = vec![
                    App {
                        aid: hpki::JMA_SIGNATURE_AID.to_vec(),
                        kind: AppKind::Hpki(style),
                        efs: sign_efs,
                        one_shot: true,
                    },
                    App {
                        aid: hpki_auth_aid,
                        kind: AppKind::Hpki(style),
                        efs: auth_efs,
                        one_shot: false,
                    },
                ];
                SimCard::with_apps(HPKI_ATR.to_vec(), apps, 0x6984)
            }
        }
    }

    fn with_apps(atr: Vec<u8>, apps: Vec<App>, locked_sw: Sw) -> SimCard {
        SimCard {
            atr,
            apps,
            locked_sw,
            current_app: None,
            current_ef: None,
            verified: BTreeSet::new(),
            mse_key: None,
        }
    }

    /// The answer to reset.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// Power-off, power-on or reset: forgets selection, verified PINs and the security environment.
    /// PIN counters are persistent, as on a real card.
    pub fn reset(&mut self) {
        self.current_app = None;
        self.current_ef = None;
        self.verified.clear();
        self.mse_key = None;
    }

    /// Processes one command APDU and returns the response APDU (data ‖ SW1 SW2).
    pub fn process(&mut self, command: &[u8]) -> Vec<u8> {
        let result = parse(command).and_then(|apdu| self.dispatch(&apdu));
        let (mut data, sw) = match result {
            Ok(data) => (data, SW_OK),
            Err(sw) => (Vec::new(), sw),
        };
        data.extend_from_slice(&sw.to_be_bytes());
        data
    }

    fn dispatch(&mut self, apdu: &Apdu<'_>) -> Result<Vec<u8>, Sw> {
        match (apdu.cla, apdu.ins) {
            (0x00, 0xA4) => self.select(apdu),
            (0x00, 0xB0) => self.read_binary(apdu),
            (0x00, 0x20) => self.verify(apdu),
            (0x00, 0x22) => self.manage_security_environment(apdu),
            (0x80 | 0x00, 0x2A) => self.sign(apdu),
            (0x00 | 0x80, _) => Err(0x6D00),
            _ => Err(0x6E00),
        }
    }

    fn app(&self) -> Result<(usize, &App), Sw> {
        let index = self.current_app.ok_or(0x6A82u16)?;
        self.apps.get(index).map(|app| (index, app)).ok_or(0x6A82)
    }

    fn select(&mut self, apdu: &Apdu<'_>) -> Result<Vec<u8>, Sw> {
        match apdu.p1 {
            // By DF name (ISO 7816-4 §11.2.2); a shorter name matches by prefix. P2 b2-b1 = 10: next occurrence.
            0x04 => {
                if apdu.data.is_empty() {
                    return Err(0x6A86);
                }
                let start = if apdu.p2 & 0x03 == 0x02 {
                    self.current_app.map_or(0, |i| i + 1)
                } else {
                    0
                };
                let index = (start..self.apps.len())
                    .find(|&i| self.apps[i].aid.starts_with(apdu.data))
                    .ok_or(0x6A82u16)?;
                self.reset();
                self.current_app = Some(index);
                // P2 b4-b3 = 00: return the FCI (tag 6F with the DF name, tag 84); 11 (0C): no data.
                if apdu.p2 & 0x0C == 0x00 {
                    let aid = &self.apps[index].aid;
                    let mut fci = vec![0x6F, (aid.len() + 2) as u8, 0x84, aid.len() as u8];
                    fci.extend_from_slice(aid);
                    Ok(fci)
                } else {
                    Ok(Vec::new())
                }
            }
            // EF under the current DF (P1 02), or by file identifier (P1 00) where 3F00 is the MF.
            0x00 | 0x02 => {
                let fid = match apdu.data {
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    [] if apdu.p1 == 0x00 => 0x3F00,
                    _ => return Err(0x6A87),
                };
                if fid == 0x3F00 {
                    self.reset();
                    return Ok(Vec::new());
                }
                let (_, app) = self.app()?;
                if !app.efs.contains_key(&fid) {
                    return Err(0x6A82);
                }
                self.current_ef = Some(fid);
                Ok(Vec::new())
            }
            _ => Err(0x6A86),
        }
    }

    fn current_ef(&self) -> Result<(usize, u16, &Ef), Sw> {
        let (index, app) = self.app().map_err(|_| 0x6986u16)?;
        let fid = self.current_ef.ok_or(0x6986u16)?;
        let ef = app.efs.get(&fid).ok_or(0x6986u16)?;
        Ok((index, fid, ef))
    }

    fn read_binary(&mut self, apdu: &Apdu<'_>) -> Result<Vec<u8>, Sw> {
        if apdu.p1 & 0x80 != 0 {
            return Err(0x6A81); // short EF identifier addressing is not implemented
        }
        let (index, _, ef) = self.current_ef()?;
        let Ef::Binary { data, read_pin } = ef else {
            return Err(0x6981);
        };
        if let Some(pin) = read_pin
            && !self.verified.contains(&(index, *pin))
        {
            return Err(0x6982);
        }
        if apdu.ne == 0 {
            return Err(0x6700);
        }
        let offset = usize::from(u16::from_be_bytes([apdu.p1, apdu.p2]));
        if offset >= data.len() {
            return Err(0x6B00);
        }
        let end = data.len().min(offset + apdu.ne);
        Ok(data[offset..end].to_vec())
    }

    fn verify(&mut self, apdu: &Apdu<'_>) -> Result<Vec<u8>, Sw> {
        let (index, app) = self.app()?;
        let fid = match (app.kind, apdu.p1, apdu.p2) {
            (AppKind::Jpki, 0x00, 0x80) => match self.current_ef {
                Some(fid) if matches!(app.efs.get(&fid), Some(Ef::Pin(_))) => fid,
                _ => return Err(0x6A88),
            },
            (AppKind::Hpki(_), 0x00, 0x88) => hpki::EF_PIN,
            _ => return Err(0x6A86),
        };
        let locked_sw = self.locked_sw;
        let already = self.verified.contains(&(index, fid));
        let Some(Ef::Pin(pin)) = self.apps[index].efs.get_mut(&fid) else {
            return Err(0x6A88);
        };
        if pin.left == 0 {
            return Err(locked_sw);
        }
        if apdu.data.is_empty() {
            return if already {
                Ok(Vec::new())
            } else {
                Err(0x63C0 | u16::from(pin.left))
            };
        }
        if apdu.data == pin.value.as_slice() {
            pin.left = pin.max;
            self.verified.insert((index, fid));
            Ok(Vec::new())
        } else {
            pin.left -= 1;
            let left = pin.left;
            self.verified.remove(&(index, fid));
            Err(0x63C0 | u16::from(left))
        }
    }

    fn manage_security_environment(&mut self, apdu: &Apdu<'_>) -> Result<Vec<u8>, Sw> {
        let (_, app) = self.app().map_err(|_| 0x6D00u16)?;
        if app.kind != AppKind::Hpki(SignStyle::HostPadded) {
            return Err(0x6D00);
        }
        if (apdu.p1, apdu.p2) != (0x41, 0xB6) {
            return Err(0x6A86);
        }
        // Key reference as tag 84 (our client) or 81 (the JAHIS example), 2-byte file identifier.
        let fid = match apdu.data {
            [0x84 | 0x81, 0x02, hi, lo] => u16::from_be_bytes([*hi, *lo]),
            _ => return Err(0x6A80),
        };
        if !matches!(app.efs.get(&fid), Some(Ef::Key { .. })) {
            return Err(0x6A88);
        }
        self.mse_key = Some(fid);
        Ok(Vec::new())
    }

    fn sign(&mut self, apdu: &Apdu<'_>) -> Result<Vec<u8>, Sw> {
        let (index, app) = self.app().map_err(|_| 0x6985u16)?;
        let header = (apdu.cla, apdu.p1, apdu.p2);
        let (key_fid, host_padded) = match (app.kind, header) {
            (AppKind::Jpki | AppKind::Hpki(SignStyle::CardPadded), (0x80, 0x00, 0x80)) => {
                (self.current_ef.ok_or(0x6985u16)?, false)
            }
            (AppKind::Hpki(SignStyle::HostPadded), (0x00, 0x9E, 0x9A)) => {
                (self.mse_key.ok_or(0x6985u16)?, true)
            }
            // A host-padded card does not know the proprietary class; the others do not know PSO.
            (AppKind::Hpki(SignStyle::HostPadded), (0x80, _, _)) => return Err(0x6E00),
            (_, (0x00, _, _)) => return Err(0x6D00),
            _ => return Err(0x6A86),
        };
        let Some(Ef::Key { key, pin }) = app.efs.get(&key_fid) else {
            return Err(0x6985);
        };
        // Like a card, check the access condition before looking at the data.
        if !self.verified.contains(&(index, *pin)) {
            return Err(0x6982);
        }
        let payload = if host_padded {
            if apdu.data.len() != key.size() {
                return Err(0x6700);
            }
            strip_type1_padding(apdu.data)?
        } else {
            apdu.data.to_vec()
        };
        if payload.is_empty() || payload.len() + 11 > key.size() {
            return Err(0x6700);
        }
        // RUSTSEC-2023-0071 (Marvin timing side channel) does not matter here: these are throw-away test
        // keys in a simulator. `new_unprefixed` applies exactly the card's operation: EMSA-PKCS1-v1_5
        // type-1 padding of the received DigestInfo, then the RSA private-key operation.
        let signature = key
            .sign(Pkcs1v15Sign::new_unprefixed(), &payload)
            .map_err(|_| 0x6F00u16)?;
        if apdu.ne != 0 && apdu.ne < signature.len() {
            return Err(0x6700);
        }
        if self.apps[index].one_shot {
            let pin = *pin;
            self.verified.remove(&(index, pin));
        }
        Ok(signature)
    }
}

impl CardTransport for SimCard {
    /// In-process transport: the simulated card without PC/SC, for tests that need no reader.
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        Ok(self.process(command))
    }
}

/// Checks `00 01 FF…FF 00 ‖ T` (at least 8 `FF`, RFC 8017 §9.2) and returns T.
fn strip_type1_padding(block: &[u8]) -> Result<Vec<u8>, Sw> {
    let [0x00, 0x01, rest @ ..] = block else {
        return Err(0x6A80);
    };
    let ff = rest.iter().take_while(|b| **b == 0xFF).count();
    match rest.get(ff) {
        Some(0x00) if ff >= 8 => Ok(rest[ff + 1..].to_vec()),
        _ => Err(0x6A80),
    }
}

/// Splits a command APDU into header, data and Ne (ISO 7816-4 §5.1, cases 1–4, short and extended).
fn parse(raw: &[u8]) -> Result<Apdu<'_>, Sw> {
    let [cla, ins, p1, p2, body @ ..] = raw else {
        return Err(0x6700);
    };
    let apdu = |data, ne| Apdu {
        cla: *cla,
        ins: *ins,
        p1: *p1,
        p2: *p2,
        data,
        ne,
    };
    let short_ne = |b: u8| if b == 0 { 256 } else { usize::from(b) };
    let ext_ne = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => usize::from(n),
    };
    match body {
        [] => Ok(apdu(&[], 0)),
        [le] => Ok(apdu(&[], short_ne(*le))),
        [0x00, hi, lo] => Ok(apdu(&[], ext_ne(*hi, *lo))),
        [0x00, hi, lo, rest @ ..] => {
            let nc = usize::from(u16::from_be_bytes([*hi, *lo]));
            match rest.len().checked_sub(nc) {
                Some(0) if nc > 0 => Ok(apdu(rest, 0)),
                Some(2) if nc > 0 => Ok(apdu(&rest[..nc], ext_ne(rest[nc], rest[nc + 1]))),
                _ => Err(0x6700),
            }
        }
        [lc, rest @ ..] => {
            let nc = usize::from(*lc);
            match rest.len().checked_sub(nc) {
                Some(0) => Ok(apdu(rest, 0)),
                Some(1) => Ok(apdu(&rest[..nc], short_ne(rest[nc]))),
                _ => Err(0x6700),
            }
        }
    }
}
