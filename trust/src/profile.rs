//! Profile checks OpenSSL's verification does not make, run on a path it accepted (found by
//! measuring against x509-limbo, docs/x509-limbo.md).
//!
//! - the end entity is not a CA: no basicConstraints cA (a clinic or card CA certificate is never a
//!   client, whatever its keyUsage says) and no nameConstraints (RFC 5280 §4.2.1.10: CA certificates
//!   only);
//! - every issued certificate of the path is X.509 v3 (RFC 5280 §4.1.2.1: extensions need v3, and
//!   this profile relies on them);
//! - no DSA keys anywhere in the path: TLS 1.3 and the card path sign with RSA or ECDSA only, so a
//!   DSA certificate can never authenticate anyone here.

use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use crate::PathError;

const DSA: &str = "1.2.840.10040.4.1";

/// Checks `path` (end entity first, anchor last, DER); the first certificate as an end entity when
/// `end_entity`.
pub(crate) fn check_path(path: &[Vec<u8>], end_entity: bool) -> Result<(), PathError> {
    let anchor_depth = path.len().saturating_sub(1);
    for (depth, der) in path.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| PathError::Malformed { reason: e.to_string() })?;
        if depth == 0 && end_entity {
            check_end_entity(&cert)?;
        }
        // The anchor is the operator's choice (an old v1 root is still a root); what it issued is not.
        if depth < anchor_depth && cert.version() != X509Version::V3 {
            return Err(PathError::Malformed {
                reason: format!("the certificate at depth {depth} is X.509 v{}, not v3", cert.version().0 + 1),
            });
        }
        if cert.public_key().algorithm.algorithm.to_id_string() == DSA {
            return Err(PathError::WeakKey {
                reason: format!("DSA key at depth {depth}: only RSA (2048 bits or more) and EC keys are accepted"),
            });
        }
    }
    Ok(())
}

fn check_end_entity(cert: &X509Certificate<'_>) -> Result<(), PathError> {
    let basic = cert
        .basic_constraints()
        .map_err(|e| PathError::Malformed { reason: format!("basicConstraints: {e}") })?;
    if basic.is_some_and(|b| b.value.ca) {
        return Err(PathError::WrongPurpose {
            reason: "the certificate is a CA certificate (basicConstraints cA), not a client or card certificate".into(),
        });
    }
    let constraints = cert
        .name_constraints()
        .map_err(|e| PathError::Malformed { reason: format!("nameConstraints: {e}") })?;
    if constraints.is_some() {
        return Err(PathError::Invalid {
            reason: "nameConstraints on an end-entity certificate (RFC 5280 §4.2.1.10: CA certificates only)".into(),
        });
    }
    Ok(())
}
