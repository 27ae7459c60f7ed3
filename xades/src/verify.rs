//! Verification of a signed e-prescription document (docs/design.md §3.12), ours or another
//! implementation's: every check runs that can, and each failure is reported with a stable code.
//!
//! The time the certificate is judged at is `VerifyPolicy::at`, else the verified time-stamp's
//! genTime, else (the time-stamp failing, the verdict invalid anyway) the claimed SigningTime.
//! Revocation comes from the document's own CRLs: for each certificate of the path, its issuer's
//! CRL must verify under the issuer and speak for the time (thisUpdate at or after it, or the
//! time within thisUpdate–nextUpdate), and must not list the certificate as revoked at or before
//! the time — a CRL issued after signing is what proves the certificate was good when it signed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bergshamra_c14n::C14nMode;
use openssl::hash::MessageDigest;
use trust::{AnchorSpec, Checks, Policies, Purpose, Revocation, TrustStore};
use uppsala::{Document, NodeId};

use crate::xml::{self, DSIG_NS, XADES_NS, XADES141_NS};
use crate::{Check, Report, Verdict, VerifyPolicy};

/// How far a time-stamp may precede the claimed SigningTime (clock skew between the signer and
/// the TSA).
pub const TIME_STAMP_SKEW_SECS: i64 = 300;

const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";

/// Whether `signature` is an RSASSA-PKCS1-v1_5 signature of `digest` (already hashed with `md`)
/// under the SubjectPublicKeyInfo `spki`.
pub(crate) fn rsa_digest_verifies(spki: &[u8], md: MessageDigest, digest: &[u8], signature: &[u8]) -> bool {
    let run = || -> Result<bool, openssl::error::ErrorStack> {
        let key = openssl::pkey::PKey::public_key_from_der(spki)?;
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&key)?;
        ctx.verify_init()?;
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1)?;
        ctx.set_signature_md(openssl::md::Md::from_nid(md.type_()).ok_or_else(openssl::error::ErrorStack::get)?)?;
        ctx.verify(digest, signature)
    };
    run().unwrap_or(false)
}

struct Findings {
    checks: Vec<Check>,
}

impl Findings {
    fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check { name: name.into(), ok: true, code: String::new(), detail: detail.into() });
    }
    fn fail(&mut self, name: impl Into<String>, code: &str, detail: impl Into<String>) {
        self.checks.push(Check { name: name.into(), ok: false, code: code.to_owned(), detail: detail.into() });
    }
}

/// The parts of the signature the checks need.
struct Parts {
    signature: NodeId,
    signed_info: NodeId,
    signature_value: NodeId,
    certificate: Vec<u8>,
}

fn b64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.split_whitespace().collect::<String>()).ok()
}

fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp()).or_else(|| {
        // xs:dateTime without a zone: read as UTC.
        time::PrimitiveDateTime::parse(text, time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
            .ok()
            .map(|t| t.assume_utc().unix_timestamp())
    })
}

/// Verifies a signed e-prescription document and reports every check.
pub fn verify(document: &[u8], policy: &VerifyPolicy<'_>) -> Report {
    let mut c = Findings { checks: Vec::new() };
    let mut report = Report { verdict: Verdict::Invalid, checks: Vec::new(), signer_subject: None, hc_roles: Vec::new(), signing_time: None, timestamp_time: None };
    let doc = match xml::parse(document) {
        Ok(doc) => doc,
        Err(e) => {
            c.fail("structure", "not_xml", format!("not a well-formed document: {}", e.0));
            report.checks = c.checks;
            return report;
        }
    };
    let parts = match structure(&doc, &mut c) {
        Some(p) => p,
        None => {
            report.checks = c.checks;
            return report;
        }
    };
    let ids = match xml::ids(&doc) {
        Ok(ids) => ids,
        Err(dup) => {
            c.fail("structure", "duplicate_id", format!("the id {dup:?} is used twice: a reference to it is ambiguous"));
            report.checks = c.checks;
            return report;
        }
    };
    references(&doc, &parts, &ids, &mut c);
    signature_value(&doc, &parts, &mut c);
    let (_, cert) = match x509_parser::parse_x509_certificate(&parts.certificate) {
        Ok(x) => x,
        Err(e) => {
            c.fail("certificate", "cert_malformed", format!("the KeyInfo certificate does not parse: {e}"));
            report.checks = c.checks;
            return report;
        }
    };
    report.signer_subject = Some(cert.subject().to_string());
    let signing_time = signed_properties(&doc, &parts, &mut c);
    report.signing_time = signing_time;
    let timestamp = time_stamp(&doc, &parts, policy, signing_time, &mut c);
    report.timestamp_time = timestamp;
    let at = policy.at.or(timestamp).or(signing_time);
    certificate(&doc, &parts, &cert, policy, at, &mut c, &mut report.hc_roles);
    report.verdict = if c.checks.iter().all(|k| k.ok) { Verdict::Valid } else { Verdict::Invalid };
    report.checks = c.checks;
    report
}

