//! Certificate path validation per trust anchor, for the TLS gate (clinic and service client
//! certificates) and for card logins (HPKI and My Number cards). Pure: no I/O, time is a parameter.
//!
//! Validation is OpenSSL's (`X509_verify_cert`, decision 0012): it handles what real HPKI and JPKI
//! certificates carry (critical certificatePolicies) and checks CRLs for every CA in the path, each
//! against its issuer. Around it this crate adds what is ours:
//!
//! - **one anchor, one set of rules.** Each anchor has its own OpenSSL store with only its own
//!   certificate and CRLs, so its revocation policy (`crl` or `none`) and its end-entity policy
//!   allow-list apply to paths ending at it and nowhere else; an anchor that cannot be used (a
//!   certificate or CRL that does not parse) refuses only the certificates under it;
//! - strict profile checks (`X509_V_FLAG_X509_STRICT`), at least 112-bit security for keys and
//!   signatures (auth level 2: RSA ≥ 2048 bits, no SHA-1), and under `crl` a current CRL for every CA
//!   in the path (`CRL_CHECK_ALL`; a CRL past nextUpdate refuses, RFC 5280 §6.3.3 (a));
//! - profile checks OpenSSL does not make (`profile.rs`): the end entity is no CA and carries no
//!   nameConstraints, issued certificates are v3, no DSA keys; every CRL has a cRLNumber;
//! - the purpose: TLS client certificates by OpenSSL's `sslclient` purpose, card authentication
//!   certificates by [`Purpose::CardAuth`]'s extended-key-usage rule;
//! - the end entity's certificatePolicies against the anchor's [`Policies`].
//!
//! x509-parser only *reads* fields (policies, validity, names) of certificates and CRLs.
//!
//! A store remembers its successful verdicts per presented chain while no certificate or CRL they
//! involve can change state (`verdicts.rs`, decision 0025).

mod crl;
mod ffi;
mod policy;
mod profile;
mod verdicts;

use std::sync::atomic::{AtomicU64, Ordering};

use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509Crl, X509PurposeId, X509StoreContext, X509VerifyResult};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use verdicts::{Verdicts, first_bound_from};

pub use crl::{CrlError, CrlInfo, check_crl, inspect_crl, is_newer};
pub use policy::{BadPolicy, Policies, PolicyPattern};

/// Most CA certificates a path may hold between the end entity and the anchor.
pub const MAX_INTERMEDIATES: usize = 4;

/// What the end-entity certificate must be fit for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A TLS client certificate: OpenSSL's `sslclient` purpose (keyUsage, if present, allows
    /// digitalSignature; extendedKeyUsage, if present, has clientAuth — on the CAs too).
    ClientTls,
    /// A smart-card authentication certificate: extendedKeyUsage, where present on any certificate of
    /// the path, has clientAuth or anyExtendedKeyUsage. keyUsage is the card verifier's to judge (it
    /// tells a signing certificate apart with its own reason).
    CardAuth,
    /// A document-signing certificate (an e-prescription signer's, like an HPKI signing
    /// certificate): the end entity's keyUsage must be present and allow nonRepudiation
    /// (contentCommitment). The HPKI profile defines no extendedKeyUsage for signing; it is not
    /// checked.
    DocumentSigning,
    /// A time-stamping authority's certificate (RFC 3161 §2.3): extendedKeyUsage present,
    /// critical, and timeStamping its only purpose; keyUsage, if present, allows only
    /// digitalSignature and nonRepudiation (OpenSSL's `timestampsign` purpose, and checked here).
    TimeStamping,
}

/// Which checks a validation runs. Logins and the TLS gate always run [`Checks::ALL`]; the others
/// let an operator's report show every problem of a certificate at once (an expired certificate
/// that is also revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Validity periods of certificates and CRLs at the given time.
    pub time: bool,
    /// The anchor's revocation policy.
    pub revocation: bool,
    /// The anchor's end-entity policy allow-list.
    pub policies: bool,
    /// That the certificate is an end entity (no CA, no nameConstraints). Off only to check that a
    /// CA certificate chains to an anchor (registering a sub-CA's CRL).
    pub end_entity: bool,
}

