//! Verification of a card login (feature `verify`; docs/design.md, card authentication): pure, no
//! I/O, time is a parameter.
//!
//! [`verify`] checks, in this order, and stops at the first failure:
//! 1. the client data: byte-identical to the canonical serialisation ([`crate::ClientData`]), `type`,
//!    `card`, `challenge`, `origin` as expected;
//! 2. the RSASSA-PKCS1-v1_5 / SHA-256 signature over those bytes with the certificate's key (aws-lc-rs);
//! 3. that the certificate is an *authentication* certificate: a signing certificate (keyUsage
//!    nonRepudiation without digitalSignature, or a signing policy OID) is refused with its own reason;
//! 4. the certificate path to the anchors configured for the card kind (the `trust` crate over
//!    OpenSSL), at `now`: validity, critical extensions (real cards mark certificatePolicies
//!    critical), key sizes, the anchor's revocation policy (a current CRL for every CA in the path, or
//!    an explicit `none`) and its allow-list of end-entity policy OIDs;
//! 5. key usage `digitalSignature` (RFC 5280 §4.2.1.3);
//! 6. for HPKI, the hcRole (docs/cards.md) against the accepted roles.
//!
//! The gateway links a card by the issuer (`issuer_sha256`), `serial_hex` and `spki_sha256` of
//! [`VerifiedCard::cert`]. [`explain`] tells an operator why, running the same [`check_certificate`].
//!
//! x509-parser only *reads* fields of a certificate.

mod anchors;
mod report;
mod role;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::CardKind;
use crate::client_data::{CLIENT_DATA_TYPE, ClientData};

pub use anchors::{
    Anchor, AnchorProblem, HPKI_AUTH_ARC, HPKI_SIGN_ARC, JPKI_AUTH_ARC, JPKI_SIGN_ARCS, Policies, PolicyPattern,
    Revocation, TrustStore, default_policies, is_signing_policy,
};
pub use trust::CrlUsed;
pub use report::{CertReport, CertSummary, Outcome, Step, StepName, explain};
pub use role::{HC_ROLE_OID, JHPKI_CODING_SCHEME_OID, hc_roles, parse_hc_role_value};

/// The role a doctor's HPKI certificate carries (MHLW CP table 7.1.2).
pub const MEDICAL_DOCTOR: &str = "Medical Doctor";
/// Most certificates accepted in `chain` (more is refused as malformed, before any parsing).
pub const MAX_CHAIN: usize = 4;
/// Largest accepted client data.
pub const MAX_CLIENT_DATA: usize = 1024;

/// What the agent returned and the browser forwarded to `/auth/card/finish`, decoded.
///
/// Deserialises from the wire form `{"client_data","signature","certificate","chain"}` (base64url
/// without padding, RFC 4648 §5), so the gateway can take it straight from the request body. Only
/// from an object: serde's derived struct form would also take an array of the values in field
/// order, a second spelling of the same body (found by the fuzz target `card_finish_json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct CardResponse {
    /// The signed client data bytes.
    pub client_data: Vec<u8>,
    /// RSASSA-PKCS1-v1_5 SHA-256 signature over `client_data`.
    pub signature: Vec<u8>,
    /// The authentication certificate (DER).
    pub certificate: Vec<u8>,
    /// Certificates the card offered (DER); used as intermediates only, never as anchors.
    pub chain: Vec<Vec<u8>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResponse {
    client_data: String,
    signature: String,
    certificate: String,
    #[serde(default)]
    chain: Vec<String>,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for CardResponse {
    type Error = String;
    fn try_from(object: serde_json::Map<String, serde_json::Value>) -> Result<CardResponse, String> {
        let w: WireResponse = serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| e.to_string())?;
        CardResponse::from_base64url(&w.client_data, &w.signature, &w.certificate, &w.chain).map_err(|e| e.to_string())
    }
}

