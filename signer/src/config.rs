//! The signer's configuration: defaults, then `signer.toml` (or `--config FILE`), then
//! `NINSHO_SIGNER_*` variables (`__` between nested keys, e.g. `NINSHO_SIGNER_GATEWAY__URL`).
//! Every key, its default and its checks are in this file; `deploy/signer.example.toml` documents
//! each one and a test parses it, so the two cannot drift.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// The documented example configuration.
pub const EXAMPLE: &str = include_str!("../../deploy/signer.example.toml");

/// Upper bound of `server.max_body_bytes`: bodies are read whole before a handler runs.
const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The whole signer configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite database and generated key files live.
    pub data_dir: PathBuf,
    /// The main (mTLS) listener: the CSC API.
    pub server: ServerConfig,
    /// The server certificate and the CAs of callers' client certificates.
    pub tls: TlsConfig,
    /// The plain-HTTP operations listener (health, readiness, metrics).
    pub ops: OpsConfig,
    /// The signer's own database (never the gateway's).
    pub database: DatabaseConfig,
    /// The gateway whose tokens this signer accepts.
    pub gateway: GatewayConfig,
    /// What this signer is called and accepts.
    pub csc: CscConfig,
    /// Where doctors' private keys live.
    pub keys: KeysConfig,
    /// The signing CA `admin credential create` issues certificates with (demo and tests; a real
    /// deployment sends the printed CSR to its CA instead).
    pub ca: CaConfig,
    /// The audit log's key.
    pub audit: AuditConfig,
    /// The e-prescription signature (`signatures/signDoc`).
    pub signdoc: SignDocConfig,
    /// The time-stamping authority signDoc asks.
    pub tsa: TsaConfig,
    /// What `POST /api/v1/verify` and `ninsho-signer verify FILE` trust.
    pub verify: VerifyConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the mTLS listener.
    pub listen: SocketAddr,
    /// Largest request body; larger ones get 413 before any check.
    pub max_body_bytes: usize,
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Time for an HTTP/1.1 request's headers.
    pub header_timeout_secs: u64,
    /// A connection without a request for this long is closed.
    pub idle_timeout_secs: u64,
    /// After SIGTERM, `/readyz` fails at once and the listener serves this long before it stops
    /// accepting.
    pub shutdown_drain_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 9443).into(),
            max_body_bytes: 256 * 1024,
            max_connections: 1024,
            max_connections_per_ip: 256,
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
            idle_timeout_secs: 120,
            shutdown_drain_secs: 5,
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CA certificates (PEM) under which callers' client certificates are accepted at the
    /// handshake; each caller must also be registered by fingerprint (`admin client add`).
    pub client_ca_file: PathBuf,
}

/// `[ops]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address of the plain-HTTP listener for `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self { listen: ([127, 0, 0, 1], 9444).into() }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://…`. Empty (and no `url_file`) means
    /// `sqlite://<data_dir>/signer.db`.
    pub url: String,
    /// File holding the URL (mode 0600); not together with `url`.
    pub url_file: PathBuf,
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: String::new(), url_file: PathBuf::new(), max_connections: 16, acquire_timeout_ms: 1000 }
    }
}

/// `[gateway]`: where tokens come from and are consumed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The gateway's base URL (its mTLS listener): consume goes to
    /// `<url>/api/v1/signing-tokens/consume`.
    pub url: Url,
    /// The JWKS; empty means `<url>/.well-known/jwks.json`.
    pub jwks_url: String,
    /// The `iss` tokens must carry; empty means the origin of `url`.
    pub issuer: String,
    /// CA certificates (PEM) that the gateway's server certificate must chain to.
    pub ca_file: PathBuf,
    /// This signer's client certificate at the gateway (registered there with role `signer`).
    pub client_cert_file: PathBuf,
    /// Its private key.
    pub client_key_file: PathBuf,
    /// Longest wait for an answer from the gateway; past it the request gets 503.
    pub timeout_ms: u64,
    /// A token with an unknown `kid` makes the signer fetch the JWKS again, at most this often.
    pub jwks_refresh_min_secs: u64,
    /// The JWKS is fetched again when it is older than this (rotation without downtime).
    pub jwks_max_age_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            url: default_gateway_url(),
            jwks_url: String::new(),
            issuer: String::new(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            timeout_ms: 3000,
            jwks_refresh_min_secs: 10,
            jwks_max_age_secs: 300,
        }
    }
}

