//! Card PKIs shaped like the real ones: HPKI (an MHLW-like root over MEDIS-like signing and
//! authentication CAs) and JPKI (J-LIS-like self-signed user-authentication and signing CAs), with
//! the exact extension layout of real certificates (`docs/cards.md` §1.5, §2.1, §2.5,
//! checked against the public certificates in `devpki/fixtures/real/`). All names are clearly test
//! names ("Ninsho Test …"); nothing here claims to be a real CA.
//!
//! | certificate | layout |
//! |---|---|
//! | HPKI root | `C/O/OU/OU`, self-signed; AKI (key id + own name + serial), SKI, BasicConstraints critical, KeyUsage critical keyCertSign+cRLSign, SAN directoryName `C/O/OU/OU` (kanji), CRL DPs: directoryName `…, CN=RARL` and a URL |
//! | HPKI CAs | `C/O/OU/CN=HPKI-01-…-forNonRepudiation` and `…-forAuthentication-forIndividual`; AKI (root key id + root name + root serial), SKI, BasicConstraints critical, **certificatePolicies critical** (CA policy, CPS), KeyUsage critical, CRL DPs `…, CN=SARL` and a URL |
//! | HPKI end entities | subject `C/O/CN/serialNumber` (romaji), SAN directoryName (kanji); AKI (CA key id + root name + CA serial), SKI, KeyUsage critical (authentication: digitalSignature; signing: nonRepudiation only), CRL DP URL, hcRole in subjectDirectoryAttributes (non-critical), **certificatePolicies critical** (CPS) |
//! | JPKI CAs | `C=JP, O=…JPKI, OU=JPKI for user authentication` / `…digital signature`, `OU=…`; self-signed, no AKI; SKI, BasicConstraints critical, KeyUsage critical, SAN directoryName `C=JP, O=公的個人認証サービス…, OU=…利用者証明用|署名用, OU=…`, CRL DP a directoryName only |
//! | JPKI end entities | subject `C=JP, CN=<opaque id>`; AKI key id, SKI, KeyUsage critical (digitalSignature / nonRepudiation), CRL DP a directoryName only, **certificatePolicies critical** `…8.5.1.3.30` / `…8.5.1.1.20`; the signing certificate carries the holder's name in a SAN otherName |
//!
//! Not confirmed from a real certificate (docs/cards.md §5, questions 1 and 2), so chosen here: the HPKI
//! authentication end-entity policy (a test OID under the authentication arc, mirroring the MEDIS test
//! signer's `…1.1.0.1`) and hcRole on authentication certificates; the JPKI end entities' extensions
//! other than subject, key usage and policy.

mod ext;
mod name;

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData};
use time::{Duration, OffsetDateTime};

use self::ext::GeneralName;
use self::name::{Attr, Name};
use crate::authority::random_serial;
use crate::keys::{NewKey, signing_key};
use crate::{Authority, PkiError, hc_role_extension};
pub use crate::{CrlNumber, CrlSpec, IssuingPoint, KeyAlg, Leaf};

/// CA policy of the MEDIS-like signing CA (the real MEDIS Sign CA2 carries it).
pub const HPKI_SIGN_CA_POLICY: &str = "1.2.392.100495.1.5.1.1.3.1";
/// CA policy of the MEDIS-like authentication CA (the real MEDIS Auth CA2 carries it).
pub const HPKI_AUTH_CA_POLICY: &str = "1.2.392.100495.1.5.1.2.3.1";
/// End-entity policy of HPKI signing certificates here: the one on the real MEDIS test signer.
pub const HPKI_SIGN_POLICY: &str = "1.2.392.100495.1.5.1.1.0.1";
/// End-entity policy of HPKI authentication certificates here: a test OID under the HPKI
/// authentication arc `1.2.392.100495.1.5.1.2`.
pub const HPKI_AUTH_POLICY: &str = "1.2.392.100495.1.5.1.2.0.1";
/// JPKI user-authentication policy (jpki-cp-auth-class30).
pub const JPKI_AUTH_POLICY: &str = "1.2.392.200149.8.5.1.3.30";
/// JPKI signing policy (jpki-cp-sign-class20).
pub const JPKI_SIGN_POLICY: &str = "1.2.392.200149.8.5.1.1.20";
/// A policy OID no real card has (negative tests).
pub const UNKNOWN_POLICY: &str = "1.2.392.999999.1.1";
/// The hcRole of a doctor.
pub const MEDICAL_DOCTOR: &str = "Medical Doctor";
/// The hcRole of a pharmacist.
pub const PHARMACIST: &str = "Pharmacist";
/// JPKI name otherName (personal data arc `1.2.392.200149.8.5.5`, `.1` = name).
pub const JPKI_NAME_OTHER_NAME: &str = "1.2.392.200149.8.5.5.1";