impl CardResponse {
    /// Decodes the four base64url fields (no padding).
    pub fn from_base64url(
        client_data: &str,
        signature: &str,
        certificate: &str,
        chain: &[impl AsRef<str>],
    ) -> Result<CardResponse, VerifyError> {
        if chain.len() > MAX_CHAIN {
            return Err(VerifyError::CertMalformed {
                reason: format!("more than {MAX_CHAIN} chain certificates"),
            });
        }
        let b64 = |s: &str, what: &'static str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| VerifyError::ResponseMalformed { field: what })
        };
        Ok(CardResponse {
            client_data: b64(client_data, "client_data")?,
            signature: b64(signature, "signature")?,
            certificate: b64(certificate, "certificate")?,
            chain: chain
                .iter()
                .map(|c| b64(c.as_ref(), "chain"))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// What the gateway expects of this login.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The card kind the challenge was issued for.
    pub kind: CardKind,
    /// The challenge bytes the gateway issued (and has just consumed).
    pub challenge: &'a [u8],
    /// The gateway's public origin, e.g. `https://gateway.clinic.example:8443`.
    pub origin: &'a str,
}

/// Profile options (HPKI; JPKI certificates carry no role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// hcRole values accepted (exact, case-sensitive match). Default `["Medical Doctor"]`.
    pub accepted_roles: Vec<String>,
    /// Refuse HPKI certificates without any hcRole (docs/design.md §3.3). Default `true`. With `false`, a
    /// certificate without hcRole passes with `hc_role: None` (the caller audits it and links by code
    /// only); a certificate *with* a role outside `accepted_roles` is still refused.
    pub require_role: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            accepted_roles: vec![MEDICAL_DOCTOR.to_owned()],
            require_role: true,
        }
    }
}

/// A card login that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCard {
    /// The card kind.
    pub kind: CardKind,
    /// The certificate: `issuer_sha256` and `serial_hex` are the linking key (independent of DN
    /// formatting), `cert_sha256` the audit fingerprint. Its subject names the holder: display
    /// only, never logged or stored.
    pub cert: CertSummary,
    /// The accepted hcRole (HPKI), `None` for JPKI or an HPKI certificate without role under `require_role = false`.
    pub hc_role: Option<String>,
    /// `true` if the certificate was checked against a current CRL; `false` under the anchor policy
    /// `none`, which the caller must audit on every use (docs/design.md §3.3).
    pub revocation_checked: bool,
    /// Lowercase hex SHA-256 of the trust anchor certificate the path ended at.
    pub anchor_sha256: String,
    /// The anchor's subject.
    pub anchor_subject: String,
    /// The certificate's policy OIDs.
    pub policies: Vec<String>,
    /// The CRLs checked (empty under policy `none`).
    pub crls: Vec<CrlUsed>,
}

/// Why a card login was refused. [`VerifyError::code`] gives a stable reason for audit rows and for
/// choosing the user-facing ja/en message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A field of the finish request is not base64url.
    #[error("{field} is not unpadded base64url")]
    ResponseMalformed {
        /// The field.
        field: &'static str,
    },
    /// The client data is not the canonical JSON (keys, order, spacing, characters, length).
    #[error("client data is not canonical: {reason}")]
    ClientDataMalformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// `type` is not `ninsho.card.auth`.
    #[error("client data type is not {CLIENT_DATA_TYPE}")]
    TypeMismatch,
    /// `card` differs from the kind the challenge was issued for.
    #[error("client data card kind {found} differs from the expected {expected}")]
    CardKindMismatch {
        /// The kind the gateway expected.
        expected: CardKind,
        /// The kind in the client data.
        found: String,
    },
    /// `challenge` is not the issued challenge.
    #[error("challenge mismatch")]
    ChallengeMismatch,
    /// `origin` is not the gateway's origin.
    #[error("origin {found} differs from the expected {expected}")]
    OriginMismatch {
        /// The gateway's origin.
        expected: String,
        /// The origin in the client data.
        found: String,
    },
    /// The signature does not verify with the certificate's key (or the key is not RSA 2048–8192).
    #[error("signature does not verify with the certificate's key")]
    BadSignature,
    /// No path to a configured anchor of this card kind.
    #[error("certificate does not chain to a trusted anchor: {reason}")]
    UntrustedIssuer {
        /// Path-validation detail (webpki's error).
        reason: String,
    },
    /// The certificate (or a CA certificate in its path) has expired.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
    /// The certificate (or a CA certificate in its path) is not valid yet.
    #[error("certificate not valid before {not_before}")]
    NotYetValid {
        /// Its notBefore.
        not_before: OffsetDateTime,
    },
    /// A certificate in the path is on a CRL.
    #[error("certificate revoked")]
    Revoked,
    /// The certificate is the card's *signing* certificate (nonRepudiation, or a signing policy OID),
    /// not its authentication certificate.
    #[error("this is a signing certificate (nonRepudiation); a login needs the card's authentication certificate")]
    SigningCertificate,
    /// The certificate asserts no policy OID the anchor allows.
    #[error("certificate policies {found:?} are not allowed for login under this anchor")]
    PolicyNotAllowed {
        /// The certificate's policy OIDs.
        found: Vec<String>,
    },
    /// A key or signature below 112-bit security (e.g. RSA-1024).
    #[error("key too weak: {reason}")]
    WeakKey {
        /// Detail.
        reason: String,
    },
    /// The certificate's key is not one a card signs with (RSA, 2048–8192 bits).
    #[error("card keys are RSA of 2048 to 8192 bits; this certificate has {found}")]
    UnsupportedKey {
        /// What it has, e.g. `EC P-256 (256 bits)`.
        found: String,
    },
    /// The anchor the path ends at cannot be used (its certificate or a CRL does not parse).
    #[error("trust anchor unusable: {reason}")]
    AnchorUnusable {
        /// Detail.
        reason: String,
    },
    /// The applicable CRL is past its nextUpdate (fail-closed, RFC 5280 §6.3.3 (a)).
    #[error("CRL is stale (nextUpdate {next_update})")]
    CrlStale {
        /// The CRL's nextUpdate.
        next_update: OffsetDateTime,
    },
    /// The anchor's policy is `crl` but no CRL covers the certificate.
    #[error("no CRL covers the certificate")]
    NoCrl,
    /// A configured CRL cannot be used (bad signature, issuer not a CRL signer, unsupported form).
    #[error("CRL cannot be used: {reason}")]
    CrlInvalid {
        /// Detail.
        reason: String,
    },
    /// Key usage does not allow authentication.
    #[error("key usage: {reason}")]
    KeyUsage {
        /// Detail.
        reason: String,
    },
    /// An HPKI certificate without hcRole, and the policy requires one.
    #[error("certificate has no hcRole")]
    RoleMissing,
    /// An HPKI certificate whose hcRole is not accepted (e.g. `Pharmacist`).
    #[error("hcRole {role:?} is not accepted")]
    RoleNotAccepted {
        /// The role the certificate carries.
        role: String,
    },
    /// The certificate (or a chain certificate, or the hcRole extension) is not valid DER / X.509.
    #[error("certificate malformed: {reason}")]
    CertMalformed {
        /// Detail.
        reason: String,
    },
}

