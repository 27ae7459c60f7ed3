//! Chains built with rcgen, checked at a fixed time.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

use super::*;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const HPKI_AUTH: &str = "1.2.392.100495.1.5.1.2.1.1";
const HPKI_SIGN: &str = "1.2.392.100495.1.5.1.1.0.1";

fn t(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if content.len() < 0x80 {
        out.push(content.len() as u8);
    } else {
        out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn oid_der(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    der_tlv(0x06, &body)
}

/// certificatePolicies as real HPKI/JPKI certificates carry it: critical.
fn policies_ext(oids: &[&str], critical: bool) -> CustomExtension {
    let infos: Vec<u8> = oids.iter().flat_map(|o| der_tlv(0x30, &oid_der(o))).collect();
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 32], der_tlv(0x30, &infos));
    ext.set_criticality(critical);
    ext
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "JP");
    dn.push(DnType::CommonName, cn);
    dn
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

fn serial() -> SerialNumber {
    let mut b: [u8; 12] = rand_bytes();
    b[0] = (b[0] & 0x7f) | 1;
    SerialNumber::from_slice(&b)
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

fn ca_params(cn: &str, policy: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = t(NOW - 365 * DAY);
    p.not_after = t(NOW + 3650 * DAY);
    p.serial_number = Some(serial());
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    if let Some(oid) = policy {
        p.custom_extensions.push(policies_ext(&[oid], true));
    }
    p
}

fn root(cn: &str) -> Ca {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let mut params = ca_params(cn, Some("1.2.392.100495.1.5.1.1.3.1"));
    params.use_authority_key_identifier_extension = false;
    let cert = params.self_signed(&key).unwrap();
    Ca { der: cert.der().to_vec(), issuer: Issuer::new(params, key) }
}

fn sub_ca(parent: &Ca, cn: &str) -> Ca {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let params = ca_params(cn, Some("1.2.392.100495.1.5.1.1.3.1"));
    let cert = params.signed_by(&key, &parent.issuer).unwrap();
    Ca { der: cert.der().to_vec(), issuer: Issuer::new(params, key) }
}

struct Leaf {
    der: Vec<u8>,
    serial: Vec<u8>,
}

#[derive(Clone)]
struct LeafOpts {
    policies: Vec<&'static str>,
    key_usage: Vec<KeyUsagePurpose>,
    eku: Vec<ExtendedKeyUsagePurpose>,
    not_before: i64,
    not_after: i64,
    ca: bool,
}

impl Default for LeafOpts {
    fn default() -> LeafOpts {
        LeafOpts {
            policies: vec![HPKI_AUTH],
            key_usage: vec![KeyUsagePurpose::DigitalSignature],
            eku: vec![],
            not_before: NOW - DAY,
            not_after: NOW + 365 * DAY,
            ca: false,
        }
    }
}

fn leaf_params(opts: &LeafOpts) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("leaf");
    p.not_before = t(opts.not_before);
    p.not_after = t(opts.not_after);
    p.serial_number = Some(serial());
    p.use_authority_key_identifier_extension = true;
    p.key_usages = opts.key_usage.clone();
    p.extended_key_usages = opts.eku.clone();
    if opts.ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    if !opts.policies.is_empty() {
        p.custom_extensions.push(policies_ext(&opts.policies, true));
    }
    p
}

fn leaf(ca: &Ca, opts: &LeafOpts) -> Leaf {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let params = leaf_params(opts);
    let serial = params.serial_number.clone().unwrap().to_bytes();
    Leaf { der: params.signed_by(&key, &ca.issuer).unwrap().der().to_vec(), serial }
}

fn crl(ca: &Ca, revoked: &[&[u8]], this_update: i64, next_update: i64, number: u64) -> Vec<u8> {
    let params = CertificateRevocationListParams {
        this_update: t(this_update),
        next_update: t(next_update),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: t(this_update),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&ca.issuer).unwrap().der().to_vec()
}

fn anchor(ca: &Ca, revocation: Revocation, policies: &str) -> AnchorSpec {
    AnchorSpec { certificate: ca.der.clone(), revocation, policies: Policies::parse(policies).unwrap() }
}

fn fresh_crl(ca: &Ca, revoked: &[&[u8]]) -> Vec<u8> {
    crl(ca, revoked, NOW - DAY, NOW + DAY, 1)
}