fn default_gateway_url() -> Url {
    Url::parse("https://localhost:8443/").unwrap_or_else(|_| unreachable!("a valid literal URL"))
}

/// `[csc]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CscConfig {
    /// The `aud` this signer accepts: the gateway's `tokens.audience`.
    pub audience: String,
    /// `name` in `info`.
    pub name: String,
    /// `region` in `info` (ISO 3166-1 alpha-2).
    pub region: String,
    /// Most hashes one `signHash` request may carry.
    pub max_hashes: usize,
}

impl Default for CscConfig {
    fn default() -> Self {
        Self {
            audience: "urn:ninsho:remote-signer".to_owned(),
            name: "Ninsho remote signer".to_owned(),
            region: "JP".to_owned(),
            max_hashes: 64,
        }
    }
}

/// Which key backend holds private keys.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyBackendKind {
    /// Keys in the database, sealed under the key-encryption key.
    #[default]
    Software,
    /// Keys on a PKCS#11 token, never extractable.
    Pkcs11,
}

/// `[keys]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `software` (default) or `pkcs11`. Credentials remember their backend: one made in another
    /// backend than the configured one is refused, never used.
    pub backend: KeyBackendKind,
    /// Software keys: the key-encryption key, base64 of 32 bytes. Prefer the file.
    pub key_encryption_key: String,
    /// Software keys: file with the base64 key-encryption key (mode 0600); it must exist. Empty
    /// with no key above means `<data_dir>/key-kek`, created on first start (one instance only:
    /// several instances must share the key).
    pub key_encryption_key_file: PathBuf,
    /// Key size of new credentials (2048, 3072 or 4096).
    pub rsa_bits: u32,
    /// The PKCS#11 module.
    pub pkcs11: Pkcs11Section,
}

/// `[keys.pkcs11]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Section {
    /// Path of the module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token, by label (never by slot number, which can change).
    pub token_label: String,
    /// File with the user PIN (mode 0600).
    pub pin_file: PathBuf,
}

/// `[ca]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// The signing CA's certificate (PEM). Empty: `credential create` prints a CSR.
    pub cert_file: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key_file: PathBuf,
    /// Years a new certificate is valid (HPKI signing certificates: 5).
    pub validity_years: i32,
}

/// `[audit]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The HMAC key of the audit chain, base64 of 32 bytes. Prefer the file.
    pub key: String,
    /// File with the key (mode 0600); it must exist. Empty means `<data_dir>/audit-key`, created
    /// on first `migrate`.
    pub key_file: PathBuf,
}

/// `[signdoc]`: the e-prescription signature (docs/design.md §3.12).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignDocConfig {
    /// CRLs (PEM or DER files) of the CAs on the signing certificates' paths, embedded in every
    /// signature (RevocationValues). Read at each signDoc, so a CA's new CRL is picked up when the
    /// file is replaced; a document is signed only while they are current and do not list the
    /// signing certificate.
    pub crl_files: Vec<PathBuf>,
}

/// `[tsa]`: the RFC 3161 time-stamping authority (an accredited one in production).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TsaConfig {
    /// The TSA's URL (http or https). Empty: signDoc is refused (AdES-B-LT needs a time-stamp).
    pub url: String,
    /// CA certificates (PEM) the TSA's certificate must chain to; its tokens are checked against
    /// them before they are embedded.
    pub anchor_files: Vec<PathBuf>,
    /// CRLs (PEM or DER files) of the TSA's CAs, embedded as the time-stamp's validation data.
    pub crl_files: Vec<PathBuf>,
    /// How long one time-stamp request may take.
    pub timeout_ms: u64,
}

impl Default for TsaConfig {
    fn default() -> Self {
        Self { url: String::new(), anchor_files: Vec::new(), crl_files: Vec::new(), timeout_ms: 10_000 }
    }
}

