//! A software FIDO2 authenticator plus "browser": answers the gateway's WebAuthn options JSON
//! with what `PublicKeyCredential.toJSON()` returns, ES256 with attestation "none" (the
//! gateway's default policy). Signing uses aws-lc-rs, so the load generator's own cost per login
//! stays small next to the server's. One implementation serves `bench` (a fresh credential per
//! worker, counting signatures) and `gateway check` (one credential kept in a 0600 key file,
//! counterless: both counters 0 is the no-check case of docs/fido-policy.md, so repeated runs
//! from separate processes never look like a cloned authenticator).
//!
//! Byte layouts: WebAuthn L3 §6.1 (authenticator data), §6.5.4 (attestation object "none"),
//! RFC 9053 §7.1.1 (COSE EC2 key). `fido::soft` (feature `soft`) is the full-control authenticator
//! the tests use; it signs with the pure-Rust p256 crate, several times slower than aws-lc-rs, which
//! would make the load generator, not the gateway, the bottleneck of the FIDO scenario. This one is
//! the happy path only, on the fast backend.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

/// One credential on one authenticator.
pub struct SoftAuthenticator {
    key: EcdsaKeyPair,
    /// The PKCS#8 document of `key`, kept to save it ([`Self::save`]).
    pkcs8: Zeroizing<Vec<u8>>,
    rng: SystemRandom,
    credential_id: Vec<u8>,
    origin: String,
    rp_id: String,
    rp_id_hash: [u8; 32],
    counter: u32,
    /// Whether each assertion raises the signature counter (bench) or leaves it 0 (check).
    counting: bool,
}

/// What a key file holds (JSON, mode 0600): the credential's private key as PKCS#8, its id and
/// the RP ID it was registered for.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    rp_id: String,
    credential_id: String,
    pkcs8: String,
}

const KEY_FILE_FORMAT: &str = "ninsho-soft-authenticator-1";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SoftAuthenticator {
    /// A new credential for `rp_id`, used from `origin`, counting its signatures.
    pub fn new(origin: &str, rp_id: &str) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow!("P-256 key generation"))?;
        let mut credential_id = uuid::Uuid::new_v4().as_bytes().to_vec();
        credential_id.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::from_parts(Zeroizing::new(pkcs8.as_ref().to_vec()), credential_id, origin, rp_id, true)
    }

    /// A new counterless credential for `gateway check`, to be saved with [`Self::save`].
    pub fn new_counterless(origin: &str, rp_id: &str) -> anyhow::Result<Self> {
        let mut auth = Self::new(origin, rp_id)?;
        auth.counting = false;
        Ok(auth)
    }

    fn from_parts(
        pkcs8: Zeroizing<Vec<u8>>,
        credential_id: Vec<u8>,
        origin: &str,
        rp_id: &str,
        counting: bool,
    ) -> anyhow::Result<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
            .map_err(|_| anyhow!("not a P-256 PKCS#8 private key"))?;
        Ok(Self {
            key,
            pkcs8,
            rng: SystemRandom::new(),
            credential_id,
            origin: origin.to_owned(),
            rp_id: rp_id.to_owned(),
            rp_id_hash: Sha256::digest(rp_id.as_bytes()).into(),
            counter: 0,
            counting,
        })
    }

    /// The RP ID the credential is for.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// Writes the credential to a new file readable by its owner only (mode 0600); an existing
    /// file is never overwritten (docs/design.md §4: files holding secrets are created 0600).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if path.exists() {
            bail!("{} already exists; an authenticator key file is never overwritten (remove it, or choose another path)", path.display());
        }
        let file = KeyFile {
            format: KEY_FILE_FORMAT.to_owned(),
            rp_id: self.rp_id.clone(),
            credential_id: b64(&self.credential_id),
            pkcs8: b64(&self.pkcs8),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&file)? + "\n");
        crate::audit_checkpoint::write_private(path, text.as_bytes())
    }

    /// Reads a credential [`Self::save`] wrote, to be used from `origin`. A missing file, one
    /// readable by other users, or one of another shape is refused with the reason.
    pub fn load(path: &Path, origin: &str) -> anyhow::Result<Self> {
        let text = crate::audit_checkpoint::read_private_file(path, "authenticator key", || {
            bail!("no authenticator key file at {} (create it with `gateway check link`)", path.display())
        })?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{} is not an authenticator key file: {e}", path.display()))?;
        if file.format != KEY_FILE_FORMAT {
            bail!("{}: unknown key file format {:?} (expected {KEY_FILE_FORMAT})", path.display(), file.format);
        }
        let bytes = |what: &str, v: &str| {
            URL_SAFE_NO_PAD.decode(v).map_err(|_| anyhow!("{}: {what} is not base64url", path.display()))
        };
        let pkcs8 = Zeroizing::new(bytes("pkcs8", &file.pkcs8)?);
        let credential_id = bytes("credential_id", &file.credential_id)?;
        if credential_id.is_empty() {
            bail!("{}: the credential id is empty", path.display());
        }
        Self::from_parts(pkcs8, credential_id, origin, &file.rp_id, false)
            .with_context(|| format!("{}", path.display()))
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
        Ok(self.credential_json(json!({
            "clientDataJSON": b64(&client_data),
            "attestationObject": b64(&att_obj),
            "transports": ["usb"],
        })))
    }

    /// `navigator.credentials.get(options)` → `toJSON()`.
    pub fn get(&mut self, options: &Value) -> anyhow::Result<Value> {
        if self.counting {
            self.counter += 1;
        }
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
        Ok(self.credential_json(json!({
            "clientDataJSON": b64(&client_data),
            "authenticatorData": b64(&auth_data),
            "signature": b64(sig.as_ref()),
            "userHandle": null,
        })))
    }

    /// What `PublicKeyCredential.toJSON()` wraps around a ceremony's `response`.
    fn credential_json(&self, response: Value) -> Value {
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": response,
            "clientExtensionResults": {},
        })
    }
}