#[test]
fn critical_certificate_policies_are_accepted_and_checked_against_the_allow_list() {
    let root = root("HPKI Root");
    let store = TrustStore::new(vec![anchor(&root, Revocation::None, "1.2.392.100495.1.5.1.2.*")]);
    let auth = leaf(&root, &LeafOpts::default());
    let ok = store.validate(&auth.der, &[], NOW, Purpose::CardAuth).unwrap();
    assert_eq!(ok.policies, vec![HPKI_AUTH.to_owned()]);
    assert_eq!(ok.chain.len(), 2);
    assert!(!ok.revocation_checked);

    let signing = leaf(&root, &LeafOpts { policies: vec![HPKI_SIGN], ..LeafOpts::default() });
    assert_eq!(
        store.validate(&signing.der, &[], NOW, Purpose::CardAuth),
        Err(PathError::PolicyNotAllowed { found: vec![HPKI_SIGN.to_owned()] })
    );
    let none = leaf(&root, &LeafOpts { policies: vec![], ..LeafOpts::default() });
    assert_eq!(store.validate(&none.der, &[], NOW, Purpose::CardAuth).unwrap_err().code(), "policy_not_allowed");

    let any = TrustStore::new(vec![anchor(&root, Revocation::None, "any")]);
    assert!(any.validate(&signing.der, &[], NOW, Purpose::CardAuth).is_ok());
    assert!(any.validate(&none.der, &[], NOW, Purpose::CardAuth).is_ok());
}

#[test]
fn each_anchor_keeps_its_own_revocation_policy() {
    let lax = root("Lax Root");
    let strict = root("Strict Root");
    let strict_sub = sub_ca(&strict, "Strict Sub CA");
    let revoked = leaf(&strict, &LeafOpts::default());
    let good = leaf(&strict, &LeafOpts::default());
    let under_sub = leaf(&strict_sub, &LeafOpts::default());
    let under_lax = leaf(&lax, &LeafOpts::default());
    let store = TrustStore::new(vec![
        anchor(&lax, Revocation::None, "any"),
        anchor(&strict, Revocation::Crl(vec![fresh_crl(&strict, &[&revoked.serial])]), "any"),
    ]);
    assert!(store.problems().is_empty());
    assert_eq!(store.validate(&revoked.der, &[], NOW, Purpose::CardAuth), Err(PathError::Revoked { depth: 0 }));
    let ok = store.validate(&good.der, &[], NOW, Purpose::CardAuth).unwrap();
    assert!(ok.revocation_checked);
    assert_eq!(ok.crls.len(), 1);
    // The sub-CA has no CRL: refused, although another anchor has policy none.
    assert_eq!(
        store.validate(&under_sub.der, std::slice::from_ref(&strict_sub.der), NOW, Purpose::CardAuth).unwrap_err().code(),
        "revocation_unknown"
    );
    let lax_ok = store.validate(&under_lax.der, &[], NOW, Purpose::CardAuth).unwrap();
    assert!(!lax_ok.revocation_checked);
    assert_eq!(lax_ok.anchor_index, 0);
}

#[test]
fn crls_of_intermediates_are_checked_against_their_issuer() {
    let root = root("Root");
    let sub = sub_ca(&root, "Sub CA");
    let good = leaf(&sub, &LeafOpts::default());
    let revoked = leaf(&sub, &LeafOpts::default());
    let crls = vec![fresh_crl(&root, &[]), fresh_crl(&sub, &[&revoked.serial])];
    let store = TrustStore::new(vec![anchor(&root, Revocation::Crl(crls), "any")]);
    let chain = std::slice::from_ref(&sub.der);
    let ok = store.validate(&good.der, chain, NOW, Purpose::CardAuth).unwrap();
    assert_eq!(ok.chain.len(), 3);
    assert_eq!(ok.crls.len(), 2);
    assert_eq!(store.validate(&revoked.der, chain, NOW, Purpose::CardAuth), Err(PathError::Revoked { depth: 0 }));

    // A sub-CA's CRL signed by the root (another key) is no CRL of the sub-CA.
    let forged = {
        let mut params = ca_params("Sub CA", None);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let other = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        let fake = Ca { der: Vec::new(), issuer: Issuer::new(params, other) };
        crl(&fake, &[], NOW - DAY, NOW + DAY, 2)
    };
    let store = TrustStore::new(vec![anchor(&root, Revocation::Crl(vec![fresh_crl(&root, &[]), forged]), "any")]);
    assert!(store.validate(&good.der, chain, NOW, Purpose::CardAuth).is_err());
}

