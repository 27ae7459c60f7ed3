//! A software authenticator plus "browser" for tests and benchmarks (feature `soft`): answers our
//! options JSON with the JSON a browser's `PublicKeyCredential.toJSON()` produces, with every field
//! under the caller's control (flags, counter, origin, RP ID, attestation). Never part of a
//! production build: the gateway does not enable the feature.
//!
//! ES256 (P-256) keys; attestation "none", "packed" self attestation or "packed" with an x5c
//! chain (the fixture attestation certificate). Byte layouts follow WebAuthn L3 §6.1
//! (authenticator data), §6.5 (attestation object) and §8.2 (packed).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test support: a malformed fixture or option is a bug in the test")]

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crypto_glue::ecdsa_p256::{EcdsaP256DerSignature, EcdsaP256PrivateKey, EcdsaP256SigningKey};
use crypto_glue::s256::Sha256;
use crypto_glue::traits::{Digest, Pkcs8DecodePrivateKey, Signer};
use serde_cbor_2::Value;
use serde_json::{Value as Json, json};

pub const FLAG_UP: u8 = 0x01;
pub const FLAG_UV: u8 = 0x04;
pub const FLAG_BE: u8 = 0x08;
pub const FLAG_BS: u8 = 0x10;
pub const FLAG_AT: u8 = 0x40;

/// AAGUID of the fixture attestation certificate.
pub const FIXTURE_AAGUID: &str = "6e696e73-686f-2d74-6573-742d61616775";

/// Which attestation statement `create` returns.
#[derive(Clone)]
pub enum Attestation {
    None,
    SelfPacked,
    /// Packed with x5c = [fixture certificate], signed by the fixture key.
    Fixture,
}

pub struct SoftAuthenticator {
    key: EcdsaP256SigningKey,
    pub credential_id: Vec<u8>,
    /// Origin the "browser" writes into client data.
    pub origin: String,
    /// RP ID whose hash goes into authenticator data.
    pub rp_id: String,
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// Counter value the next operation reports, before `counter_step` is added.
    pub counter: u32,
    /// Added to `counter` before each assertion (0 = an authenticator without a counter).
    pub counter_step: u32,
    pub aaguid: [u8; 16],
    pub attestation: Attestation,
    /// User handle returned in assertions (as a discoverable credential would).
    pub user_handle: Option<Vec<u8>>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn fixture_key() -> EcdsaP256SigningKey {
    let pem = include_str!("../tests/fixtures/attest.key");
    let sk = EcdsaP256PrivateKey::from_pkcs8_pem(pem).expect("fixture key");
    EcdsaP256SigningKey::from(&sk)
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftAuthenticator {
    pub fn new() -> Self {
        let sk = crypto_glue::ecdsa_p256::new_key();
        let mut credential_id = uuid::Uuid::new_v4().as_bytes().to_vec();
        credential_id.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            key: EcdsaP256SigningKey::from(&sk),
            credential_id,
            origin: "https://localhost:8443".to_owned(),
            rp_id: "localhost".to_owned(),
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            counter: 0,
            counter_step: 1,
            aaguid: [0; 16],
            attestation: Attestation::None,
            user_handle: None,
        }
    }

    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.user_present {
            f |= FLAG_UP;
        }
        if self.user_verified {
            f |= FLAG_UV;
        }
        if self.backup_eligible {
            f |= FLAG_BE;
        }
        if self.backup_state {
            f |= FLAG_BS;
        }
        f
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let x = point.x().expect("x").to_vec();
        let y = point.y().expect("y").to_vec();
        let mut m = BTreeMap::new();
        m.insert(Value::Integer(1), Value::Integer(2)); // kty: EC2
        m.insert(Value::Integer(3), Value::Integer(-7)); // alg: ES256
        m.insert(Value::Integer(-1), Value::Integer(1)); // crv: P-256
        m.insert(Value::Integer(-2), Value::Bytes(x));
        m.insert(Value::Integer(-3), Value::Bytes(y));
        serde_cbor_2::to_vec(&Value::Map(m)).expect("cbor")
    }

    fn client_data(&self, type_: &str, options: &Json) -> Vec<u8> {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .expect("challenge in options");
        serde_json::to_vec(&json!({
            "type": type_,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .expect("json")
    }

    fn sign(key: &EcdsaP256SigningKey, auth_data: &[u8], client_data: &[u8]) -> Vec<u8> {
        let mut msg = auth_data.to_vec();
        msg.extend_from_slice(&sha256(client_data));
        let sig: EcdsaP256DerSignature = key.sign(&msg);
        sig.to_bytes().to_vec()
    }

    /// `navigator.credentials.create(options)` → `toJSON()`.
    pub fn create(&mut self, options: &Json) -> String {
        let client_data = self.client_data("webauthn.create", options);
        let mut auth_data = sha256(self.rp_id.as_bytes());
        auth_data.push(self.flags() | FLAG_AT);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&self.aaguid);
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());

        let text = |s: &str| Value::Text(s.to_owned());
        let (fmt, att_stmt) = match self.attestation {
            Attestation::None => ("none", BTreeMap::new()),
            Attestation::SelfPacked => {
                let sig = Self::sign(&self.key, &auth_data, &client_data);
                let mut m = BTreeMap::new();
                m.insert(text("alg"), Value::Integer(-7));
                m.insert(text("sig"), Value::Bytes(sig));
                ("packed", m)
            }
            Attestation::Fixture => {
                let sig = Self::sign(&fixture_key(), &auth_data, &client_data);
                let cert = include_bytes!("../tests/fixtures/attest.der").to_vec();
                let mut m = BTreeMap::new();
                m.insert(text("alg"), Value::Integer(-7));
                m.insert(text("sig"), Value::Bytes(sig));
                m.insert(text("x5c"), Value::Array(vec![Value::Bytes(cert)]));
                ("packed", m)
            }
        };
        let mut obj = BTreeMap::new();
        obj.insert(text("fmt"), text(fmt));
        obj.insert(text("attStmt"), Value::Map(att_stmt));
        obj.insert(text("authData"), Value::Bytes(auth_data));
        let att_obj = serde_cbor_2::to_vec(&Value::Map(obj)).expect("cbor");

        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": b64(&client_data),
                "attestationObject": b64(&att_obj),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
        })
        .to_string()
    }

    /// `navigator.credentials.get(options)` → `toJSON()`.
    pub fn get(&mut self, options: &Json) -> String {
        self.counter += self.counter_step;
        let client_data = self.client_data("webauthn.get", options);
        let mut auth_data = sha256(self.rp_id.as_bytes());
        auth_data.push(self.flags());
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let sig = Self::sign(&self.key, &auth_data, &client_data);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": b64(&client_data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(&sig),
                "userHandle": self.user_handle.as_deref().map(b64),
            },
            "clientExtensionResults": {},
        })
        .to_string()
    }
}
