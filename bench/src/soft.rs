//! A software FIDO2 authenticator plus "browser": answers the gateway's WebAuthn options JSON
//! with what `PublicKeyCredential.toJSON()` returns, ES256 with attestation "none" (the
//! gateway's default policy). Signing uses aws-lc-rs, so the generator's own cost per login
//! stays small next to the server's.
//!
//! Byte layouts: WebAuthn L3 §6.1 (authenticator data), §6.5.4 (attestation object "none"),
//! RFC 9053 §7.1.1 (COSE EC2 key). `fido::soft` (feature `soft`) is the full-control authenticator
//! the tests use; it signs with the pure-Rust p256 crate, several times slower than aws-lc-rs, which
//! would make the load generator, not the gateway, the bottleneck of the FIDO scenario. This one is
//! the happy path only, on the fast backend.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

/// One credential on one authenticator.
pub struct SoftAuthenticator {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    credential_id: Vec<u8>,
    origin: String,
    rp_id_hash: [u8; 32],
    counter: u32,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SoftAuthenticator {
    /// A new credential for `rp_id`, used from `origin`.
    pub fn new(origin: &str, rp_id: &str) -> anyhow::Result<Self> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| anyhow!("P-256 key generation"))?;
        let mut credential_id = uuid::Uuid::new_v4().as_bytes().to_vec();
        credential_id.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            credential_id,
            origin: origin.to_owned(),
            rp_id_hash: Sha256::digest(rp_id.as_bytes()).into(),
            counter: 0,
        })
    }

    fn client_data(&self, type_: &str, options: &Value) -> anyhow::Result<Vec<u8>> {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .context("no challenge in the options")?;
        Ok(serde_json::to_vec(&json!({
            "type": type_,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))?)
    }

    fn cose_key(&self) -> anyhow::Result<Vec<u8>> {
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y.
        let point = self.key.public_key().as_ref();
        if point.len() != 65 {
            return Err(anyhow!(
                "unexpected P-256 public key length {}",
                point.len()
            ));
        }
        let mut m = BTreeMap::new();
        m.insert(Cbor::Integer(1), Cbor::Integer(2)); // kty: EC2
        m.insert(Cbor::Integer(3), Cbor::Integer(-7)); // alg: ES256
        m.insert(Cbor::Integer(-1), Cbor::Integer(1)); // crv: P-256
        m.insert(Cbor::Integer(-2), Cbor::Bytes(point[1..33].to_vec()));
        m.insert(Cbor::Integer(-3), Cbor::Bytes(point[33..].to_vec()));
        Ok(serde_cbor_2::to_vec(&Cbor::Map(m))?)
    }

    /// `navigator.credentials.create(options)` → `toJSON()`.
    pub fn create(&mut self, options: &Value) -> anyhow::Result<Value> {
        let client_data = self.client_data("webauthn.create", options)?;
        let mut auth_data = self.rp_id_hash.to_vec();
        auth_data.push(FLAG_UP | FLAG_UV | FLAG_AT);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0; 16]); // AAGUID
        auth_data.extend_from_slice(&u16::try_from(self.credential_id.len())?.to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key()?);
        let text = |s: &str| Cbor::Text(s.to_owned());
        let mut obj = BTreeMap::new();
        obj.insert(text("fmt"), text("none"));
        obj.insert(text("attStmt"), Cbor::Map(BTreeMap::new()));
        obj.insert(text("authData"), Cbor::Bytes(auth_data));
        let att_obj = serde_cbor_2::to_vec(&Cbor::Map(obj))?;
        Ok(json!({
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
        }))
    }

    /// `navigator.credentials.get(options)` → `toJSON()`.
    pub fn get(&mut self, options: &Value) -> anyhow::Result<Value> {
        self.counter += 1;
        let client_data = self.client_data("webauthn.get", options)?;
        let mut auth_data = self.rp_id_hash.to_vec();
        auth_data.push(FLAG_UP | FLAG_UV);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let mut msg = auth_data.clone();
        msg.extend_from_slice(&Sha256::digest(&client_data));
        let sig = self
            .key
            .sign(&self.rng, &msg)
            .map_err(|_| anyhow!("ECDSA signing"))?;
        Ok(json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": b64(&client_data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(sig.as_ref()),
                "userHandle": null,
            },
            "clientExtensionResults": {},
        }))
    }
}