#[test]
fn a_stale_crl_refuses() {
    let root = root("Root");
    let good = leaf(&root, &LeafOpts::default());
    let store = TrustStore::new(vec![anchor(&root, Revocation::Crl(vec![crl(&root, &[], NOW - 10 * DAY, NOW - DAY, 1)]), "any")]);
    assert_eq!(
        store.validate(&good.der, &[], NOW, Purpose::CardAuth).unwrap_err(),
        PathError::CrlStale { issuer: "C=JP, CN=Root".into(), next_update: NOW - DAY }
    );
}

#[test]
fn validity_follows_the_given_time() {
    let root = root("Root");
    let cert = leaf(&root, &LeafOpts { not_before: NOW - DAY, not_after: NOW + DAY, ..LeafOpts::default() });
    let store = TrustStore::new(vec![anchor(&root, Revocation::None, "any")]);
    assert!(store.validate(&cert.der, &[], NOW, Purpose::CardAuth).is_ok());
    assert_eq!(
        store.validate(&cert.der, &[], NOW + 2 * DAY, Purpose::CardAuth),
        Err(PathError::Expired { depth: 0, not_after: NOW + DAY })
    );
    assert_eq!(
        store.validate(&cert.der, &[], NOW - 2 * DAY, Purpose::CardAuth),
        Err(PathError::NotYetValid { depth: 0, not_before: NOW - DAY })
    );
}

#[test]
fn weak_keys_ca_leaves_and_wrong_purposes_are_refused() {
    let root = root("Root");
    let store = TrustStore::new(vec![anchor(&root, Revocation::None, "any")]);

    let weak = {
        let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
        let spki = openssl::pkey::PKey::from_rsa(rsa).unwrap().public_key_to_der().unwrap();
        let public = rcgen::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        leaf_params(&LeafOpts::default()).signed_by(&public, &root.issuer).unwrap().der().to_vec()
    };
    assert_eq!(store.validate(&weak, &[], NOW, Purpose::CardAuth).unwrap_err().code(), "weak_key");

    let key_cert_sign = leaf(
        &root,
        &LeafOpts { key_usage: vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign], ..LeafOpts::default() },
    );
    assert!(store.validate(&key_cert_sign.der, &[], NOW, Purpose::ClientTls).is_err());

    let server_only = leaf(&root, &LeafOpts { eku: vec![ExtendedKeyUsagePurpose::ServerAuth], ..LeafOpts::default() });
    assert_eq!(store.validate(&server_only.der, &[], NOW, Purpose::ClientTls).unwrap_err().code(), "wrong_purpose");
    assert_eq!(store.validate(&server_only.der, &[], NOW, Purpose::CardAuth).unwrap_err().code(), "wrong_purpose");
    let client = leaf(&root, &LeafOpts { eku: vec![ExtendedKeyUsagePurpose::ClientAuth], ..LeafOpts::default() });
    assert!(store.validate(&client.der, &[], NOW, Purpose::ClientTls).is_ok());
    assert!(store.validate(&client.der, &[], NOW, Purpose::CardAuth).is_ok());

    let encipher_only = leaf(&root, &LeafOpts { key_usage: vec![KeyUsagePurpose::KeyEncipherment], ..LeafOpts::default() });
    assert_eq!(store.validate(&encipher_only.der, &[], NOW, Purpose::ClientTls).unwrap_err().code(), "wrong_purpose");

    assert_eq!(store.validate(&root.der, &[], NOW, Purpose::ClientTls), Err(PathError::IsAnchor));
}

#[test]
fn an_unusable_anchor_refuses_only_its_own_certificates() {
    let good_root = root("Good Root");
    let bad_root = root("Bad Root");
    let store = TrustStore::new(vec![
        anchor(&good_root, Revocation::None, "any"),
        anchor(&bad_root, Revocation::Crl(vec![b"not a crl".to_vec()]), "any"),
    ]);
    assert_eq!(store.problems().len(), 1);
    assert_eq!(store.problems()[0].index, 1);
    assert!(store.validate(&leaf(&good_root, &LeafOpts::default()).der, &[], NOW, Purpose::CardAuth).is_ok());
    assert_eq!(
        store.validate(&leaf(&bad_root, &LeafOpts::default()).der, &[], NOW, Purpose::CardAuth).unwrap_err().code(),
        "anchor_unusable"
    );
}

