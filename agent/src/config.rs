//! Configuration: command-line flags, optionally a TOML file (`--config`), checked once at startup.
//!
//! Flags win over the file for `port`; allowed origins from both are merged. The listener is on
//! IPv4 loopback only: anything the browser can reach on the LAN could be driven by any web page.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use figment::Figment;
use figment::providers::{Format, Toml};

/// The default port (documented in agent/README.md; the gateway page uses it unless configured).
pub const DEFAULT_PORT: u16 = 18443;

/// Local card agent for Ninsho Gateway: lets the gateway page use the card reader on this PC.
///
/// Listens on 127.0.0.1 only and answers only pages from the allowed gateway origins.
#[derive(Debug, Parser)]
#[command(name = "card-agent", version = crate::VERSION)]
pub struct Args {
    /// Gateway origin allowed to use the agent, e.g. https://gateway.clinic.example:8443 (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// TCP port on 127.0.0.1 (0 = any free port; the chosen one is printed on stdout).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Listen address; only IPv4 loopback (127.0.0.0/8) is accepted.
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// TOML file with `allow_origins = [...]`, `port = N`, `bind = "127.0.0.1"`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The OQS relay's configuration (TOML; docs/design.md §3.13), written by the set-up page
    /// (default: relay.toml in the data directory); the relay runs when it exists.
    #[arg(long, value_name = "FILE")]
    pub relay: Option<PathBuf>,
    /// Where the set-up stores the clinic's key, the relay's configuration, journal and archive
    /// (default: the platform's per-user data folder, see agent/README.md).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The gateway the relay connects to, e.g. https://gateway.example:8443 (the set-up page asks it).
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// PEM of the CA of the gateway's server certificate (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    pub gateway_ca: Option<PathBuf>,
    /// Log lines on stderr as text or as JSON (one object per line, for a log collector).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Hours between checks for a new release (1–168; default 6). Also checked at start.
    #[arg(long, value_name = "HOURS")]
    pub update_check_hours: Option<u64>,
    /// Install an offered release automatically at this hour (0–23, Japan time) instead of
    /// waiting for はい on the status page.
    #[arg(long, value_name = "HOUR")]
    pub auto_update_hour: Option<u8>,
    /// Seconds a newly installed version has to become healthy before the previous one is put
    /// back (10–3600; default 120).
    #[arg(long, value_name = "SECS")]
    pub update_health_secs: Option<u64>,
    /// Check this binary (run by the updater on a new release before it is installed): prints
    /// its version and target and exits 0 when it can run here.
    #[arg(long)]
    pub self_test: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    allow_origins: Vec<String>,
    port: Option<u16>,
    bind: Option<IpAddr>,
    data_dir: Option<PathBuf>,
    gateway: Option<String>,
    gateway_ca: Option<PathBuf>,
    relay: Option<PathBuf>,
    update_check_hours: Option<u64>,
    auto_update_hour: Option<u8>,
    update_health_secs: Option<u64>,
}

/// The self-update's settings (docs/design.md §3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Time between checks.
    pub check_every: std::time::Duration,
    /// Install automatically at this hour (JST).
    pub auto_update_hour: Option<u8>,
    /// How long a new version has to become healthy.
    pub health_bound: std::time::Duration,
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Exact origins (scheme://host[:port]) allowed to call the agent.
    pub allowed_origins: Vec<String>,
    /// The OQS relay's configuration file (explicit; else relay.toml in the data directory).
    pub relay: Option<PathBuf>,
    /// The set-up's data directory.
    pub data_dir: PathBuf,
    /// The gateway's origin, for the set-up.
    pub gateway: Option<String>,
    /// The gateway's CA, for the set-up.
    pub gateway_ca: Option<PathBuf>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The self-update.
    pub update: UpdateOptions,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read or has unknown keys.
    #[error("config file: {0}")]
    File(#[from] Box<figment::Error>),
    /// A non-loopback listen address.
    #[error("refusing to listen on {0}: the agent listens on 127.0.0.1 only")]
    NotLoopback(IpAddr),
    /// An origin that is not `scheme://host[:port]`.
    #[error("not an origin (expected scheme://host[:port], lowercase, no path): {0}")]
    BadOrigin(String),
    /// Nothing allowed: the agent would refuse every request.
    #[error(
        "no allowed origin: pass --allow-origin https://gateway.example:8443 or allow_origins in the config file"
    )]
    NoOrigins,
    /// A gateway that is not an https origin.
    #[error("the gateway must be an https:// origin (scheme://host[:port], no path): {0}")]
    BadGateway(String),
    /// An update setting out of range.
    #[error("{0}")]
    BadUpdateSetting(String),
    /// No data directory given and none can be derived.
    #[error("no data directory: pass --data-dir DIR")]
    NoDataDir,
}

