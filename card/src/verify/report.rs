//! Step-by-step explanation of what the gateway concludes about a certificate, for
//! `gateway admin cert check --kind hpki|jpki FILE` ("why was this card refused?").
//!
//! Each step runs on its own where it can, so an operator sees every problem at once (an expired
//! certificate whose role is also wrong shows both); [`CertReport::verdict`] is exactly what
//! [`super::check_certificate`] decides.

use std::fmt;

use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use super::anchors::RevocationMode;
use super::{
    Policy, TrustStore, VerifiedCard, VerifyError, check_certificate, check_key_usage, check_role,
    hex, parse_certificate, sha256_hex, unix_time,
};
use crate::CardKind;

/// Identifying fields of a certificate (no validation implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject DN (HPKI: contains the holder's name; display only, do not log or store).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Lowercase hex SHA-256 of the DER issuer Name.
    pub issuer_sha256: String,
    /// Serial, lowercase hex.
    pub serial_hex: String,
    /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// Lowercase hex SHA-256 of the certificate.
    pub cert_sha256: String,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl CertSummary {
    pub(crate) fn of(cert: &X509Certificate<'_>, der: &[u8]) -> CertSummary {
        CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            issuer_sha256: sha256_hex(cert.issuer().as_raw()),
            serial_hex: hex(cert.raw_serial()),
            spki_sha256: sha256_hex(cert.public_key().raw),
            cert_sha256: sha256_hex(der),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        }
    }
}

/// The checks [`explain`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    /// DER / X.509 parsing.
    Parse,
    /// Path to a configured anchor (evaluated inside the certificate's validity period).
    Chain,
    /// Validity period of the certificate at `now`.
    Validity,
    /// keyUsage digitalSignature (extendedKeyUsage is part of `Chain`).
    KeyUsage,
    /// HPKI hcRole.
    Role,
    /// Revocation per the anchor's policy.
    Revocation,
}

impl StepName {
    /// Lowercase name: `parse`, `chain`, `validity`, `key_usage`, `role`, `revocation`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Parse => "parse",
            StepName::Chain => "chain",
            StepName::Validity => "validity",
            StepName::KeyUsage => "key_usage",
            StepName::Role => "role",
            StepName::Revocation => "revocation",
        }
    }
}

/// A step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Passed with something the operator must know (e.g. revocation policy `none`).
    Warn,
    /// Failed with this error.
    Fail(VerifyError),
    /// Not applicable, or impossible to evaluate after an earlier failure.
    Skip,
}

/// One step of a [`CertReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Which check.
    pub name: StepName,
    /// Its result.
    pub outcome: Outcome,
    /// Operator-facing English detail.
    pub detail: String,
}

/// What [`explain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReport {
    /// The card kind checked against.
    pub kind: CardKind,
    /// Certificate fields, if it parsed.
    pub certificate: Option<CertSummary>,
    /// The checks in order.
    pub steps: Vec<Step>,
    /// The decision [`super::check_certificate`] takes.
    pub verdict: Result<VerifiedCard, VerifyError>,
}

impl fmt::Display for CertReport {
    /// Multi-line text for a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.certificate {
            writeln!(f, "subject      {}", c.subject)?;
            writeln!(f, "issuer       {}", c.issuer)?;
            writeln!(f, "serial       {}", c.serial_hex)?;
            writeln!(f, "sha256       {}", c.cert_sha256)?;
            writeln!(f, "spki sha256  {}", c.spki_sha256)?;
            writeln!(f, "validity     {} .. {}", c.not_before, c.not_after)?;
        }
        for step in &self.steps {
            let mark = match &step.outcome {
                Outcome::Pass => "ok  ".to_owned(),
                Outcome::Warn => "warn".to_owned(),
                Outcome::Skip => "skip".to_owned(),
                Outcome::Fail(e) => format!("FAIL ({})", e.code()),
            };
            writeln!(f, "{:<11} {mark}  {}", step.name.as_str(), step.detail)?;
        }
        match &self.verdict {
            Ok(v) => write!(
                f,
                "verdict: accepted as {} card{}",
                v.kind,
                v.hc_role
                    .as_deref()
                    .map(|r| format!(", role {r}"))
                    .unwrap_or_default()
            ),
            Err(e) => write!(f, "verdict: refused: {} ({e})", e.code()),
        }
    }
}

