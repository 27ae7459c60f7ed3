//! The extensions of real HPKI and JPKI certificates that rcgen cannot write: certificatePolicies
//! (critical, with a CPS qualifier), directoryName and otherName alternative names, distribution
//! points naming a directory entry, the key-id-issuer-and-serial form of authorityKeyIdentifier, and
//! subjectKeyIdentifier on end-entity certificates. Test data only (see `crate::der`).

use rcgen::CustomExtension;
use sha2::{Digest, Sha256};

use super::name::Name;
use crate::PkiError;
use crate::der::{integer_content, oid, oid_content, seq, tlv};

/// id-qt-cps (RFC 5280 §4.2.1.4).
const CPS_QUALIFIER: &str = "1.3.6.1.5.5.7.2.1";

/// A GeneralName of the two forms these certificates use.
#[derive(Debug, Clone)]
pub(crate) enum GeneralName {
    /// directoryName [4] EXPLICIT Name.
    Dir(Name),
    /// uniformResourceIdentifier [6] IA5String.
    Uri(String),
}

impl GeneralName {
    fn der(&self) -> Result<Vec<u8>, PkiError> {
        Ok(match self {
            GeneralName::Dir(name) => tlv(0xA4, &name.der()?),
            GeneralName::Uri(uri) => tlv(0x86, uri.as_bytes()),
        })
    }
}

fn extension(arcs: &[u64], critical: bool, value: Vec<u8>) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(arcs, value);
    ext.set_criticality(critical);
    ext
}

/// Key identifier of a public key: the leftmost 160 bits of SHA-256 over the subjectPublicKey bits
/// (RFC 7093 §2 method 1; real CAs use SHA-1, which we keep out of new code).
pub(crate) fn key_id(public_key_bits: &[u8]) -> Vec<u8> {
    Sha256::digest(public_key_bits)[..20].to_vec()
}

/// subjectKeyIdentifier (2.5.29.14), non-critical.
pub(crate) fn subject_key_identifier(key_id: &[u8]) -> CustomExtension {
    extension(&[2, 5, 29, 14], false, tlv(0x04, key_id))
}

/// authorityKeyIdentifier (2.5.29.35), non-critical, in the form the MHLW and MEDIS CAs use: the
/// issuer's key id, plus the issuer's own issuer name and serial number.
pub(crate) fn authority_key_identifier(
    key_id: &[u8],
    issuer_issuer: &Name,
    issuer_serial: &[u8],
) -> Result<CustomExtension, PkiError> {
    let names = tlv(0xA1, &GeneralName::Dir(issuer_issuer.clone()).der()?);
    let value = seq(&[tlv(0x80, key_id), names, tlv(0x82, &integer_content(issuer_serial))]);
    Ok(extension(&[2, 5, 29, 35], false, value))
}

/// subjectAltName (2.5.29.17), non-critical: an optional directoryName, then otherNames with a
/// UTF8String value (JPKI signing certificates put personal data there).
pub(crate) fn subject_alt_name(dir: Option<&Name>, other: &[(&str, &str)]) -> Result<CustomExtension, PkiError> {
    let mut names = Vec::new();
    if let Some(name) = dir {
        names.push(GeneralName::Dir(name.clone()).der()?);
    }
    for (type_id, value) in other {
        // otherName [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
        names.push(tlv(0xA0, &[oid(type_id)?, tlv(0xA0, &tlv(0x0C, value.as_bytes()))].concat()));
    }
    Ok(extension(&[2, 5, 29, 17], false, seq(&names)))
}

/// cRLDistributionPoints (2.5.29.31), non-critical: one DistributionPoint per name, each a fullName
/// (as the MHLW and MEDIS CA certificates list a directory entry and a URL as two points).
pub(crate) fn crl_distribution_points(points: &[GeneralName]) -> Result<CustomExtension, PkiError> {
    let mut dps = Vec::new();
    for point in points {
        // DistributionPoint { distributionPoint [0] { fullName [0] GeneralNames } }
        dps.push(seq(&[tlv(0xA0, &tlv(0xA0, &point.der()?))]));
    }
    Ok(extension(&[2, 5, 29, 31], false, seq(&dps)))
}

/// certificatePolicies (2.5.29.32), **critical** as on real HPKI and JPKI certificates: one policy
/// with a CPS pointer qualifier.
pub(crate) fn certificate_policies(policy: &str, cps_uri: &str) -> Result<CustomExtension, PkiError> {
    // Fail on a bad OID here rather than in a parser later.
    oid_content(policy)?;
    let qualifier = seq(&[oid(CPS_QUALIFIER)?, tlv(0x16, cps_uri.as_bytes())]);
    let info = seq(&[oid(policy)?, seq(&[qualifier])]);
    Ok(extension(&[2, 5, 29, 32], true, seq(&[info])))
}
