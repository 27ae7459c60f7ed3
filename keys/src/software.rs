//! The software backend: RSA keys generated and used by the system OpenSSL 3.
//!
//! Parsed keys are cached. Measured once on this project's 2-core machine: parsing an RSA-2048 PKCS#8 through OpenSSL 3's decoders costs 0.65 to 0.95 ms,
//! more than the signature itself (`openssl speed rsa2048`: 0.44 ms), so parsing on every signature
//! held the signer at about a quarter of the RSA ceiling (1.6 ms a signature); with the cache a
//! signature costs 0.41 ms, the ceiling. The cache maps SHA-256 of the PKCS#8 to the
//! parsed key, at most [`CACHE_LIMIT`] keys, emptied when full: the signer keeps a doctor's key
//! unsealed in memory while it is in use, which it already does for the key-encryption key that
//! unseals them all.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use zeroize::Zeroizing;

use crate::{KeyError, PSS_SALT_LEN, SignAlgorithm, StoredKey};

pub(crate) fn generate_rsa(bits: u32) -> Result<(StoredKey, Vec<u8>), KeyError> {
    let key = PKey::from_rsa(Rsa::generate(bits)?)?;
    let pkcs8 = Zeroizing::new(key.private_key_to_pkcs8()?);
    let spki = key.public_key_to_der()?;
    Ok((StoredKey::Software { pkcs8 }, spki))
}

pub(crate) fn public_key(pkcs8: &[u8]) -> Result<Vec<u8>, KeyError> {
    Ok(load(pkcs8)?.public_key_to_der()?)
}

pub(crate) fn sign_digest(pkcs8: &[u8], alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, KeyError> {
    sign_with(&cached(pkcs8)?, alg, digest)
}

/// Most parsed keys kept (about 4 KiB each).
const CACHE_LIMIT: usize = 1024;

static CACHE: LazyLock<Mutex<HashMap<[u8; 32], PKey<Private>>>> = LazyLock::new(Default::default);

/// The parsed key of `pkcs8`, from the cache or parsed now. The lock is held only to look up and
/// insert; signing happens outside it on a reference-counted handle (OpenSSL keys are safe to sign
/// with from several threads).
fn cached(pkcs8: &[u8]) -> Result<PKey<Private>, KeyError> {
    let fingerprint = openssl::sha::sha256(pkcs8);
    if let Some(key) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).get(&fingerprint) {
        return Ok(key.clone());
    }
    let key = load(pkcs8)?;
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(fingerprint, key.clone());
    Ok(key)
}

/// Signs a SHA-256 digest with a loaded key. `set_signature_md(sha256)` makes OpenSSL treat the
/// input as that digest: for PKCS#1 v1.5 it wraps it in the SHA-256 DigestInfo, for PSS it is
/// mHash (RFC 8017 §9.1.1 step 2), so the output equals `openssl dgst -sha256 -sign` over the
/// message.
pub(crate) fn sign_with(key: &PKey<Private>, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.sign_init()?;
    set_scheme(&mut ctx, alg)?;
    let mut signature = Vec::new();
    ctx.sign_to_vec(digest, &mut signature)?;
    Ok(signature)
}

/// Sets `alg`'s padding on a context initialised for signing or verifying, with SHA-256 as the
/// signature digest.
fn set_scheme<T>(ctx: &mut PkeyCtx<T>, alg: SignAlgorithm) -> Result<(), KeyError> {
    match alg {
        SignAlgorithm::RsaPkcs1Sha256 => ctx.set_rsa_padding(Padding::PKCS1)?,
        SignAlgorithm::RsaPssSha256 => {
            ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(PSS_SALT_LEN as i32))?;
            ctx.set_rsa_mgf1_md(Md::sha256())?;
        }
    }
    ctx.set_signature_md(Md::sha256())?;
    Ok(())
}

/// Verifies `signature` over a SHA-256 `digest` with an RSA public key (SubjectPublicKeyInfo
/// DER): the counterpart of [`sign_with`], for relying parties (`ninsho-signer verify`).
pub(crate) fn verify_digest(spki: &[u8], alg: SignAlgorithm, digest: &[u8], signature: &[u8]) -> Result<bool, KeyError> {
    if digest.len() != 32 {
        return Err(KeyError::DigestLength { len: digest.len() });
    }
    let key = rsa_public(spki)?;
    let mut ctx = PkeyCtx::new(&key)?;
    ctx.verify_init()?;
    set_scheme(&mut ctx, alg)?;
    // A mismatching signature is an OpenSSL error too: it means "does not verify" here.
    Ok(ctx.verify(digest, signature).unwrap_or(false))
}

/// Parses a stored PKCS#8 and insists on RSA (the only key type this crate makes).
pub(crate) fn load(pkcs8: &[u8]) -> Result<PKey<Private>, KeyError> {
    let key = PKey::private_key_from_pkcs8(pkcs8).map_err(|_| KeyError::BadStoredKey)?;
    if key.id() != Id::RSA {
        return Err(KeyError::BadStoredKey);
    }
    Ok(key)
}

/// SubjectPublicKeyInfo DER of an RSA public key given by its modulus and exponent (big-endian).
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, KeyError> {
    use openssl::bn::BigNum;
    let rsa = Rsa::from_public_components(BigNum::from_slice(modulus)?, BigNum::from_slice(exponent)?)?;
    Ok(PKey::from_rsa(rsa)?.public_key_to_der()?)
}

/// Checks that `spki` is an RSA SubjectPublicKeyInfo of at least 2048 bits; returns it parsed.
pub(crate) fn rsa_public(spki: &[u8]) -> Result<PKey<openssl::pkey::Public>, KeyError> {
    let key = PKey::public_key_from_der(spki).map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
    if key.id() != Id::RSA {
        return Err(KeyError::BadPublicKey(format!("key type {:?}, want RSA", key.id())));
    }
    if key.bits() < 2048 {
        return Err(KeyError::BadPublicKey(format!("{} bits, want at least 2048", key.bits())));
    }
    Ok(key)
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> Result<Vec<u8>, KeyError> {
    Ok(openssl::hash::hash(MessageDigest::sha256(), data)?.to_vec())
}