impl VerifyError {
    /// A stable snake_case reason code (for audit rows and message lookup).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::ResponseMalformed { .. } => "response_malformed",
            VerifyError::ClientDataMalformed { .. } => "client_data_malformed",
            VerifyError::TypeMismatch => "type_mismatch",
            VerifyError::CardKindMismatch { .. } => "card_kind_mismatch",
            VerifyError::ChallengeMismatch => "challenge_mismatch",
            VerifyError::OriginMismatch { .. } => "origin_mismatch",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::UntrustedIssuer { .. } => "untrusted_issuer",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::Revoked => "revoked",
            VerifyError::SigningCertificate => "signing_certificate",
            VerifyError::PolicyNotAllowed { .. } => "policy_not_allowed",
            VerifyError::WeakKey { .. } => "weak_key",
            VerifyError::AnchorUnusable { .. } => "anchor_unusable",
            VerifyError::UnsupportedKey { .. } => "unsupported_key",
            VerifyError::CrlStale { .. } => "crl_stale",
            VerifyError::NoCrl => "no_crl",
            VerifyError::CrlInvalid { .. } => "crl_invalid",
            VerifyError::KeyUsage { .. } => "key_usage",
            VerifyError::RoleMissing => "role_missing",
            VerifyError::RoleNotAccepted { .. } => "role_not_accepted",
            VerifyError::CertMalformed { .. } => "cert_malformed",
        }
    }
}

