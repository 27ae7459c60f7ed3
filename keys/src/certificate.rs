//! The credential certificates of the signer's keys: a PKCS#10 request for a real CA
//! ([`csr_pem`]), and certificates from a signing CA this process holds ([`SigningCa`]), shaped like
//! the real MEDIS-issued HPKI signing certificate (docs/cards.md §2.5):
//!
//! | field | value |
//! |---|---|
//! | subject | `C=JP, O=<facility>, CN=<name in romaji>, serialNumber=<CA-assigned id>` |
//! | subjectAltName | directoryName `C=JP, O=<facility>, CN=<kanji name>, serialNumber=<id>` (with a kanji name) |
//! | keyUsage | **critical**, nonRepudiation only |
//! | certificatePolicies | **critical**, `1.2.392.100495.1.5.1.1.0.1` with a CPS pointer |
//! | subjectDirectoryAttributes | hcRole `Medical Doctor` (the real bytes, `devpki::hc_role_extension`) |
//! | key identifiers | authorityKeyIdentifier (the CA's key id), subjectKeyIdentifier |
//! | signature | sha256WithRSAEncryption |
//! | validity | from 00:00:00 JST of the first day to 23:59:59 JST of the last ([`hpki_validity`]) |
//!
//! Left out on purpose: cRLDistributionPoints, since no CRL is published for these CAs and a
//! pointer to nothing makes revocation-checking relying parties fail; and the issuer-name-and-serial
//! part of the real authorityKeyIdentifier (the key id alone identifies the CA, RFC 5280 §4.2.1.1).

use std::cell::RefCell;

use openssl::pkey::PKey;
use openssl::x509::X509;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SerialNumber, SignatureAlgorithm, SigningKey,
};
use time::macros::{offset, time};
use time::{Date, Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::software::{rsa_public, sha256};
use crate::{Backend, KeyError, SignAlgorithm, StoredKey};

pub use devpki::cards::{HPKI_SIGN_CA_POLICY, HPKI_SIGN_POLICY, MEDICAL_DOCTOR};

/// The CPS pointer written into certificates (the real ones point at `http://www.medis.or.jp/8_hpki/`).
pub const DEMO_CPS_URI: &str = "http://hpki.ninsho-demo.example/cps/";

/// The doctor a credential certificate names, as the real MEDIS signing certificate does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorSubject {
    /// Subject CN, in romaji (`Sanjushi Kagurazaka`).
    pub name_romaji: String,
    /// The name in kanji (`神楽坂　三十四`), written as a directoryName in subjectAltName.
    pub name_kanji: Option<String>,
    /// Subject O, the facility (`MEDIS UNIVERSITY HOSPITAL`).
    pub organization: String,
    /// Subject serialNumber, a CA-assigned identifier (`Test117120`): PrintableString characters
    /// only. Not the medical registration number (docs/cards.md §2.5).
    pub serial: String,
}

impl DoctorSubject {
    fn distinguished_name(&self) -> Result<DistinguishedName, KeyError> {
        Ok(devpki::cards::hpki_subject(&self.organization, &self.name_romaji, &self.serial)?)
    }

    fn alt_name(&self) -> Result<Option<rcgen::CustomExtension>, KeyError> {
        match &self.name_kanji {
            Some(kanji) => Ok(Some(devpki::cards::hpki_alt_name(&self.organization, kanji, &self.serial)?)),
            None => Ok(None),
        }
    }
}

/// A PKCS#10 certificate request (PEM) for `key`, signed by it in its backend with
/// sha256WithRSAEncryption: subject and subjectAltName as [`DoctorSubject`] says. What a real CA
/// (MEDIS) would be sent.
pub fn csr_pem(backend: &Backend, key: &StoredKey, subject: &DoctorSubject) -> Result<String, KeyError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.distinguished_name()?;
    params.custom_extensions.extend(subject.alt_name()?);
    let remote = RemoteKey::new(backend, key)?;
    match params.serialize_request(&remote) {
        Ok(csr) => Ok(csr.pem()?),
        // rcgen only knows "remote key error": hand back what the backend said.
        Err(e) => Err(remote.error.take().unwrap_or(KeyError::from(e))),
    }
}

/// rcgen's signing key over a [`Backend`] key: rcgen hands over the whole to-be-signed bytes, the
/// backend signs their SHA-256 digest with RSASSA-PKCS1-v1_5.
struct RemoteKey<'a> {
    backend: &'a Backend,
    key: &'a StoredKey,
    public: RsaPublicKey,
    /// The backend's error from the last `sign`, since rcgen's error type cannot carry it.
    error: RefCell<Option<KeyError>>,
}

