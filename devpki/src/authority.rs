//! [`Authority`]: a CA that issues TLS and simple card certificates and CRLs.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint,
    CrlScope, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::hc_role::hc_role_extension;
use crate::keys::{NewKey, signing_key};
use crate::{KeyAlg, PkiError};

pub(crate) fn random_serial() -> SerialNumber {
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
    /// How this CA's key identifier is made (for the authorityKeyIdentifier of its CRLs).
    key_id_method: KeyIdMethod,
}

impl Authority {
    /// A new self-signed root.
    pub fn new(common_name: &str, organization: &str, alg: KeyAlg, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = signing_key(alg)?;
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
            key_id_method: KeyIdMethod::Sha256,
        })
    }

    /// An intermediate CA under `self`.
    pub fn intermediate(&self, common_name: &str, organization: &str, alg: KeyAlg, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = signing_key(alg)?;
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
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
            key_id_method: KeyIdMethod::Sha256,
        })
    }

    /// Loads a CA saved with [`Authority::cert_pem`] and [`Authority::key_pem`].
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(format!("CA certificate: {e}")))?;
        Ok(Self {
            issuer,
            cert_der: der.to_vec(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            key_id_method: KeyIdMethod::Sha256,
        })
    }

    /// A CA made elsewhere in this crate (the card PKIs), whose key identifier is `key_id`.
    pub(crate) fn from_parts(issuer: Issuer<'static, KeyPair>, cert_der: Vec<u8>, cert_pem: String, key_pem: String, key_id: Vec<u8>) -> Self {
        Self { issuer, cert_der, cert_pem, key_pem, key_id_method: KeyIdMethod::PreSpecified(key_id) }
    }

    /// The signer rcgen issues with.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
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
        let key = NewKey::generate(spec.alg)?;
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
        let cert = params.signed_by(key.public(), &self.issuer)?;
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.pkcs8_pem,
            key_der: key.pkcs8_der,
            serial: serial.to_bytes(),
        })
    }

    /// A CRL listing `revoked_serials`, valid from `this_update` to `next_update`, with a random
    /// cRLNumber.
    pub fn crl(
        &self,
        revoked_serials: &[&[u8]],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let spec = CrlSpec {
            revoked: revoked_serials.iter().map(|s| s.to_vec()).collect(),
            this_update,
            next_update,
            number: CrlNumber::Random,
            issuing_point: None,
        };
        self.crl_with(&spec)
    }

    /// A CRL as `spec` says, with authorityKeyIdentifier and cRLNumber (RFC 5280 §5.2).
    pub fn crl_with(&self, spec: &CrlSpec) -> Result<Vec<u8>, PkiError> {
        let params = CertificateRevocationListParams {
            this_update: spec.this_update,
            next_update: spec.next_update,
            crl_number: match spec.number {
                CrlNumber::Random => random_serial(),
                CrlNumber::Fixed(n) => SerialNumber::from(n),
            },
            issuing_distribution_point: spec.issuing_point.as_ref().map(|p| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint { uris: vec![p.uri.clone()] },
                scope: p.ca_certs_only.then_some(CrlScope::CaCertsOnly),
            }),
            revoked_certs: spec
                .revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: spec.this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.key_id_method.clone(),
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// The cRLNumber of a CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlNumber {
    /// A random 128-bit number (CRLs nobody compares).
    Random,
    /// This number (tests of "newer CRL" rules).
    Fixed(u64),
}

/// A CRL to issue.
#[derive(Debug, Clone)]
pub struct CrlSpec {
    /// Serial numbers (big-endian magnitude, as [`Leaf::serial`]) to list.
    pub revoked: Vec<Vec<u8>>,
    /// thisUpdate (also each entry's revocationDate).
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// cRLNumber.
    pub number: CrlNumber,
    /// issuingDistributionPoint (critical): a URL naming the CRL and whether it covers CA
    /// certificates only, as the MHLW root's ARLs do. `None`: a full CRL, no such extension.
    pub issuing_point: Option<IssuingPoint>,
}

/// The issuingDistributionPoint of a CRL (RFC 5280 §5.2.5). A relying party uses a CRL with one only
/// for certificates whose cRLDistributionPoints name the same point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuingPoint {
    /// The distribution point's URL.
    pub uri: String,
    /// onlyContainsCACerts.
    pub ca_certs_only: bool,
}

impl CrlSpec {
    /// An empty CRL number 1 issued an hour before `now`, next update in 4 days (MEDIS's rhythm).
    pub fn new(now: OffsetDateTime) -> CrlSpec {
        CrlSpec {
            revoked: Vec::new(),
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(4),
            number: CrlNumber::Fixed(1),
            issuing_point: None,
        }
    }

    /// Lists `serial` as revoked.
    pub fn revoke(mut self, serial: &[u8]) -> CrlSpec {
        self.revoked.push(serial.to_vec());
        self
    }

    /// Another window.
    pub fn window(mut self, this_update: OffsetDateTime, next_update: OffsetDateTime) -> CrlSpec {
        self.this_update = this_update;
        self.next_update = next_update;
        self
    }

    /// An issuingDistributionPoint.
    pub fn issuing_point(mut self, uri: &str, ca_certs_only: bool) -> CrlSpec {
        self.issuing_point = Some(IssuingPoint { uri: uri.to_owned(), ca_certs_only });
        self
    }

    /// Another cRLNumber.
    pub fn number(mut self, number: u64) -> CrlSpec {
        self.number = CrlNumber::Fixed(number);
        self
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
