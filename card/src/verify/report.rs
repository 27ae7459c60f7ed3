//! Step-by-step explanation of what the gateway concludes about a certificate, for
//! `gateway admin cert check --kind hpki|jpki FILE` ("why was this card refused?").
//!
//! Each step runs on its own where it can, so an operator sees every problem at once (an expired
//! certificate whose role is also wrong shows both); [`CertReport::verdict`] is exactly what
//! [`super::check_certificate`] decides.

use std::fmt;

use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use trust::Checks;

use super::{
    Policy, TrustStore, VerifiedCard, VerifyError, check_certificate, check_card_key, check_key_usage, check_not_signing, check_role, hex,
    map_path_error, parse_certificate, sha256_hex,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum StepName {
    /// DER / X.509 parsing.
    Parse,
    /// An authentication certificate, not the card's signing certificate.
    Purpose,
    /// Path to a configured anchor (validity periods and revocation left to their own steps).
    Chain,
    /// Validity period of the certificate at `now`.
    Validity,
    /// The certificate's policy OIDs against the anchor's allow-list.
    Policy,
    /// keyUsage digitalSignature (extendedKeyUsage is part of `Chain`).
    KeyUsage,
    /// HPKI hcRole.
    Role,
    /// Revocation per the anchor's policy.
    Revocation,
}

impl StepName {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        self.into()
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
    /// Key algorithm and size, policy OIDs and key usage, if it parsed.
    pub facts: Option<trust::CertFacts>,
    /// The checks in order.
    pub steps: Vec<Step>,
    /// The decision of [`super::check_certificate`] — the very function a login runs.
    pub verdict: Result<VerifiedCard, VerifyError>,
}

impl CertReport {
    /// Whether the verdict is "accepted".
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok()
    }
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
        if let Some(facts) = &self.facts {
            writeln!(f, "key          {}", facts.key)?;
            let policies = if facts.policies.is_empty() { "(none)".to_owned() } else { facts.policies.join(", ") };
            writeln!(f, "policies     {policies}")?;
            let usage = facts.key_usage.as_ref().map_or("(no keyUsage extension)".to_owned(), |u| u.join(", "));
            writeln!(f, "key usage    {usage}")?;
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
            Ok(v) => {
                writeln!(f, "anchor       {} (sha256 {})", v.anchor_subject, v.anchor_sha256)?;
                if v.revocation_checked {
                    for crl in &v.crls {
                        writeln!(
                            f,
                            "crl          {} (sha256 {}, thisUpdate {}, nextUpdate {})",
                            crl.issuer,
                            crl.sha256,
                            crl.this_update,
                            crl.next_update.map_or("-".to_owned(), |n| n.to_string())
                        )?;
                    }
                } else {
                    writeln!(f, "crl          none (anchor revocation policy none)")?;
                }
                write!(
                    f,
                    "verdict: accepted as {} card{}",
                    v.kind,
                    v.hc_role.as_deref().map(|r| format!(", role {r}")).unwrap_or_default()
                )
            }
            Err(e) => write!(f, "verdict: refused: {} ({e})", e.code()),
        }
    }
}