impl<'a> RemoteKey<'a> {
    fn new(backend: &'a Backend, key: &'a StoredKey) -> Result<Self, KeyError> {
        let public = RsaPublicKey::from_spki(&backend.public_key(key)?)?;
        Ok(Self { backend, key, public, error: RefCell::new(None) })
    }
}

impl PublicKeyData for RemoteKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.public.algorithm()
    }
}

impl SigningKey for RemoteKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signed = sha256(msg)
            .and_then(|digest| self.backend.sign_digest(self.key, SignAlgorithm::RsaPkcs1Sha256, &digest));
        signed.map_err(|e| {
            self.error.replace(Some(e));
            rcgen::Error::RemoteKeyError
        })
    }
}

/// An RSA public key rcgen can certify without holding its private key.
struct RsaPublicKey {
    /// The subjectPublicKey bits: RSAPublicKey DER (RFC 8017 A.1.1).
    pkcs1: Vec<u8>,
}

impl RsaPublicKey {
    /// From SubjectPublicKeyInfo DER; RSA of 2048 bits or more only.
    fn from_spki(spki: &[u8]) -> Result<Self, KeyError> {
        let key = rsa_public(spki)?;
        Ok(Self { pkcs1: key.rsa()?.public_key_to_der_pkcs1()? })
    }
}

impl PublicKeyData for RsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.pkcs1
    }

    /// rsaEncryption in the SubjectPublicKeyInfo, sha256WithRSAEncryption where this key signs.
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// The validity of an HPKI signing certificate issued on `issued_at`: from 00:00:00 JST that day to
/// 23:59:59 JST on the same date `years` later (the real MEDIS certificate: 2022-02-06 15:00:00Z to
/// 2027-02-07 14:59:59Z). A 29 February start ends on 28 February.
pub fn hpki_validity(issued_at: OffsetDateTime, years: i32) -> (OffsetDateTime, OffsetDateTime) {
    let start = issued_at.to_offset(offset!(+9)).date();
    let end_year = start.year() + years;
    let end = start
        .replace_year(end_year)
        .or_else(|_| Date::from_calendar_date(end_year, start.month(), 28))
        .unwrap_or(start);
    (jst_day_start(start), jst_day_end(end))
}

fn jst_day_start(date: Date) -> OffsetDateTime {
    date.with_time(time!(00:00:00)).assume_offset(offset!(+9)).to_offset(offset!(UTC))
}

fn jst_day_end(date: Date) -> OffsetDateTime {
    date.with_time(time!(23:59:59)).assume_offset(offset!(+9)).to_offset(offset!(UTC))
}

/// A CA that issues credential certificates for keys it does not hold.
pub struct SigningCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pem: Zeroizing<String>,
    cps_uri: String,
}

