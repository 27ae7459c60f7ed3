//! A software authenticator plus "browser" for the gateway's integration tests: answers the
//! gateway's options JSON with the JSON a browser's `PublicKeyCredential.toJSON()` produces, with
//! flags, counter, origin and RP ID under the test's control.
//!
//! A trimmed copy of `fido/tests/soft` (ES256 keys, attestation "none" only, which is what the
//! gateway's default policy asks for): attestation formats are the `fido` crate's tests' concern.
//! Byte layouts follow WebAuthn L3 §6.1 (authenticator data) and §6.5 (attestation object).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crypto_glue::ecdsa_p256::{EcdsaP256DerSignature, EcdsaP256SigningKey};
use crypto_glue::s256::Sha256;
use crypto_glue::traits::{Digest, Signer};
use serde_cbor_2::Value;
use serde_json::{Value as Json, json};

pub const FLAG_UP: u8 = 0x01;
pub const FLAG_UV: u8 = 0x04;
pub const FLAG_BE: u8 = 0x08;
pub const FLAG_BS: u8 = 0x10;
pub const FLAG_AT: u8 = 0x40;

#[allow(dead_code, reason = "fields a test may tune")]
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
    /// User handle returned in assertions (as a discoverable credential would).
    pub user_handle: Option<Vec<u8>>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
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
        let (fmt, att_stmt) = ("none", BTreeMap::new());
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
