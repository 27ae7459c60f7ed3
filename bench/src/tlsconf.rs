//! TLS configurations for the load generator (client with an identity) and the trivial server
//! (mandatory client certificate), all on the aws-lc-rs provider like the gateway.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Reads every certificate in a PEM file.
pub fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("open {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse certificates in {}", path.display()))
}

/// Reads the first private key in a PEM file.
pub fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("read private key {}", path.display()))
}

fn roots(ca: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).context("add trust anchor")?;
    }
    Ok(roots)
}

/// A client configuration presenting `cert`/`key` and trusting only `ca`.
///
/// `resume = false` turns session resumption off, so that every new connection is a full
/// handshake: new-connection scenarios then measure the worst case, which is also what an EMR
/// backend pays after every idle period longer than the ticket lifetime.
pub fn client(
    ca: &Path,
    cert: &Path,
    key_path: &Path,
    resume: bool,
) -> anyhow::Result<Arc<ClientConfig>> {
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certs(cert)?, key(key_path)?)
        .context("client identity")?;
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// `config` with a new, empty session store (resumption stays on).
pub fn own_sessions(config: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = (**config).clone();
    config.resumption = Resumption::in_memory_sessions(256);
    Arc::new(config)
}

/// A server configuration that requires a client certificate issued by `client_ca`.
pub fn server(cert: &Path, key_path: &Path, client_ca: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots(client_ca)?))
        .build()
        .context("client verifier")?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key(key_path)?)
        .context("server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
