//! Loading the simulator's certificates and keys from a directory of PEM files.
//!
//! Layout (the gateway's `demo` command writes exactly this):
//!
//! | file | content | required | JPKI | HPKI |
//! |---|---|---|---|---|
//! | `auth-cert.pem` | `CERTIFICATE`, the authentication certificate | yes | EF 000A | auth AP EF 0016 |
//! | `auth-key.pem` | `PRIVATE KEY` (PKCS#8), its RSA key (2048 bits) | yes | EF 0017 | auth AP EF 000C |
//! | `ca-cert.pem` | `CERTIFICATE`, the issuing CA | JPKI only | EF 000B | not stored |
//! | `sign-cert.pem` + `sign-key.pem` | signing certificate and key | no (both or neither) | EF 0001 / 001A | signature AP EF 0016 / 000C |
//! | `sign-ca-cert.pem` | `CERTIFICATE`, the signing CA | no | EF 0002 | not stored |

use std::path::{Path, PathBuf};

use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePrivateKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::sim::card::Profile;

/// File names inside the simulator's directory.
pub mod names {
    /// Authentication certificate.
    pub const AUTH_CERT: &str = "auth-cert.pem";
    /// Authentication private key (PKCS#8).
    pub const AUTH_KEY: &str = "auth-key.pem";
    /// Issuing CA of the authentication certificate (JPKI EF 000B).
    pub const CA_CERT: &str = "ca-cert.pem";
    /// Signing certificate (optional).
    pub const SIGN_CERT: &str = "sign-cert.pem";
    /// Signing private key (optional, with the signing certificate).
    pub const SIGN_KEY: &str = "sign-key.pem";
    /// Signing CA (optional, JPKI EF 0002).
    pub const SIGN_CA_CERT: &str = "sign-ca-cert.pem";
}

/// Why a simulator directory could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// A required file is missing.
    #[error("{0}: required file missing")]
    Missing(PathBuf),
    /// A file is not the PEM it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} is not the private key of {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
}

/// Certificates (DER) and keys of one simulated card.
pub struct SimFiles {
    /// Authentication certificate.
    pub auth_cert: Vec<u8>,
    /// Authentication key.
    pub auth_key: RsaPrivateKey,
    /// Issuing CA certificate (JPKI only).
    pub ca_cert: Option<Vec<u8>>,
    /// Signing certificate and key.
    pub sign: Option<(Vec<u8>, RsaPrivateKey)>,
    /// Signing CA certificate.
    pub sign_ca_cert: Option<Vec<u8>>,
}

impl SimFiles {
    /// Loads `dir` for the given card profile (see the module documentation for the layout).
    pub fn load(dir: &Path, profile: Profile) -> Result<SimFiles, FilesError> {
        let path = |name: &str| dir.join(name);
        let auth_cert = read_cert(&path(names::AUTH_CERT))?
            .ok_or(FilesError::Missing(path(names::AUTH_CERT)))?;
        let auth_key =
            read_key(&path(names::AUTH_KEY))?.ok_or(FilesError::Missing(path(names::AUTH_KEY)))?;
        check_pair(
            &auth_cert,
            &auth_key,
            &path(names::AUTH_CERT),
            &path(names::AUTH_KEY),
        )?;
        let ca_cert = match profile {
            Profile::Jpki => Some(
                read_cert(&path(names::CA_CERT))?
                    .ok_or(FilesError::Missing(path(names::CA_CERT)))?,
            ),
            Profile::Hpki(_) => None,
        };
        let sign = match (
            read_cert(&path(names::SIGN_CERT))?,
            read_key(&path(names::SIGN_KEY))?,
        ) {
            (Some(cert), Some(key)) => {
                check_pair(&cert, &key, &path(names::SIGN_CERT), &path(names::SIGN_KEY))?;
                Some((cert, key))
            }
            (None, None) => None,
            (Some(_), None) => return Err(FilesError::Missing(path(names::SIGN_KEY))),
            (None, Some(_)) => return Err(FilesError::Missing(path(names::SIGN_CERT))),
        };
        let sign_ca_cert = read_cert(&path(names::SIGN_CA_CERT))?;
        Ok(SimFiles {
            auth_cert,
            auth_key,
            ca_cert,
            sign,
            sign_ca_cert,
        })
    }
}

fn invalid(path: &Path, reason: impl ToString) -> FilesError {
    FilesError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// `Ok(None)` if the file does not exist.
fn read_cert(path: &Path) -> Result<Option<Vec<u8>>, FilesError> {
    if !path.exists() {
        return Ok(None);
    }
    let der = CertificateDer::from_pem_file(path).map_err(|e| invalid(path, e))?;
    X509Certificate::from_der(&der).map_err(|e| invalid(path, e))?;
    Ok(Some(der.to_vec()))
}

fn read_key(path: &Path) -> Result<Option<RsaPrivateKey>, FilesError> {
    if !path.exists() {
        return Ok(None);
    }
    let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| invalid(path, e))?;
    let key =
        RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der()).map_err(|e| invalid(path, e))?;
    Ok(Some(key))
}

/// The certificate's subjectPublicKey must be the key's RSAPublicKey (both DER, so bytes compare).
fn check_pair(
    cert: &[u8],
    key: &RsaPrivateKey,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), FilesError> {
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|e| invalid(cert_path, e))?;
    let public = key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(|e| invalid(key_path, e))?;
    if parsed.public_key().subject_public_key.data.as_ref() == public.as_bytes() {
        Ok(())
    } else {
        Err(FilesError::KeyMismatch {
            key: key_path.to_owned(),
            cert: cert_path.to_owned(),
        })
    }
}
