//! Shared pieces of the real-stack tests: a card in the simulator's file layout with certificates
//! shaped like real ones (`devpki::cards`: HPKI or JPKI hierarchy, authentication and signing
//! certificate and key), an independent signature check (aws-lc-rs), and starting a simulated card
//! in a sandbox.

use std::path::Path;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use card::CardKind;
use card::sim::Profile;
use card::sim::harness::{Sandbox, SimArgs, SimProcess};
use devpki::cards::{CardSpec, Hpki, Jpki};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The signing PIN `SimArgs` gives the card (card-sim's default): a JPKI signing password.
pub const SIGN_PIN: &str = "SIGN1234";

/// PEM files for one card, in the layout `card-sim --dir` reads.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub auth_cert: Vec<u8>,
    pub ca_cert: Vec<u8>,
    pub sign_cert: Vec<u8>,
}

/// A fresh card of `kind`: its CAs (HPKI: MHLW-like root over MEDIS-like CAs; JPKI: J-LIS-like CAs),
/// authentication and signing certificates and keys (RSA-2048), written for the simulator. The
/// validity is fixed around 2030-01-01 (nothing here checks it).
pub fn make_pki(kind: CardKind) -> Result<Pki, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let now = OffsetDateTime::from_unix_timestamp(1_893_456_000)?;
    let spec = CardSpec::new(now);
    let card = match kind {
        CardKind::Jpki => Jpki::new(now)?.card(&spec)?,
        CardKind::Hpki => Hpki::new(now)?.card(&spec)?,
    };
    card.write_sim_dir(dir.path())?;
    Ok(Pki {
        dir,
        auth_cert: card.auth.cert_der,
        ca_cert: card.auth_ca,
        sign_cert: card.sign.cert_der,
    })
}

/// Verifies an RSASSA-PKCS1-v1_5 / SHA-256 signature with the certificate's key, using aws-lc-rs
/// (independent of the `rsa` crate the simulator signs with).
pub fn verify(certificate: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(certificate) else {
        return false;
    };
    let key = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(message, signature)
        .is_ok()
}

/// The simulator binary cargo built for these tests.
pub fn sim_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_card-sim"))
}

/// Starts a simulated card in `slot` and waits until PC/SC sees it.
pub fn insert(
    sandbox: &Sandbox,
    slot: u8,
    args: &SimArgs,
) -> Result<SimProcess, Box<dyn std::error::Error>> {
    let card = sandbox.insert_card(sim_binary(), slot, args)?;
    sandbox.wait_for_card(slot, true)?;
    Ok(card)
}

/// Starts the usual card for `profile` with PIN 1234 in slot 0.
pub fn insert_default(
    sandbox: &Sandbox,
    profile: Profile,
    pki: &Pki,
) -> Result<SimProcess, Box<dyn std::error::Error>> {
    let mut args = SimArgs::new(profile, pki.dir.path(), "1234");
    args.sign_pin = Some(SIGN_PIN.into());
    insert(sandbox, 0, &args)
}
