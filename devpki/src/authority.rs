//! [`Authority`]: a CA that issues TLS and simple card certificates and CRLs.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::hc_role::hc_role_extension;
use crate::{KeyAlg, PkiError};

fn new_key(alg: KeyAlg) -> Result<KeyPair, PkiError> {
    Ok(match alg {
        KeyAlg::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyAlg::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?,
    })
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // and no leading zero byte, so the DER length is stable
    SerialNumber::from_slice(&bytes)
}

/// A certificate authority that can issue certificates and CRLs.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl Authority {
    /// A new self-signed root.
    pub fn new(common_name: &str, organization: &str, alg: KeyAlg, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = new_key(alg)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(random_serial());
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// An intermediate CA under `self`.
    pub fn intermediate(&self, common_name: &str, organization: &str, alg: KeyAlg, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = new_key(alg)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_pem = key.serialize_pem();
        Ok(Self { cert_der: cert.der().to_vec(), cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// Loads a CA saved with [`Authority::cert_pem`] and [`Authority::key_pem`].
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(format!("CA certificate: {e}")))?;
        Ok(Self { issuer, cert_der: der.to_vec(), cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf, PkiError> {
        let key = new_key(spec.alg)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&spec.common_name, &spec.organization);
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        match &spec.usage {
            LeafUsage::TlsServer { dns_names } => {
                params.subject_alt_names =
                    dns_names.iter().map(|n| n.clone().try_into().map(SanType::DnsName)).collect::<Result<_, _>>()?;
                params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            LeafUsage::TlsClient => {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            LeafUsage::CardAuth { hc_role } => {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                if let Some(role) = hc_role {
                    params.custom_extensions.push(hc_role_extension(role));
                }
            }
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            serial: serial.to_bytes(),
        })
    }

    /// A CRL listing `revoked_serials`, valid from `this_update` to `next_update`.
    pub fn crl(
        &self,
        revoked_serials: &[&[u8]],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: random_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
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

fn dn(common_name: &str, organization: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "JP");
    if !organization.is_empty() {
        dn.push(DnType::OrganizationName, organization);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub enum LeafUsage {
    /// A TLS server certificate for these DNS names (127.0.0.1 is added).
    TlsServer { dns_names: Vec<String> },
    /// A TLS client certificate (a clinic or a service client).
    TlsClient,
    /// A smart-card authentication certificate; HPKI ones carry an hcRole.
    CardAuth { hc_role: Option<String> },
}

/// Parameters of a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Subject CN.
    pub common_name: String,
    /// Subject O (may be empty).
    pub organization: String,
    /// Key algorithm.
    pub alg: KeyAlg,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Purpose.
    pub usage: LeafUsage,
}

impl LeafSpec {
    /// A spec valid from a day before `now` for `days` days.
    pub fn new(common_name: &str, usage: LeafUsage, now: OffsetDateTime, days: i64) -> Self {
        let alg = if matches!(usage, LeafUsage::CardAuth { .. }) { KeyAlg::Rsa2048 } else { KeyAlg::EcP256 };
        Self {
            common_name: common_name.to_owned(),
            organization: String::new(),
            alg,
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(days),
            usage,
        }
    }

    /// Sets the subject organisation.
    pub fn organization(mut self, org: &str) -> Self {
        org.clone_into(&mut self.organization);
        self
    }
}

/// An issued certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    /// DER certificate.
    pub cert_der: Vec<u8>,
    /// PEM certificate.
    pub cert_pem: String,
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    /// PKCS#8 DER private key.
    pub key_der: Vec<u8>,
    /// Serial number bytes.
    pub serial: Vec<u8>,
}
