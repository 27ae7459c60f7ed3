//! The committed fuzz corpus (fuzz/corpus/<target>/) replayed through the same functions the fuzz
//! targets call, so the corpus and its regressions run under the stable test suite too (README.md,
//! "Fuzzing").
//!
//! `make_seeds` (ignored; run by hand) writes the fixtures and the card-made seeds:
//! `cargo nextest run -p card --all-features --run-ignored only -E 'test(make_seeds)'`.

#![allow(clippy::unwrap_used, reason = "test helpers: a missing corpus or fixture file is a failed test")]

use std::path::{Path, PathBuf};

use card::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of `target`'s corpus, through `body`.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        eprintln!("{}", file.display());
        body(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn apdu_response_corpus() {
    replay("apdu_response", fuzzing::apdu_response);
}

#[test]
fn card_client_data_corpus() {
    replay("card_client_data", fuzzing::card_client_data);
}

#[test]
fn card_certificate_corpus() {
    replay("card_certificate", fuzzing::card_certificate);
}

#[test]
fn hc_role_corpus() {
    replay("hc_role", fuzzing::hc_role);
}

#[test]
fn fixture_doctor_is_accepted() {
    // The seeds are only worth something if the fixture hierarchy accepts its own doctor.
    let h = fuzzing::hierarchy();
    let policy = card::verify::Policy::default();
    let v = card::verify::check_certificate(&h.leaf, std::slice::from_ref(&h.auth_ca), &h.store, &policy, fuzzing::NOW)
        .unwrap();
    assert!(v.revocation_checked);
}

/// Writes fuzz/fixtures/ (a devpki HPKI hierarchy) and the seeds that need its keys or the card
/// simulator. Run by hand; it replaces the fixtures, so the seeds of `card_finish_json` that it
/// writes are the only ones signed by the fixture doctor's key.
#[test]
#[ignore = "writes fuzz/fixtures and seeds; run by hand"]
fn make_seeds() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use card::{CardKind, ClientData};
    use devpki::CrlSpec;
    use devpki::cards::{CardSpec, Hpki, Jpki};

    let write = |dir: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let at = fuzzing::FIXTURE_TIME;
    let hpki = Hpki::new(at).unwrap();
    let doctor = hpki.card(&CardSpec::new(at)).unwrap();
    let arls = hpki.root_arls(&CrlSpec::new(at)).unwrap();
    let crl = hpki.auth_ca().crl(&CrlSpec::new(at)).unwrap();
    write("fixtures", "hpki-root.der", hpki.root().cert_der());
    write("fixtures", "hpki-auth-ca.der", hpki.auth_ca().cert_der());
    write("fixtures", "hpki-root-arl.crl", &arls[1]);
    write("fixtures", "hpki-auth-ca.crl", &crl);
    write("fixtures", "hpki-doctor.der", &doctor.auth.cert_der);
    let jpki = Jpki::new(at).unwrap();
    let jpki_card = jpki.card(&CardSpec::new(at)).unwrap();

    let tagged = |mode: u8, der: &[u8]| [&[mode][..], der].concat();
    write("corpus/card_certificate", "seed-doctor", &tagged(0, &doctor.auth.cert_der));
    write("corpus/card_certificate", "seed-signing", &tagged(0, &doctor.sign.cert_der));
    write("corpus/card_certificate", "seed-jpki", &tagged(0, &jpki_card.auth.cert_der));
    write("corpus/card_certificate", "seed-chain", &tagged(1, hpki.auth_ca().cert_der()));
    write("corpus/card_certificate", "seed-crl", &tagged(2, &crl));
    write("corpus/card_certificate", "seed-arl", &tagged(2, &arls[0]));

    let sda = x509_extension(&doctor.auth.cert_der, "2.5.29.9");
    write("corpus/hc_role", "seed-doctor", &sda);
    write("corpus/hc_role", "seed-pharmacist", &fuzzing::hc_role_value("Pharmacist"));

    let challenge = URL_SAFE_NO_PAD.encode(fuzzing::CHALLENGE);
    let client_data = |kind| ClientData::new(kind, &challenge, fuzzing::ORIGIN).unwrap().to_bytes();
    write("corpus/card_client_data", "seed-hpki", &client_data(CardKind::Hpki));
    write("corpus/card_client_data", "seed-jpki", &client_data(CardKind::Jpki));
    let spaced = String::from_utf8(client_data(CardKind::Hpki)).unwrap().replace(",", ", ");
    write("corpus/card_client_data", "seed-not-canonical", spaced.as_bytes());

    // /auth/card/finish bodies as the agent answers (gateway target card_finish_json).
    let signed = client_data(CardKind::Hpki);
    let body = serde_json::json!({
        "client_data": URL_SAFE_NO_PAD.encode(&signed),
        "signature": URL_SAFE_NO_PAD.encode(doctor.auth.sign_rsa_sha256(&signed).unwrap()),
        "certificate": URL_SAFE_NO_PAD.encode(&doctor.auth.cert_der),
        "chain": [URL_SAFE_NO_PAD.encode(hpki.auth_ca().cert_der())],
    });
    write("corpus/card_finish_json", "seed-doctor", body.to_string().as_bytes());
    let bad = serde_json::json!({"client_data": "e30", "signature": "AA", "certificate": "MAA", "chain": []});
    write("corpus/card_finish_json", "seed-malformed", bad.to_string().as_bytes());

    // APDU sessions with the simulator: each answer the card gave, in order.
    let responses = [vec![0x90, 0x00], vec![0x01, 0x02, 0x61, 0x05], vec![0x6A, 0x82], vec![0x63, 0xC2]];
    for (i, r) in responses.iter().enumerate() {
        write("corpus/apdu_response", &format!("seed-response-{i}"), &tagged(0, r));
    }
    sim_sessions(&write, &doctor, &jpki_card);
}