const TEST_HOST: &str = "ninsho-test.example";

/// Validity, key and naming of the CAs of a card PKI.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// Goes into every CA name (`"{label} HPKI CA"`, …), so two PKIs can be told apart.
    pub label: String,
    /// Start of the CAs' validity.
    pub not_before: OffsetDateTime,
    /// End of the CAs' validity.
    pub not_after: OffsetDateTime,
    /// The CAs' key algorithm (RSA-2048 like the real ones; RSA-1024 is refused).
    pub key: KeyAlg,
}

impl CaOptions {
    /// "Ninsho Test" CAs valid from a day before `now` for 20 years, RSA-2048.
    pub fn new(now: OffsetDateTime) -> CaOptions {
        CaOptions {
            label: "Ninsho Test".into(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(20 * 365),
            key: KeyAlg::Rsa2048,
        }
    }

    /// Another label (a second, unrelated PKI: a rogue CA).
    pub fn label(mut self, label: &str) -> CaOptions {
        label.clone_into(&mut self.label);
        self
    }

    /// Another validity window (an expired or not-yet-valid CA).
    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CaOptions {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    fn compact_label(&self) -> String {
        self.label.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
    }
}

/// What goes into one card certificate; every field is a knob for negative tests.
#[derive(Debug, Clone)]
pub struct CardSpec {
    /// Holder's name in romaji (HPKI subject CN).
    pub name: String,
    /// Holder's name in kanji (HPKI SubjectAltName, JPKI signing otherName).
    pub name_kanji: String,
    /// Facility in romaji (HPKI subject O).
    pub organization: String,
    /// Facility in kanji (HPKI SubjectAltName O).
    pub organization_kanji: String,
    /// HPKI subject serialNumber (a CA-assigned identifier) or the JPKI subject CN (an opaque
    /// identifier); a random one when `None`.
    pub id: Option<String>,
    /// HPKI hcRole; `None` leaves subjectDirectoryAttributes out (cards of non-licensed staff).
    /// Ignored for JPKI.
    pub role: Option<String>,
    /// The end-entity policy OID (dotted) instead of the kind's usual one.
    pub policy: Option<String>,
    /// Key algorithm and size.
    pub key: KeyAlg,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl CardSpec {
    /// A doctor's card (山田 太郎, Medical Doctor, RSA-2048) valid from a day before `now` for five
    /// years, like real HPKI and JPKI certificates.
    pub fn new(now: OffsetDateTime) -> CardSpec {
        CardSpec {
            name: "YAMADA TARO".into(),
            name_kanji: "山田　太郎".into(),
            organization: "NINSHO TEST CLINIC".into(),
            organization_kanji: "ニンショウテスト内科クリニック".into(),
            id: None,
            role: Some(MEDICAL_DOCTOR.into()),
            policy: None,
            key: KeyAlg::Rsa2048,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(5 * 365),
        }
    }

    /// Another holder (romaji and kanji).
    pub fn holder(mut self, name: &str, name_kanji: &str) -> CardSpec {
        name.clone_into(&mut self.name);
        name_kanji.clone_into(&mut self.name_kanji);
        self
    }

    /// A fixed identifier (HPKI subject serialNumber, JPKI subject CN).
    pub fn id(mut self, id: &str) -> CardSpec {
        self.id = Some(id.to_owned());
        self
    }

    /// Another hcRole, or none.
    pub fn role(mut self, role: Option<&str>) -> CardSpec {
        self.role = role.map(str::to_owned);
        self
    }

    /// Another end-entity policy OID.
    pub fn policy(mut self, oid: &str) -> CardSpec {
        self.policy = Some(oid.to_owned());
        self
    }

    /// Another key.
    pub fn key(mut self, key: KeyAlg) -> CardSpec {
        self.key = key;
        self
    }

    /// Another validity window.
    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CardSpec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// One CA of a card PKI.
pub struct CardCa {
    authority: Authority,
    name: Name,
    /// The name of the CA that issued this one (itself for a root).
    issuer_name: Name,
    serial: Vec<u8>,
    key_id: Vec<u8>,
    /// Where certificates this CA issues point for its CRL.
    crl_point: GeneralName,
}

impl CardCa {
    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        self.authority.cert_der()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        self.authority.cert_pem()
    }

    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        self.authority.key_pem()
    }

    /// The CA as a plain [`Authority`] (its `crl`, `issue`).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// A CRL (DER) signed by this CA, with authorityKeyIdentifier and cRLNumber.
    pub fn crl(&self, spec: &CrlSpec) -> Result<Vec<u8>, PkiError> {
        self.authority.crl_with(spec)
    }
}

/// An issued card certificate set: what one card holds.
#[derive(Clone)]
pub struct Card {
    /// The authentication certificate and key (JPKI EF 000A/0017, HPKI authentication application).
    pub auth: Leaf,
    /// Its issuing CA (DER).
    pub auth_ca: Vec<u8>,
    /// Its issuing CA (PEM).
    pub auth_ca_pem: String,
    /// The signing certificate and key (JPKI EF 0001/001A, HPKI signature application).
    pub sign: Leaf,
    /// Its issuing CA (DER).
    pub sign_ca: Vec<u8>,
    /// Its issuing CA (PEM).
    pub sign_ca_pem: String,
}

impl Card {
    /// Writes the PEM files `card-sim --dir` reads (card/src/sim/files.rs): `auth-cert.pem`,
    /// `auth-key.pem`, `ca-cert.pem`, `sign-cert.pem`, `sign-key.pem`, `sign-ca-cert.pem`. Keys are
    /// written with mode 0600.
    pub fn write_sim_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write(dir, "auth-cert.pem", self.auth.cert_pem.as_bytes(), false)?;
        write(dir, "auth-key.pem", self.auth.key_pem.as_bytes(), true)?;
        write(dir, "ca-cert.pem", self.auth_ca_pem.as_bytes(), false)?;
        write(dir, "sign-cert.pem", self.sign.cert_pem.as_bytes(), false)?;
        write(dir, "sign-key.pem", self.sign.key_pem.as_bytes(), true)?;
        write(dir, "sign-ca-cert.pem", self.sign_ca_pem.as_bytes(), false)?;
        Ok(())
    }
}

fn write(dir: &Path, name: &str, contents: &[u8], private: bool) -> std::io::Result<()> {
    crate::write_file(&dir.join(name), contents, private)
}

/// How to make one CA certificate.
struct CaPlan<'a> {
    name: Name,
    /// `None`: self-signed.
    issuer: Option<&'a CardCa>,
    /// The MHLW/MEDIS form of authorityKeyIdentifier; J-LIS CAs have none.
    full_aki: bool,
    alt_name: Option<Name>,
    crl_points: Vec<GeneralName>,
    /// (policy OID, CPS URL): certificatePolicies, critical.
    policy: Option<(&'a str, String)>,
    /// Where the certificates this CA issues point for its CRL.
    issued_crl_point: GeneralName,
}

fn make_ca(plan: CaPlan<'_>, options: &CaOptions) -> Result<CardCa, PkiError> {
    let key = signing_key(options.key)?;
    let key_id = ext::key_id(key.der_bytes());
    let serial = random_serial();
    let serial_bytes = serial.to_bytes();
    let mut params = CertificateParams::default();
    params.distinguished_name = plan.name.rcgen()?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = options.not_before;
    params.not_after = options.not_after;
    params.serial_number = Some(serial);
    // rcgen writes this as the subjectKeyIdentifier and uses it in CRLs' authorityKeyIdentifier.
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id.clone());
    params.use_authority_key_identifier_extension = false;
    let issuer_name = plan.issuer.map_or_else(|| plan.name.clone(), |ca| ca.name.clone());
    if plan.full_aki {
        params.custom_extensions.push(match plan.issuer {
            Some(ca) => ext::authority_key_identifier(&ca.key_id, &ca.issuer_name, &ca.serial)?,
            None => ext::authority_key_identifier(&key_id, &plan.name, &serial_bytes)?,
        });
    }
    if let Some(alt) = &plan.alt_name {
        params.custom_extensions.push(ext::subject_alt_name(Some(alt), &[])?);
    }
    params.custom_extensions.push(ext::crl_distribution_points(&plan.crl_points)?);
    if let Some((policy, cps)) = &plan.policy {
        params.custom_extensions.push(ext::certificate_policies(policy, cps)?);
    }
    let cert = match plan.issuer {
        None => params.self_signed(&key)?,
        Some(ca) => params.signed_by(&key, ca.authority.issuer())?,
    };
    let key_pem = key.serialize_pem();
    Ok(CardCa {
        authority: Authority::from_parts(Issuer::new(params, key), cert.der().to_vec(), cert.pem(), key_pem, key_id.clone()),
        name: plan.name,
        issuer_name,
        serial: serial_bytes,
        key_id,
        crl_point: plan.issued_crl_point,
    })
}

