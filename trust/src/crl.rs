//! CRLs as an operator registers them: read their fields, and check one before it replaces the
//! CRL in force (issuer, signature, cRLSign, freshness, no rollback).

use openssl::x509::{X509, X509Crl};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// What a CRL says about itself (read, not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The issuing CA (RFC 4514-style).
    pub issuer: String,
    /// The issuer Name, DER.
    pub issuer_der: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: Option<i64>,
    /// cRLNumber, big-endian bytes without leading zeros.
    pub number: Option<Vec<u8>>,
    /// Number of revoked certificates listed.
    pub revoked: usize,
}

/// Why a CRL cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Not a DER X.509 CRL.
    #[error("not a valid CRL: {0}")]
    Malformed(String),
    /// Issued by another CA than the one it is registered for.
    #[error("the CRL was issued by {found}, not by {expected}")]
    WrongIssuer {
        /// The CA it is registered for.
        expected: String,
        /// The CRL's issuer.
        found: String,
    },
    /// The signature does not verify with the issuer's key.
    #[error("the CRL's signature does not verify with the key of {issuer}")]
    BadSignature {
        /// The CA.
        issuer: String,
    },
    /// The issuer's keyUsage does not allow CRL signing.
    #[error("{issuer} may not sign CRLs (keyUsage without cRLSign)")]
    NotCrlSigner {
        /// The CA.
        issuer: String,
    },
    /// Past its nextUpdate already.
    #[error("the CRL expired: its nextUpdate {next_update} (Unix time) has passed; fetch a current one from the CA")]
    Stale {
        /// nextUpdate, Unix seconds.
        next_update: i64,
    },
    /// No cRLNumber (RFC 5280 §5.2.3: conforming CRL issuers MUST include it), so a newer CRL cannot
    /// be told from a replayed older one.
    #[error("the CRL of {issuer} has no cRLNumber, so a newer CRL cannot be told from an older one")]
    NoNumber {
        /// The CA.
        issuer: String,
    },
    /// No nextUpdate: freshness cannot be judged.
    #[error("the CRL has no nextUpdate, so its freshness cannot be judged")]
    NoNextUpdate,
    /// thisUpdate in the future.
    #[error("the CRL is not valid yet (thisUpdate {this_update}, Unix time)")]
    NotYetValid {
        /// thisUpdate, Unix seconds.
        this_update: i64,
    },
    /// Older than the CRL in force (rollback).
    #[error("the CRL is older than the one in force (issued {found}, in force since {current}, Unix time); refusing a rollback")]
    Older {
        /// thisUpdate of the offered CRL.
        found: i64,
        /// thisUpdate of the CRL in force.
        current: i64,
    },
}

/// Reads a DER CRL's fields.
pub fn inspect_crl(der: &[u8]) -> Result<CrlInfo, CrlError> {
    let crl = match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => crl,
        Ok(_) => return Err(CrlError::Malformed("trailing bytes after the CRL".into())),
        Err(e) => return Err(CrlError::Malformed(e.to_string())),
    };
    let number = crl.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        ParsedExtension::CRLNumber(n) => Some(n.to_bytes_be()),
        _ => None,
    });
    Ok(CrlInfo {
        issuer: crl.issuer().to_string(),
        issuer_der: crl.issuer().as_raw().to_vec(),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        number,
        revoked: crl.iter_revoked_certificates().count(),
    })
}

/// Checks that `crl` is a current CRL issued and signed by `issuer` (a CA certificate, DER) at
/// `at_unix`.
pub fn check_crl(crl: &[u8], issuer: &[u8], at_unix: i64) -> Result<CrlInfo, CrlError> {
    let info = inspect_crl(crl)?;
    let (_, ca) = X509Certificate::from_der(issuer).map_err(|e| CrlError::Malformed(format!("issuer certificate: {e}")))?;
    if ca.subject().as_raw() != info.issuer_der.as_slice() {
        return Err(CrlError::WrongIssuer { expected: ca.subject().to_string(), found: info.issuer });
    }
    if let Ok(Some(ku)) = ca.key_usage()
        && !ku.value.crl_sign()
    {
        return Err(CrlError::NotCrlSigner { issuer: info.issuer });
    }
    let key = X509::from_der(issuer)
        .and_then(|c| c.public_key())
        .map_err(|e| CrlError::Malformed(format!("issuer key: {e}")))?;
    let signed = X509Crl::from_der(crl)
        .and_then(|c| c.verify(&key))
        .map_err(|_| CrlError::BadSignature { issuer: info.issuer.clone() })?;
    if !signed {
        return Err(CrlError::BadSignature { issuer: info.issuer });
    }
    if info.number.is_none() {
        return Err(CrlError::NoNumber { issuer: info.issuer });
    }
    if info.this_update > at_unix {
        return Err(CrlError::NotYetValid { this_update: info.this_update });
    }
    match info.next_update {
        None => return Err(CrlError::NoNextUpdate),
        Some(next) if next <= at_unix => return Err(CrlError::Stale { next_update: next }),
        Some(_) => {}
    }
    Ok(info)
}

/// Whether `offered` may replace `current` (same issuer): it must not be older. With cRLNumbers on
/// both, the number decides (RFC 5280 §5.2.3: monotonically increasing); otherwise thisUpdate.
pub fn is_newer(offered: &CrlInfo, current: &CrlInfo) -> Result<(), CrlError> {
    let older = match (&offered.number, &current.number) {
        (Some(a), Some(b)) => (a.len(), a.as_slice()) < (b.len(), b.as_slice()),
        _ => offered.this_update < current.this_update,
    };
    if older {
        return Err(CrlError::Older { found: offered.this_update, current: current.this_update });
    }
    Ok(())
}