impl Checks {
    /// Everything.
    pub const ALL: Checks = Checks { time: true, revocation: true, policies: true, end_entity: true };
}

/// An anchor's revocation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// CRLs (DER) for the anchor and for CAs below it. Every CA in a path needs a current one.
    Crl(Vec<Vec<u8>>),
    /// No revocation data (e.g. JPKI without verifier status): the caller must audit each use, which
    /// [`Validated::revocation_checked`] = `false` tells it.
    None,
}

/// One configured anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSpec {
    /// The CA certificate (DER). It need not be self-signed: an issuing CA may be the anchor.
    pub certificate: Vec<u8>,
    /// Revocation policy under this anchor.
    pub revocation: Revocation,
    /// End-entity policies accepted under this anchor.
    pub policies: Policies,
}

/// An anchor that cannot be used, and why. It refuses the certificates under it and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorProblem {
    /// Position in the list given to [`TrustStore::new`].
    pub index: usize,
    /// Lowercase hex SHA-256 of the anchor certificate as given.
    pub anchor_sha256: String,
    /// What is wrong.
    pub reason: String,
}

/// A CRL that took part in a successful validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlUsed {
    /// The CA the CRL is for (RFC 4514-style string).
    pub issuer: String,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: Option<i64>,
    /// Lowercase hex SHA-256 of the CRL.
    pub sha256: String,
}

/// A successful validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Position of the anchor the path ends at.
    pub anchor_index: usize,
    /// Lowercase hex SHA-256 of that anchor certificate.
    pub anchor_sha256: String,
    /// Its subject.
    pub anchor_subject: String,
    /// The path, end entity first, anchor last (DER).
    pub chain: Vec<Vec<u8>>,
    /// `true` when the anchor's policy is `crl` (every CA in the path had a current CRL).
    pub revocation_checked: bool,
    /// The CRLs checked, one per CA in the path, when `revocation_checked`.
    pub crls: Vec<CrlUsed>,
    /// The end entity's certificatePolicies OIDs (dotted), in certificate order.
    pub policies: Vec<String>,
}

/// Why a path was refused. [`PathError::code`] is stable (audit rows, metrics, messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The certificate or an intermediate is not valid DER / X.509, or too many were given.
    #[error("certificate malformed: {reason}")]
    Malformed {
        /// Detail.
        reason: String,
    },
    /// No path to a configured anchor.
    #[error("no path to a trusted anchor: {reason}")]
    UnknownIssuer {
        /// Detail.
        reason: String,
    },
    /// A certificate of the path has expired.
    #[error("certificate at depth {depth} expired at {not_after} (Unix time)")]
    Expired {
        /// 0 = end entity.
        depth: u32,
        /// Its notAfter, Unix seconds.
        not_after: i64,
    },
    /// A certificate of the path is not valid yet.
    #[error("certificate at depth {depth} is not valid before {not_before} (Unix time)")]
    NotYetValid {
        /// 0 = end entity.
        depth: u32,
        /// Its notBefore, Unix seconds.
        not_before: i64,
    },
    /// A certificate of the path is on its issuer's CRL.
    #[error("certificate at depth {depth} is revoked")]
    Revoked {
        /// 0 = end entity.
        depth: u32,
    },
    /// The anchor's policy is `crl` and a CA of the path has no CRL.
    #[error("no CRL for {issuer}")]
    RevocationUnknown {
        /// The CA whose CRL is missing.
        issuer: String,
    },
    /// The applicable CRL is past its nextUpdate (fail closed).
    #[error("the CRL of {issuer} is past its nextUpdate {next_update} (Unix time)")]
    CrlStale {
        /// The CA whose CRL is stale.
        issuer: String,
        /// nextUpdate, Unix seconds (0 if unknown).
        next_update: i64,
    },
    /// A CRL cannot be used (bad signature, issuer without cRLSign, unsupported critical extension, …).
    #[error("CRL unusable: {reason}")]
    CrlInvalid {
        /// Detail.
        reason: String,
    },
    /// The end entity asserts no policy the anchor allows.
    #[error("certificate policies {found:?} are not allowed under this anchor")]
    PolicyNotAllowed {
        /// The end entity's policy OIDs.
        found: Vec<String>,
    },
    /// A key or signature below 112-bit security (e.g. RSA-1024, SHA-1).
    #[error("key or signature too weak: {reason}")]
    WeakKey {
        /// Detail.
        reason: String,
    },
    /// Key usage or extended key usage does not allow this purpose.
    #[error("not for this purpose: {reason}")]
    WrongPurpose {
        /// Detail.
        reason: String,
    },
    /// A certificate of the path has a critical extension nobody here understands.
    #[error("unsupported critical extension in the certificate at depth {depth}")]
    UnhandledCriticalExtension {
        /// 0 = end entity.
        depth: u32,
    },
    /// The certificate is itself a registered anchor (a CA certificate is not a client).
    #[error("the certificate is a trust anchor itself")]
    IsAnchor,
    /// The anchor the path ends at cannot be used.
    #[error("trust anchor unusable: {reason}")]
    AnchorUnusable {
        /// Detail.
        reason: String,
    },
    /// Any other path-validation failure (OpenSSL's reason).
    #[error("invalid certificate path: {reason}")]
    Invalid {
        /// Detail.
        reason: String,
    },
}