/// How to make one end-entity certificate.
struct LeafPlan<'a> {
    ca: &'a CardCa,
    subject: Name,
    full_aki: bool,
    alt_name: Option<Name>,
    other_names: Vec<(&'a str, &'a str)>,
    key_usage: KeyUsagePurpose,
    role: Option<&'a str>,
    policy: &'a str,
    cps: String,
}

fn make_leaf(plan: LeafPlan<'_>, spec: &CardSpec) -> Result<Leaf, PkiError> {
    let key = NewKey::generate(spec.key)?;
    let serial = random_serial();
    let mut params = CertificateParams::default();
    params.distinguished_name = plan.subject.rcgen()?;
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    params.serial_number = Some(serial.clone());
    params.key_usages = vec![plan.key_usage];
    // The J-LIS form is the plain key id, which rcgen writes from the issuer's key id.
    params.use_authority_key_identifier_extension = !plan.full_aki;
    if plan.full_aki {
        params.custom_extensions.push(ext::authority_key_identifier(&plan.ca.key_id, &plan.ca.issuer_name, &plan.ca.serial)?);
    }
    params.custom_extensions.push(ext::subject_key_identifier(&ext::key_id(key.public().der_bytes())));
    if plan.alt_name.is_some() || !plan.other_names.is_empty() {
        params.custom_extensions.push(ext::subject_alt_name(plan.alt_name.as_ref(), &plan.other_names)?);
    }
    params.custom_extensions.push(ext::crl_distribution_points(std::slice::from_ref(&plan.ca.crl_point))?);
    if let Some(role) = plan.role {
        params.custom_extensions.push(hc_role_extension(role));
    }
    params.custom_extensions.push(ext::certificate_policies(plan.policy, &plan.cps)?);
    let cert = params.signed_by(key.public(), plan.ca.authority.issuer())?;
    Ok(Leaf {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.pkcs8_pem,
        key_der: key.pkcs8_der,
        serial: serial.to_bytes(),
    })
}