#[test]
fn unknown_issuers_and_garbage_are_refused() {
    let root = root("Root");
    let other = root_named_like_root();
    let store = TrustStore::new(vec![anchor(&root, Revocation::None, "any")]);
    // Same subject name, other key: no path.
    assert_eq!(store.validate(&leaf(&other, &LeafOpts::default()).der, &[], NOW, Purpose::CardAuth).unwrap_err().code(), "untrusted_issuer");
    let unrelated = self::root("Elsewhere");
    assert_eq!(store.validate(&leaf(&unrelated, &LeafOpts::default()).der, &[], NOW, Purpose::CardAuth).unwrap_err().code(), "untrusted_issuer");
    assert_eq!(store.validate(b"garbage", &[], NOW, Purpose::CardAuth).unwrap_err().code(), "cert_malformed");
    let good = leaf(&root, &LeafOpts::default());
    let mut trailing = good.der.clone();
    trailing.push(0);
    assert_eq!(store.validate(&trailing, &[], NOW, Purpose::CardAuth).unwrap_err().code(), "cert_malformed");
    let too_many = vec![root.der.clone(); MAX_INTERMEDIATES + 1];
    assert_eq!(store.validate(&good.der, &too_many, NOW, Purpose::CardAuth).unwrap_err().code(), "cert_malformed");
}

fn root_named_like_root() -> Ca {
    root("Root")
}

#[test]
fn crl_registration_checks() {
    let root = root("Root");
    let other = self::root("Other");
    let current = crl(&root, &[], NOW - DAY, NOW + DAY, 5);
    let info = check_crl(&current, &root.der, NOW).unwrap();
    assert_eq!(info.number, Some(vec![5]));
    assert_eq!(info.next_update, Some(NOW + DAY));

    assert!(matches!(check_crl(&crl(&other, &[], NOW - DAY, NOW + DAY, 1), &root.der, NOW), Err(CrlError::WrongIssuer { .. })));
    let stale = crl(&root, &[], NOW - 3 * DAY, NOW - DAY, 6);
    assert_eq!(check_crl(&stale, &root.der, NOW), Err(CrlError::Stale { next_update: NOW - DAY }));
    let future = crl(&root, &[], NOW + DAY, NOW + 2 * DAY, 7);
    assert!(matches!(check_crl(&future, &root.der, NOW), Err(CrlError::NotYetValid { .. })));
    // Signed by another key under the same name.
    let impostor = root_named_like_root();
    assert!(matches!(check_crl(&crl(&impostor, &[], NOW - DAY, NOW + DAY, 9), &root.der, NOW), Err(CrlError::BadSignature { .. })));
    assert!(matches!(check_crl(b"junk", &root.der, NOW), Err(CrlError::Malformed(_))));

    let older = inspect_crl(&crl(&root, &[], NOW - 2 * DAY, NOW + DAY, 4)).unwrap();
    let newer = inspect_crl(&crl(&root, &[], NOW, NOW + DAY, 300)).unwrap();
    assert!(matches!(is_newer(&older, &info), Err(CrlError::Older { .. })));
    assert!(is_newer(&newer, &info).is_ok());
    assert!(is_newer(&info, &info).is_ok());
}

#[test]
fn facts_describe_keys_and_usages() {
    let root = root("Root");
    let f = cert_facts(&leaf(&root, &LeafOpts::default()).der).unwrap();
    assert_eq!(f.key, "RSA 2048");
    assert_eq!(f.policies, vec![HPKI_AUTH.to_owned()]);
    assert_eq!(f.key_usage, Some(vec!["digitalSignature"]));
    assert!(!f.is_ca);
    assert!(cert_facts(&root.der).unwrap().is_ca);
}