/// One `Signature`, where the profile puts it; its parts.
fn structure(doc: &Document<'_>, c: &mut Findings) -> Option<Parts> {
    let fail = |c: &mut Findings, detail: &str| {
        c.fail("structure", "structure", detail);
        None
    };
    let root = doc.document_element()?;
    if !xml::is(doc, root, None, "Document") {
        return fail(c, "the document element is not Document");
    }
    let Some(prescription) = xml::only_child(doc, root, None, "Prescription") else {
        return fail(c, "Document must hold one Prescription");
    };
    let signatures = xml::all_named(doc, Some(DSIG_NS), "Signature");
    let [signature] = signatures.as_slice() else {
        return fail(c, &format!("the document holds {} XML signatures, not one", signatures.len()));
    };
    let parent = doc.parent(*signature);
    if parent.is_none_or(|p| !xml::is(doc, p, None, "PrescriptionSign") || doc.parent(p) != Some(prescription)) {
        return fail(c, "the signature is not in Prescription/PrescriptionSign");
    }
    let Some(signed_info) = xml::only_child(doc, *signature, Some(DSIG_NS), "SignedInfo") else {
        return fail(c, "the signature has no SignedInfo");
    };
    let Some(signature_value) = xml::only_child(doc, *signature, Some(DSIG_NS), "SignatureValue") else {
        return fail(c, "the signature has no SignatureValue");
    };
    let certificate = xml::only_child(doc, *signature, Some(DSIG_NS), "KeyInfo")
        .and_then(|k| xml::only_child(doc, k, Some(DSIG_NS), "X509Data"))
        .and_then(|d| xml::children_named(doc, d, Some(DSIG_NS), "X509Certificate").first().copied())
        .and_then(|x| b64(&xml::text(doc, x)));
    let Some(certificate) = certificate else {
        return fail(c, "KeyInfo holds no X509Certificate");
    };
    c.pass("structure", "one signature in Prescription/PrescriptionSign with SignedInfo, SignatureValue and the signer's certificate");
    Some(Parts { signature: *signature, signed_info, signature_value, certificate })
}

fn digest_method(uri: &str) -> Option<MessageDigest> {
    match uri {
        xml::SHA256 => Some(MessageDigest::sha256()),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Some(MessageDigest::sha384()),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Some(MessageDigest::sha512()),
        _ => None,
    }
}