/// A random identifier of `len` upper-case letters and digits after `prefix`.
fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let tail: String = (0..len).map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())])).collect();
    format!("{prefix}{tail}")
}

/// An HPKI hierarchy: an MHLW-like root, a MEDIS-like signing CA and a MEDIS-like authentication CA.
pub struct Hpki {
    root: CardCa,
    sign_ca: CardCa,
    auth_ca: CardCa,
    /// URLs of the root's two ARLs: the one covering the root itself, the one covering the CAs.
    arl_uris: [String; 2],
}

impl Hpki {
    /// "Ninsho Test" CAs around `now` (see [`CaOptions::new`]).
    pub fn new(now: OffsetDateTime) -> Result<Hpki, PkiError> {
        Hpki::with(&CaOptions::new(now))
    }

    /// CAs as `options` say.
    pub fn with(options: &CaOptions) -> Result<Hpki, PkiError> {
        let label = &options.label;
        let compact = options.compact_label();
        let repository = format!("http://hpki.{TEST_HOST}/repository/");
        let arl_uris = [format!("{repository}rlist/rarl2.crl"), format!("{repository}rlist/sarl2.crl")];
        let root_name = Name::new(&[
            (Attr::C, "JP"),
            (Attr::O, &format!("{label} Ministry of Health-like")),
            (Attr::Ou, &format!("{label} Director-General for Policy Planning")),
            (Attr::Ou, &format!("{label} HPKI Root CA V2")),
        ]);
        let root = make_ca(
            CaPlan {
                alt_name: Some(Name::new(&[
                    (Attr::C, "JP"),
                    (Attr::O, &format!("{label} 厚生労働省相当（テスト）")),
                    (Attr::Ou, "政策統括官（テスト）"),
                    (Attr::Ou, &format!("{label} ＨＰＫＩルート認証局Ｖ２（テスト）")),
                ])),
                crl_points: vec![
                    GeneralName::Dir(root_name.with(Attr::Cn, "RARL")),
                    GeneralName::Uri(arl_uris[0].clone()),
                ],
                issued_crl_point: GeneralName::Uri(arl_uris[1].clone()),
                name: root_name.clone(),
                issuer: None,
                full_aki: true,
                policy: None,
            },
            options,
        )?;
        let medis = |cn: &str| Name::new(&[(Attr::C, "JP"), (Attr::O, &format!("{label} MEDIS-like")), (Attr::Ou, &format!("{label} HPKI CA")), (Attr::Cn, cn)]);
        let ca_points = vec![GeneralName::Dir(root_name.with(Attr::Cn, "SARL")), GeneralName::Uri(arl_uris[1].clone())];
        let sign_ca = make_ca(
            CaPlan {
                name: medis(&format!("HPKI-01-{compact}SignCA2-forNonRepudiation")),
                issuer: Some(&root),
                full_aki: true,
                alt_name: None,
                crl_points: ca_points.clone(),
                policy: Some((HPKI_SIGN_CA_POLICY, repository.clone())),
                issued_crl_point: GeneralName::Uri(format!("http://cert.{TEST_HOST}/sign/crl-sign2.crl")),
            },
            options,
        )?;
        let auth_ca = make_ca(
            CaPlan {
                name: medis(&format!("HPKI-01-{compact}AuthCA2-forAuthentication-forIndividual")),
                issuer: Some(&root),
                full_aki: true,
                alt_name: None,
                crl_points: ca_points,
                policy: Some((HPKI_AUTH_CA_POLICY, repository)),
                issued_crl_point: GeneralName::Uri(format!("http://cert.{TEST_HOST}/auth/crl-auth2.crl")),
            },
            options,
        )?;
        Ok(Hpki { root, sign_ca, auth_ca, arl_uris })
    }