/// Explains, step by step, what [`super::check_certificate`] concludes about `certificate` (DER) with
/// optional `chain` certificates, for the anchors in `trust`, at `now`. The verdict *is*
/// `check_certificate`'s; the steps look at each concern on its own, so an operator sees every
/// problem at once (an expired certificate whose role is also wrong shows both).
pub fn explain(
    certificate: &[u8],
    chain: &[Vec<u8>],
    trust: &TrustStore,
    policy: &Policy,
    now: OffsetDateTime,
) -> CertReport {
    let verdict = check_certificate(certificate, chain, trust, policy, now);
    let mut steps = Vec::new();
    let step = |name, outcome, detail: String| Step { name, outcome, detail };
    let cert = match parse_certificate(certificate) {
        Ok(cert) => cert,
        Err(e) => {
            steps.push(step(StepName::Parse, Outcome::Fail(e), "not an X.509 certificate".into()));
            return CertReport { kind: trust.kind(), certificate: None, facts: None, steps, verdict };
        }
    };
    let summary = CertSummary::of(&cert, certificate);
    let facts = trust::cert_facts(certificate).ok();
    steps.push(step(StepName::Parse, Outcome::Pass, format!("{} chain certificate(s) offered", chain.len())));

    steps.push(match check_card_key(&cert).and_then(|()| check_not_signing(&cert)) {
        Ok(()) => step(StepName::Purpose, Outcome::Pass, "authentication certificate with an RSA card key".into()),
        Err(e) => step(StepName::Purpose, Outcome::Fail(e.clone()), e.to_string()),
    });

    let at = now.unix_timestamp();
    let paths = trust.paths();
    let card = trust::Purpose::CardAuth;
    let path_only = Checks { time: false, revocation: false, policies: false, end_entity: true };
    let path = paths.validate_with(certificate, chain, at, card, path_only).map_err(map_path_error);
    steps.push(match &path {
        Ok(p) => step(
            StepName::Chain,
            Outcome::Pass,
            format!("anchor {} (sha256 {}), {} intermediate(s)", p.anchor_subject, p.anchor_sha256, p.chain.len().saturating_sub(2)),
        ),
        Err(e) if trust.is_empty() => step(StepName::Chain, Outcome::Fail(e.clone()), format!("no {} anchors configured", trust.kind())),
        Err(e) => step(StepName::Chain, Outcome::Fail(e.clone()), e.to_string()),
    });

    steps.push(if now < summary.not_before {
        step(
            StepName::Validity,
            Outcome::Fail(VerifyError::NotYetValid { not_before: summary.not_before }),
            format!("not valid before {}", summary.not_before),
        )
    } else if now > summary.not_after {
        step(
            StepName::Validity,
            Outcome::Fail(VerifyError::Expired { not_after: summary.not_after }),
            format!("expired at {}", summary.not_after),
        )
    } else {
        step(StepName::Validity, Outcome::Pass, format!("valid until {}", summary.not_after))
    });

    steps.push(match &path {
        Err(_) => step(StepName::Policy, Outcome::Skip, "no path to an anchor".into()),
        Ok(p) => match paths.validate_with(certificate, chain, at, card, Checks { policies: true, ..path_only }) {
            Ok(_) => step(StepName::Policy, Outcome::Pass, format!("{:?} allowed under the anchor", p.policies)),
            Err(e) => {
                let e = map_path_error(e);
                step(StepName::Policy, Outcome::Fail(e.clone()), e.to_string())
            }
        },
    });

    steps.push(match check_key_usage(&cert) {
        Ok(()) => step(StepName::KeyUsage, Outcome::Pass, "digitalSignature".into()),
        Err(e) => step(StepName::KeyUsage, Outcome::Fail(e.clone()), e.to_string()),
    });

    steps.push(match trust.kind() {
        CardKind::Jpki => step(StepName::Role, Outcome::Skip, "JPKI certificates carry no role".into()),
        CardKind::Hpki => match check_role(&cert, policy) {
            Ok(Some(role)) => step(StepName::Role, Outcome::Pass, format!("hcRole {role:?}")),
            Ok(None) => step(
                StepName::Role,
                Outcome::Warn,
                "no hcRole; accepted because require_role = false (link by registration code only)".into(),
            ),
            Err(e) => step(StepName::Role, Outcome::Fail(e.clone()), format!("{e}; accepted roles: {:?}", policy.accepted_roles)),
        },
    });

    steps.push(match &path {
        Err(_) => step(StepName::Revocation, Outcome::Skip, "no path to an anchor".into()),
        Ok(_) => {
            let with_revocation = Checks { time: true, revocation: true, policies: false, end_entity: true };
            match paths.validate_with(certificate, chain, at, card, with_revocation).map_err(map_path_error) {
                Ok(v) if !v.revocation_checked => step(
                    StepName::Revocation,
                    Outcome::Warn,
                    "anchor policy none: revocation is not checked (audited on every use)".into(),
                ),
                Ok(v) => step(StepName::Revocation, Outcome::Pass, format!("not revoked; {} current CRL(s)", v.crls.len())),
                Err(e @ (VerifyError::Revoked | VerifyError::CrlStale { .. } | VerifyError::NoCrl | VerifyError::CrlInvalid { .. })) => {
                    step(StepName::Revocation, Outcome::Fail(e.clone()), e.to_string())
                }
                // The path does not validate at `now` for another reason (e.g. expired): look at
                // the CRLs without judging any validity period.
                Err(_) => match paths.validate_with(certificate, chain, at, card, Checks { revocation: true, ..path_only }) {
                    Ok(v) if !v.revocation_checked => step(
                        StepName::Revocation,
                        Outcome::Warn,
                        "anchor policy none: revocation is not checked (audited on every use)".into(),
                    ),
                    Ok(_) => step(StepName::Revocation, Outcome::Pass, "not revoked (validity periods not judged)".into()),
                    Err(e) => {
                        let e = map_path_error(e);
                        step(StepName::Revocation, Outcome::Fail(e.clone()), e.to_string())
                    }
                },
            }
        }
    });

    CertReport { kind: trust.kind(), certificate: Some(summary), facts, steps, verdict }
}
