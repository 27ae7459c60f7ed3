//! Real-stack tests: pcscd + vsmartcard-vpcd in a private namespace, `card-sim` as the card, and this
//! crate's PC/SC code as the client (plus OpenSC as an independent oracle). Each test runs in its own
//! process with its own pcscd (see `card::sim::harness::run_isolated`). Needs root and the packages
//! listed in card/README.md.

mod support;

use std::process::Command;

use card::hpki::{self, SignStyle};
use card::pcsc::{self, ReaderCard};
use card::sim::Profile;
use card::sim::harness::{SimArgs, run_isolated};
use card::{AuthOptions, CardKind, Error, Pin, PinStatus};
use support::{SIGN_PIN, insert, insert_default, make_pki, verify};

const MESSAGE: &[u8] = br#"{"type":"ninsho.card.auth","card":"jpki","challenge":"AAAA","origin":"https://localhost:8443"}"#;

fn pin(s: &str) -> Pin {
    Pin::new(s.to_owned())
}

fn authenticate(
    reader: &str,
    kind: CardKind,
    pin: &Pin,
    options: &AuthOptions,
) -> card::Result<card::CardSignature> {
    let ctx = pcsc::establish()?;
    pcsc::with_card(&ctx, reader, |t| {
        card::authenticate_with(t, kind, pin, MESSAGE, options)
    })
}

fn pin_status(reader: &str, kind: CardKind) -> card::Result<PinStatus> {
    let ctx = pcsc::establish()?;
    pcsc::with_card(&ctx, reader, |t| {
        card::pin_status(t, kind, &AuthOptions::default())
    })
}

fn hpki_style(style: Option<SignStyle>) -> AuthOptions {
    AuthOptions {
        hpki: hpki::Options { aid: None, style },
    }
}

