//! Configuration: code defaults, then an optional `gateway.toml`, then `GATEWAY_*` environment
//! variables (`__` separates nesting levels: `GATEWAY_SERVER__LISTEN`). Environment beats file.
//! Unknown keys are errors, and everything is checked once at start-up ([`Config::validate`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

/// The documented example configuration, parsed by a test so it cannot drift from the code.
pub const EXAMPLE: &str = include_str!("../../deploy/gateway.example.toml");

/// The whole gateway configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite database and generated files live.
    pub data_dir: PathBuf,
    /// The main (mTLS) listener.
    pub server: ServerConfig,
    /// Server certificate of the main listener.
    pub tls: TlsConfig,
    /// The plain-HTTP operations listener (health, readiness, metrics).
    pub ops: OpsConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Doctor login rules.
    pub login: LoginConfig,
    /// Logging.
    pub log: LogConfig,
}

/// The main listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the mTLS listener.
    pub listen: SocketAddr,
    /// The URL doctors' browsers use; its origin is what state-changing requests must come from.
    pub public_url: Url,
    /// Seconds a client gets to finish the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds a client gets to send a request's headers.
    pub header_timeout_secs: u64,
}

/// TLS material of the main listener. Client trust anchors live in the database
/// (`gateway admin anchor add`), so every instance trusts the same CAs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file: server certificate, then its chain.
    pub cert: PathBuf,
    /// PEM file: the server's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// The operations listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address of the plain-HTTP ops listener.
    pub listen: SocketAddr,
    /// The ops listener is plain HTTP, so a non-loopback address must be asked for explicitly
    /// (for example a container whose probes and scraper come from outside).
    pub allow_external: bool,
}

/// The database.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://...`. Empty means `sqlite://<data_dir>/gateway.db`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
}

/// Doctor login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Failed attempts within `failure_window_secs` that lock a login ID.
    pub max_failures: u32,
    /// The window in which failures are counted.
    pub failure_window_secs: i64,
    /// How long a locked login ID stays locked.
    pub lockout_secs: i64,
    /// Browser-session idle timeout.
    pub session_idle_secs: i64,
    /// argon2id memory cost in KiB (OWASP minimum: 19456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (production) or `pretty` (development).
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `gateway=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            ops: OpsConfig::default(),
            database: DatabaseConfig::default(),
            login: LoginConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: default_public_url(),
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
        }
    }
}

fn default_public_url() -> Url {
    #[allow(clippy::expect_used, reason = "a constant that parses")]
    Url::parse("https://localhost:8443").expect("constant URL")
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { cert: PathBuf::from("data/tls/server.pem"), key: PathBuf::from("data/tls/server.key") }
    }
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9090)), allow_external: false }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 16 }
    }
}

impl fmt::Debug for DatabaseConfig {
    // The URL may carry a password: print it with the password replaced.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// A database URL fit for logs: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            failure_window_secs: 15 * 60,
            lockout_secs: 15 * 60,
            session_idle_secs: 30 * 60,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".to_owned() }
    }
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or had unknown or mistyped keys.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range or contradicts another.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `GATEWAY_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!("file {} not found", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // GATEWAY_CONFIG names the file itself and is not a key.
        figment = figment.merge(Env::prefixed("GATEWAY_").ignore(&["config"]).split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text on top of the defaults (no environment); for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.server.public_url.scheme() != "https" {
            return invalid("server.public_url must be an https:// URL");
        }
        if self.server.public_url.host_str().is_none() {
            return invalid("server.public_url needs a host");
        }
        // The ops listener speaks plain HTTP; exposing it beyond loopback is an explicit choice.
        if !self.ops.listen.ip().is_loopback() && !self.ops.allow_external {
            return invalid(
                "ops.listen is not a loopback address and serves plain HTTP; set ops.allow_external = true to allow it",
            );
        }
        if self.server.handshake_timeout_secs == 0 || self.server.header_timeout_secs == 0 {
            return invalid("server timeouts must be at least 1 second");
        }
        let l = &self.login;
        if l.max_failures == 0 || l.failure_window_secs <= 0 || l.lockout_secs <= 0 {
            return invalid("login.max_failures, failure_window_secs and lockout_secs must be positive");
        }
        if l.session_idle_secs <= 0 {
            return invalid("login.session_idle_secs must be positive");
        }
        if l.argon2_memory_kib < 8 * 1024 || l.argon2_iterations == 0 {
            return invalid("login.argon2_memory_kib must be at least 8192 and argon2_iterations at least 1");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1");
        }
        if !self.database.url.is_empty()
            && !self.database.url.starts_with("sqlite:")
            && !self.database.url.starts_with("postgres:")
            && !self.database.url.starts_with("postgresql:")
        {
            return invalid("database.url must start with sqlite: or postgres:");
        }
        Ok(())
    }

    /// The database URL, with the default SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("gateway.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// `scheme://host[:port]` of the public URL: what browsers send in `Origin`.
    pub fn public_origin(&self) -> String {
        self.server.public_url.origin().ascii_serialization()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_defaults_where_it_says_so() {
        let config = Config::from_toml(EXAMPLE).expect("example parses");
        assert_eq!(config.login.max_failures, 5);
        assert_eq!(config.server.listen, SocketAddr::from(([0, 0, 0, 0], 8443)));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[server]\nlisten_on = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn external_ops_listener_needs_explicit_consent() {
        let err = Config::from_toml("[ops]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(err.to_string().contains("allow_external"), "{err}");
        Config::from_toml("[ops]\nlisten = \"0.0.0.0:9090\"\nallow_external = true\n").unwrap();
    }

    #[test]
    fn plain_http_public_url_is_refused() {
        let err = Config::from_toml("[server]\npublic_url = \"http://clinic.example\"\n").unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn database_password_is_redacted_in_debug() {
        let mut c = Config::default();
        c.database.url = "postgres://ninsho:hunter2@db/ninsho".into();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
    }
}