/// Each Reference's digest, and that the three the profile requires are there.
fn references(doc: &Document<'_>, parts: &Parts, ids: &std::collections::HashMap<String, NodeId>, c: &mut Findings) {
    let mut covered = (false, false, false);
    for reference in xml::children_named(doc, parts.signed_info, Some(DSIG_NS), "Reference") {
        let uri = xml::attr(doc, reference, "URI").unwrap_or("");
        let name = format!("reference:{uri}");
        let Some(id) = uri.strip_prefix('#') else {
            c.fail(name, "unsupported_reference", "only same-document references by id (#…) are part of the profile");
            continue;
        };
        let Some(&target) = ids.get(id) else {
            c.fail(name, "broken_reference", format!("no element has the id {id:?}"));
            continue;
        };
        // Transforms: none (inclusive C14N 1.0), or exactly one canonicalisation.
        let transforms: Vec<NodeId> = xml::only_child(doc, reference, Some(DSIG_NS), "Transforms")
            .map(|t| xml::children_named(doc, t, Some(DSIG_NS), "Transform"))
            .unwrap_or_default();
        let (mode, prefixes) = match transforms.as_slice() {
            [] => (C14nMode::Inclusive, Vec::new()),
            [t] => {
                let Some(mode) = xml::attr(doc, *t, "Algorithm").and_then(xml::mode) else {
                    c.fail(name, "unsupported_transform", "a transform other than a canonicalisation");
                    continue;
                };
                let prefixes = xml::child_elements(doc, *t)
                    .into_iter()
                    .find_map(|n| xml::attr(doc, n, "PrefixList"))
                    .map(|l| l.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default();
                (mode, prefixes)
            }
            _ => {
                c.fail(name, "unsupported_transform", "more than one transform");
                continue;
            }
        };
        let method = xml::only_child(doc, reference, Some(DSIG_NS), "DigestMethod").and_then(|m| xml::attr(doc, m, "Algorithm"));
        let Some(md) = method.and_then(digest_method) else {
            c.fail(name, "weak_algorithm", format!("digest method {:?} is not SHA-256, SHA-384 or SHA-512", method.unwrap_or("")));
            continue;
        };
        let expected = xml::only_child(doc, reference, Some(DSIG_NS), "DigestValue").and_then(|v| b64(&xml::text(doc, v)));
        let actual = xml::canonical(doc, target, mode, &prefixes).ok().and_then(|bytes| openssl::hash::hash(md, &bytes).ok());
        match (expected, actual) {
            (Some(e), Some(a)) if e == a.as_ref() => c.pass(name, format!("digest matches ({})", mode.uri())),
            _ => {
                c.fail(name, "digest_mismatch", "the referenced element's digest is not the signed one: it was changed");
                continue;
            }
        }
        let in_signature = |n: NodeId| doc.ancestors(n).contains(&parts.signature);
        if xml::is(doc, target, None, "PrescriptionDocument") {
            covered.0 = true;
        } else if xml::is(doc, target, Some(DSIG_NS), "KeyInfo") && in_signature(target) {
            covered.1 = true;
        } else if xml::is(doc, target, Some(XADES_NS), "SignedProperties")
            && in_signature(target)
            && xml::attr(doc, reference, "Type") == Some(xml::SIGNED_PROPERTIES_TYPE)
        {
            covered.2 = true;
        }
    }
    for (done, what) in [(covered.0, "PrescriptionDocument"), (covered.1, "KeyInfo"), (covered.2, "SignedProperties")] {
        if done {
            c.pass(format!("signed:{what}"), format!("{what} is covered by a verified reference"));
        } else {
            c.fail(format!("signed:{what}"), "missing_reference", format!("no verified reference covers {what}"));
        }
    }
}

/// The signature value over the canonical SignedInfo, under the KeyInfo certificate.
fn signature_value(doc: &Document<'_>, parts: &Parts, c: &mut Findings) {
    let name = "signature_value";
    let c14n = xml::only_child(doc, parts.signed_info, Some(DSIG_NS), "CanonicalizationMethod").and_then(|m| xml::attr(doc, m, "Algorithm"));
    let Some(mode) = c14n.and_then(xml::mode) else {
        return c.fail(name, "unsupported_algorithm", format!("SignedInfo canonicalisation {:?} is not supported", c14n.unwrap_or("")));
    };
    let method = xml::only_child(doc, parts.signed_info, Some(DSIG_NS), "SignatureMethod").and_then(|m| xml::attr(doc, m, "Algorithm")).unwrap_or("");
    let md = match method {
        xml::RSA_SHA256 => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => MessageDigest::sha512(),
        RSA_SHA1 => return c.fail(name, "weak_algorithm", "RSA with SHA-1 is too weak"),
        other => return c.fail(name, "unsupported_algorithm", format!("signature method {other:?} is not supported")),
    };
    let prefixes: Vec<String> = xml::only_child(doc, parts.signed_info, Some(DSIG_NS), "CanonicalizationMethod")
        .and_then(|m| xml::child_elements(doc, m).into_iter().find_map(|n| xml::attr(doc, n, "PrefixList")))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let Some(value) = b64(&xml::text(doc, parts.signature_value)) else {
        return c.fail(name, "bad_signature", "SignatureValue is not base64");
    };
    let Ok(canonical) = xml::canonical(doc, parts.signed_info, mode, &prefixes) else {
        return c.fail(name, "bad_signature", "SignedInfo cannot be canonicalised");
    };
    let Ok(digest) = openssl::hash::hash(md, &canonical) else {
        return c.fail(name, "bad_signature", "hash failed");
    };
    let spki = x509_parser::parse_x509_certificate(&parts.certificate).map(|(_, c)| c.public_key().raw.to_vec()).unwrap_or_default();
    if rsa_digest_verifies(&spki, md, &digest, &value) {
        c.pass(name, "the signature over SignedInfo verifies under the KeyInfo certificate");
    } else {
        c.fail(name, "bad_signature", "the signature over SignedInfo does not verify under the KeyInfo certificate");
    }
}

/// The signature's QualifyingProperties.
fn qualifying_properties(doc: &Document<'_>, parts: &Parts) -> Option<NodeId> {
    xml::children_named(doc, parts.signature, Some(DSIG_NS), "Object")
        .into_iter()
        .find_map(|o| xml::only_child(doc, o, Some(XADES_NS), "QualifyingProperties"))
}

/// SigningCertificateV2 and SigningTime; the signing time if readable.
fn signed_properties(doc: &Document<'_>, parts: &Parts, c: &mut Findings) -> Option<i64> {
    let ssp = qualifying_properties(doc, parts)
        .and_then(|q| xml::only_child(doc, q, Some(XADES_NS), "SignedProperties"))
        .and_then(|p| xml::only_child(doc, p, Some(XADES_NS), "SignedSignatureProperties"));
    let Some(ssp) = ssp else {
        c.fail("signing_certificate", "structure", "no XAdES SignedSignatureProperties");
        return None;
    };
    // SigningCertificateV2 (or the v1 element) naming the KeyInfo certificate.
    let cert_digest = ["SigningCertificateV2", "SigningCertificate"]
        .iter()
        .find_map(|n| xml::only_child(doc, ssp, Some(XADES_NS), n))
        .and_then(|sc| xml::children_named(doc, sc, Some(XADES_NS), "Cert").first().copied())
        .and_then(|cert| xml::only_child(doc, cert, Some(XADES_NS), "CertDigest"));
    let matches = cert_digest.is_some_and(|d| {
        let method = xml::only_child(doc, d, Some(DSIG_NS), "DigestMethod").and_then(|m| xml::attr(doc, m, "Algorithm")).and_then(digest_method);
        let value = xml::only_child(doc, d, Some(DSIG_NS), "DigestValue").and_then(|v| b64(&xml::text(doc, v)));
        match (method, value) {
            (Some(md), Some(v)) => openssl::hash::hash(md, &parts.certificate).is_ok_and(|h| h.as_ref() == v.as_slice()),
            _ => false,
        }
    });
    if matches {
        c.pass("signing_certificate", "SigningCertificateV2 names the KeyInfo certificate");
    } else {
        c.fail("signing_certificate", "signing_certificate_mismatch", "SigningCertificateV2 does not name the KeyInfo certificate (SHA-256 or stronger)");
    }
    let time = xml::only_child(doc, ssp, Some(XADES_NS), "SigningTime").and_then(|t| parse_time(&xml::text(doc, t)));
    match time {
        Some(t) => c.pass("signing_time", format!("SigningTime {}", crate::report::utc(t))),
        None => c.fail("signing_time", "structure", "no readable SigningTime"),
    }
    time
}

/// The signature time-stamp over the SignatureValue; its genTime if it verifies.
fn time_stamp(doc: &Document<'_>, parts: &Parts, policy: &VerifyPolicy<'_>, signing_time: Option<i64>, c: &mut Findings) -> Option<i64> {
    let name = "timestamp";
    let usp = qualifying_properties(doc, parts)
        .and_then(|q| xml::only_child(doc, q, Some(XADES_NS), "UnsignedProperties"))
        .and_then(|u| xml::only_child(doc, u, Some(XADES_NS), "UnsignedSignatureProperties"));
    let stamp = usp.and_then(|u| xml::children_named(doc, u, Some(XADES_NS), "SignatureTimeStamp").first().copied());
    let Some(stamp) = stamp else {
        c.fail(name, "no_timestamp", "no SignatureTimeStamp: not AdES-B-T or B-LT");
        return None;
    };
    let Some(token) = xml::only_child(doc, stamp, Some(XADES_NS), "EncapsulatedTimeStamp").and_then(|e| b64(&xml::text(doc, e))) else {
        c.fail(name, "timestamp_malformed", "no base64 EncapsulatedTimeStamp");
        return None;
    };
    // What it stamps: the SignatureValue element, in the time-stamp's own canonicalisation if it
    // names one, else inclusive C14N 1.0.
    let mode = xml::only_child(doc, stamp, Some(DSIG_NS), "CanonicalizationMethod").and_then(|m| xml::attr(doc, m, "Algorithm")).map_or(Some(C14nMode::Inclusive), xml::mode);
    let Some(data) = mode.and_then(|m| xml::canonical(doc, parts.signature_value, m, &[]).ok()) else {
        c.fail(name, "unsupported_algorithm", "the time-stamp's canonicalisation is not supported");
        return None;
    };
    // The TSA path's validation data.
    let tsvd = usp.and_then(|u| xml::children_named(doc, u, Some(XADES141_NS), "TimeStampValidationData").first().copied());
    let (certs, crls) = tsvd.map(|v| validation_values(doc, v)).unwrap_or_default();
    let anchors: Vec<AnchorSpec> = policy
        .tsa_anchors
        .iter()
        .map(|a| AnchorSpec {
            certificate: a.clone(),
            revocation: if crls.is_empty() { Revocation::None } else { Revocation::Crl(crls.clone()) },
            policies: Policies::Any,
        })
        .collect();
    if anchors.is_empty() {
        c.fail(name, "timestamp_untrusted", "no TSA anchors are configured");
        return None;
    }
    match tsp::verify(&token, &data, &TrustStore::new(anchors), &certs) {
        Ok(info) => {
            let subject = x509_parser::parse_x509_certificate(&info.tsa_certificate).map(|(_, c)| c.subject().to_string()).unwrap_or_default();
            c.pass(name, format!("time-stamp of {} by {subject} over the SignatureValue", crate::report::utc(info.gen_time)));
            if let Some(st) = signing_time {
                if info.gen_time + TIME_STAMP_SKEW_SECS < st {
                    c.fail("timestamp_time", "timestamp_before_signing", "the time-stamp is earlier than the SigningTime");
                } else {
                    c.pass("timestamp_time", "the time-stamp is not earlier than the SigningTime");
                }
            }
            Some(info.gen_time)
        }
        Err(e) => {
            c.fail(name, e.code(), e.to_string());
            None
        }
    }
}

/// EncapsulatedX509Certificate and EncapsulatedCRLValue under `parent`.
fn validation_values(doc: &Document<'_>, parent: NodeId) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let grab = |outer: &str, inner: &str| -> Vec<Vec<u8>> {
        xml::children_named(doc, parent, Some(XADES_NS), outer)
            .into_iter()
            .flat_map(|o| doc.descendants(o))
            .filter(|n| xml::is(doc, *n, Some(XADES_NS), inner))
            .filter_map(|n| b64(&xml::text(doc, n)))
            .collect()
    };
    (grab("CertificateValues", "EncapsulatedX509Certificate"), grab("RevocationValues", "EncapsulatedCRLValue"))
}