impl PathError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::Malformed { .. } => "cert_malformed",
            PathError::UnknownIssuer { .. } => "untrusted_issuer",
            PathError::Expired { .. } => "expired",
            PathError::NotYetValid { .. } => "not_yet_valid",
            PathError::Revoked { .. } => "revoked",
            PathError::RevocationUnknown { .. } => "revocation_unknown",
            PathError::CrlStale { .. } => "crl_stale",
            PathError::CrlInvalid { .. } => "crl_invalid",
            PathError::PolicyNotAllowed { .. } => "policy_not_allowed",
            PathError::WeakKey { .. } => "weak_key",
            PathError::WrongPurpose { .. } => "wrong_purpose",
            PathError::UnhandledCriticalExtension { .. } => "unsupported_critical_extension",
            PathError::IsAnchor => "is_anchor",
            PathError::AnchorUnusable { .. } => "anchor_unusable",
            PathError::Invalid { .. } => "invalid_path",
        }
    }

    /// "No path to this anchor" — the least telling outcome when several anchors were tried.
    fn is_no_path(&self) -> bool {
        matches!(self, PathError::UnknownIssuer { .. })
    }
}

struct ParsedCrl {
    issuer_der: Vec<u8>,
    info: CrlInfo,
    sha256: String,
}

/// What one validation run ends with: the path, or OpenSSL's error, its depth and the certificate.
type Outcome = Result<Vec<Vec<u8>>, (X509VerifyResult, u32, Option<Vec<u8>>)>;

struct UsableAnchor {
    store: X509Store,
    crls: Option<Vec<ParsedCrl>>,
}

struct Anchor {
    index: usize,
    sha256: String,
    der: Vec<u8>,
    /// DER subject Name, to find the anchors a path can end at; `None` if the certificate does not parse.
    subject_der: Option<Vec<u8>>,
    subject: String,
    policies: Policies,
    usable: Result<UsableAnchor, String>,
}

/// The anchors of one trust domain (clinic + service TLS clients, or one card kind), parsed once.
/// Build a new one when an anchor or CRL changes; share it in an `Arc`. It remembers its successful
/// validations per presented chain for as long as a fresh one would give the same answer
/// (`verdicts.rs`, decision 0025).
pub struct TrustStore {
    anchors: Vec<Anchor>,
    problems: Vec<AnchorProblem>,
    /// Every validity bound of the anchors' certificates and CRLs (notBefore, notAfter, thisUpdate,
    /// nextUpdate), Unix seconds: where a remembered verdict may stop holding.
    bounds: Vec<i64>,
    verdicts: Verdicts,
    full_validations: AtomicU64,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("anchors", &self.anchors.iter().map(|a| &a.sha256).collect::<Vec<_>>())
            .field("problems", &self.problems)
            .finish()
    }
}

