//! The validation data an e-prescription signature carries (docs/design.md §3.12): for the
//! doctor's certificate, its CA certificates and the CAs' CRLs; for the time-stamp, the TSA's CA
//! certificates and CRLs. Read from the configured files at each signDoc, so that replacing a
//! file with a CA's newer CRL takes effect without a restart, and checked before the token is
//! consumed: a signature is never made with revocation data that is stale or that lists the
//! signing certificate. The files are parsed again only when one of them changes (its
//! modification time or size), and the trust store of a CA with them is kept until then.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use trust::{AnchorSpec, PathError, Policies, Purpose, Revocation, TrustStore};
use xades::ValidationData;

use crate::config::Config;
use crate::store::Credential;

/// Why the signer path's validation data cannot be given now.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// A configured file cannot be read or is not a CRL / certificate.
    #[error("{0}")]
    Files(String),
    /// The certificate's path does not validate with the configured CRLs at this time.
    #[error("{0}")]
    Path(PathError),
}

/// What the CRL files were when read ((modification time, size) of each), and their CRLs.
type ReadCrls = (Vec<(std::time::SystemTime, u64)>, Arc<Vec<Vec<u8>>>);

/// CRL files and what was last read from them.
#[derive(Debug)]
struct CrlFiles {
    paths: Vec<PathBuf>,
    read: Mutex<Option<ReadCrls>>,
}

impl CrlFiles {
    fn new(paths: Vec<PathBuf>) -> Self {
        Self { paths, read: Mutex::new(None) }
    }

    /// The CRLs, read again if a file changed since the last read; and whether they were.
    fn current(&self) -> anyhow::Result<(Arc<Vec<Vec<u8>>>, bool)> {
        let stamps = self
            .paths
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
                Ok((m.modified()?, m.len()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, crls)) = read.as_ref()
            && *seen == stamps
        {
            return Ok((crls.clone(), false));
        }
        let crls = Arc::new(read_crls(&self.paths)?);
        *read = Some((stamps, crls.clone()));
        Ok((crls, true))
    }
}

/// The configured sources.
#[derive(Debug)]
pub struct Sources {
    signer_crls: CrlFiles,
    tsa_anchors: Vec<PathBuf>,
    tsa_crls: CrlFiles,
    /// A trust store per signing CA (DER of the anchor) with the current signer CRLs.
    stores: Mutex<HashMap<Vec<u8>, Arc<TrustStore>>>,
}

impl Sources {
    /// From `[signdoc]` and `[tsa]`.
    pub fn new(config: &Config) -> Self {
        Self {
            signer_crls: CrlFiles::new(config.signdoc.crl_files.clone()),
            tsa_anchors: config.tsa.anchor_files.clone(),
            tsa_crls: CrlFiles::new(config.tsa.crl_files.clone()),
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// The signing certificate's validation data at `now`: its CA certificates (as stored with the
    /// credential) and one current CRL for each of them, the certificate on none. The path is
    /// validated for document signing with the last CA as the anchor.
    pub fn for_signer(&self, credential: &Credential, now: i64) -> Result<ValidationData, Unusable> {
        let Some(cert) = credential.certificate.as_deref() else {
            return Err(Unusable::Files(format!("credential {} has no certificate", credential.id)));
        };
        let Some((root, intermediates)) = credential.chain.split_last() else {
            return Err(Unusable::Files(format!("credential {} has no CA certificates stored", credential.id)));
        };
        let (all, changed) = self.signer_crls.current().map_err(|e| Unusable::Files(format!("signdoc.crl_files: {e:#}")))?;
        let store = {
            let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
            if changed {
                stores.clear();
            }
            match stores.get(root) {
                Some(store) => store.clone(),
                None => {
                    let revocation = Revocation::Crl(all.as_ref().clone());
                    let store = TrustStore::new(vec![AnchorSpec { certificate: root.clone(), revocation, policies: Policies::Any }]);
                    if let Some(problem) = store.problems().first() {
                        return Err(Unusable::Files(format!("the credential's CA or signdoc.crl_files: {}", problem.reason)));
                    }
                    let store = Arc::new(store);
                    stores.insert(root.clone(), store.clone());
                    store
                }
            }
        };
        let validated = store.validate(cert, intermediates, now, Purpose::DocumentSigning).map_err(Unusable::Path)?;
        // Only the CRLs the path used: one per CA.
        let used: Vec<&str> = validated.crls.iter().map(|c| c.sha256.as_str()).collect();
        let crls = all.iter().filter(|c| used.contains(&trust::sha256_hex(c).as_str())).cloned().collect();
        Ok(ValidationData { certificates: credential.chain.clone(), crls })
    }

    /// The TSA anchors (DER), as a trust store for checking tokens and as certificates to embed.
    pub fn tsa_anchors(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for path in &self.tsa_anchors {
            out.extend(read_certificates(path)?);
        }
        Ok(out)
    }

    /// The time-stamp's validation data: the TSA's CA certificates (from the token's certificates
    /// and the anchors, the TSA's own certificate left out) and the TSA CRLs.
    pub fn for_tsa(&self, token_certificates: &[Vec<u8>], tsa_certificate: &[u8], anchors: &[Vec<u8>]) -> anyhow::Result<ValidationData> {
        let mut certificates: Vec<Vec<u8>> = Vec::new();
        for c in token_certificates.iter().chain(anchors) {
            if c.as_slice() != tsa_certificate && !certificates.contains(c) {
                certificates.push(c.clone());
            }
        }
        let (crls, _) = self.tsa_crls.current().context("tsa.crl_files")?;
        Ok(ValidationData { certificates, crls: crls.as_ref().clone() })
    }
}

/// CRLs from PEM (`X509 CRL` blocks) or DER files.
pub fn read_crls(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let ders = if bytes.starts_with(b"-----") { pem_blocks(&bytes, "X509 CRL", path)? } else { vec![bytes] };
        for der in ders {
            trust::inspect_crl(&der).with_context(|| format!("{}: not a CRL", path.display()))?;
            out.push(der);
        }
    }
    Ok(out)
}

/// Certificates from a PEM file.
pub fn read_certificates(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let certs = infra::tls::read_pem_certs(path)?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate", path.display());
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

fn pem_blocks(bytes: &[u8], label: &str, path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let block = block.with_context(|| format!("{}: not PEM", path.display()))?;
        if block.label == label {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        anyhow::bail!("{}: no {label} block", path.display());
    }
    Ok(out)
}
