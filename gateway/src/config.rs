//! Configuration: code defaults, then an optional `gateway.toml`, then `GATEWAY_*` environment
//! variables (`__` separates nesting levels: `GATEWAY_SERVER__LISTEN`). Environment beats file.
//! Unknown keys are errors, and everything is checked once at start-up ([`Config::validate`]).
//!
//! Every secret can come from a file instead of a value (`database.url_file`,
//! `tokens.key_encryption_key_file`, `audit.key_file`), so none has to sit in the environment;
//! setting both the value and the file is an error, and a configured file must exist and be
//! private (decision 0014).
//!
//! Longer than most files on purpose: every section's keys, defaults and checks are in this one
//! file so that an operator's question "what does this key do, and what is its default" has one
//! place to look (the example configuration is checked against it).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// The documented example configuration, parsed by a test so it cannot drift from the code.
pub const EXAMPLE: &str = include_str!("../../deploy/gateway.example.toml");

/// Upper bound of `server.max_body_bytes`: bodies are buffered whole before a handler runs.
const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Upper bound of `login.password_hash_concurrency`: 256 slots of the default 19 MiB are
/// already 4.75 GiB of argon2 memory.
const MAX_PASSWORD_HASH_CONCURRENCY: usize = 256;

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
    /// WebAuthn relying party and policies.
    pub fido: FidoConfig,
    /// One-time registration codes for linking authenticators.
    pub enrollment: EnrollmentConfig,
    /// Signing-session lifetimes (docs/design.md §3.7).
    pub signing_session: SigningSessionConfig,
    /// EMR signing tokens (docs/design.md §3.8).
    pub tokens: TokensConfig,
    /// Card login (docs/design.md §3.3, §3.5).
    pub card: CardConfig,
    /// The audit log's key and checkpoints (docs/design.md §3.9).
    pub audit: AuditConfig,
    /// Logging.
    pub log: LogConfig,
    /// The OQS relay.
    pub oqs: OqsConfig,
    /// Clinic-agent releases (docs/design.md §3.14).
    pub agent_releases: AgentReleasesConfig,
}

/// Most release public keys the gateway accepts releases under (a rotation needs two).
pub const MAX_RELEASE_KEYS: usize = 4;
/// Upper bound of `agent_releases.max_binary_bytes`: a binary is stored in the database and read
/// whole into memory for a download (decision 0018).
const MAX_RELEASE_BINARY_LIMIT: u64 = 256 * 1024 * 1024;

/// The `[agent_releases]` section: the clinic agent's signed releases, published with
/// `gateway admin agent-release publish` and fetched by agents over their clinic mTLS connection
/// (docs/design.md §3.14, decision 0018).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentReleasesConfig {
    /// The release public keys a manifest's signature must verify under before a release is
    /// accepted: minisign Ed25519 keys, each the one-line base64 form (`RWS…`, the second line of
    /// `minisign.pub`); at most 4. Empty (the default) refuses every publication.
    pub public_keys: Vec<String>,
    /// Largest binary accepted, in bytes (at most 256 MiB).
    pub max_binary_bytes: u64,
}

impl Default for AgentReleasesConfig {
    fn default() -> Self {
        Self { public_keys: Vec::new(), max_binary_bytes: 64 * 1024 * 1024 }
    }
}

impl AgentReleasesConfig {
    /// The configured keys, parsed (checked at start-up by [`Config::validate`]); an error when
    /// none is configured.
    pub fn keys(&self) -> Result<Vec<release::PublicKey>, release::KeyError> {
        release::PublicKey::parse_list(&self.public_keys, MAX_RELEASE_KEYS)
    }
}