impl TrustStore {
    /// Parses the anchors. One that cannot be used is recorded in [`TrustStore::problems`] and
    /// refuses only the paths that end at it.
    pub fn new(specs: Vec<AnchorSpec>) -> TrustStore {
        let mut problems = Vec::new();
        let mut bounds = Vec::new();
        let anchors = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let sha256 = sha256_hex(&spec.certificate);
                let (subject_der, subject) = match X509Certificate::from_der(&spec.certificate) {
                    Ok((_, c)) => {
                        bounds.extend(validity_bounds(&c));
                        (Some(c.subject().as_raw().to_vec()), c.subject().to_string())
                    }
                    Err(e) => (None, format!("(unparsable: {e})")),
                };
                let usable = build_anchor(&spec);
                match &usable {
                    Ok(UsableAnchor { crls: Some(crls), .. }) => {
                        bounds.extend(crls.iter().flat_map(|c| std::iter::once(c.info.this_update).chain(c.info.next_update)));
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        problems.push(AnchorProblem { index, anchor_sha256: sha256.clone(), reason: reason.clone() })
                    }
                }
                Anchor { index, sha256, der: spec.certificate, subject_der, subject, policies: spec.policies, usable }
            })
            .collect();
        TrustStore { anchors, problems, bounds, verdicts: Verdicts::default(), full_validations: AtomicU64::new(0) }
    }

    /// Anchors that cannot be used.
    pub fn problems(&self) -> &[AnchorProblem] {
        &self.problems
    }

    /// Number of anchors (usable or not).
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// No anchors at all: every certificate is untrusted.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Subjects (DER Names) of the anchors, e.g. for a TLS CertificateRequest's authorities.
    pub fn subjects(&self) -> impl Iterator<Item = &[u8]> {
        self.anchors.iter().filter_map(|a| a.subject_der.as_deref())
    }

    /// Validates `leaf` with `intermediates` as candidate CA certificates (never trusted on their
    /// own) at `at_unix`, against every anchor it may chain to.
    pub fn validate(&self, leaf: &[u8], intermediates: &[Vec<u8>], at_unix: i64, purpose: Purpose) -> Result<Validated, PathError> {
        self.validate_with(leaf, intermediates, at_unix, purpose, Checks::ALL)
    }

    /// [`TrustStore::validate`] with some checks left out (for explaining, never for deciding).
    pub fn validate_with(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        at_unix: i64,
        purpose: Purpose,
        checks: Checks,
    ) -> Result<Validated, PathError> {
        if intermediates.len() > MAX_INTERMEDIATES {
            return Err(PathError::Malformed { reason: format!("more than {MAX_INTERMEDIATES} intermediate certificates") });
        }
        let key = Verdicts::key(leaf, intermediates, purpose, checks);
        if let Some(remembered) = self.verdicts.get(&key, at_unix) {
            return Ok(remembered);
        }
        self.full_validations.fetch_add(1, Ordering::Relaxed);
        let mut bounds = Vec::with_capacity(2 * (1 + intermediates.len()));
        let validated = self.validate_fresh(leaf, intermediates, at_unix, purpose, checks, &mut bounds)?;
        let until = first_bound_from(at_unix, self.bounds.iter().copied().chain(bounds)).unwrap_or(i64::MAX);
        self.verdicts.put(key, at_unix, until, &validated);
        Ok(validated)
    }

    /// How many validations ran in full (the others were answered from remembered verdicts).
    pub fn full_validations(&self) -> u64 {
        self.full_validations.load(Ordering::Relaxed)
    }

    /// How many successful verdicts are remembered.
    pub fn remembered_verdicts(&self) -> usize {
        self.verdicts.len()
    }

    /// The validation itself; `bounds` receives the presented certificates' validity bounds.
    fn validate_fresh(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        at_unix: i64,
        purpose: Purpose,
        checks: Checks,
        bounds: &mut Vec<i64>,
    ) -> Result<Validated, PathError> {
        let leaf_parsed = parse(leaf, "certificate")?;
        bounds.extend(validity_bounds(&leaf_parsed));
        let leaf_x509 = X509::from_der(leaf).map_err(|e| PathError::Malformed { reason: e.to_string() })?;
        let mut issuers: Vec<Vec<u8>> = vec![leaf_parsed.issuer().as_raw().to_vec()];
        let mut chain = Stack::new().map_err(openssl_failure)?;
        for der in intermediates {
            let parsed = parse(der, "intermediate certificate")?;
            bounds.extend(validity_bounds(&parsed));
            issuers.push(parsed.issuer().as_raw().to_vec());
            let x = X509::from_der(der).map_err(|e| PathError::Malformed { reason: e.to_string() })?;
            chain.push(x).map_err(openssl_failure)?;
        }
        if self.anchors.iter().any(|a| a.der == leaf) {
            return Err(PathError::IsAnchor);
        }

        let mut best: Option<PathError> = None;
        for anchor in &self.anchors {
            if !anchor.subject_der.as_ref().is_some_and(|s| issuers.contains(s)) {
                continue;
            }
            match Self::validate_one_of(anchor, &leaf_x509, &leaf_parsed, &chain, at_unix, purpose, checks) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if best.as_ref().is_none_or(PathError::is_no_path) {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| PathError::UnknownIssuer {
            reason: format!("no configured anchor is named as the issuer of {}", leaf_parsed.issuer()),
        }))
    }

    /// One anchor's verdict on the path (see [`TrustStore::validate_with`]).
    fn validate_one_of(
        anchor: &Anchor,
        leaf: &X509,
        leaf_parsed: &X509Certificate<'_>,
        chain: &Stack<X509>,
        at_unix: i64,
        purpose: Purpose,
        checks: Checks,
    ) -> Result<Validated, PathError> {
        let usable = anchor.usable.as_ref().map_err(|reason| PathError::AnchorUnusable { reason: reason.clone() })?;
        let run = |with_revocation: bool| -> Result<Outcome, PathError> {
            let mut ctx = X509StoreContext::new().map_err(openssl_failure)?;
            ctx.init(&usable.store, leaf, chain, |ctx| {
                let param = ffi::ctx_param(ctx);
                if checks.time {
                    param.set_time(at_unix as libc::time_t);
                } else {
                    // OpenSSL looks at a set time before NO_CHECK_TIME, so only one is set.
                    param.set_flags(X509VerifyFlags::NO_CHECK_TIME)?;
                }
                if !with_revocation {
                    param.clear_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)?;
                }
                if purpose == Purpose::ClientTls {
                    param.set_purpose(X509PurposeId::SSL_CLIENT)?;
                }
                if purpose == Purpose::TimeStamping {
                    param.set_purpose(X509PurposeId::TIMESTAMP_SIGN)?;
                }
                if ctx.verify_cert()? {
                    let path: Vec<Vec<u8>> = match ctx.chain() {
                        Some(c) => c.iter().map(|x| x.to_der()).collect::<Result<_, _>>()?,
                        None => Vec::new(),
                    };
                    Ok(Ok(path))
                } else {
                    let current = ctx.current_cert().map(|c| c.to_der()).transpose()?;
                    Ok(Err((ctx.error(), ctx.error_depth(), current)))
                }
            })
            .map_err(openssl_failure)
        };
        let with_revocation = checks.revocation && usable.crls.is_some();
        let path = match run(with_revocation)? {
            Ok(path) => path,
            // The anchor is trusted by configuration, and RFC 5280 §6.1 does not check a trust
            // anchor's revocation: an issuing CA registered as the anchor has no issuer CRL of
            // ours, and a root's ARL may cover only the CAs below it (issuingDistributionPoint).
            // OpenSSL checks revocation from the end entity upwards and stops at the first
            // failure, so a missing or out-of-scope CRL *for the anchor itself* means every
            // certificate below it was checked; the rest of the validation then runs without CRLs.
            Err((result, _, Some(current)))
                if with_revocation
                    && matches!(
                        result.as_raw(),
                        openssl_sys::X509_V_ERR_UNABLE_TO_GET_CRL | openssl_sys::X509_V_ERR_DIFFERENT_CRL_SCOPE
                    )
                    && current == anchor.der =>
            {
                match run(false)? {
                    Ok(path) => path,
                    Err((result, depth, current)) => return Err(map_error(result, depth, current.as_deref(), usable)),
                }
            }
            Err((result, depth, current)) => return Err(map_error(result, depth, current.as_deref(), usable)),
        };
        if path.len() < 2 {
            return Err(PathError::Invalid { reason: "the path holds no anchor".into() });
        }
        if purpose == Purpose::CardAuth {
            for (depth, der) in path.iter().enumerate() {
                check_card_eku(der, depth)?;
            }
        }
        if purpose == Purpose::DocumentSigning {
            check_non_repudiation(leaf_parsed)?;
        }
        if purpose == Purpose::TimeStamping {
            check_time_stamping(leaf_parsed)?;
        }
        profile::check_path(&path, checks.end_entity)?;
        let policies = end_entity_policies(leaf_parsed)?;
        if checks.policies && !anchor.policies.allows(&policies) {
            return Err(PathError::PolicyNotAllowed { found: policies });
        }
        let revocation_checked = checks.revocation && usable.crls.is_some();
        let crls = match &usable.crls {
            _ if !revocation_checked => Vec::new(),
            None => Vec::new(),
            // One CRL per issued certificate of the path (all but the anchor), found by issuer name
            // as OpenSSL found it.
            Some(crls) => path[..path.len() - 1]
                .iter()
                .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c.issuer().as_raw().to_vec()))
                .filter_map(|issuer| crls.iter().filter(|c| c.issuer_der == issuer).max_by_key(|c| c.info.this_update))
                .map(|c| CrlUsed {
                    issuer: c.info.issuer.clone(),
                    this_update: c.info.this_update,
                    next_update: c.info.next_update,
                    sha256: c.sha256.clone(),
                })
                .collect(),
        };
        Ok(Validated {
            anchor_index: anchor.index,
            anchor_sha256: anchor.sha256.clone(),
            anchor_subject: anchor.subject.clone(),
            chain: path,
            revocation_checked,
            crls,
            policies,
        })
    }
}