/// Verifies a card login completely (module documentation lists the steps).
///
/// `trust` must be the store for `expected.kind`. `now` is the gateway's clock.
pub fn verify(
    response: &CardResponse,
    expected: &Expected<'_>,
    trust: &TrustStore,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<VerifiedCard, VerifyError> {
    check_client_data(&response.client_data, expected)?;
    check_signature(
        &response.certificate,
        &response.client_data,
        &response.signature,
    )?;
    if trust.kind() != expected.kind {
        return Err(VerifyError::UntrustedIssuer {
            reason: format!("the trust store is for {} cards", trust.kind()),
        });
    }
    check_certificate(&response.certificate, &response.chain, trust, policy, now)
}

/// Step 1: the client data is the canonical serialisation of exactly what the gateway expects.
pub fn check_client_data(bytes: &[u8], expected: &Expected<'_>) -> Result<ClientData, VerifyError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(rename = "type")]
        ty: String,
        card: String,
        challenge: String,
        origin: String,
    }
    let malformed = |reason| VerifyError::ClientDataMalformed { reason };
    if bytes.len() > MAX_CLIENT_DATA {
        return Err(malformed("too long"));
    }
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|_| malformed("not a JSON object with exactly type, card, challenge, origin"))?;
    if raw.ty != CLIENT_DATA_TYPE {
        return Err(VerifyError::TypeMismatch);
    }
    let kind: CardKind = raw
        .card
        .parse()
        .map_err(|_| VerifyError::CardKindMismatch {
            expected: expected.kind,
            found: raw.card.clone(),
        })?;
    let data = ClientData::new(kind, &raw.challenge, &raw.origin)
        .map_err(|_| malformed("challenge or origin has characters outside the canonical form"))?;
    // One encoding only: key order, spacing and escapes must be exactly what the agent writes, so a
    // signature can never be reused over a differently-spelt but equal-meaning document.
    if data.to_bytes() != bytes {
        return Err(malformed(
            "not in canonical form (key order, spacing or escaping)",
        ));
    }
    if kind != expected.kind {
        return Err(VerifyError::CardKindMismatch {
            expected: expected.kind,
            found: raw.card,
        });
    }
    if data.challenge() != URL_SAFE_NO_PAD.encode(expected.challenge) {
        return Err(VerifyError::ChallengeMismatch);
    }
    if data.origin() != expected.origin {
        return Err(VerifyError::OriginMismatch {
            expected: expected.origin.to_owned(),
            found: data.origin().to_owned(),
        });
    }
    Ok(data)
}

