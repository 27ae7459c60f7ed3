//! Fuzz target bodies (feature `fuzzing`). The libFuzzer targets in fuzz/fuzz_targets/ and the corpus
//! replay test (card/tests/fuzz_corpus.rs) call these same functions, so every committed corpus input
//! also runs under the stable test suite. Each takes arbitrary bytes, must not panic, and asserts what
//! the API promises about what it accepts.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use crate::apdu::{Response, StatusWord};
use crate::hpki::SignStyle;
use crate::verify::{
    Anchor, CardResponse, Expected, MEDICAL_DOCTOR, Policy, Revocation, TrustStore, check_client_data,
    default_policies, explain, parse_hc_role_value,
};
use crate::{AuthOptions, CardKind, CardTransport, Error, Pin};

/// The origin every fuzzed login expects.
pub const ORIGIN: &str = "https://gateway.clinic.example:8443";
/// The challenge every fuzzed login expects.
pub const CHALLENGE: [u8; 32] = [0x5A; 32];

// ---- apdu_response ---------------------------------------------------------------------------

/// Card answers: `mode ‖ script`. Mode 0 parses the script as one response APDU; the other modes run
/// the card operations the agent runs ([`crate::detect`], [`crate::pin_status`],
/// [`crate::authenticate_with`]) against a card that answers each command with the script's next
/// response (see [`ScriptedCard`]).
pub fn apdu_response(data: &[u8]) {
    let Some((&mode, script)) = data.split_first() else {
        return;
    };
    let kind = if mode & 0x10 == 0 { CardKind::Jpki } else { CardKind::Hpki };
    let options = AuthOptions {
        hpki: crate::hpki::Options {
            aid: None,
            style: match mode >> 5 {
                1 => Some(SignStyle::CardPadded),
                2 => Some(SignStyle::HostPadded),
                _ => None,
            },
        },
    };
    let mut card = ScriptedCard::new(script);
    match mode & 0x0F {
        0 => response(script),
        1 => {
            let _ = crate::detect(&mut card);
        }
        2 => {
            let _ = crate::pin_status(&mut card, kind, &options);
        }
        _ => {
            let pin = Pin::new("1234".into());
            if let Ok(signed) = crate::authenticate_with(&mut card, kind, &pin, b"message", &options) {
                // authenticate promises a signature exactly as long as the certificate's RSA modulus.
                let modulus = crate::crypto::rsa_modulus_len(&signed.certificate);
                assert_eq!(Ok(signed.signature.len()), modulus.map_err(|e| e.to_string()));
                assert_eq!(signed.kind, kind);
            }
        }
    }
}

/// One response APDU: it splits into data and status word and joins back to the same bytes; its data
/// comes out exactly when the status is `90 00`.
fn response(raw: &[u8]) {
    let parsed = match Response::parse(raw.to_vec()) {
        Ok(parsed) => parsed,
        Err(_) => {
            assert!(raw.len() < 2, "a response of two or more bytes parses");
            return;
        }
    };
    let mut joined = parsed.data.clone();
    joined.extend_from_slice(&parsed.sw.to_bytes());
    assert_eq!(joined, raw);
    let ok = parsed.sw == StatusWord::OK;
    for ins in [0x20, 0x22, 0x2A, 0xA4, 0xB0, 0xC0, raw[0]] {
        assert_eq!(parsed.clone().check(ins).is_ok(), ok);
        match parsed.clone().into_data(ins) {
            Ok(data) => assert!(ok && data == parsed.data),
            Err(e) => {
                assert!(!ok);
                let _ = e.to_string();
            }
        }
    }
}

/// A card whose answers come from a script: each answer is a length (one byte, or `FF` and two
/// bytes big-endian) and that many bytes. When the script ends the card is gone.
pub struct ScriptedCard<'a> {
    script: &'a [u8],
}

