//! Trust anchors per card kind, each with its revocation policy, and path validation over them with
//! rustls-webpki.
//!
//! Each anchor is tried on its own, so that its own revocation policy applies to the path ending at it.
//! Under `crl`, two webpki passes run: the whole chain against every configured CRL that is
//! authoritative for a certificate (a revoked intermediate is caught when its issuer's CRL is
//! configured), and the end entity alone with "unknown status = deny" (its CRL must be configured).
//! Both enforce nextUpdate: a stale CRL fails closed (RFC 5280 §6.3.3 (a)(2) leaves it to local policy;
//! DESIGN §3.3 chooses fail-closed).

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeId,
    KeyPurposeIdIter, OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder,
    UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{VerifyError, der, offset_time, sha256_hex};
use crate::CardKind;

/// One configured anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The CA certificate (DER). It need not be self-signed: an issuing CA may be the anchor.
    pub certificate: Vec<u8>,
    /// How revocation is checked under it.
    pub revocation: Revocation,
}

/// An anchor's revocation policy (DESIGN §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// CRLs (DER), one per CA below or at the anchor that issues certificates in the path. The
    /// end entity's issuer's CRL is required; each must be current.
    Crl(Vec<Vec<u8>>),
    /// No revocation data (e.g. JPKI without verifier status); every use must be audited, which
    /// [`super::VerifiedCard::revocation_checked`] = `false` tells the caller.
    None,
}

/// Why an anchor configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The anchor certificate is not a usable X.509 v3 certificate.
    #[error("anchor {index}: certificate unusable: {reason}")]
    Certificate {
        /// Position in the list given to [`TrustStore::new`].
        index: usize,
        /// Detail.
        reason: String,
    },
    /// A CRL does not parse (or uses a form webpki does not support, e.g. a delta CRL).
    #[error("anchor {index}: CRL unusable: {reason}")]
    Crl {
        /// Position of the anchor.
        index: usize,
        /// Detail.
        reason: String,
    },
    /// Policy `crl` without any CRL.
    #[error("anchor {index}: revocation policy crl needs at least one CRL")]
    NoCrl {
        /// Position of the anchor.
        index: usize,
    },
}

struct ParsedAnchor {
    anchor: TrustAnchor<'static>,
    sha256: String,
    subject: String,
    crls: Option<Vec<CertRevocationList<'static>>>,
}