#[test]
fn end_entities_that_are_cas_or_carry_name_constraints_are_refused() {
    let root = root("Root");
    let store = TrustStore::new(vec![anchor(&root, Revocation::None, "any")]);
    for purpose in [Purpose::ClientTls, Purpose::CardAuth] {
        // A CA certificate whose keyUsage would pass the purpose: still not a client.
        let ca = leaf(&root, &LeafOpts { ca: true, ..LeafOpts::default() });
        assert_eq!(store.validate(&ca.der, &[], NOW, purpose).unwrap_err().code(), "wrong_purpose", "{purpose:?}");

        let mut params = leaf_params(&LeafOpts::default());
        // nameConstraints { permittedSubtrees [0] { GeneralSubtree { dNSName "example.com" } } }
        let subtree = der_tlv(0x30, &der_tlv(0x82, b"example.com"));
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(&[2, 5, 29, 30], der_tlv(0x30, &der_tlv(0xa0, &subtree))));
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        let constrained = params.signed_by(&key, &root.issuer).unwrap().der().to_vec();
        assert_eq!(store.validate(&constrained, &[], NOW, purpose).unwrap_err().code(), "invalid_path", "{purpose:?}");

        // DSA keys (leaf and anchor) are exercised by the x509-limbo cases webpki::forbidden-dsa-*
        // (tests/limbo.rs): rcgen cannot put a DSA key in a certificate.

        // The same leaf without any of these is accepted, so the refusals above are theirs.
        assert!(store.validate(&leaf(&root, &LeafOpts::default()).der, &[], NOW, purpose).is_ok());
    }
}

#[test]
fn a_document_signing_certificate_needs_non_repudiation() {
    let root = root("HPKI Root");
    let store = TrustStore::new(vec![anchor(&root, Revocation::None, "1.2.392.100495.1.5.1.1.*")]);
    let signing =
        leaf(&root, &LeafOpts { policies: vec![HPKI_SIGN], key_usage: vec![KeyUsagePurpose::ContentCommitment], ..LeafOpts::default() });
    assert!(store.validate(&signing.der, &[], NOW, Purpose::DocumentSigning).is_ok());
    let auth_usage = leaf(&root, &LeafOpts { policies: vec![HPKI_SIGN], ..LeafOpts::default() });
    assert_eq!(store.validate(&auth_usage.der, &[], NOW, Purpose::DocumentSigning).unwrap_err().code(), "wrong_purpose");
    let no_usage = leaf(&root, &LeafOpts { policies: vec![HPKI_SIGN], key_usage: vec![], ..LeafOpts::default() });
    assert_eq!(store.validate(&no_usage.der, &[], NOW, Purpose::DocumentSigning).unwrap_err().code(), "wrong_purpose");
}

/// A store built afresh from the same anchors: the oracle a remembered verdict must agree with.
fn fresh(specs: &[AnchorSpec]) -> TrustStore {
    TrustStore::new(specs.to_vec())
}

#[test]
fn a_success_is_remembered_until_the_first_validity_bound_and_never_before_it_was_made() {
    let root = root("Root");
    let cert = leaf(&root, &LeafOpts { not_before: NOW - DAY, not_after: NOW + DAY, ..LeafOpts::default() });
    let specs = vec![anchor(&root, Revocation::Crl(vec![crl(&root, &[], NOW - DAY, NOW + 60, 1)]), "any")];
    let store = fresh(&specs);

    let first = store.validate(&cert.der, &[], NOW, Purpose::ClientTls).unwrap();
    assert_eq!((store.full_validations(), store.remembered_verdicts()), (1, 1));
    // Inside the window: answered from memory, the same answer.
    assert_eq!(store.validate(&cert.der, &[], NOW + 59, Purpose::ClientTls), Ok(first.clone()));
    assert_eq!(store.full_validations(), 1);
    // At the CRL's nextUpdate: validated again, and refused like a fresh store refuses.
    let stale = store.validate(&cert.der, &[], NOW + 60, Purpose::ClientTls);
    assert_eq!(store.full_validations(), 2);
    assert_eq!(stale.as_ref().unwrap_err().code(), "crl_stale");
    assert_eq!(stale, fresh(&specs).validate(&cert.der, &[], NOW + 60, Purpose::ClientTls));
    // Never for a time before the verdict was made (a clock set back).
    assert_eq!(store.validate(&cert.der, &[], NOW - 1, Purpose::ClientTls), Ok(first));
    assert_eq!(store.full_validations(), 3);
    let early = store.validate(&cert.der, &[], NOW - 2 * DAY, Purpose::ClientTls);
    assert!(early.is_err());
    assert_eq!(early, fresh(&specs).validate(&cert.der, &[], NOW - 2 * DAY, Purpose::ClientTls));

    // The certificate's own notAfter ends a verdict too, and no verdict outlives MAX_AGE_SECS.
    let lax = fresh(&[anchor(&root, Revocation::None, "any")]);
    let near_end = NOW + DAY - 10;
    assert!(lax.validate(&cert.der, &[], near_end, Purpose::ClientTls).is_ok());
    assert!(lax.validate(&cert.der, &[], near_end + 9, Purpose::ClientTls).is_ok());
    assert_eq!(lax.full_validations(), 1);
    assert_eq!(
        lax.validate(&cert.der, &[], NOW + DAY + 1, Purpose::ClientTls),
        Err(PathError::Expired { depth: 0, not_after: NOW + DAY })
    );
    let lax = fresh(&[anchor(&root, Revocation::None, "any")]);
    assert!(lax.validate(&cert.der, &[], NOW, Purpose::ClientTls).is_ok());
    assert!(lax.validate(&cert.der, &[], NOW + verdicts::MAX_AGE_SECS - 1, Purpose::ClientTls).is_ok());
    assert_eq!(lax.full_validations(), 1);
    assert!(lax.validate(&cert.der, &[], NOW + verdicts::MAX_AGE_SECS, Purpose::ClientTls).is_ok());
    assert_eq!(lax.full_validations(), 2);
}