fn build_anchor(spec: &AnchorSpec) -> Result<UsableAnchor, String> {
    let cert = X509::from_der(&spec.certificate).map_err(|e| format!("certificate unusable: {e}"))?;
    let (_, parsed) = X509Certificate::from_der(&spec.certificate).map_err(|e| format!("certificate unusable: {e}"))?;
    let self_issued = parsed.subject().as_raw() == parsed.issuer().as_raw();
    let fail = |e: openssl::error::ErrorStack| format!("OpenSSL store: {e}");
    let mut builder = X509StoreBuilder::new().map_err(fail)?;
    builder.add_cert(cert).map_err(fail)?;

    let mut flags = X509VerifyFlags::X509_STRICT;
    if !self_issued {
        // An issuing CA registered as the anchor: the path may end at it without its own issuer.
        flags |= X509VerifyFlags::PARTIAL_CHAIN;
    }
    let crls = match &spec.revocation {
        Revocation::None => None,
        Revocation::Crl(ders) => {
            flags |= X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL;
            let mut parsed_crls = Vec::with_capacity(ders.len());
            for der in ders {
                let info = inspect_crl(der).map_err(|e| format!("CRL unusable: {e}"))?;
                if info.number.is_none() {
                    return Err(format!("CRL unusable: {}", CrlError::NoNumber { issuer: info.issuer }));
                }
                let crl = X509Crl::from_der(der).map_err(|e| format!("CRL unusable: {e}"))?;
                ffi::store_add_crl(&mut builder, &crl).map_err(fail)?;
                parsed_crls.push(ParsedCrl { issuer_der: info.issuer_der.clone(), sha256: sha256_hex(der), info });
            }
            Some(parsed_crls)
        }
    };
    let mut param = X509VerifyParam::new().map_err(fail)?;
    param.set_flags(flags).map_err(fail)?;
    // 112-bit security: RSA/DSA/DH ≥ 2048 bits, ECC ≥ 224 bits, no SHA-1 or MD5 signatures.
    param.set_auth_level(2);
    param.set_depth((MAX_INTERMEDIATES + 1) as i32);
    builder.set_param(&param).map_err(fail)?;
    Ok(UsableAnchor { store: builder.build(), crls })
}