/// The anchors of one card kind, parsed once (build a new store when a CRL is refreshed).
pub struct TrustStore {
    kind: CardKind,
    anchors: Vec<ParsedAnchor>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("kind", &self.kind)
            .field(
                "anchors",
                &self.anchors.iter().map(|a| &a.sha256).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The outcome of a successful path validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathInfo {
    pub anchor_sha256: String,
    pub anchor_subject: String,
    pub revocation_checked: bool,
    /// Whether the anchor's policy is `crl`.
    pub crl_policy: bool,
    /// Number of intermediates in the verified path.
    pub intermediates: usize,
}

/// How revocation is treated in one validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevocationMode {
    /// Path only.
    Off,
    /// The anchor's policy, CRL freshness enforced.
    Policy,
    /// The anchor's policy, CRL freshness ignored (for explaining an out-of-validity certificate).
    PolicyIgnoringExpiry,
}

impl TrustStore {
    /// Parses the anchors for `kind`.
    pub fn new(
        kind: CardKind,
        anchors: impl IntoIterator<Item = Anchor>,
    ) -> Result<TrustStore, AnchorError> {
        let anchors = anchors
            .into_iter()
            .enumerate()
            .map(|(index, a)| {
                let cert = CertificateDer::from(a.certificate.as_slice());
                let anchor = webpki::anchor_from_trusted_cert(&cert)
                    .map_err(|e| AnchorError::Certificate {
                        index,
                        reason: format!("{e:?}"),
                    })?
                    .to_owned();
                let subject = match X509Certificate::from_der(&a.certificate) {
                    Ok((_, c)) => c.subject().to_string(),
                    Err(e) => {
                        return Err(AnchorError::Certificate {
                            index,
                            reason: e.to_string(),
                        });
                    }
                };
                let crls = match a.revocation {
                    Revocation::None => None,
                    Revocation::Crl(crls) if crls.is_empty() => {
                        return Err(AnchorError::NoCrl { index });
                    }
                    Revocation::Crl(crls) => Some(
                        crls.iter()
                            .map(|c| {
                                OwnedCertRevocationList::from_der(c)
                                    .map(CertRevocationList::from)
                                    .map_err(|e| AnchorError::Crl {
                                        index,
                                        reason: format!("{e:?}"),
                                    })
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                };
                Ok(ParsedAnchor {
                    anchor,
                    sha256: sha256_hex(&a.certificate),
                    subject,
                    crls,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustStore { kind, anchors })
    }

    /// The card kind these anchors vouch for.
    pub fn kind(&self) -> CardKind {
        self.kind
    }

    /// Number of anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// No anchors: every certificate is untrusted.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Validates `certificate` with `chain` as candidate intermediates at `time`, with revocation per
    /// the anchor's policy when `revocation` is set.
    pub(crate) fn validate(
        &self,
        certificate: &[u8],
        chain: &[Vec<u8>],
        time: UnixTime,
        revocation: bool,
    ) -> Result<PathInfo, VerifyError> {
        let mode = if revocation {
            RevocationMode::Policy
        } else {
            RevocationMode::Off
        };
        self.validate_with(certificate, chain, time, mode)
    }

    pub(crate) fn validate_with(
        &self,
        certificate: &[u8],
        chain: &[Vec<u8>],
        time: UnixTime,
        mode: RevocationMode,
    ) -> Result<PathInfo, VerifyError> {
        let ee_der = der(certificate);
        let ee = EndEntityCert::try_from(&ee_der).map_err(|e| VerifyError::CertMalformed {
            reason: format!("{e:?}"),
        })?;
        let intermediates: Vec<CertificateDer<'_>> = chain.iter().map(|c| der(c)).collect();
        let mut first_error: Option<webpki::Error> = None;
        for anchor in &self.anchors {
            match validate_one(&ee, &intermediates, anchor, time, mode) {
                Ok(info) => return Ok(info),
                // Keep the most telling error: anything beats "unknown issuer" from an unrelated anchor.
                Err(e) => {
                    if first_error
                        .as_ref()
                        .is_none_or(|prev| matches!(prev, webpki::Error::UnknownIssuer))
                    {
                        first_error = Some(e);
                    }
                }
            }
        }
        Err(map_error(
            first_error.unwrap_or(webpki::Error::UnknownIssuer),
        ))
    }
}

fn validate_one(
    ee: &EndEntityCert<'_>,
    intermediates: &[CertificateDer<'_>],
    anchor: &ParsedAnchor,
    time: UnixTime,
    mode: RevocationMode,
) -> Result<PathInfo, webpki::Error> {
    let anchors = std::slice::from_ref(&anchor.anchor);
    let run = |revocation| {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            anchors,
            intermediates,
            time,
            CardAuthEku,
            revocation,
            None,
        )
        .map(|path| path.intermediate_certificates().count())
    };
    let crls = match (&anchor.crls, mode) {
        (Some(crls), RevocationMode::Policy | RevocationMode::PolicyIgnoringExpiry) => Some(crls),
        _ => None,
    };
    let used = match crls {
        None => run(None)?,
        Some(crls) => {
            let refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
            let expiry = if mode == RevocationMode::Policy {
                ExpirationPolicy::Enforce
            } else {
                ExpirationPolicy::Ignore
            };
            let builder = || {
                RevocationOptionsBuilder::new(&refs)
                    .map(|b| b.with_expiration_policy(expiry))
                    .map_err(|_| webpki::Error::UnknownRevocationStatus)
            };
            // Every certificate with an authoritative CRL is checked …
            let chain_pass = builder()?
                .with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build();
            let used = run(Some(chain_pass))?;
            // … and the end entity must have one.
            let ee_pass = builder()?
                .with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .build();
            run(Some(ee_pass))?;
            used
        }
    };
    Ok(PathInfo {
        anchor_sha256: anchor.sha256.clone(),
        anchor_subject: anchor.subject.clone(),
        revocation_checked: crls.is_some(),
        crl_policy: anchor.crls.is_some(),
        intermediates: used,
    })
}

/// Extended key usage for card authentication (RFC 5280 §4.2.1.12): card authentication certificates
/// may carry no EKU at all (then any purpose is allowed), `id-kp-clientAuth`, or `anyExtendedKeyUsage`.
/// An EKU list without either (e.g. only `emailProtection`) restricts the key to other purposes and is
/// refused. webpki applies this to every certificate in the path, as RFC 5280 intends for CA EKUs in
/// practice (CA/B BR §7.1.2.2).
struct CardAuthEku;

/// 1.3.6.1.5.5.7.3.2, DER content octets.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// 2.5.29.37.0, DER content octets.
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

impl ExtendedKeyUsageValidator for CardAuthEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut empty = true;
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            empty = false;
            if id == KeyPurposeId::new(EKU_CLIENT_AUTH) || id == KeyPurposeId::new(EKU_ANY) {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if empty {
            Ok(())
        } else {
            Err(webpki::Error::RequiredEkuNotFoundContext(
                webpki::RequiredEkuNotFoundContext {
                    required: webpki::KeyUsage::client_auth(),
                    present,
                },
            ))
        }
    }
}

fn map_error(e: webpki::Error) -> VerifyError {
    use webpki::Error as W;
    match e {
        W::CertExpired { not_after, .. } => VerifyError::Expired {
            not_after: offset_time(not_after),
        },
        W::CertNotValidYet { not_before, .. } => VerifyError::NotYetValid {
            not_before: offset_time(not_before),
        },
        W::CertRevoked => VerifyError::Revoked,
        W::CrlExpired { next_update, .. } => VerifyError::CrlStale {
            next_update: offset_time(next_update),
        },
        W::UnknownRevocationStatus => VerifyError::NoCrl,
        W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => VerifyError::KeyUsage {
            reason: "extendedKeyUsage allows neither clientAuth nor anyExtendedKeyUsage",
        },
        W::InvalidCrlSignatureForPublicKey
        | W::IssuerNotCrlSigner
        | W::InvalidCrlNumber
        | W::UnsupportedCrlIssuingDistributionPoint
        | W::UnsupportedCrlVersion
        | W::UnsupportedDeltaCrl
        | W::UnsupportedIndirectCrl
        | W::UnsupportedRevocationReason
        | W::UnsupportedRevocationReasonsPartitioning
        | W::UnsupportedCrlSignatureAlgorithmContext(_)
        | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => VerifyError::CrlInvalid {
            reason: format!("{e:?}"),
        },
        W::BadDer
        | W::BadDerTime
        | W::TrailingData(_)
        | W::MalformedExtensions
        | W::UnsupportedCertVersion
        | W::UnsupportedCriticalExtension
        | W::ExtensionValueInvalid
        | W::InvalidSerialNumber
        | W::InvalidCertValidity => VerifyError::CertMalformed {
            reason: format!("{e:?}"),
        },
        other => VerifyError::UntrustedIssuer {
            reason: format!("{other:?}"),
        },
    }
}