/// Step 2: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2.2) over `message` with the certificate's
/// RSA key (2048–8192 bits).
pub fn check_signature(
    certificate: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let cert = parse_certificate(certificate)?;
    // The SPKI must be rsaEncryption (RFC 8017 A.1); aws-lc-rs then parses the RSAPublicKey itself.
    if cert.public_key().algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return Err(VerifyError::BadSignature);
    }
    let key = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(message, signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// Steps 3–5: path, validity and revocation, key usage, role. Independent of any client data, so the
/// admin `cert check` and tests can call it on a bare certificate.
pub fn check_certificate(
    certificate: &[u8],
    chain: &[Vec<u8>],
    trust: &TrustStore,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<VerifiedCard, VerifyError> {
    if chain.len() > MAX_CHAIN {
        return Err(VerifyError::CertMalformed {
            reason: format!("more than {MAX_CHAIN} chain certificates"),
        });
    }
    let cert = parse_certificate(certificate)?;
    check_card_key(&cert)?;
    check_not_signing(&cert)?;
    let path = trust
        .paths()
        .validate(certificate, chain, now.unix_timestamp(), trust::Purpose::CardAuth)
        .map_err(map_path_error)?;
    check_key_usage(&cert)?;
    let hc_role = match trust.kind() {
        CardKind::Jpki => None,
        CardKind::Hpki => check_role(&cert, policy)?,
    };
    Ok(VerifiedCard {
        kind: trust.kind(),
        cert: CertSummary::of(&cert, certificate),
        hc_role,
        revocation_checked: path.revocation_checked,
        anchor_sha256: path.anchor_sha256,
        anchor_subject: path.anchor_subject,
        policies: path.policies,
        crls: path.crls,
    })
}

/// The key must be one [`check_signature`] can verify: RSA of 2048 to 8192 bits, as cards have.
/// (Smaller RSA keys are refused by path validation as too weak, with their own reason.)
fn check_card_key(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() <= 8192 => Ok(()),
        Ok(PublicKey::RSA(rsa)) => Err(VerifyError::UnsupportedKey { found: format!("RSA {}", rsa.key_size()) }),
        Ok(PublicKey::EC(ec)) => Err(VerifyError::UnsupportedKey { found: format!("an EC key ({} bits)", ec.key_size()) }),
        Ok(_) => Err(VerifyError::UnsupportedKey { found: "a key of another algorithm".into() }),
        Err(e) => Err(VerifyError::CertMalformed { reason: format!("public key: {e}") }),
    }
}

/// A card's signing certificate says what it is for with keyUsage nonRepudiation (without
/// digitalSignature) or with a signing policy OID (docs/cards.md); it never proves a login.
fn check_not_signing(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let signing_ku = matches!(cert.key_usage(), Ok(Some(ku)) if ku.value.non_repudiation() && !ku.value.digital_signature());
    let signing_policy = cert.extensions().iter().any(|ext| match ext.parsed_extension() {
        ParsedExtension::CertificatePolicies(p) => p.iter().any(|i| is_signing_policy(&i.policy_id.to_id_string())),
        _ => false,
    });
    if signing_ku || signing_policy { Err(VerifyError::SigningCertificate) } else { Ok(()) }
}

/// Our reasons for the `trust` crate's.
pub(crate) fn map_path_error(e: trust::PathError) -> VerifyError {
    use trust::PathError as P;
    let at = |unix: i64| OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    match e {
        P::Expired { not_after, .. } => VerifyError::Expired { not_after: at(not_after) },
        P::NotYetValid { not_before, .. } => VerifyError::NotYetValid { not_before: at(not_before) },
        P::Revoked { .. } => VerifyError::Revoked,
        P::RevocationUnknown { .. } => VerifyError::NoCrl,
        P::CrlStale { next_update, .. } => VerifyError::CrlStale { next_update: at(next_update) },
        P::CrlInvalid { reason } => VerifyError::CrlInvalid { reason },
        P::PolicyNotAllowed { found } => VerifyError::PolicyNotAllowed { found },
        P::WeakKey { reason } => VerifyError::WeakKey { reason },
        P::WrongPurpose { reason } => VerifyError::KeyUsage { reason },
        P::AnchorUnusable { reason } => VerifyError::AnchorUnusable { reason },
        P::Malformed { reason } => VerifyError::CertMalformed { reason },
        P::UnhandledCriticalExtension { depth } => {
            VerifyError::CertMalformed { reason: format!("unsupported critical extension (depth {depth})") }
        }
        P::IsAnchor => VerifyError::UntrustedIssuer { reason: "the certificate is a trust anchor itself".into() },
        other => VerifyError::UntrustedIssuer { reason: other.to_string() },
    }
}

/// Key usage must include digitalSignature: the card proves possession by signing (RFC 5280
/// §4.2.1.3). The extension is required: an authentication certificate without it would also be
/// usable for anything else, and both card profiles carry it (docs/cards.md §1.5, §2.5). nonRepudiation
/// alone (the HPKI *signing* certificate) is refused, so the signing application's certificate cannot
/// stand in for the authentication one.
fn check_key_usage(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.digital_signature() => Ok(()),
        Ok(Some(_)) => Err(VerifyError::KeyUsage {
            reason: "digitalSignature is not set".into(),
        }),
        Ok(None) => Err(VerifyError::KeyUsage {
            reason: "the keyUsage extension is missing".into(),
        }),
        Err(_) => Err(VerifyError::CertMalformed {
            reason: "keyUsage extension is not valid DER (or appears twice)".into(),
        }),
    }
}

fn check_role(cert: &X509Certificate<'_>, policy: &Policy) -> Result<Option<String>, VerifyError> {
    let roles = hc_roles(cert)?;
    if let Some(role) = roles.iter().find(|r| policy.accepted_roles.contains(r)) {
        return Ok(Some(role.clone()));
    }
    match roles.into_iter().next() {
        Some(role) => Err(VerifyError::RoleNotAccepted { role }),
        None if policy.require_role => Err(VerifyError::RoleMissing),
        None => Ok(None),
    }
}

/// How a linked card is found: the lowercase hex SHA-256 of the certificate's DER issuer Name and
/// its serial, lowercase hex, as [`VerifiedCard::cert`] has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardKey {
    /// See [`CertSummary::issuer_sha256`].
    pub issuer_sha256: String,
    /// See [`CertSummary::serial_hex`].
    pub serial_hex: String,
}

/// The [`CardKey`] of a certificate *before* any check, so that a caller can look the linked card
/// up while the login is being verified; `None` if it does not parse. It decides nothing: only a
/// [`VerifiedCard`] whose key is equal may use what was looked up.
pub fn card_key(certificate: &[u8]) -> Option<CardKey> {
    let cert = parse_certificate(certificate).ok()?;
    Some(CardKey {
        issuer_sha256: sha256_hex(cert.issuer().as_raw()),
        serial_hex: hex(cert.raw_serial()),
    })
}

/// Parses one DER certificate; trailing bytes are an error.
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, VerifyError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(VerifyError::CertMalformed {
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(VerifyError::CertMalformed {
            reason: e.to_string(),
        }),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