impl<'a> ScriptedCard<'a> {
    /// A card answering from `script`.
    pub fn new(script: &'a [u8]) -> ScriptedCard<'a> {
        ScriptedCard { script }
    }

    /// Encodes `answers` as a script (seeds for the corpus).
    pub fn script(answers: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for answer in answers {
            match u8::try_from(answer.len()) {
                Ok(len) if len < 0xFF => out.push(len),
                _ => {
                    out.push(0xFF);
                    out.extend_from_slice(&(answer.len() as u16).to_be_bytes());
                }
            }
            out.extend_from_slice(answer);
        }
        out
    }
}

impl CardTransport for ScriptedCard<'_> {
    fn transmit(&mut self, _command: &[u8]) -> crate::Result<Vec<u8>> {
        let (len, rest) = match self.script {
            [0xFF, hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            [len, rest @ ..] => (usize::from(*len), rest),
            [] => return Err(Error::CardRemoved),
        };
        let (answer, rest) = rest.split_at(len.min(rest.len()));
        self.script = rest;
        Ok(answer.to_vec())
    }
}

// ---- card_client_data ------------------------------------------------------------------------

/// Client data as the gateway checks it: accepted for at most one card kind, and only in the one
/// canonical encoding of exactly the expected challenge and origin.
pub fn card_client_data(data: &[u8]) {
    let mut accepted = 0;
    for kind in [CardKind::Jpki, CardKind::Hpki] {
        let expected = Expected { kind, challenge: &CHALLENGE, origin: ORIGIN };
        match check_client_data(data, &expected) {
            Ok(client_data) => {
                accepted += 1;
                assert_eq!(client_data.to_bytes(), data);
                assert_eq!(client_data.kind(), kind);
                assert_eq!(client_data.origin(), ORIGIN);
                assert_eq!(client_data.challenge(), URL_SAFE_NO_PAD.encode(CHALLENGE));
            }
            Err(e) => {
                let _ = (e.code(), e.to_string());
            }
        }
    }
    assert!(accepted <= 1);
}

// ---- card_certificate ------------------------------------------------------------------------

/// A real-shaped HPKI hierarchy (devpki, written by card/tests/fuzz_corpus.rs `make_seeds` into
/// fuzz/fixtures/): the root as anchor with its ARL and the authentication CA's CRL, the CA itself
/// for the chain, and a doctor's authentication certificate.
pub struct Hierarchy {
    /// The root (anchor).
    pub root: Vec<u8>,
    /// The authentication CA (chain).
    pub auth_ca: Vec<u8>,
    /// The root's ARL for the CAs under it.
    pub arl: Vec<u8>,
    /// The authentication CA's CRL.
    pub crl: Vec<u8>,
    /// A doctor's authentication certificate.
    pub leaf: Vec<u8>,
    /// The store: the root with both CRLs.
    pub store: TrustStore,
}

/// The time the hierarchy and its CRLs were made for (fuzz/fixtures/).
pub const FIXTURE_TIME: OffsetDateTime = time::macros::datetime!(2026-01-01 00:00 UTC);
/// "Now" for the checks: within every validity period of the fixtures.
pub const NOW: OffsetDateTime = time::macros::datetime!(2026-01-01 01:00 UTC);

/// The fixture file `name` in fuzz/fixtures/.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fuzz/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{path}: {e} (card/tests/fuzz_corpus.rs make_seeds writes it)"),
    }
}

/// The hierarchy, read once.
pub fn hierarchy() -> &'static Hierarchy {
    static HIERARCHY: OnceLock<Hierarchy> = OnceLock::new();
    HIERARCHY.get_or_init(|| {
        let (root, arl, crl) = (fixture("hpki-root.der"), fixture("hpki-root-arl.crl"), fixture("hpki-auth-ca.crl"));
        let store = store_with(root.clone(), vec![arl.clone(), crl.clone()]);
        assert!(store.problems().is_empty(), "{:?}", store.problems());
        Hierarchy { root, auth_ca: fixture("hpki-auth-ca.der"), arl, crl, leaf: fixture("hpki-doctor.der"), store }
    })
}

fn store_with(root: Vec<u8>, crls: Vec<Vec<u8>>) -> TrustStore {
    TrustStore::new(
        CardKind::Hpki,
        [Anchor { certificate: root, revocation: Revocation::Crl(crls), policies: default_policies(CardKind::Hpki) }],
    )
}