    /// The MHLW-like root (the trust anchor).
    pub fn root(&self) -> &CardCa {
        &self.root
    }

    /// The root's authority revocation lists, as the real MHLW root publishes them: each with an
    /// issuingDistributionPoint (onlyContainsCACerts) naming one of the URLs certificates point to,
    /// so each covers only the certificates that name it. The first covers the root itself
    /// (`rarl2.crl`), the second the CAs under it (`sarl2.crl`); `spec.revoked` goes into the
    /// second. A full check of a path (OpenSSL's `-crl_check_all`) needs both.
    pub fn root_arls(&self, spec: &CrlSpec) -> Result<Vec<Vec<u8>>, PkiError> {
        let [rarl, sarl] = &self.arl_uris;
        let own = CrlSpec { revoked: Vec::new(), ..spec.clone() }.issuing_point(rarl, true);
        Ok(vec![self.root.crl(&own)?, self.root.crl(&spec.clone().issuing_point(sarl, true))?])
    }

    /// The MEDIS-like signing CA (`…-forNonRepudiation`).
    pub fn sign_ca(&self) -> &CardCa {
        &self.sign_ca
    }

    /// The MEDIS-like authentication CA (`…-forAuthentication-forIndividual`).
    pub fn auth_ca(&self) -> &CardCa {
        &self.auth_ca
    }

    /// An authentication certificate (KeyUsage digitalSignature, policy [`HPKI_AUTH_POLICY`]).
    pub fn auth_cert(&self, spec: &CardSpec) -> Result<Leaf, PkiError> {
        self.leaf(spec, &self.auth_ca, KeyUsagePurpose::DigitalSignature, HPKI_AUTH_POLICY, &hpki_id(spec))
    }

    /// A signing certificate (KeyUsage nonRepudiation only, policy [`HPKI_SIGN_POLICY`]).
    pub fn sign_cert(&self, spec: &CardSpec) -> Result<Leaf, PkiError> {
        self.leaf(spec, &self.sign_ca, KeyUsagePurpose::ContentCommitment, HPKI_SIGN_POLICY, &hpki_id(spec))
    }