/// The signing certificate: its path at `at` to an HPKI anchor, revocation at `at` from the
/// embedded CRLs, nonRepudiation and hcRole.
fn certificate(
    doc: &Document<'_>,
    parts: &Parts,
    cert: &x509_parser::certificate::X509Certificate<'_>,
    policy: &VerifyPolicy<'_>,
    at: Option<i64>,
    c: &mut Findings,
    roles: &mut Vec<String>,
) {
    c.pass("signer", format!("{} (issuer {})", cert.subject(), cert.issuer()));
    let usp = qualifying_properties(doc, parts)
        .and_then(|q| xml::only_child(doc, q, Some(XADES_NS), "UnsignedProperties"))
        .and_then(|u| xml::only_child(doc, u, Some(XADES_NS), "UnsignedSignatureProperties"));
    let (certs, crls) = usp.map(|u| validation_values(doc, u)).unwrap_or_default();
    match at {
        None => c.fail("certificate_path", "no_time", "no time to judge the certificate at"),
        Some(at) => {
            let anchors: Vec<AnchorSpec> = policy
                .signer_anchors
                .iter()
                .map(|a| AnchorSpec { certificate: a.clone(), revocation: Revocation::None, policies: Policies::Any })
                .collect();
            let store = TrustStore::new(anchors);
            let checks = Checks { revocation: false, ..Checks::ALL };
            match store.validate_with(&parts.certificate, &certs, at, Purpose::DocumentSigning, checks) {
                Ok(v) => {
                    c.pass("certificate_path", format!("path to {} at {}", v.anchor_subject, crate::report::utc(at)));
                    revocation(&v.chain, &crls, at, c);
                }
                Err(e) => c.fail("certificate_path", e.code(), e.to_string()),
            }
        }
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.non_repudiation() => c.pass("key_usage", "keyUsage nonRepudiation"),
        _ => c.fail("key_usage", "no_non_repudiation", "the certificate's keyUsage lacks nonRepudiation"),
    }
    match card::verify::hc_roles(cert) {
        Ok(found) if !found.is_empty() => {
            c.pass("hc_role", format!("hcRole {}", found.join(", ")));
            *roles = found;
        }
        Ok(_) => c.fail("hc_role", "no_hc_role", "the certificate has no hcRole (not an HPKI certificate of a medical professional)"),
        Err(e) => c.fail("hc_role", "no_hc_role", format!("hcRole unreadable: {e}")),
    }
}