/// `mode ‖ DER`. Mode 0: the DER is the leaf, checked with the fixture chain. Mode 1: the DER is the
/// chain certificate under the fixture leaf. Mode 2: the DER is the authentication CA's CRL (beside
/// the root's ARL) for the fixture leaf. Whatever is accepted is a doctor's current, revocation-checked
/// certificate.
pub fn card_certificate(data: &[u8]) {
    let Some((&mode, der)) = data.split_first() else {
        return;
    };
    let h = hierarchy();
    let policy = Policy::default();
    let report = match mode % 3 {
        0 => explain(der, std::slice::from_ref(&h.auth_ca), &h.store, &policy, NOW),
        1 => explain(&h.leaf, &[der.to_vec()], &h.store, &policy, NOW),
        _ => {
            let _ = trust::inspect_crl(der);
            let store = store_with(h.root.clone(), vec![h.arl.clone(), der.to_vec()]);
            explain(&h.leaf, std::slice::from_ref(&h.auth_ca), &store, &policy, NOW)
        }
    };
    let _ = report.to_string();
    match report.verdict {
        Ok(v) => {
            assert_eq!(v.kind, CardKind::Hpki);
            assert!(v.revocation_checked);
            assert_eq!(v.crls.len(), 2);
            assert_eq!(v.hc_role.as_deref(), Some(MEDICAL_DOCTOR));
            assert!(v.cert.not_before <= NOW && NOW < v.cert.not_after);
            assert_eq!(v.anchor_sha256, trust::sha256_hex(&h.root));
            assert!(!v.policies.is_empty());
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
        }
    }
}

// ---- hc_role ---------------------------------------------------------------------------------

/// A subjectDirectoryAttributes extension value. Every role read from it reads back the same from
/// the canonical encoding of that one role.
pub fn hc_role(data: &[u8]) {
    let Ok(roles) = parse_hc_role_value(data) else {
        return;
    };
    for role in roles {
        assert_eq!(parse_hc_role_value(&hc_role_value(&role)), Ok(vec![role]));
    }
}

/// The extension value real HPKI certificates carry for `role` (docs/cards.md §2.5): one hcRole
/// attribute, one HCActorData, one HCActor under the Japanese coding scheme, UTF8String free text.
pub fn hc_role_value(role: &str) -> Vec<u8> {
    // 1.0.17090.0.1 and 1.2.392.100495.1.6.1.1, DER.
    const HC_ROLE: [u8; 6] = [0x28, 0x81, 0x85, 0x42, 0x00, 0x01];
    const JHPKI: [u8; 10] = [0x2A, 0x83, 0x08, 0x86, 0x91, 0x0F, 0x01, 0x06, 0x01, 0x01];
    let scheme = der(0xA0, &der(0x06, &JHPKI));
    let text = der(0xA2, &der(0x0C, role.as_bytes()));
    let coded = der(0x31, &[scheme, text].concat());
    let actor = der(0x30, &der(0xA0, &coded));
    let attribute = der(0x30, &[der(0x06, &HC_ROLE), der(0x31, &der(0x31, &actor))].concat());
    der(0x30, &attribute)
}

/// One DER TLV (definite length, short or long form).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len().to_be_bytes();
    let significant = &len[len.iter().take_while(|b| **b == 0).count()..];
    match content.len() {
        0..=0x7F => out.push(content.len() as u8),
        _ => {
            out.push(0x80 | significant.len() as u8);
            out.extend_from_slice(significant);
        }
    }
    out.extend_from_slice(content);
    out
}

// ---- card_finish_json (its card half; the gateway's fuzzing module adds the rest) -----------

/// What `/auth/card/finish` does with the body before any database access, after the JSON parse:
/// decode into [`CardResponse`] and verify it against the fixture hierarchy. A decoded response
/// re-encodes to the very fields it came from (one accepted base64url spelling); an accepted login
/// is this hierarchy's doctor.
pub fn card_response(body: serde_json::Value) {
    let fields = body.clone();
    let Ok(response) = serde_json::from_value::<CardResponse>(body) else {
        return;
    };
    let field = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    assert_eq!(field("client_data"), Some(URL_SAFE_NO_PAD.encode(&response.client_data)));
    assert_eq!(field("signature"), Some(URL_SAFE_NO_PAD.encode(&response.signature)));
    assert_eq!(field("certificate"), Some(URL_SAFE_NO_PAD.encode(&response.certificate)));
    let chain: Vec<String> = response.chain.iter().map(|c| URL_SAFE_NO_PAD.encode(c)).collect();
    let sent: Vec<String> = fields
        .get("chain")
        .and_then(|c| c.as_array())
        .map(|c| c.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    assert_eq!(chain, sent);
    let h = hierarchy();
    let expected = Expected { kind: CardKind::Hpki, challenge: &CHALLENGE, origin: ORIGIN };
    match crate::verify::verify(&response, &expected, &h.store, &Policy::default(), NOW) {
        Ok(v) => {
            assert_eq!(v.hc_role.as_deref(), Some(MEDICAL_DOCTOR));
            assert!(v.revocation_checked);
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
        }
    }
}