/// Maps OpenSSL's verification result to our reasons.
fn map_error(result: X509VerifyResult, depth: u32, current: Option<&[u8]>, anchor: &UsableAnchor) -> PathError {
    use openssl_sys as s;
    let current_parsed = current.and_then(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c));
    let issuer_of_current = || current_parsed.as_ref().map(|c| c.issuer().to_string()).unwrap_or_default();
    let reason = result.error_string().to_owned();
    match result.as_raw() {
        s::X509_V_ERR_CERT_HAS_EXPIRED => PathError::Expired {
            depth,
            not_after: current_parsed.as_ref().map_or(0, |c| c.validity().not_after.timestamp()),
        },
        s::X509_V_ERR_CERT_NOT_YET_VALID => PathError::NotYetValid {
            depth,
            not_before: current_parsed.as_ref().map_or(0, |c| c.validity().not_before.timestamp()),
        },
        s::X509_V_ERR_CERT_REVOKED => PathError::Revoked { depth },
        s::X509_V_ERR_UNABLE_TO_GET_CRL => PathError::RevocationUnknown { issuer: issuer_of_current() },
        s::X509_V_ERR_CRL_HAS_EXPIRED => {
            let issuer_der = current_parsed.as_ref().map(|c| c.issuer().as_raw().to_vec());
            let next_update = anchor
                .crls
                .iter()
                .flatten()
                .filter(|c| Some(&c.issuer_der) == issuer_der.as_ref())
                .filter_map(|c| c.info.next_update)
                .max()
                .unwrap_or(0);
            PathError::CrlStale { issuer: issuer_of_current(), next_update }
        }
        s::X509_V_ERR_CRL_NOT_YET_VALID
        | s::X509_V_ERR_CRL_SIGNATURE_FAILURE
        | s::X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE
        | s::X509_V_ERR_KEYUSAGE_NO_CRL_SIGN
        | s::X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER
        | s::X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION
        | s::X509_V_ERR_DIFFERENT_CRL_SCOPE
        | s::X509_V_ERR_CRL_PATH_VALIDATION_ERROR
        | s::X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD
        | s::X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD => PathError::CrlInvalid { reason },
        s::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | s::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | s::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | s::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | s::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        | s::X509_V_ERR_CERT_UNTRUSTED => PathError::UnknownIssuer { reason },
        s::X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION => PathError::UnhandledCriticalExtension { depth },
        s::X509_V_ERR_INVALID_PURPOSE | s::X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE => PathError::WrongPurpose { reason },
        s::X509_V_ERR_EE_KEY_TOO_SMALL | s::X509_V_ERR_CA_KEY_TOO_SMALL | s::X509_V_ERR_CA_MD_TOO_WEAK => {
            PathError::WeakKey { reason: format!("{reason} (depth {depth})") }
        }
        s::X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD | s::X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD => {
            PathError::Malformed { reason }
        }
        _ => PathError::Invalid { reason: format!("{reason} (depth {depth})") },
    }
}

