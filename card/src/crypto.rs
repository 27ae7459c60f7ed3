//! Host-side cryptographic framing: SHA-256 DigestInfo (RFC 8017 §9.2 note 1), EMSA-PKCS1-v1_5 padding
//! for cards that want a fully padded block, and the RSA modulus size read from a certificate.

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::error::{Error, Result};

/// DER prefix of a SHA-256 DigestInfo: `SEQUENCE { SEQUENCE { id-sha256, NULL }, OCTET STRING (32) }`.
pub const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Length of a SHA-256 DigestInfo (19-byte prefix + 32-byte hash).
pub const SHA256_DIGEST_INFO_LEN: usize = 51;

/// The DER DigestInfo of SHA-256(`message`): what an RSASSA-PKCS1-v1_5 signature with SHA-256 signs.
pub fn sha256_digest_info(message: &[u8]) -> [u8; SHA256_DIGEST_INFO_LEN] {
    let mut out = [0u8; SHA256_DIGEST_INFO_LEN];
    out[..19].copy_from_slice(&SHA256_DIGEST_INFO_PREFIX);
    out[19..].copy_from_slice(&Sha256::digest(message));
    out
}

/// EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2 step 5): `00 01 FF…FF 00 ‖ T` to `k` bytes, with at least
/// 8 bytes of `FF`. Used for the HPKI ISO style, where the card applies the raw RSA operation to
/// whatever block it receives (JAHIS C.6.1).
pub fn pkcs1_v15_pad(digest_info: &[u8], k: usize) -> Result<Vec<u8>> {
    if digest_info.len() + 11 > k {
        return Err(Error::InvalidCommand(
            "DigestInfo too long for the RSA modulus",
        ));
    }
    let mut block = Vec::with_capacity(k);
    block.extend_from_slice(&[0x00, 0x01]);
    block.resize(k - digest_info.len() - 1, 0xFF);
    block.push(0x00);
    block.extend_from_slice(digest_info);
    Ok(block)
}

/// Size in bytes of the RSA modulus in `certificate` (DER), which is the length of every signature
/// the matching private key makes.
pub fn rsa_modulus_len(certificate: &[u8]) -> Result<usize> {
    let (_, cert) = X509Certificate::from_der(certificate)
        .map_err(|_| Error::Malformed("certificate is not valid DER X.509"))?;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let significant = rsa.modulus.iter().skip_while(|b| **b == 0).count();
            if significant == 0 {
                Err(Error::Malformed("certificate has an empty RSA modulus"))
            } else {
                Ok(significant)
            }
        }
        _ => Err(Error::Malformed("certificate key is not RSA")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_of_abc() {
        let di = sha256_digest_info(b"abc");
        assert_eq!(di[..19], SHA256_DIGEST_INFO_PREFIX);
        // FIPS 180-2 example: SHA-256("abc") starts with ba7816bf.
        assert_eq!(di[19..23], [0xBA, 0x78, 0x16, 0xBF]);
    }

    #[test]
    fn padding_layout() {
        let di = sha256_digest_info(b"x");
        let block = pkcs1_v15_pad(&di, 256).unwrap();
        assert_eq!(block.len(), 256);
        assert_eq!(block[..2], [0x00, 0x01]);
        assert!(block[2..256 - 52].iter().all(|b| *b == 0xFF));
        assert_eq!(block[256 - 52], 0x00);
        assert_eq!(block[256 - 51..], di);
        assert!(pkcs1_v15_pad(&di, 61).is_err());
        assert_eq!(pkcs1_v15_pad(&di, 62).unwrap().len(), 62);
    }

    #[test]
    fn modulus_of_garbage_is_an_error() {
        assert!(matches!(
            rsa_modulus_len(&[0x30, 0x00]),
            Err(Error::Malformed(_))
        ));
    }
}