/// Explains, step by step, what [`super::check_certificate`] concludes about `certificate` (DER) with
/// optional `chain` certificates, for the anchors in `trust`, at `now`.
pub fn explain(
    certificate: &[u8],
    chain: &[Vec<u8>],
    trust: &TrustStore,
    policy: &Policy,
    now: OffsetDateTime,
) -> CertReport {
    let verdict = check_certificate(certificate, chain, trust, policy, now);
    let mut steps = Vec::new();
    let step = |name, outcome, detail: String| Step {
        name,
        outcome,
        detail,
    };
    let cert = match parse_certificate(certificate) {
        Ok(cert) => cert,
        Err(e) => {
            steps.push(step(
                StepName::Parse,
                Outcome::Fail(e),
                "not an X.509 certificate".into(),
            ));
            return CertReport {
                kind: trust.kind(),
                certificate: None,
                steps,
                verdict,
            };
        }
    };
    let summary = CertSummary::of(&cert, certificate);
    steps.push(step(
        StepName::Parse,
        Outcome::Pass,
        format!("{} chain certificate(s) offered", chain.len()),
    ));

    // Chain: at a time inside the certificate's own validity, so an expired certificate still shows
    // whether it would chain.
    let inside = now.clamp(summary.not_before, summary.not_after);
    let path = trust.validate_with(certificate, chain, unix_time(inside), RevocationMode::Off);
    steps.push(match &path {
        Ok(p) => step(
            StepName::Chain,
            Outcome::Pass,
            format!(
                "anchor {} (sha256 {}), {} intermediate(s){}",
                p.anchor_subject,
                p.anchor_sha256,
                p.intermediates,
                if inside == now {
                    String::new()
                } else {
                    format!(", evaluated at {inside}")
                }
            ),
        ),
        Err(e) if trust.is_empty() => step(
            StepName::Chain,
            Outcome::Fail(e.clone()),
            format!("no {} anchors configured", trust.kind()),
        ),
        Err(e) => step(StepName::Chain, Outcome::Fail(e.clone()), e.to_string()),
    });

    steps.push(if now < summary.not_before {
        step(
            StepName::Validity,
            Outcome::Fail(VerifyError::NotYetValid {
                not_before: summary.not_before,
            }),
            format!("not valid before {}", summary.not_before),
        )
    } else if now > summary.not_after {
        step(
            StepName::Validity,
            Outcome::Fail(VerifyError::Expired {
                not_after: summary.not_after,
            }),
            format!("expired at {}", summary.not_after),
        )
    } else {
        step(
            StepName::Validity,
            Outcome::Pass,
            format!("valid until {}", summary.not_after),
        )
    });

    steps.push(match check_key_usage(&cert) {
        Ok(()) => step(StepName::KeyUsage, Outcome::Pass, "digitalSignature".into()),
        Err(e) => step(StepName::KeyUsage, Outcome::Fail(e.clone()), e.to_string()),
    });

    steps.push(match trust.kind() {
        CardKind::Jpki => step(
            StepName::Role,
            Outcome::Skip,
            "JPKI certificates carry no role".into(),
        ),
        CardKind::Hpki => match check_role(&cert, policy) {
            Ok(Some(role)) => step(StepName::Role, Outcome::Pass, format!("hcRole {role:?}")),
            Ok(None) => step(
                StepName::Role,
                Outcome::Warn,
                "no hcRole; accepted because require_role = false (link by registration code only)"
                    .into(),
            ),
            Err(e) => step(
                StepName::Role,
                Outcome::Fail(e.clone()),
                format!("{e}; accepted roles: {:?}", policy.accepted_roles),
            ),
        },
    });

    steps.push(match &path {
        Err(_) => step(
            StepName::Revocation,
            Outcome::Skip,
            "no path to an anchor".into(),
        ),
        Ok(p) if !p.crl_policy => step(
            StepName::Revocation,
            Outcome::Warn,
            "anchor policy none: revocation is not checked (audited on every use)".into(),
        ),
        Ok(_) => {
            let at_now =
                trust.validate_with(certificate, chain, unix_time(now), RevocationMode::Policy);
            match at_now {
                Ok(_) => step(
                    StepName::Revocation,
                    Outcome::Pass,
                    "not revoked; CRLs current".into(),
                ),
                Err(
                    e @ (VerifyError::Revoked
                    | VerifyError::CrlStale { .. }
                    | VerifyError::NoCrl
                    | VerifyError::CrlInvalid { .. }),
                ) => step(
                    StepName::Revocation,
                    Outcome::Fail(e.clone()),
                    e.to_string(),
                ),
                // The path does not validate at `now` (e.g. expired): look at the CRLs at the
                // in-validity time, without judging their freshness.
                Err(_) => match trust.validate_with(
                    certificate,
                    chain,
                    unix_time(inside),
                    RevocationMode::PolicyIgnoringExpiry,
                ) {
                    Ok(_) => step(
                        StepName::Revocation,
                        Outcome::Pass,
                        format!("not revoked (evaluated at {inside}; CRL freshness not judged)"),
                    ),
                    Err(e) => step(
                        StepName::Revocation,
                        Outcome::Fail(e.clone()),
                        e.to_string(),
                    ),
                },
            }
        }
    });

    CertReport {
        kind: trust.kind(),
        certificate: Some(summary),
        steps,
        verdict,
    }
}