/// The x509 extension value (extnValue contents) with `oid` in `der`.
fn x509_extension(der: &[u8], oid: &str) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.extensions().iter().find(|e| e.oid.to_id_string() == oid).unwrap().value.to_vec()
}

#[cfg(feature = "sim")]
fn sim_sessions(write: &dyn Fn(&str, &str, &[u8]), hpki: &devpki::cards::Card, jpki: &devpki::cards::Card) {
    use card::hpki::{JMA_AUTH_AID, SignStyle};
    use card::sim::{Profile, SimCard, SimConfig, SimFiles};
    use card::{AuthOptions, CardKind, CardTransport, Pin};

    /// Passes commands to the simulator and keeps its answers.
    struct Recorder {
        card: SimCard,
        answers: Vec<Vec<u8>>,
    }
    impl CardTransport for Recorder {
        fn transmit(&mut self, command: &[u8]) -> card::Result<Vec<u8>> {
            let answer = self.card.process(command);
            self.answers.push(answer.clone());
            Ok(answer)
        }
    }
    let sim = |card: &devpki::cards::Card, profile| {
        let dir = tempfile::tempdir().unwrap();
        card.write_sim_dir(dir.path()).unwrap();
        let files = SimFiles::load(dir.path(), profile).unwrap();
        let config = SimConfig {
            profile,
            files,
            pin: b"1234".to_vec(),
            sign_pin: b"SIGN1234".to_vec(),
            hpki_auth_aid: JMA_AUTH_AID.to_vec(),
        };
        Recorder { card: SimCard::new(config), answers: Vec::new() }
    };
    let pin = Pin::new("1234".into());
    let options = AuthOptions::default();
    let cards = [
        ("jpki", jpki, Profile::Jpki, CardKind::Jpki, 0x00),
        ("hpki-card-padded", hpki, Profile::Hpki(SignStyle::CardPadded), CardKind::Hpki, 0x10),
        ("hpki-host-padded", hpki, Profile::Hpki(SignStyle::HostPadded), CardKind::Hpki, 0x10),
    ];
    for (name, card, profile, kind, kind_bit) in cards {
        let mut r = sim(card, profile);
        card::detect(&mut r).unwrap();
        write("corpus/apdu_response", &format!("seed-detect-{name}"), &[&[1][..], &fuzzing::ScriptedCard::script(&r.answers)].concat());
        let mut r = sim(card, profile);
        card::pin_status(&mut r, kind, &options).unwrap();
        write("corpus/apdu_response", &format!("seed-pin-status-{name}"), &[&[2 | kind_bit][..], &fuzzing::ScriptedCard::script(&r.answers)].concat());
        let mut r = sim(card, profile);
        card::authenticate(&mut r, kind, &pin, b"message").unwrap();
        write("corpus/apdu_response", &format!("seed-authenticate-{name}"), &[&[3 | kind_bit][..], &fuzzing::ScriptedCard::script(&r.answers)].concat());
    }
}

#[cfg(not(feature = "sim"))]
fn sim_sessions(_: &dyn Fn(&str, &str, &[u8]), _: &devpki::cards::Card, _: &devpki::cards::Card) {
    panic!("make_seeds records the card simulator: run it with --all-features");
}