/// The `[oqs]` section: the relay of files between EMRs and clinics' OQS terminals through the
/// clinic agent (docs/design.md §3.13).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OqsConfig {
    /// Largest request or answer file, in bytes (at most 8 MiB). The routes that carry files take
    /// a body of this size in base64 plus a little, whatever `server.max_body_bytes` is.
    pub max_file_bytes: usize,
    /// A request not answered this many seconds after it was queued expires with a reason.
    pub answer_timeout_secs: i64,
    /// How long the clinic agent holds a request it took before it must report it written.
    pub lease_secs: i64,
    /// Another agent is refused the clinic's relay while the holder was seen within this.
    pub agent_hold_secs: i64,
    /// Longest long-poll (`wait`) a caller may ask for.
    pub max_wait_secs: u64,
    /// Most live (queued or delivered) requests per clinic.
    pub max_queued_per_clinic: i64,
    /// Ended requests (and their files) are deleted this long after they end.
    pub retention_secs: i64,
    /// How often each instance expires overdue requests and refreshes the queue metrics; also
    /// how often a long-poll looks at the database for work queued through another instance.
    pub sweep_ms: u64,
}

impl Default for OqsConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 1024 * 1024,
            answer_timeout_secs: 300,
            lease_secs: 60,
            agent_hold_secs: 30,
            max_wait_secs: 30,
            max_queued_per_clinic: 1000,
            retention_secs: 24 * 60 * 60,
            sweep_ms: 1000,
        }
    }
}

impl OqsConfig {
    /// The body limit of the routes that carry a file: the file in base64, plus room for the
    /// JSON around it.
    pub fn body_limit(&self) -> usize {
        self.max_file_bytes.div_ceil(3) * 4 + 4096
    }
}

/// The `[tokens]` section: signing tokens for the EMR backend.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `iss` of tokens. Empty means the origin of `server.public_url`.
    pub issuer: String,
    /// `aud` of tokens: the remote signer.
    pub audience: String,
    /// Lifetime when the request names none.
    pub default_ttl_secs: i64,
    /// Longest lifetime a request may ask for (at most 300).
    pub max_ttl_secs: i64,
    /// The key-encryption key for token signing keys at rest, base64 of 32 bytes. Prefer
    /// `key_encryption_key_file`; not together with it.
    pub key_encryption_key: String,
    /// File holding the base64 key-encryption key (mode 0600, or root's with group read only for
    /// a group this process runs in); it must exist. Empty with no key above means
    /// `<data_dir>/token-kek`, created on first start: fine for one instance, but several
    /// instances must share the same key.
    pub key_encryption_key_file: PathBuf,
    /// How often each instance re-reads the signing keys (rotation takes effect within this).
    pub key_refresh_secs: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: "urn:ninsho:remote-signer".to_owned(),
            default_ttl_secs: 120,
            max_ttl_secs: 300,
            key_encryption_key: String::new(),
            key_encryption_key_file: PathBuf::new(),
            key_refresh_secs: 10,
        }
    }
}

impl fmt::Debug for TokensConfig {
    // The key-encryption key is a secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokensConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("default_ttl_secs", &self.default_ttl_secs)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .field("key_encryption_key", &if self.key_encryption_key.is_empty() { "" } else { "***" })
            .field("key_encryption_key_file", &self.key_encryption_key_file)
            .field("key_refresh_secs", &self.key_refresh_secs)
            .finish()
    }
}

/// The `[audit]` section: the keyed audit chain and its signed checkpoints (docs/design.md §3.9).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The audit key (HMAC-SHA256 of the chain), base64 of 32 bytes. Prefer `key_file`; not
    /// together with it.
    pub key: String,
    /// File holding the base64 audit key (mode 0600, or root's with group read only for a group
    /// this process runs in); it must exist. Empty with no key above means
    /// `<data_dir>/audit-key`, created on first start: fine for one instance, but several
    /// instances must share the same key.
    pub key_file: PathBuf,
    /// File holding the Ed25519 checkpoint signing key (base64 PKCS#8, mode 0600); it must
    /// exist. Empty means `<data_dir>/audit-checkpoint-key`, created on first use.
    pub checkpoint_key_file: PathBuf,
    /// How often the server logs a signed checkpoint of the chain's head (target `audit`);
    /// 0 disables.
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { key: String::new(), key_file: PathBuf::new(), checkpoint_key_file: PathBuf::new(), checkpoint_interval_secs: 600 }
    }
}