    /// Both certificates of one card, for the same holder and identifier.
    pub fn card(&self, spec: &CardSpec) -> Result<Card, PkiError> {
        let id = hpki_id(spec);
        Ok(Card {
            auth: self.leaf(spec, &self.auth_ca, KeyUsagePurpose::DigitalSignature, HPKI_AUTH_POLICY, &id)?,
            auth_ca: self.auth_ca.cert_der().to_vec(),
            auth_ca_pem: self.auth_ca.cert_pem().to_owned(),
            sign: self.leaf(spec, &self.sign_ca, KeyUsagePurpose::ContentCommitment, HPKI_SIGN_POLICY, &id)?,
            sign_ca: self.sign_ca.cert_der().to_vec(),
            sign_ca_pem: self.sign_ca.cert_pem().to_owned(),
        })
    }

    fn leaf(&self, spec: &CardSpec, ca: &CardCa, usage: KeyUsagePurpose, policy: &str, id: &str) -> Result<Leaf, PkiError> {
        let subject = hpki_name(&spec.organization, &spec.name, id);
        let alt = hpki_name(&spec.organization_kanji, &spec.name_kanji, id);
        make_leaf(
            LeafPlan {
                ca,
                subject,
                full_aki: true,
                alt_name: Some(alt),
                other_names: Vec::new(),
                key_usage: usage,
                role: spec.role.as_deref(),
                policy: spec.policy.as_deref().unwrap_or(policy),
                cps: format!("http://www.{TEST_HOST}/8_hpki/"),
            },
            spec,
        )
    }
}

/// The name of an HPKI end entity: `C=JP, O=organization, CN=name, serialNumber=id`, one attribute
/// per RDN (the subject in romaji, the subjectAltName directoryName in kanji).
fn hpki_name(organization: &str, name: &str, id: &str) -> Name {
    Name::new(&[(Attr::C, "JP"), (Attr::O, organization), (Attr::Cn, name), (Attr::SerialNumber, id)])
}

/// The subject of an HPKI end-entity certificate as the real ones write it (`docs/cards.md` §2.5):
/// `C=JP, O=organization, CN=name, serialNumber=id`, one attribute per RDN, C and serialNumber as
/// PrintableString, O and CN as UTF8String. For certificates issued outside this module (the remote
/// signer's credential certificates, `keys::certificate`).
pub fn hpki_subject(organization: &str, name: &str, id: &str) -> Result<rcgen::DistinguishedName, PkiError> {
    hpki_name(organization, name, id).rcgen()
}

/// The subjectAltName (non-critical) of an HPKI end entity: one directoryName of the same shape as
/// [`hpki_subject`], carrying the names in kanji.
pub fn hpki_alt_name(organization: &str, name: &str, id: &str) -> Result<rcgen::CustomExtension, PkiError> {
    ext::subject_alt_name(Some(&hpki_name(organization, name, id)), &[])
}

/// certificatePolicies (2.5.29.32), **critical** as on real HPKI certificates: one policy (dotted
/// OID) with a CPS pointer qualifier.
pub fn certificate_policies(policy: &str, cps_uri: &str) -> Result<rcgen::CustomExtension, PkiError> {
    ext::certificate_policies(policy, cps_uri)
}

/// subjectKeyIdentifier (non-critical) for a public key given as its subjectPublicKey bits (for RSA
/// the RSAPublicKey DER): the key id this crate's CAs and end entities carry.
pub fn subject_key_identifier(public_key_bits: &[u8]) -> rcgen::CustomExtension {
    ext::subject_key_identifier(&ext::key_id(public_key_bits))
}

fn hpki_id(spec: &CardSpec) -> String {
    spec.id.clone().unwrap_or_else(|| random_id("Test", 6))
}

fn jpki_id(spec: &CardSpec) -> String {
    spec.id.clone().unwrap_or_else(|| random_id("NT", 19))
}

/// A JPKI pair of J-LIS-like self-signed CAs: user authentication and digital signature.
pub struct Jpki {
    auth_ca: CardCa,
    sign_ca: CardCa,
}

