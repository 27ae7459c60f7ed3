//! Shared pieces of the real-stack tests: a throw-away PKI written in the simulator's file layout,
//! an independent signature check (aws-lc-rs), and starting a simulated card in a sandbox.

use std::path::Path;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use card::sim::Profile;
use card::sim::harness::{Sandbox, SimArgs, SimProcess};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_RSA_SHA256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// PEM files for one card, in the layout `card-sim --dir` reads.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub auth_cert: Vec<u8>,
    pub ca_cert: Vec<u8>,
}

/// A fresh RSA-2048 CA and an authentication certificate it issued.
pub fn make_pki() -> Result<Pki, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ca_key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CountryName, "JP");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "Test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let auth_key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(DnType::CommonName, "TEST-AUTH-0001");
    let auth_cert = params.signed_by(&auth_key, &issuer)?;

    std::fs::write(dir.path().join("ca-cert.pem"), ca_cert.pem())?;
    std::fs::write(dir.path().join("auth-cert.pem"), auth_cert.pem())?;
    std::fs::write(dir.path().join("auth-key.pem"), auth_key.serialize_pem())?;
    Ok(Pki {
        dir,
        auth_cert: auth_cert.der().to_vec(),
        ca_cert: ca_cert.der().to_vec(),
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
    insert(sandbox, 0, &SimArgs::new(profile, pki.dir.path(), "1234"))
}