impl fmt::Debug for AuditConfig {
    // The audit key is a secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("key", &if self.key.is_empty() { "" } else { "***" })
            .field("key_file", &self.key_file)
            .field("checkpoint_key_file", &self.checkpoint_key_file)
            .field("checkpoint_interval_secs", &self.checkpoint_interval_secs)
            .finish()
    }
}

/// The `[card]` section: card login through the local card agent (docs/design.md §3.3, §3.5).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CardConfig {
    /// Where the page reaches the card agent on the clinic PC (`http://127.0.0.1:PORT`). Only
    /// this origin is added to the page's CSP `connect-src`. Loopback only.
    pub agent_url: Url,
    /// hcRole values an HPKI certificate must carry (exact match). Default `["Medical Doctor"]`.
    pub hpki_roles: Vec<String>,
    /// Refuse HPKI certificates without hcRole. With `false` such a card can still be linked, by
    /// registration code only, and every use is audited (docs/design.md §3.3).
    pub hpki_require_role: bool,
    /// Lifetime of a card challenge.
    pub challenge_timeout_secs: i64,
    /// How often each instance looks for anchors whose CRL (fetched from `anchor add --crl-url`)
    /// is due; a CRL is fetched again this long before its nextUpdate.
    pub crl_refresh_secs: u64,
}

impl Default for CardConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used, reason = "a constant that parses")]
        let agent_url = Url::parse("http://127.0.0.1:18443").expect("constant URL");
        Self {
            agent_url,
            hpki_roles: vec![card::verify::MEDICAL_DOCTOR.to_owned()],
            hpki_require_role: true,
            challenge_timeout_secs: 120,
            crl_refresh_secs: 300,
        }
    }
}

impl CardConfig {
    /// `http://127.0.0.1:PORT`: the agent's origin, for the CSP and the page.
    pub fn agent_origin(&self) -> String {
        self.agent_url.origin().ascii_serialization()
    }

    /// The verification policy for HPKI certificates.
    pub fn policy(&self) -> card::verify::Policy {
        card::verify::Policy { accepted_roles: self.hpki_roles.clone(), require_role: self.hpki_require_role }
    }
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
    /// Seconds a client gets to send a request's headers, and again its body.
    pub header_timeout_secs: u64,
    /// Seconds a connection may go without a request before it is closed (HTTP/2: GOAWAY).
    /// Only requests count: HTTP/2 PINGs and their answers keep no connection open.
    pub idle_timeout_secs: u64,
    /// Most open connections of the main listener (TLS handshakes included); more are refused.
    pub max_connections: usize,
    /// Most open connections from one IP address; more are refused.
    pub max_connections_per_ip: usize,
    /// Largest request body in bytes; a larger one is refused with 413.
    pub max_body_bytes: usize,
    /// After SIGTERM, seconds `/readyz` reports unready while the listener still serves, so a
    /// load balancer stops sending new connections before the instance stops accepting.
    pub shutdown_drain_secs: u64,
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
    /// How often the TLS verifier re-reads the clinic and service-client anchors and their CRLs
    /// from the database, so changes made on any instance apply everywhere without a restart.
    pub trust_refresh_secs: u64,
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
    /// `sqlite://path` or `postgres://...`. Empty (and no `url_file`) means
    /// `sqlite://<data_dir>/gateway.db`.
    pub url: String,
    /// File holding the URL (it carries the PostgreSQL password): mode 0600, or root's with group
    /// read only for a group this process runs in, as Kubernetes mounts secrets. Not together
    /// with `url`.
    pub url_file: PathBuf,
    /// `postgres`: refuse to start (`serve`, `migrate`, `admin`) unless the URL is a PostgreSQL
    /// one, so a replica whose URL went missing never runs on a private SQLite file.
    pub require: DatabaseRequirement,
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a PostgreSQL connection before it is answered 503.
    pub acquire_timeout_ms: u64,
}