impl Config {
    /// Builds and checks the configuration from parsed arguments.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let file: FileConfig = match &args.config {
            Some(path) => Figment::new()
                .merge(Toml::file_exact(path))
                .extract()
                .map_err(Box::new)?,
            None => FileConfig::default(),
        };
        let ip = args
            .bind
            .or(file.bind)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if !matches!(ip, IpAddr::V4(v4) if v4.is_loopback()) {
            return Err(ConfigError::NotLoopback(ip));
        }
        let port = args.port.or(file.port).unwrap_or(DEFAULT_PORT);
        let mut allowed_origins = Vec::new();
        for origin in file.allow_origins.into_iter().chain(args.allow_origin) {
            // The same check the card client data applies (RFC 6454 §6.2 serialisation), so an
            // allowed origin can always be signed.
            if card::ClientData::new(card::CardKind::Jpki, "AAAA", &origin).is_err() {
                return Err(ConfigError::BadOrigin(origin));
            }
            if !allowed_origins.contains(&origin) {
                allowed_origins.push(origin);
            }
        }
        if allowed_origins.is_empty() {
            return Err(ConfigError::NoOrigins);
        }
        let gateway = args.gateway.or(file.gateway);
        if let Some(g) = &gateway
            && (!g.starts_with("https://")
                || card::ClientData::new(card::CardKind::Jpki, "AAAA", g).is_err())
        {
            return Err(ConfigError::BadGateway(g.clone()));
        }
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .or_else(default_data_dir)
            .ok_or(ConfigError::NoDataDir)?;
        let check_hours = args.update_check_hours.or(file.update_check_hours).unwrap_or(6);
        if !(1..=168).contains(&check_hours) {
            return Err(ConfigError::BadUpdateSetting(format!("update_check_hours must be 1..=168, got {check_hours}")));
        }
        let auto_update_hour = args.auto_update_hour.or(file.auto_update_hour);
        if auto_update_hour.is_some_and(|h| h > 23) {
            return Err(ConfigError::BadUpdateSetting("auto_update_hour must be 0..=23 (Japan time)".to_owned()));
        }
        let health_secs = args.update_health_secs.or(file.update_health_secs).unwrap_or(120);
        if !(10..=3600).contains(&health_secs) {
            return Err(ConfigError::BadUpdateSetting(format!("update_health_secs must be 10..=3600, got {health_secs}")));
        }
        Ok(Config {
            update: UpdateOptions {
                check_every: std::time::Duration::from_secs(check_hours * 3600),
                auto_update_hour,
                health_bound: std::time::Duration::from_secs(health_secs),
            },
            listen: SocketAddr::new(ip, port),
            allowed_origins,
            relay: args.relay.or(file.relay),
            data_dir,
            gateway,
            gateway_ca: args.gateway_ca.or(file.gateway_ca),
            log_format: args.log_format,
        })
    }
}

/// The per-user data folder: `%LOCALAPPDATA%\Ninsho\Agent` on Windows,
/// `$XDG_DATA_HOME/ninsho-agent` or `~/.local/share/ninsho-agent` elsewhere. The service unit
/// passes its own (`--data-dir /var/lib/ninsho-agent`).
fn default_data_dir() -> Option<PathBuf> {
    #[cfg(windows)]
    {
        std::env::var_os("LOCALAPPDATA").map(|d| PathBuf::from(d).join("Ninsho").join("Agent"))
    }
    #[cfg(not(windows))]
    {
        std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .map(|d| d.join("ninsho-agent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(
            Args::try_parse_from(std::iter::once("card-agent").chain(argv.iter().copied()))
                .unwrap(),
        )
    }

    #[test]
    fn flags_and_defaults() {
        let c = parse(&["--allow-origin", "https://gw.example:8443"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:18443".parse().unwrap());
        assert_eq!(c.allowed_origins, ["https://gw.example:8443"]);
        assert!(matches!(parse(&[]), Err(ConfigError::NoOrigins)));
        assert!(matches!(
            parse(&["--allow-origin", "https://gw.example/"]),
            Err(ConfigError::BadOrigin(_))
        ));
        for bind in ["0.0.0.0", "192.168.1.2", "::1"] {
            assert!(matches!(
                parse(&["--allow-origin", "https://a", "--bind", bind]),
                Err(ConfigError::NotLoopback(_))
            ));
        }
    }

    #[test]
    fn file_merges_with_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "allow_origins = [\"https://a.example\"]\nport = 2000\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&[
            "--config",
            p,
            "--allow-origin",
            "https://b.example",
            "--port",
            "3000",
        ])
        .unwrap();
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(c.listen.port(), 3000);
        std::fs::write(&path, "allowed = 1\n").unwrap();
        assert!(matches!(parse(&["--config", p]), Err(ConfigError::File(_))));
        std::fs::write(
            &path,
            "allow_origins = [\"https://a\"]\nbind = \"10.0.0.1\"\n",
        )
        .unwrap();
        assert!(matches!(
            parse(&["--config", p]),
            Err(ConfigError::NotLoopback(_))
        ));
    }
}
