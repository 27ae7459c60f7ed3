//! Key generation for every [`KeyAlg`], including RSA-1024, which rcgen's backend (aws-lc-rs) cannot
//! generate or load (it takes RSA keys of 2048 bits and more only). Weak keys exist here only so
//! tests can show they are refused.

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::{KeyAlg, PkiError};

/// A freshly generated key: its public half for the certificate, its private half as PKCS#8.
pub(crate) struct NewKey {
    public: RawPublicKey,
    pub(crate) pkcs8_der: Vec<u8>,
    pub(crate) pkcs8_pem: String,
}

/// A public key rcgen can put into a certificate without holding the private key.
struct RawPublicKey {
    /// The subjectPublicKey BIT STRING's content (RSAPublicKey DER, or the EC point).
    bytes: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

impl NewKey {
    /// Generates a key of `alg`.
    pub(crate) fn generate(alg: KeyAlg) -> Result<NewKey, PkiError> {
        if alg == KeyAlg::Rsa1024 {
            // rand_core 0.10's adapter over the OS generator, as the `rsa` crate wants it; it only
            // panics when the OS has no randomness at all.
            let mut rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
            let key = rsa::RsaPrivateKey::new(&mut rng, 1024).map_err(|e| PkiError::Key(e.to_string()))?;
            let public = key.to_public_key().to_pkcs1_der().map_err(|e| PkiError::Key(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| PkiError::Key(e.to_string()))?;
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| PkiError::Key(e.to_string()))?;
            return Ok(NewKey {
                public: RawPublicKey { bytes: public.as_bytes().to_vec(), alg: &rcgen::PKCS_RSA_SHA256 },
                pkcs8_der: der.as_bytes().to_vec(),
                pkcs8_pem: pem.to_string(),
            });
        }
        let pair = signing_key(alg)?;
        Ok(NewKey {
            public: RawPublicKey { bytes: pair.der_bytes().to_vec(), alg: pair.algorithm() },
            pkcs8_der: pair.serialize_der(),
            pkcs8_pem: pair.serialize_pem(),
        })
    }

    /// The public key to certify.
    pub(crate) fn public(&self) -> &impl PublicKeyData {
        &self.public
    }
}

/// A key rcgen can sign with (CAs): every algorithm but RSA-1024.
pub(crate) fn signing_key(alg: KeyAlg) -> Result<KeyPair, PkiError> {
    let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
    Ok(match alg {
        KeyAlg::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyAlg::Rsa2048 => rsa(rcgen::RsaKeySize::_2048)?,
        KeyAlg::Rsa4096 => rsa(rcgen::RsaKeySize::_4096)?,
        KeyAlg::Rsa1024 => return Err(PkiError::Key("a CA cannot have an RSA-1024 key here (aws-lc-rs signs with 2048 bits and more)".into())),
    })
}

impl crate::Leaf {
    /// RSASSA-PKCS1-v1_5 / SHA-256 over `message` with this leaf's RSA key, of any size (RSA-1024
    /// too, which aws-lc-rs will not load): what a card returns for the same message. Errors for a
    /// non-RSA key.
    pub fn sign_rsa_sha256(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        use rsa::pkcs8::DecodePrivateKey;
        use sha2::{Digest, Sha256};
        // DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1).
        const PREFIX: [u8; 19] = [0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&self.key_der).map_err(|e| PkiError::Key(format!("not an RSA key: {e}")))?;
        let digest_info = [&PREFIX[..], &Sha256::digest(message)].concat();
        key.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info).map_err(|e| PkiError::Key(e.to_string()))
    }
}