/// What `database.require` asks of the database URL.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseRequirement {
    /// SQLite or PostgreSQL (the default).
    #[default]
    Any,
    /// PostgreSQL only: several instances share the database.
    Postgres,
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
    /// Browser-session absolute lifetime from the password login, however active the session.
    pub session_absolute_secs: i64,
    /// How recent a card or FIDO proof in this browser session must be to add, rename or remove
    /// an authenticator (issue 15: a password alone never changes the factors).
    pub reauth_secs: i64,
    /// How long a temporary password set by an operator stays usable (to reach the change page)
    /// after it was set; later the operator issues a new one.
    pub temporary_password_secs: i64,
    /// argon2id memory cost in KiB (OWASP minimum: 19456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// Password hashes computed at once; each holds `argon2_memory_kib` while it runs, and the
    /// gateway keeps one such buffer per slot. 0: one per CPU the process may use (the container's
    /// CPU quota, not the node's CPUs: see [`Config::password_hash_concurrency`]).
    pub password_hash_concurrency: usize,
}

/// The `[fido]` section: `fido::Config` without the origin, which is always the origin of
/// `server.public_url` (the same-origin check already requires browsers to be there), and with
/// an RP ID that defaults to that URL's host. See [`Config::fido_config`] and
/// `docs/decisions/0004-fido-config-derives-from-public-url.md`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FidoConfig {
    /// WebAuthn RP ID: the host of `server.public_url` when unset, or a registrable parent
    /// domain of it (credentials then work on sibling hosts too: set it only on purpose).
    pub rp_id: Option<String>,
    /// Name some authenticators show while registering.
    pub rp_name: String,
    /// What attestation registration requires (`docs/fido-policy.md`).
    pub attestation: fido::AttestationPolicy,
    /// `refuse` (default) or `allow` a signature counter that does not increase.
    pub counter_policy: fido::CounterPolicy,
    /// `allow` (default) or `refuse` synced (backup-eligible) passkeys.
    pub backup_eligible: fido::BackupEligiblePolicy,
    /// How long a WebAuthn ceremony may take (browser timeout and server-side state lifetime).
    pub ceremony_timeout_secs: u64,
}

impl Default for FidoConfig {
    fn default() -> Self {
        let f = fido::Config::default();
        Self {
            rp_id: None,
            rp_name: f.rp_name,
            attestation: f.attestation,
            counter_policy: f.counter_policy,
            backup_eligible: f.backup_eligible,
            ceremony_timeout_secs: f.ceremony_timeout_secs,
        }
    }
}

/// The `[enrollment]` section: one-time registration codes (docs/design.md §3.6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollmentConfig {
    /// Lifetime of a newly issued code.
    pub code_ttl_secs: i64,
    /// Wrong entries that void a code.
    pub code_max_failures: u32,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self { code_ttl_secs: 24 * 3600, code_max_failures: 5 }
    }
}

/// The `[signing_session]` section (docs/design.md §3.7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSessionConfig {
    /// Absolute lifetime from the presence check.
    pub absolute_secs: i64,
    /// Idle timeout; activity is a signing token issued for the session.
    pub idle_secs: i64,
    /// Allows lifetimes beyond the NIST SP 800-63B AAL3 re-authentication bounds (12 h absolute,
    /// 15 min idle). Sessions then carry `acr = aal2`, and start-up logs a warning.
    pub beyond_aal3: bool,
}

/// NIST SP 800-63B §4.3.3 (AAL3): re-authenticate at least every 12 hours…
pub const AAL3_MAX_ABSOLUTE_SECS: i64 = 12 * 3600;
/// …and after 15 minutes of inactivity.
pub const AAL3_MAX_IDLE_SECS: i64 = 15 * 60;