#[test]
fn a_crl_that_becomes_current_later_ends_a_remembered_verdict() {
    let root = root("Root");
    let cert = leaf(&root, &LeafOpts::default());
    // The CRL in force does not list the certificate; a newer one, current from NOW + 100, does.
    let specs = vec![anchor(
        &root,
        Revocation::Crl(vec![crl(&root, &[], NOW - DAY, NOW + DAY, 1), crl(&root, &[&cert.serial], NOW + 100, NOW + DAY, 2)]),
        "any",
    )];
    let store = fresh(&specs);
    assert!(store.validate(&cert.der, &[], NOW, Purpose::CardAuth).is_ok());
    assert!(store.validate(&cert.der, &[], NOW + 99, Purpose::CardAuth).is_ok());
    assert_eq!(store.full_validations(), 1);
    let later = store.validate(&cert.der, &[], NOW + 100, Purpose::CardAuth);
    assert_eq!(later, fresh(&specs).validate(&cert.der, &[], NOW + 100, Purpose::CardAuth));
    assert_eq!(later, Err(PathError::Revoked { depth: 0 }));
}

#[test]
fn a_remembered_verdict_answers_only_the_same_chain_purpose_and_checks() {
    let root = root("Root");
    let sub = sub_ca(&root, "Sub CA");
    let revoked = leaf(&sub, &LeafOpts::default());
    let store = fresh(&[anchor(
        &root,
        Revocation::Crl(vec![fresh_crl(&root, &[]), fresh_crl(&sub, &[&revoked.serial])]),
        "any",
    )]);
    let chain = std::slice::from_ref(&sub.der);

    // Refusals are not remembered.
    assert_eq!(store.validate(&revoked.der, chain, NOW, Purpose::CardAuth), Err(PathError::Revoked { depth: 0 }));
    assert_eq!(store.remembered_verdicts(), 0);

    // An explanation without revocation succeeds; it does not answer for the full checks.
    let explain = Checks { revocation: false, ..Checks::ALL };
    assert!(store.validate_with(&revoked.der, chain, NOW, Purpose::CardAuth, explain).is_ok());
    assert_eq!(store.remembered_verdicts(), 1);
    assert_eq!(store.validate(&revoked.der, chain, NOW + 1, Purpose::CardAuth), Err(PathError::Revoked { depth: 0 }));

    // Fit for card authentication is not fit for signing documents.
    let good = leaf(&sub, &LeafOpts::default());
    assert!(store.validate(&good.der, chain, NOW, Purpose::CardAuth).is_ok());
    assert_eq!(store.validate(&good.der, chain, NOW + 1, Purpose::DocumentSigning).unwrap_err().code(), "wrong_purpose");
    // Without the intermediate there is no path, whatever was remembered with it.
    assert_eq!(store.validate(&good.der, &[], NOW + 1, Purpose::CardAuth).unwrap_err().code(), "untrusted_issuer");
    assert!(store.validate(&good.der, chain, NOW + 2, Purpose::CardAuth).is_ok());
    assert_eq!(store.full_validations(), 6);
}