/// extendedKeyUsage rule for card authentication (RFC 5280 §4.2.1.12): absent (any purpose),
/// or containing clientAuth or anyExtendedKeyUsage. Applied to every certificate of the path, as
/// CA EKUs are read in practice.
fn check_card_eku(der: &[u8], depth: usize) -> Result<(), PathError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PathError::Malformed { reason: e.to_string() })?;
    match cert.extended_key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(eku)) if eku.value.any || eku.value.client_auth => Ok(()),
        Ok(Some(_)) => Err(PathError::WrongPurpose {
            reason: format!("extendedKeyUsage at depth {depth} allows neither clientAuth nor anyExtendedKeyUsage"),
        }),
        Err(e) => Err(PathError::Malformed { reason: format!("extendedKeyUsage: {e}") }),
    }
}

/// A document-signing end entity: keyUsage present, nonRepudiation set.
fn check_non_repudiation(cert: &X509Certificate<'_>) -> Result<(), PathError> {
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.non_repudiation() => Ok(()),
        Ok(_) => Err(PathError::WrongPurpose { reason: "the signing certificate's keyUsage lacks nonRepudiation".into() }),
        Err(e) => Err(PathError::Malformed { reason: format!("keyUsage: {e}") }),
    }
}

/// A TSA's certificate (RFC 3161 §2.3): extendedKeyUsage critical with timeStamping alone.
/// OpenSSL's purpose check says the same; this one gives the reason.
fn check_time_stamping(cert: &X509Certificate<'_>) -> Result<(), PathError> {
    let wrong = |reason: &str| Err(PathError::WrongPurpose { reason: reason.to_owned() });
    match cert.extended_key_usage() {
        Ok(Some(eku)) => {
            let e = &eku.value;
            let only = e.time_stamping
                && !(e.any || e.server_auth || e.client_auth || e.code_signing || e.email_protection || e.ocsp_signing)
                && e.other.is_empty();
            if !eku.critical {
                return wrong("the time-stamping certificate's extendedKeyUsage is not critical");
            }
            if !only {
                return wrong("the time-stamping certificate's extendedKeyUsage is not timeStamping alone");
            }
        }
        Ok(None) => return wrong("the time-stamping certificate has no extendedKeyUsage timeStamping"),
        Err(e) => return Err(PathError::Malformed { reason: format!("extendedKeyUsage: {e}") }),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.flags & !0b11 != 0 => wrong("the time-stamping certificate's keyUsage allows more than signing"),
        Ok(_) => Ok(()),
        Err(e) => Err(PathError::Malformed { reason: format!("keyUsage: {e}") }),
    }
}