impl Default for SigningSessionConfig {
    fn default() -> Self {
        Self { absolute_secs: 8 * 3600, idle_secs: 15 * 60, beyond_aal3: false }
    }
}

impl SigningSessionConfig {
    /// Whether the configured lifetimes exceed the AAL3 bounds (only valid with `beyond_aal3`).
    pub fn exceeds_aal3(&self) -> bool {
        self.absolute_secs > AAL3_MAX_ABSOLUTE_SECS || self.idle_secs > AAL3_MAX_IDLE_SECS
    }
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
            fido: FidoConfig::default(),
            enrollment: EnrollmentConfig::default(),
            signing_session: SigningSessionConfig::default(),
            tokens: TokensConfig::default(),
            card: CardConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
            oqs: OqsConfig::default(),
            agent_releases: AgentReleasesConfig::default(),
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
            idle_timeout_secs: 300,
            max_connections: 8192,
            max_connections_per_ip: 512,
            max_body_bytes: 64 * 1024,
            shutdown_drain_secs: 5,
        }
    }
}

fn default_public_url() -> Url {
    #[allow(clippy::expect_used, reason = "a constant that parses")]
    Url::parse("https://localhost:8443").expect("constant URL")
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { cert: PathBuf::from("data/tls/server.pem"), key: PathBuf::from("data/tls/server.key"), trust_refresh_secs: 60 }
    }
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9090)), allow_external: false }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            url_file: PathBuf::new(),
            require: DatabaseRequirement::Any,
            max_connections: 16,
            acquire_timeout_ms: 1000,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    // The URL may carry a password: print it with the password replaced.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("url_file", &self.url_file)
            .field("require", &self.require)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

pub use infra::config::redact_url;

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            failure_window_secs: 15 * 60,
            lockout_secs: 15 * 60,
            session_idle_secs: 30 * 60,
            session_absolute_secs: 12 * 60 * 60,
            reauth_secs: 5 * 60,
            temporary_password_secs: 3 * 24 * 60 * 60,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            password_hash_concurrency: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".to_owned() }
    }
}