impl Jpki {
    /// "Ninsho Test" CAs around `now` (see [`CaOptions::new`]).
    pub fn new(now: OffsetDateTime) -> Result<Jpki, PkiError> {
        Jpki::with(&CaOptions::new(now))
    }

    /// CAs as `options` say.
    pub fn with(options: &CaOptions) -> Result<Jpki, PkiError> {
        let label = &options.label;
        let ca = |purpose: &str, purpose_kanji: &str| {
            let name = Name::new(&[
                (Attr::C, "JP"),
                (Attr::O, &format!("{label} JPKI")),
                (Attr::Ou, &format!("JPKI for {purpose}")),
                (Attr::Ou, &format!("{label} Agency for Local Authority Information Systems")),
            ]);
            make_ca(
                CaPlan {
                    issuer: None,
                    full_aki: false,
                    alt_name: Some(Name::new(&[
                        (Attr::C, "JP"),
                        (Attr::O, &format!("公的個人認証サービス（{label}）")),
                        (Attr::Ou, &format!("公的個人認証サービス{purpose_kanji}（テスト）")),
                        (Attr::Ou, &format!("地方公共団体情報システム機構相当（{label}）")),
                    ])),
                    // J-LIS CAs name a directory entry only: the CRL is not on the web (docs/cards.md §1.5).
                    crl_points: vec![GeneralName::Dir(name.clone())],
                    issued_crl_point: GeneralName::Dir(name.clone()),
                    policy: None,
                    name,
                },
                options,
            )
        };
        Ok(Jpki { auth_ca: ca("user authentication", "利用者証明用")?, sign_ca: ca("digital signature", "署名用")? })
    }

    /// The user-authentication CA (the trust anchor for logins).
    pub fn auth_ca(&self) -> &CardCa {
        &self.auth_ca
    }

    /// The signing CA.
    pub fn sign_ca(&self) -> &CardCa {
        &self.sign_ca
    }

    /// A user-authentication certificate: subject `C=JP, CN=<id>`, KeyUsage digitalSignature, policy
    /// [`JPKI_AUTH_POLICY`]. `spec.role` and the organisation are not used.
    pub fn auth_cert(&self, spec: &CardSpec) -> Result<Leaf, PkiError> {
        self.leaf(spec, &self.auth_ca, KeyUsagePurpose::DigitalSignature, JPKI_AUTH_POLICY, &jpki_id(spec), &[])
    }

    /// A signing certificate: KeyUsage nonRepudiation, policy [`JPKI_SIGN_POLICY`], the holder's
    /// name (kanji) in a SAN otherName.
    pub fn sign_cert(&self, spec: &CardSpec) -> Result<Leaf, PkiError> {
        let name = [(JPKI_NAME_OTHER_NAME, spec.name_kanji.as_str())];
        self.leaf(spec, &self.sign_ca, KeyUsagePurpose::ContentCommitment, JPKI_SIGN_POLICY, &jpki_id(spec), &name)
    }

    /// Both certificates of one My Number card (each with its own opaque identifier, unless
    /// `spec.id` fixes one).
    pub fn card(&self, spec: &CardSpec) -> Result<Card, PkiError> {
        Ok(Card {
            auth: self.auth_cert(spec)?,
            auth_ca: self.auth_ca.cert_der().to_vec(),
            auth_ca_pem: self.auth_ca.cert_pem().to_owned(),
            sign: self.sign_cert(spec)?,
            sign_ca: self.sign_ca.cert_der().to_vec(),
            sign_ca_pem: self.sign_ca.cert_pem().to_owned(),
        })
    }

    fn leaf(
        &self,
        spec: &CardSpec,
        ca: &CardCa,
        usage: KeyUsagePurpose,
        policy: &str,
        id: &str,
        other_names: &[(&str, &str)],
    ) -> Result<Leaf, PkiError> {
        make_leaf(
            LeafPlan {
                ca,
                subject: Name::new(&[(Attr::C, "JP"), (Attr::Cn, id)]),
                full_aki: false,
                alt_name: None,
                other_names: other_names.to_vec(),
                key_usage: usage,
                role: None,
                policy: spec.policy.as_deref().unwrap_or(policy),
                cps: format!("http://jpki.{TEST_HOST}/cps.html"),
            },
            spec,
        )
    }
}

#[cfg(test)]
mod tests;