impl SigningCa {
    /// A CA from its certificate (PEM) and its private key (PKCS#8 PEM). The key must be the
    /// certificate's (RSA-2048 or more, or ECDSA P-256/P-384: what rcgen signs with).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, KeyError> {
        let cert = X509::from_pem(cert_pem.as_bytes())
            .map_err(|_| KeyError::Certificate("CA certificate: not PEM".into()))?;
        let private = PKey::private_key_from_pem(key_pem.as_bytes())
            .map_err(|_| KeyError::Certificate("CA private key: not a PEM private key".into()))?;
        if !cert.public_key()?.public_eq(&private) {
            return Err(KeyError::Certificate("the CA private key does not belong to the CA certificate".into()));
        }
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_der: cert.to_der()?,
            cert_pem: String::from_utf8_lossy(&cert.to_pem()?).into_owned(),
            key_pem: Zeroizing::new(key_pem.to_owned()),
            cps_uri: DEMO_CPS_URI.to_owned(),
        })
    }

    /// A new self-signed demo signing CA, RSA-2048, shaped like the real
    /// `C=JP, O=MEDIS, OU=MEDIS HPKI CA, CN=HPKI-01-MedisSignCA2-forNonRepudiation` but named as a
    /// demo: basicConstraints critical (CA, path length 0), keyUsage critical keyCertSign and
    /// cRLSign, certificatePolicies critical with the MEDIS Sign CA2 policy, subjectKeyIdentifier;
    /// valid for 20 years from 00:00 JST on the day of `now`.
    pub fn generate_demo(now: OffsetDateTime) -> Result<Self, KeyError> {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, rcgen::DnValue::PrintableString("JP".try_into()?));
        dn.push(DnType::OrganizationName, "Ninsho Demo MEDIS-like");
        dn.push(DnType::OrganizationalUnitName, "Ninsho Demo HPKI CA");
        dn.push(DnType::CommonName, "HPKI-01-NinshoDemoSignCA2-forNonRepudiation");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = hpki_validity(now, 20);
        params.serial_number = Some(random_serial()?);
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.custom_extensions.push(devpki::cards::certificate_policies(HPKI_SIGN_CA_POLICY, DEMO_CPS_URI)?);
        let cert = params.self_signed(&key)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
            cps_uri: DEMO_CPS_URI.to_owned(),
        })
    }

    /// Another CPS pointer in the certificates this CA issues.
    pub fn with_cps_uri(mut self, uri: &str) -> Self {
        uri.clone_into(&mut self.cps_uri);
        self
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA private key, PKCS#8 PEM (secret: the signer stores it sealed).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a credential certificate (DER) for the RSA public key `spki_der` (SubjectPublicKeyInfo,
    /// 2048 bits or more), shaped as the module documentation shows. `not_before` is moved back to
    /// 00:00:00 JST of its day and `not_after` forward to 23:59:59 JST of its day, as real HPKI
    /// certificates are ([`hpki_validity`] makes the usual five-year window).
    pub fn issue(
        &self,
        spki_der: &[u8],
        subject: &DoctorSubject,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Vec<u8>, KeyError> {
        let public = RsaPublicKey::from_spki(spki_der)?;
        let not_before = jst_day_start(not_before.to_offset(offset!(+9)).date());
        let not_after = jst_day_end(not_after.to_offset(offset!(+9)).date());
        if not_after <= not_before + Duration::seconds(1) {
            return Err(KeyError::Certificate("not_after must be after not_before".into()));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.distinguished_name()?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        // nonRepudiation (X.509 "contentCommitment") alone, critical (rcgen marks keyUsage
        // critical): MSV refuses an HPKI signing certificate without it (docs/cards.md §2.5).
        params.key_usages = vec![KeyUsagePurpose::ContentCommitment];
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions.push(devpki::cards::subject_key_identifier(public.der_bytes()));
        params.custom_extensions.extend(subject.alt_name()?);
        params.custom_extensions.push(devpki::hc_role_extension(MEDICAL_DOCTOR));
        params.custom_extensions.push(devpki::cards::certificate_policies(HPKI_SIGN_POLICY, &self.cps_uri)?);
        Ok(params.signed_by(&public, &self.issuer)?.der().to_vec())
    }
}

impl SigningCa {
    /// A CRL (DER) of this CA: thisUpdate `this_update`, nextUpdate `next_update`, listing the
    /// certificates with `revoked` serial numbers (big-endian bytes) as revoked at `this_update`,
    /// with authorityKeyIdentifier and a random cRLNumber (RFC 5280 §5.2). The e-prescription
    /// signature embeds such CRLs (docs/design.md §3.12).
    pub fn crl(&self, this_update: OffsetDateTime, next_update: OffsetDateTime, revoked: &[Vec<u8>]) -> Result<Vec<u8>, KeyError> {
        if next_update <= this_update {
            return Err(KeyError::Certificate("a CRL's nextUpdate must be after its thisUpdate".into()));
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: random_serial()?,
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// A random positive 128-bit serial number with no leading zero byte (RFC 5280 §4.1.2.2: at most 20
/// octets, unpredictable).
fn random_serial() -> Result<SerialNumber, KeyError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn validity_matches_the_real_certificate() {
        // Issued some time on 2022-02-07 JST; the real one runs 2022-02-06 15:00:00Z to 2027-02-07 14:59:59Z.
        let (from, to) = hpki_validity(datetime!(2022-02-07 03:12:00 UTC), 5);
        assert_eq!(from, datetime!(2022-02-06 15:00:00 UTC));
        assert_eq!(to, datetime!(2027-02-07 14:59:59 UTC));
        // 20:00Z is already the next day in Japan.
        let (from, _) = hpki_validity(datetime!(2022-02-06 20:00:00 UTC), 5);
        assert_eq!(from, datetime!(2022-02-06 15:00:00 UTC));
        let (_, to) = hpki_validity(datetime!(2024-02-29 00:00:00 +9), 5);
        assert_eq!(to, datetime!(2029-02-28 23:59:59 +9));
    }
}