pub use infra::config::ConfigError;

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `GATEWAY_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let figment = infra::config::layered::<Config>(file, "GATEWAY_").map_err(ConfigError::Invalid)?;
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text on top of the defaults (no environment); for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = infra::config::from_toml::<Config>(text)
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        if !(1..=300).contains(&t.max_ttl_secs) || !(1..=t.max_ttl_secs).contains(&t.default_ttl_secs) {
            return Err(ConfigError::Invalid(
                "tokens: max_ttl_secs must be 1..=300 and default_ttl_secs 1..=max_ttl_secs".into(),
            ));
        }
        if t.audience.is_empty() || t.key_refresh_secs == 0 {
            return Err(ConfigError::Invalid("tokens.audience must be set and key_refresh_secs positive".into()));
        }
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
        if self.server.idle_timeout_secs == 0 {
            return invalid("server.idle_timeout_secs must be at least 1 second");
        }
        if self.server.max_connections == 0 || self.server.max_connections_per_ip == 0 {
            return invalid("server.max_connections and max_connections_per_ip must be at least 1");
        }
        if self.server.shutdown_drain_secs > 300 {
            return invalid("server.shutdown_drain_secs must be at most 300");
        }
        if !(1024..=MAX_BODY_LIMIT).contains(&self.server.max_body_bytes) {
            return invalid("server.max_body_bytes must be between 1024 and 16777216");
        }
        let o = &self.oqs;
        if !(1024..=8 * 1024 * 1024).contains(&o.max_file_bytes) {
            return invalid("oqs.max_file_bytes must be between 1024 and 8388608");
        }
        if o.answer_timeout_secs <= 0 || o.lease_secs <= 0 || o.agent_hold_secs <= 0 || o.retention_secs <= 0 {
            return invalid("oqs.answer_timeout_secs, lease_secs, agent_hold_secs and retention_secs must be positive");
        }
        if !(1..=120).contains(&o.max_wait_secs) {
            return invalid("oqs.max_wait_secs must be between 1 and 120");
        }
        if o.max_queued_per_clinic <= 0 || !(50..=60_000).contains(&o.sweep_ms) {
            return invalid("oqs.max_queued_per_clinic must be positive and oqs.sweep_ms between 50 and 60000");
        }
        let r = &self.agent_releases;
        if !self.agent_releases.public_keys.is_empty()
            && let Err(e) = r.keys()
        {
            return Err(ConfigError::Invalid(format!("agent_releases.public_keys: {e}")));
        }
        if !(1024 * 1024..=MAX_RELEASE_BINARY_LIMIT).contains(&r.max_binary_bytes) {
            return Err(ConfigError::Invalid(format!(
                "agent_releases.max_binary_bytes must be between 1048576 (1 MiB) and {MAX_RELEASE_BINARY_LIMIT}"
            )));
        }
        let l = &self.login;
        if !(100..=60_000).contains(&self.database.acquire_timeout_ms) {
            return invalid("database.acquire_timeout_ms must be between 100 and 60000");
        }
        if l.max_failures == 0 || l.failure_window_secs <= 0 || l.lockout_secs <= 0 {
            return invalid("login.max_failures, failure_window_secs and lockout_secs must be positive");
        }
        if l.session_idle_secs <= 0 || l.session_absolute_secs <= 0 || l.reauth_secs <= 0 {
            return invalid("login.session_idle_secs, session_absolute_secs and reauth_secs must be positive");
        }
        if !(300..=30 * 24 * 60 * 60).contains(&l.temporary_password_secs) {
            return invalid("login.temporary_password_secs must be between 300 (5 minutes) and 2592000 (30 days)");
        }
        if l.argon2_memory_kib < 8 * 1024 || l.argon2_iterations == 0 {
            return invalid("login.argon2_memory_kib must be at least 8192 and argon2_iterations at least 1");
        }
        if l.password_hash_concurrency > MAX_PASSWORD_HASH_CONCURRENCY {
            return Err(ConfigError::Invalid(format!(
                "login.password_hash_concurrency must be between 0 (one per CPU) and {MAX_PASSWORD_HASH_CONCURRENCY}"
            )));
        }
        let s = &self.signing_session;
        if s.absolute_secs <= 0 || s.idle_secs <= 0 {
            return invalid("signing_session.absolute_secs and idle_secs must be positive");
        }
        if s.idle_secs > s.absolute_secs {
            return invalid("signing_session.idle_secs must not exceed absolute_secs");
        }
        if s.exceeds_aal3() && !s.beyond_aal3 {
            return Err(ConfigError::Invalid(format!(
                "signing_session: absolute_secs = {} and idle_secs = {} exceed the AAL3 bounds ({} / {}); \
                 set signing_session.beyond_aal3 = true to accept them (sessions are then AAL2)",
                s.absolute_secs, s.idle_secs, AAL3_MAX_ABSOLUTE_SECS, AAL3_MAX_IDLE_SECS
            )));
        }
        let c = &self.card;
        // The agent speaks plain HTTP, which browsers only treat as trustworthy on loopback, and
        // a PIN must never travel over a network (docs/design.md §3.5).
        let loopback = match c.agent_url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if c.agent_url.scheme() != "http" || !loopback || c.agent_url.path() != "/" {
            return invalid("card.agent_url must be http://127.0.0.1:PORT (loopback, no path)");
        }
        if c.hpki_roles.is_empty() || c.hpki_roles.iter().any(|r| r.trim().is_empty()) {
            return invalid("card.hpki_roles must name at least one role");
        }
        if !(10..=600).contains(&c.challenge_timeout_secs) {
            return invalid("card.challenge_timeout_secs must be between 10 and 600");
        }
        if self.tls.trust_refresh_secs == 0 {
            return invalid("tls.trust_refresh_secs must be positive");
        }
        if c.crl_refresh_secs == 0 {
            return invalid("card.crl_refresh_secs must be positive");
        }
        let e = &self.enrollment;
        if e.code_ttl_secs < 60 || e.code_ttl_secs > 30 * 24 * 3600 {
            return invalid("enrollment.code_ttl_secs must be between 60 and 2592000 (30 days)");
        }
        if !(1..=20).contains(&e.code_max_failures) {
            return invalid("enrollment.code_max_failures must be between 1 and 20");
        }
        // Builds the relying party once, so a bad RP ID or attestation policy stops start-up.
        fido::Service::new(&self.fido_config()).map_err(|e| ConfigError::Invalid(format!("fido: {e}")))?;
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1");
        }
        // A secret given twice: which one wins would be a silent choice (decision 0014).
        for (value, file, name) in [
            (self.database.url.is_empty(), &self.database.url_file, "database.url"),
            (self.tokens.key_encryption_key.is_empty(), &self.tokens.key_encryption_key_file, "tokens.key_encryption_key"),
            (self.audit.key.is_empty(), &self.audit.key_file, "audit.key"),
        ] {
            if !value && !file.as_os_str().is_empty() {
                return Err(ConfigError::Invalid(format!("{name} and {name}_file are both set: set one of them")));
            }
        }
        // The URL itself when it is given as a value; from a file, when it is read.
        if self.database.url_file.as_os_str().is_empty() {
            self.check_database_url(&self.database.url).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// A database URL as this configuration accepts it: `sqlite:` or `postgres:`, and PostgreSQL
    /// when `database.require = "postgres"` (empty means the SQLite file in `data_dir`).
    fn check_database_url(&self, url: &str) -> Result<(), String> {
        let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        if !url.is_empty() && !postgres && !url.starts_with("sqlite:") {
            return Err("database.url must start with sqlite: or postgres:".into());
        }
        if self.database.require == DatabaseRequirement::Postgres && !postgres {
            let what = if url.is_empty() {
                format!("no database URL is set (neither database.url nor database.url_file), so this instance would use its own SQLite file {}", self.data_dir.join("gateway.db").display())
            } else {
                "the database URL is a SQLite one".to_owned()
            };
            return Err(format!(
                "database.require = \"postgres\", but {what}: refusing to start (set database.url_file to a file with the postgres:// URL)"
            ));
        }
        Ok(())
    }

    /// The database URL: `database.url`, or the contents of `database.url_file` (trailing
    /// whitespace dropped), or the default SQLite file in the data directory. Checked against
    /// `database.require`, so every command that opens the database refuses the wrong one.
    pub fn database_url(&self) -> anyhow::Result<String> {
        let url = if self.database.url_file.as_os_str().is_empty() {
            self.database.url.clone()
        } else {
            infra::config::read_url_file(&self.database.url_file, "database URL")?
        };
        if let Err(e) = self.check_database_url(&url) {
            match self.database.url_file.as_os_str().is_empty() {
                true => anyhow::bail!("{e}"),
                false => anyhow::bail!("{e} (the URL read from {})", self.database.url_file.display()),
            }
        }
        if url.is_empty() { Ok(format!("sqlite://{}", self.data_dir.join("gateway.db").display())) } else { Ok(url) }
    }

    /// How many password hashes run at once: `login.password_hash_concurrency`, or when it is 0
    /// one per CPU this process may use. `std::thread::available_parallelism` already counts the
    /// affinity mask and, on Linux, the cgroup v1 and v2 CPU quota (rounded down, at least 1), so
    /// a container limited to 2 CPUs gets 2 whatever the node has. A container without a CPU
    /// limit gets the node's CPUs; such deployments set the key (decision 0014).
    pub fn password_hash_concurrency(&self) -> usize {
        match self.login.password_hash_concurrency {
            0 => crate::password::auto_concurrency(),
            n => n,
        }
    }

    /// The `fido` crate's configuration: origin = the public URL's origin, RP ID = `fido.rp_id`
    /// or the public URL's host.
    pub fn fido_config(&self) -> fido::Config {
        let url = &self.server.public_url;
        let mut origin = url.clone();
        origin.set_path("/");
        origin.set_query(None);
        origin.set_fragment(None);
        let f = &self.fido;
        fido::Config {
            rp_id: f.rp_id.clone().unwrap_or_else(|| url.host_str().unwrap_or_default().to_owned()),
            origin,
            rp_name: f.rp_name.clone(),
            attestation: f.attestation.clone(),
            counter_policy: f.counter_policy,
            backup_eligible: f.backup_eligible,
            ceremony_timeout_secs: f.ceremony_timeout_secs,
        }
    }

    /// `scheme://host[:port]` of the public URL: what browsers send in `Origin`.
    pub fn public_origin(&self) -> String {
        self.server.public_url.origin().ascii_serialization()
    }

    /// The `iss` of signing tokens.
    pub fn token_issuer(&self) -> String {
        if self.tokens.issuer.is_empty() { self.public_origin() } else { self.tokens.issuer.clone() }
    }

    /// The key-encryption key for token signing keys: from the configuration value, else the
    /// configured file (which must exist), else `<data_dir>/token-kek` (created on first use).
    pub fn token_kek(&self) -> anyhow::Result<crate::tokens::Kek> {
        if !self.tokens.key_encryption_key.is_empty() {
            return crate::tokens::Kek::from_base64(&self.tokens.key_encryption_key);
        }
        if self.tokens.key_encryption_key_file.as_os_str().is_empty() {
            return crate::tokens::Kek::from_file(&self.data_dir.join("token-kek"));
        }
        let path = &self.tokens.key_encryption_key_file;
        let text = crate::audit_checkpoint::read_existing_private_file(path, "token key-encryption key")?;
        crate::tokens::Kek::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The audit key: from the configuration value, else the configured file, else
    /// `<data_dir>/audit-key` (created on first use). A key of the wrong length is an error.
    pub fn audit_key(&self) -> anyhow::Result<crate::store::AuditKey> {
        if !self.audit.key.is_empty() {
            return crate::store::AuditKey::from_base64(&self.audit.key);
        }
        let path = self.audit_key_path();
        let text = if self.audit.key_file.as_os_str().is_empty() {
            crate::audit_checkpoint::read_private_file(&path, "audit key", || {
                use base64::Engine as _;
                let bytes = crate::audit_checkpoint::random_bytes::<32>()?;
                Ok(zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())))
            })?
        } else {
            crate::audit_checkpoint::read_existing_private_file(&path, "audit key")?
        };
        crate::store::AuditKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The audit key's file when the key is not given as a value: `audit.key_file`, else
    /// `<data_dir>/audit-key`.
    pub fn audit_key_path(&self) -> PathBuf {
        if self.audit.key_file.as_os_str().is_empty() { self.data_dir.join("audit-key") } else { self.audit.key_file.clone() }
    }

    /// The checkpoint signing key: `audit.checkpoint_key_file` (which must exist), else
    /// `<data_dir>/audit-checkpoint-key` (created on first use).
    pub fn audit_checkpoint_key(&self) -> anyhow::Result<crate::audit_checkpoint::CheckpointKey> {
        if self.audit.checkpoint_key_file.as_os_str().is_empty() {
            crate::audit_checkpoint::CheckpointKey::from_file(&self.data_dir.join("audit-checkpoint-key"))
        } else {
            crate::audit_checkpoint::CheckpointKey::from_existing_file(&self.audit.checkpoint_key_file)
        }
    }
}

#[cfg(test)]
mod tests;
