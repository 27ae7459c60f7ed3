//! Development PKI: certificate authorities, TLS and card certificates, CRLs and PKCS#12
//! files, for `gateway demo` and for tests. Production certificates come from real CAs;
//! nothing here is used on the request path.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use time::OffsetDateTime;

/// Errors making certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// PKCS#12 encoding failed.
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
}

/// Key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 (TLS certificates).
    EcP256,
    /// RSA-2048 (smart-card certificates, as on real JPKI and HPKI cards).
    Rsa2048,
}

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
        let der = <rustls::pki_types::CertificateDer<'_> as rustls::pki_types::pem::PemObject>::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Pkcs12(format!("CA certificate PEM: {e}")))?;
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

/// The hcRole extension (ISO TS 17090 `subjectDirectoryAttributes`, OID 2.5.29.9) as real HPKI
/// certificates encode it (byte layout in `shared/domain/cards.md` §2.5).
///
/// Written by hand because it only *builds* test certificates: a handful of fixed tags around one
/// role string. Parsing on the verification side uses an ASN.1 library.
pub fn hc_role_extension(role: &str) -> CustomExtension {
    // 1.0.17090.0.1 (hcRole attribute) and 1.2.392.100495.1.6.1.1 (JHPKI coding scheme), DER content bytes.
    const HC_ROLE_OID: &[u8] = &[0x28, 0x81, 0x85, 0x42, 0x00, 0x01];
    const SCHEME_OID: &[u8] = &[0x2A, 0x83, 0x08, 0x86, 0x91, 0x0F, 0x01, 0x06, 0x01, 0x01];
    let free_text = tlv(0xA2, &tlv(0x0C, role.as_bytes()));
    let scheme = tlv(0xA0, &tlv(0x06, SCHEME_OID));
    let coded_data = tlv(0x31, &[scheme, free_text].concat());
    let actor = tlv(0x30, &tlv(0xA0, &coded_data));
    let actor_data = tlv(0x31, &actor);
    let values = tlv(0x31, &actor_data);
    let attribute = tlv(0x30, &[tlv(0x06, HC_ROLE_OID), values].concat());
    CustomExtension::from_oid_content(&[2, 5, 29, 9], tlv(0x30, &attribute))
}

/// DER tag-length-value with definite length (short or long form).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A PKCS#12 file holding `leaf`, its key and `chain`, protected by `password`
/// (PBES2 with AES-256 and an HMAC-SHA-256 MAC: what current browsers and OpenSSL 3 accept).
pub fn pkcs12(leaf: &Leaf, chain: &[&[u8]], alias: &str, password: &str) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let err = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
    let mut certs = vec![Certificate::from_der(&leaf.cert_der).map_err(err)?];
    for c in chain {
        certs.push(Certificate::from_der(c).map_err(err)?);
    }
    let key = PrivateKey::from_der(&leaf.key_der).map_err(err)?;
    let local_key_id: Vec<u8> = rand::random::<[u8; 20]>().to_vec();
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)));
    store.writer(password).write().map_err(err)
}

/// The leaf certificate (DER) of a PKCS#12 file; errors say whether the password was wrong.
pub fn pkcs12_leaf(data: &[u8], password: &str) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(data, password, Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| PkiError::Pkcs12(format!("cannot open (wrong password or not a PKCS#12 file): {e}")))?;
    if let Some(first) = store.private_key_chain().and_then(|(_, chain)| chain.certs().first()) {
        return Ok(first.as_der().to_vec());
    }
    store
        .entries()
        .find_map(|(_, e)| match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
            _ => None,
        })
        .ok_or_else(|| PkiError::Pkcs12("the file holds no certificate".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hc_role_extension_matches_real_card_bytes() {
        // extnValue of a real MEDIS-issued certificate (cards.md §2.5), 54 bytes.
        let expected = hex::decode(
            "3034 3032 0606288185420001 3128 3126 3024 a022 3120 a00c060a2a830886910f01060101 a2100c0e"
                .replace(' ', "")
                + &hex::encode("Medical Doctor"),
        )
        .unwrap();
        let ext = hc_role_extension("Medical Doctor");
        assert_eq!(ext.content(), expected.as_slice());
        assert_eq!(expected.len(), 54);
    }

    #[test]
    fn pkcs12_round_trips_and_refuses_a_wrong_password() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = Authority::new("Test CA", "", KeyAlg::EcP256, now).unwrap();
        let leaf = ca.issue(&LeafSpec::new("clinic", LeafUsage::TlsClient, now, 30)).unwrap();
        let p12 = pkcs12(&leaf, &[ca.cert_der()], "clinic", "secret").unwrap();
        assert_eq!(pkcs12_leaf(&p12, "secret").unwrap(), leaf.cert_der);
        assert!(pkcs12_leaf(&p12, "wrong").is_err());
    }
}