/// `[verify]`: the anchors a signed prescription is judged against.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// HPKI signing CA roots (PEM). None configured: every signature's certificate is reported
    /// untrusted.
    pub anchor_files: Vec<PathBuf>,
    /// TSA roots (PEM) for the signature time-stamp.
    pub tsa_anchor_files: Vec<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `signer=debug,info`.
    pub filter: String,
    /// JSON lines (for collectors) rather than text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".to_owned(), json: false }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data-signer"),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            ops: OpsConfig::default(),
            database: DatabaseConfig::default(),
            gateway: GatewayConfig::default(),
            csc: CscConfig::default(),
            keys: KeysConfig { rsa_bits: 2048, ..KeysConfig::default() },
            ca: CaConfig { validity_years: 5, ..CaConfig::default() },
            audit: AuditConfig::default(),
            signdoc: SignDocConfig::default(),
            tsa: TsaConfig::default(),
            verify: VerifyConfig::default(),
            log: LogConfig::default(),
        }
    }
}

pub use infra::config::ConfigError;

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `NINSHO_SIGNER_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let figment = infra::config::layered::<Config>(file, "NINSHO_SIGNER_").map_err(ConfigError::Invalid)?;
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// TOML text on top of the defaults (no environment); for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = infra::config::from_toml::<Config>(text).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and combinations; every problem names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let s = &self.server;
        if s.max_body_bytes == 0 || s.max_body_bytes > MAX_BODY_LIMIT {
            return invalid("server.max_body_bytes must be between 1 and 16 MiB");
        }
        if s.max_connections == 0 || s.max_connections_per_ip == 0 || s.max_connections_per_ip > s.max_connections {
            return invalid("server.max_connections and max_connections_per_ip must be positive, per IP at most the total");
        }
        if s.handshake_timeout_secs == 0 || s.header_timeout_secs == 0 || s.idle_timeout_secs == 0 {
            return invalid("server timeouts must be positive");
        }
        if !self.database.url.is_empty() && !self.database.url_file.as_os_str().is_empty() {
            return invalid("database.url and database.url_file are exclusive: set one");
        }
        if let Err(e) = check_database_url(&self.database.url) {
            return invalid(&e);
        }
        if self.database.max_connections == 0 || self.database.acquire_timeout_ms == 0 {
            return invalid("database.max_connections and acquire_timeout_ms must be positive");
        }
        if self.gateway.url.scheme() != "https" {
            return invalid("gateway.url must be https: tokens are consumed over mTLS");
        }
        if !self.gateway.jwks_url.is_empty() {
            match Url::parse(&self.gateway.jwks_url) {
                Ok(u) if u.scheme() == "https" => {}
                _ => return invalid("gateway.jwks_url must be an https URL"),
            }
        }
        if self.gateway.timeout_ms == 0 || self.gateway.jwks_max_age_secs == 0 {
            return invalid("gateway.timeout_ms and gateway.jwks_max_age_secs must be positive");
        }
        if self.csc.audience.is_empty() {
            return invalid("csc.audience must be set (the gateway's tokens.audience)");
        }
        if !(1..=1000).contains(&self.csc.max_hashes) {
            return invalid("csc.max_hashes must be between 1 and 1000");
        }
        if !keys::RSA_KEY_SIZES.contains(&self.keys.rsa_bits) {
            return invalid("keys.rsa_bits must be 2048, 3072 or 4096");
        }
        if !self.keys.key_encryption_key.is_empty() && !self.keys.key_encryption_key_file.as_os_str().is_empty() {
            return invalid("keys.key_encryption_key and keys.key_encryption_key_file are exclusive: set one");
        }
        if self.keys.backend == KeyBackendKind::Pkcs11 {
            let p = &self.keys.pkcs11;
            if p.module.as_os_str().is_empty() || p.token_label.is_empty() || p.pin_file.as_os_str().is_empty() {
                return invalid("keys.backend = \"pkcs11\" needs keys.pkcs11.module, token_label and pin_file");
            }
        }
        if self.ca.cert_file.as_os_str().is_empty() != self.ca.key_file.as_os_str().is_empty() {
            return invalid("ca.cert_file and ca.key_file go together");
        }
        if !(1..=10).contains(&self.ca.validity_years) {
            return invalid("ca.validity_years must be between 1 and 10");
        }
        if !self.tsa.url.is_empty() {
            match Url::parse(&self.tsa.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return invalid("tsa.url must be an http or https URL"),
            }
            if self.tsa.anchor_files.is_empty() {
                return invalid("tsa.url needs tsa.anchor_files: the TSA's tokens are checked before they are embedded");
            }
        }
        if !(100..=120_000).contains(&self.tsa.timeout_ms) {
            return invalid("tsa.timeout_ms must be between 100 and 120000");
        }
        if !self.audit.key.is_empty() && !self.audit.key_file.as_os_str().is_empty() {
            return invalid("audit.key and audit.key_file are exclusive: set one");
        }
        Ok(())
    }

    /// The database URL: `database.url`, the contents of `database.url_file`, or the SQLite file
    /// in the data directory.
    pub fn database_url(&self) -> anyhow::Result<String> {
        let url = if self.database.url_file.as_os_str().is_empty() {
            self.database.url.clone()
        } else {
            let url = infra::config::read_url_file(&self.database.url_file, "database URL")?;
            check_database_url(&url).map_err(|e| anyhow::anyhow!("{e} (the URL read from {})", self.database.url_file.display()))?;
            url
        };
        if url.is_empty() { Ok(format!("sqlite://{}", self.data_dir.join("signer.db").display())) } else { Ok(url) }
    }

    /// The `iss` tokens must carry.
    pub fn issuer(&self) -> String {
        if self.gateway.issuer.is_empty() { self.gateway.url.origin().ascii_serialization() } else { self.gateway.issuer.clone() }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> anyhow::Result<Url> {
        if self.gateway.jwks_url.is_empty() {
            Ok(self.gateway.url.join(".well-known/jwks.json")?)
        } else {
            Ok(Url::parse(&self.gateway.jwks_url)?)
        }
    }

    /// The consume endpoint.
    pub fn consume_url(&self) -> anyhow::Result<Url> {
        Ok(self.gateway.url.join("api/v1/signing-tokens/consume")?)
    }

    /// The software keys' key-encryption key: the value, else the configured file (which must
    /// exist), else `<data_dir>/key-kek` (created on first use).
    pub fn key_kek(&self) -> anyhow::Result<infra::kek::Kek> {
        let k = &self.keys;
        if !k.key_encryption_key.is_empty() {
            return infra::kek::Kek::from_base64(&k.key_encryption_key);
        }
        if k.key_encryption_key_file.as_os_str().is_empty() {
            return infra::kek::Kek::from_file(&self.data_dir.join("key-kek"));
        }
        let text = infra::secret_file::read_existing_private_file(&k.key_encryption_key_file, "key-encryption key")?;
        infra::kek::Kek::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", k.key_encryption_key_file.display()))
    }

    /// The audit key; `create` makes `<data_dir>/audit-key` when no key is configured and the
    /// file is missing (`migrate` does; every other command needs it to exist).
    pub fn audit_key(&self, create: bool) -> anyhow::Result<infra::audit_chain::AuditKey> {
        use base64::Engine as _;
        if !self.audit.key.is_empty() {
            return infra::audit_chain::AuditKey::from_base64(&self.audit.key);
        }
        let path = self.audit_key_path();
        let text = if create && self.audit.key_file.as_os_str().is_empty() {
            infra::secret_file::read_private_file(&path, "audit key", || {
                let bytes = infra::secret_file::random_bytes::<32>()?;
                Ok(zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())))
            })?
        } else {
            infra::secret_file::read_existing_private_file(&path, "audit key")?
        };
        infra::audit_chain::AuditKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The audit key's file: `audit.key_file`, else `<data_dir>/audit-key`.
    pub fn audit_key_path(&self) -> PathBuf {
        if self.audit.key_file.as_os_str().is_empty() { self.data_dir.join("audit-key") } else { self.audit.key_file.clone() }
    }

    /// The configured key backend, opened (PKCS#11: module loaded, token found, logged in).
    pub fn key_backend(&self) -> anyhow::Result<keys::Backend> {
        match self.keys.backend {
            KeyBackendKind::Software => Ok(keys::Backend::Software),
            KeyBackendKind::Pkcs11 => {
                let p = &self.keys.pkcs11;
                let pin = infra::secret_file::read_existing_private_file(&p.pin_file, "PKCS#11 PIN")?;
                let config = keys::Pkcs11Config {
                    module: p.module.clone(),
                    token_label: p.token_label.clone(),
                    pin: secrecy::SecretString::from(pin.trim_end().to_owned()),
                };
                Ok(keys::Backend::Pkcs11(keys::Pkcs11Backend::open(&config)?))
            }
        }
    }
}

fn check_database_url(url: &str) -> Result<(), String> {
    let ok = url.is_empty() || url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:");
    if ok { Ok(()) } else { Err("database.url must start with sqlite: or postgres:".into()) }
}

#[cfg(test)]
mod tests;