/// For each issued certificate of `chain` (end entity first, anchor last): its issuer's CRL among
/// `crls` verifies, speaks for `at`, and does not list it as revoked at or before `at`.
fn revocation(chain: &[Vec<u8>], crls: &[Vec<u8>], at: i64, c: &mut Findings) {
    for (depth, pair) in chain.windows(2).enumerate() {
        let (subject, issuer) = (&pair[0], &pair[1]);
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(subject) else { continue };
        let name = format!("revocation:{depth}");
        let mut judged = false;
        for der in crls {
            let Ok((_, crl)) = x509_parser::parse_x509_crl(der) else { continue };
            if crl.issuer().as_raw() != cert.issuer().as_raw() {
                continue;
            }
            let this_update = crl.last_update().timestamp();
            let next_update = crl.next_update().map(|t| t.timestamp());
            let speaks = this_update >= at || next_update.is_some_and(|n| this_update <= at && at < n);
            // The CRL's signature and issuer, checked at its own thisUpdate (it may postdate `at`).
            if !speaks || trust::check_crl(der, issuer, this_update).is_err() {
                continue;
            }
            judged = true;
            let serial = cert.raw_serial();
            match crl.iter_revoked_certificates().find(|r| r.raw_serial() == serial) {
                Some(r) if r.revocation_date.timestamp() <= at => {
                    c.fail(name.clone(), "revoked", format!("{} was revoked at {}", cert.subject(), crate::report::utc(r.revocation_date.timestamp())));
                }
                Some(r) => c.pass(name.clone(), format!("{} was good at the time (revoked later, at {})", cert.subject(), crate::report::utc(r.revocation_date.timestamp()))),
                None => c.pass(name.clone(), format!("{} is not on the CRL of {} (thisUpdate {})", cert.subject(), crl.issuer(), crate::report::utc(this_update))),
            }
            break;
        }
        if !judged {
            c.fail(name, "revocation_unknown", format!("no embedded CRL of {} speaks for the time", cert.issuer()));
        }
    }
}