/// The end entity's certificatePolicies OIDs, dotted.
fn end_entity_policies(cert: &X509Certificate<'_>) -> Result<Vec<String>, PathError> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CertificatePolicies(policies) => {
                out.extend(policies.iter().map(|p| p.policy_id.to_id_string()));
            }
            ParsedExtension::ParseError { error } if ext.oid == x509_parser::oid_registry::OID_X509_EXT_CERTIFICATE_POLICIES => {
                return Err(PathError::Malformed { reason: format!("certificatePolicies: {error}") });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A certificate's notBefore and notAfter, Unix seconds.
fn validity_bounds(cert: &X509Certificate<'_>) -> [i64; 2] {
    [cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()]
}

/// Parses one DER certificate; trailing bytes are an error.
fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PathError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PathError::Malformed { reason: format!("trailing bytes after the {what}") }),
        Err(e) => Err(PathError::Malformed { reason: format!("{what}: {e}") }),
    }
}

fn openssl_failure(e: openssl::error::ErrorStack) -> PathError {
    PathError::Invalid { reason: format!("OpenSSL: {e}") }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Facts about a certificate that decide whether it can be registered or used, read (not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Subject (RFC 4514-style).
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// notBefore / notAfter, Unix seconds.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// e.g. `RSA 2048`, `EC P-256`.
    pub key: String,
    /// certificatePolicies OIDs.
    pub policies: Vec<String>,
    /// keyUsage bits by name (`digitalSignature`, `nonRepudiation`, …); `None` without the extension.
    pub key_usage: Option<Vec<&'static str>>,
}

/// Reads [`CertFacts`] of a DER certificate.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, PathError> {
    let cert = parse(der, "certificate")?;
    let key_usage = match cert.key_usage() {
        Ok(Some(ku)) => {
            let k = ku.value;
            let names = [
                (k.digital_signature(), "digitalSignature"),
                (k.non_repudiation(), "nonRepudiation"),
                (k.key_encipherment(), "keyEncipherment"),
                (k.data_encipherment(), "dataEncipherment"),
                (k.key_agreement(), "keyAgreement"),
                (k.key_cert_sign(), "keyCertSign"),
                (k.crl_sign(), "cRLSign"),
            ];
            Some(names.into_iter().filter(|(on, _)| *on).map(|(_, n)| n).collect())
        }
        Ok(None) => None,
        Err(e) => return Err(PathError::Malformed { reason: format!("keyUsage: {e}") }),
    };
    Ok(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        is_ca: cert.basic_constraints().ok().flatten().is_some_and(|b| b.value.ca),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key: key_description(&cert),
        policies: end_entity_policies(&cert)?,
        key_usage,
    })
}

fn key_description(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => {
            let curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| match o.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_default();
            format!("EC {curve} ({} bits)", ec.key_size())
        }
        Ok(other) => format!("{other:?}").split('(').next().unwrap_or("unknown").to_owned(),
        Err(_) => "unreadable".to_owned(),
    }
}

#[cfg(test)]
mod tests;