#[test]
fn jpki_reads_certificates_signs_and_verifies() {
    run_isolated("jpki_reads_certificates_signs_and_verifies", |sandbox| {
        let pki = make_pki(CardKind::Jpki)?;
        let sim = insert_default(sandbox, Profile::Jpki, &pki)?;
        let ctx = pcsc::establish()?;
        let status = pcsc::reader_status(&ctx)?;
        assert_eq!(status.len(), 2, "{status:?}");
        assert_eq!(status[0].card, ReaderCard::Known(CardKind::Jpki));
        assert_eq!(status[1].card, ReaderCard::None);
        assert_eq!(pcsc::find_reader(&ctx, CardKind::Jpki)?, sim.reader());
        assert!(matches!(
            pcsc::find_reader(&ctx, CardKind::Hpki),
            Err(Error::WrongCard { .. })
        ));

        let signed = authenticate(
            &sim.reader(),
            CardKind::Jpki,
            &pin("1234"),
            &AuthOptions::default(),
        )?;
        assert_eq!(signed.kind, CardKind::Jpki);
        assert_eq!(signed.certificate, pki.auth_cert);
        assert_eq!(signed.chain, vec![pki.ca_cert.clone()]);
        assert_eq!(signed.signature.len(), 256);
        assert!(
            verify(&signed.certificate, MESSAGE, &signed.signature),
            "signature does not verify"
        );
        assert!(!verify(
            &signed.certificate,
            b"another message",
            &signed.signature
        ));
        // The transaction ended with a card reset: the verified PIN did not survive it.
        assert_eq!(
            pin_status(&sim.reader(), CardKind::Jpki)?,
            PinStatus::TriesLeft(3)
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn jpki_wrong_pin_counts_down_and_locks_after_three() {
    run_isolated(
        "jpki_wrong_pin_counts_down_and_locks_after_three",
        |sandbox| {
            let pki = make_pki(CardKind::Jpki)?;
            let sim = insert_default(sandbox, Profile::Jpki, &pki)?;
            let reader = sim.reader();
            let options = AuthOptions::default();
            let wrong = pin("9999");
            assert!(matches!(
                authenticate(&reader, CardKind::Jpki, &wrong, &options),
                Err(Error::WrongPin { tries_left: 2 })
            ));
            assert_eq!(
                pin_status(&reader, CardKind::Jpki)?,
                PinStatus::TriesLeft(2)
            );
            // A correct PIN resets the counter.
            authenticate(&reader, CardKind::Jpki, &pin("1234"), &options)?;
            assert_eq!(
                pin_status(&reader, CardKind::Jpki)?,
                PinStatus::TriesLeft(3)
            );
            for left in [2, 1] {
                assert!(matches!(
                    authenticate(&reader, CardKind::Jpki, &wrong, &options),
                    Err(Error::WrongPin { tries_left }) if tries_left == left
                ));
            }
            assert!(matches!(
                authenticate(&reader, CardKind::Jpki, &wrong, &options),
                Err(Error::PinLocked)
            ));
            assert!(matches!(
                authenticate(&reader, CardKind::Jpki, &pin("1234"), &options),
                Err(Error::PinLocked)
            ));
            assert_eq!(pin_status(&reader, CardKind::Jpki)?, PinStatus::Locked);
            // Locking is persistent: pulling and reinserting the card does not unlock it.
            sim.remove()?;
            sandbox.wait_for_card(0, false)?;
            sim.insert()?;
            sandbox.wait_for_card(0, true)?;
            assert_eq!(pin_status(&reader, CardKind::Jpki)?, PinStatus::Locked);
            Ok(())
        },
    )
    .unwrap();
}

#[test]
fn jpki_bad_pin_format_never_reaches_the_card() {
    run_isolated("jpki_bad_pin_format_never_reaches_the_card", |sandbox| {
        let pki = make_pki(CardKind::Jpki)?;
        let sim = insert_default(sandbox, Profile::Jpki, &pki)?;
        let reader = sim.reader();
        assert!(matches!(
            authenticate(
                &reader,
                CardKind::Jpki,
                &pin("9999"),
                &AuthOptions::default()
            ),
            Err(Error::WrongPin { tries_left: 2 })
        ));
        for bad in ["123", "12345", "abcd", "", "12 4"] {
            let err = authenticate(&reader, CardKind::Jpki, &pin(bad), &AuthOptions::default())
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::PinFormat {
                        kind: CardKind::Jpki,
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
        }
        assert_eq!(
            pin_status(&reader, CardKind::Jpki)?,
            PinStatus::TriesLeft(2)
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn jpki_card_pulled_mid_sequence_then_reinserted() {
    run_isolated("jpki_card_pulled_mid_sequence_then_reinserted", |sandbox| {
        let pki = make_pki(CardKind::Jpki)?;
        let sim = insert_default(sandbox, Profile::Jpki, &pki)?;
        let reader = sim.reader();
        // The card disappears when the signing command arrives, after the PIN was verified.
        sim.pull_on_ins(0x2A)?;
        let err = authenticate(
            &reader,
            CardKind::Jpki,
            &pin("1234"),
            &AuthOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::CardRemoved), "{err:?}");
        sandbox.wait_for_card(0, false)?;
        let ctx = pcsc::establish()?;
        assert!(matches!(
            pcsc::PcscCard::connect(&ctx, &reader),
            Err(Error::NoCard)
        ));
        assert!(matches!(
            pcsc::find_reader(&ctx, CardKind::Jpki),
            Err(Error::NoCard)
        ));

        sim.insert()?;
        sandbox.wait_for_card(0, true)?;
        let signed = authenticate(
            &reader,
            CardKind::Jpki,
            &pin("1234"),
            &AuthOptions::default(),
        )?;
        assert!(verify(&signed.certificate, MESSAGE, &signed.signature));
        assert_eq!(
            pin_status(&reader, CardKind::Jpki)?,
            PinStatus::TriesLeft(3)
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn hpki_card_padded_style_is_probed_signs_and_verifies() {
    run_isolated(
        "hpki_card_padded_style_is_probed_signs_and_verifies",
        |sandbox| {
            let pki = make_pki(CardKind::Hpki)?;
            let sim = insert_default(sandbox, Profile::Hpki(SignStyle::CardPadded), &pki)?;
            let ctx = pcsc::establish()?;
            assert_eq!(pcsc::find_reader(&ctx, CardKind::Hpki)?, sim.reader());
            for options in [hpki_style(None), hpki_style(Some(SignStyle::CardPadded))] {
                let signed = authenticate(&sim.reader(), CardKind::Hpki, &pin("1234"), &options)?;
                assert_eq!(signed.hpki_style, Some(SignStyle::CardPadded));
                assert_eq!(signed.certificate, pki.auth_cert);
                assert!(signed.chain.is_empty());
                assert!(
                    verify(&signed.certificate, MESSAGE, &signed.signature),
                    "signature does not verify"
                );
            }
            // A card-padded card refuses the ISO command.
            let err = authenticate(
                &sim.reader(),
                CardKind::Hpki,
                &pin("1234"),
                &hpki_style(Some(SignStyle::HostPadded)),
            )
            .unwrap_err();
            assert!(matches!(err, Error::InsNotSupported), "{err:?}");
            Ok(())
        },
    )
    .unwrap();
}

#[test]
fn hpki_host_padded_style_is_probed_signs_and_verifies() {
    run_isolated(
        "hpki_host_padded_style_is_probed_signs_and_verifies",
        |sandbox| {
            let pki = make_pki(CardKind::Hpki)?;
            let sim = insert_default(sandbox, Profile::Hpki(SignStyle::HostPadded), &pki)?;
            for options in [hpki_style(None), hpki_style(Some(SignStyle::HostPadded))] {
                let signed = authenticate(&sim.reader(), CardKind::Hpki, &pin("1234"), &options)?;
                assert_eq!(signed.hpki_style, Some(SignStyle::HostPadded));
                assert_eq!(signed.certificate, pki.auth_cert);
                assert!(
                    verify(&signed.certificate, MESSAGE, &signed.signature),
                    "signature does not verify"
                );
            }
            let err = authenticate(
                &sim.reader(),
                CardKind::Hpki,
                &pin("1234"),
                &hpki_style(Some(SignStyle::CardPadded)),
            )
            .unwrap_err();
            assert!(matches!(err, Error::ClaNotSupported), "{err:?}");
            Ok(())
        },
    )
    .unwrap();
}

#[test]
fn hpki_finds_an_unknown_aid_by_rid() {
    run_isolated("hpki_finds_an_unknown_aid_by_rid", |sandbox| {
        let pki = make_pki(CardKind::Hpki)?;
        let mut args = SimArgs::new(
            Profile::Hpki(SignStyle::HostPadded),
            pki.dir.path(),
            "secret-PIN-42",
        );
        args.hpki_aid = Some("E8 28 BD 08 0F 00 11 22 33 44".into());
        let sim = insert(sandbox, 0, &args)?;
        let ctx = pcsc::establish()?;
        let apps = pcsc::with_card(&ctx, &sim.reader(), |t| hpki::list_applications(t))?;
        assert_eq!(
            apps,
            vec![
                hpki::JMA_SIGNATURE_AID.to_vec(),
                vec![0xE8, 0x28, 0xBD, 0x08, 0x0F, 0, 0x11, 0x22, 0x33, 0x44]
            ]
        );
        let signed = authenticate(
            &sim.reader(),
            CardKind::Hpki,
            &pin("secret-PIN-42"),
            &AuthOptions::default(),
        )?;
        assert!(verify(&signed.certificate, MESSAGE, &signed.signature));
        Ok(())
    })
    .unwrap();
}

#[test]
fn hpki_wrong_pin_counts_down_and_locks_after_fifteen() {
    run_isolated(
        "hpki_wrong_pin_counts_down_and_locks_after_fifteen",
        |sandbox| {
            let pki = make_pki(CardKind::Hpki)?;
            let sim = insert_default(sandbox, Profile::Hpki(SignStyle::CardPadded), &pki)?;
            let reader = sim.reader();
            let options = AuthOptions::default();
            assert_eq!(
                pin_status(&reader, CardKind::Hpki)?,
                PinStatus::TriesLeft(15)
            );
            // Format errors first: refused on the host, counter untouched.
            for bad in ["123", "12345678901234567", "12 34", "ＰＩＮ１"] {
                let err = authenticate(&reader, CardKind::Hpki, &pin(bad), &options).unwrap_err();
                assert!(
                    matches!(
                        err,
                        Error::PinFormat {
                            kind: CardKind::Hpki,
                            ..
                        }
                    ),
                    "{bad:?}: {err:?}"
                );
            }
            assert_eq!(
                pin_status(&reader, CardKind::Hpki)?,
                PinStatus::TriesLeft(15)
            );
            let wrong = pin("000000");
            for left in (1..=14).rev() {
                let err = authenticate(&reader, CardKind::Hpki, &wrong, &options).unwrap_err();
                assert!(
                    matches!(err, Error::WrongPin { tries_left } if tries_left == left),
                    "{left}: {err:?}"
                );
            }
            assert!(matches!(
                authenticate(&reader, CardKind::Hpki, &wrong, &options),
                Err(Error::PinLocked)
            ));
            assert!(matches!(
                authenticate(&reader, CardKind::Hpki, &pin("1234"), &options),
                Err(Error::PinLocked)
            ));
            assert_eq!(pin_status(&reader, CardKind::Hpki)?, PinStatus::Locked);
            Ok(())
        },
    )
    .unwrap();
}

#[test]
fn hpki_card_pulled_mid_sequence_then_reinserted() {
    run_isolated("hpki_card_pulled_mid_sequence_then_reinserted", |sandbox| {
        let pki = make_pki(CardKind::Hpki)?;
        let sim = insert_default(sandbox, Profile::Hpki(SignStyle::HostPadded), &pki)?;
        let reader = sim.reader();
        // Pulled at MSE SET, between VERIFY and the signature.
        sim.pull_on_ins(0x22)?;
        let err = authenticate(
            &reader,
            CardKind::Hpki,
            &pin("1234"),
            &AuthOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::CardRemoved), "{err:?}");
        sandbox.wait_for_card(0, false)?;
        sim.insert()?;
        sandbox.wait_for_card(0, true)?;
        let signed = authenticate(
            &reader,
            CardKind::Hpki,
            &pin("1234"),
            &AuthOptions::default(),
        )?;
        assert!(verify(&signed.certificate, MESSAGE, &signed.signature));
        Ok(())
    })
    .unwrap();
}

#[test]
fn two_readers_and_missing_ones() {
    run_isolated("two_readers_and_missing_ones", |sandbox| {
        let ctx = pcsc::establish()?;
        let pki_j = make_pki(CardKind::Jpki)?;
        let pki_h = make_pki(CardKind::Hpki)?;
        // Without cards: readers exist but are empty.
        let jpki = insert(
            sandbox,
            0,
            &SimArgs::new(Profile::Jpki, pki_j.dir.path(), "1234"),
        )?;
        drop(jpki);
        sandbox.wait_for_card(0, false)?;
        assert!(matches!(
            pcsc::find_reader(&ctx, CardKind::Jpki),
            Err(Error::NoCard)
        ));
        assert!(matches!(
            pcsc::PcscCard::connect(&ctx, "No Such Reader 00 00"),
            Err(Error::NoReader)
        ));

        let _jpki = insert(
            sandbox,
            1,
            &SimArgs::new(Profile::Jpki, pki_j.dir.path(), "1234"),
        )?;
        let _hpki = insert(
            sandbox,
            0,
            &SimArgs::new(
                Profile::Hpki(SignStyle::HostPadded),
                pki_h.dir.path(),
                "1234",
            ),
        )?;
        let status = pcsc::reader_status(&ctx)?;
        let kinds: Vec<&str> = status.iter().map(|r| r.card.as_str()).collect();
        assert_eq!(kinds, ["hpki", "jpki"]);
        assert_eq!(
            pcsc::find_reader(&ctx, CardKind::Jpki)?,
            "Virtual PCD 00 01"
        );
        assert_eq!(
            pcsc::find_reader(&ctx, CardKind::Hpki)?,
            "Virtual PCD 00 00"
        );
        // Asking the HPKI card for JPKI is "wrong card", before any PIN is sent.
        let err = authenticate(
            "Virtual PCD 00 00",
            CardKind::Jpki,
            &pin("1234"),
            &AuthOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::WrongCard {
                    expected: CardKind::Jpki
                }
            ),
            "{err:?}"
        );
        Ok(())
    })
    .unwrap();
}

/// OpenSC's own jpki driver (an independent implementation of the card protocol) must recognise the
/// simulated card, and a signature it makes must verify with openssl — and equal ours, since
/// RSASSA-PKCS1-v1_5 is deterministic; the same for the signing certificate and key (OpenSC's second
/// token, the signing password).
#[test]
fn opensc_oracle_signs_with_the_simulated_jpki_card() {
    run_isolated(
        "opensc_oracle_signs_with_the_simulated_jpki_card",
        |sandbox| {
            let pki = make_pki(CardKind::Jpki)?;
            let sim = insert_default(sandbox, Profile::Jpki, &pki)?;
            let work = tempfile::tempdir()?;
            let (env_name, env_value) = sandbox.pcsc_env();
            let run =
                |program: &str, args: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
                    let out = Command::new(program)
                        .args(args)
                        .env(env_name, &env_value)
                        .env("HOME", work.path())
                        .current_dir(work.path())
                        .output()
                        .map_err(|e| format!("cannot run {program}: {e}"))?;
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    if !out.status.success() {
                        return Err(format!("{program} {args:?} failed: {text}").into());
                    }
                    Ok(text)
                };
            // A real My Number card's ATR, which OpenSC's jpki driver does not list: the driver
            // recognises the card by SELECT of the JPKI application, as it does real cards.
            let atr = run("opensc-tool", &["--reader", "0", "--atr"])?;
            assert_eq!(atr.trim(), "3b:da:13:ff:81:31:fb:46:80:12:39:2f:31:c1:73:c6:01:c0:3b", "{atr}");
            let name = run("opensc-tool", &["--reader", "0", "--name"])?;
            assert_eq!(name.trim(), "jpki", "{name}");
            let pins = run("pkcs15-tool", &["--list-pins"])?;
            assert!(pins.contains("Tries left     : 3"), "{pins}");

            std::fs::write(work.path().join("message"), MESSAGE)?;
            let module = [
                "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
                "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
                "/usr/lib/opensc-pkcs11.so",
            ]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("opensc-pkcs11.so not found: install the opensc package")?;
            run(
                "pkcs11-tool",
                &[
                    "--module",
                    module,
                    "--login",
                    "--pin",
                    "1234",
                    "--sign",
                    "--mechanism",
                    "SHA256-RSA-PKCS",
                    "--id",
                    "01",
                    "-i",
                    "message",
                    "-o",
                    "signature",
                ],
            )?;
            std::fs::write(work.path().join("cert.der"), &pki.auth_cert)?;
            let pubkey = run(
                "openssl",
                &[
                    "x509", "-inform", "DER", "-in", "cert.der", "-pubkey", "-noout",
                ],
            )?;
            std::fs::write(work.path().join("pub.pem"), pubkey)?;
            let verified = run(
                "openssl",
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    "signature",
                    "message",
                ],
            )?;
            assert!(verified.contains("Verified OK"), "{verified}");

            let opensc_signature = std::fs::read(work.path().join("signature"))?;
            let ours = authenticate(
                &sim.reader(),
                CardKind::Jpki,
                &pin("1234"),
                &AuthOptions::default(),
            )?;
            assert_eq!(ours.signature, opensc_signature);

            // The signing side of the card (EF 0001/001A, signing password EF 001B), through
            // OpenSC's second token: the certificate is private (read after login) and the key
            // signs only after the signing password.
            let certs = run("pkcs15-tool", &["--list-certificates"])?;
            assert!(
                certs.contains("[Digital Signature Certificate]")
                    && certs.contains("Path           : 0001"),
                "{certs}"
            );
            assert!(pins.contains("[Digital Signature PIN]") && pins.contains("Tries left     : 5"), "{pins}");
            let signing_token = ["--module", module, "--token-label", "JPKI (Digital Signature PIN)"];
            let login = ["--login", "--pin", SIGN_PIN];
            let read = [&signing_token[..], &login, &["--read-object", "--type", "cert", "--id", "02", "-o", "sign-cert.der"]];
            run("pkcs11-tool", &read.concat())?;
            assert_eq!(std::fs::read(work.path().join("sign-cert.der"))?, pki.sign_cert);
            let sign = [
                &signing_token[..],
                &login,
                &["--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", "02", "-i", "message", "-o", "sign-signature"],
            ];
            run("pkcs11-tool", &sign.concat())?;
            let pubkey = run("openssl", &["x509", "-inform", "DER", "-in", "sign-cert.der", "-pubkey", "-noout"])?;
            std::fs::write(work.path().join("sign-pub.pem"), pubkey)?;
            let verified = run(
                "openssl",
                &["dgst", "-sha256", "-verify", "sign-pub.pem", "-signature", "sign-signature", "message"],
            )?;
            assert!(verified.contains("Verified OK"), "{verified}");
            // A wrong signing password costs a try of its own counter only.
            let wrong = [&signing_token[..], &["--login", "--pin", "WRONG999", "--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", "02", "-i", "message", "-o", "x"]];
            assert!(run("pkcs11-tool", &wrong.concat()).is_err());
            let pins = run("pkcs15-tool", &["--list-pins"])?;
            assert!(pins.contains("Tries left     : 4") && pins.contains("Tries left     : 3"), "{pins}");
            Ok(())
        },
    )
    .unwrap();
}
