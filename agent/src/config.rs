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
#[command(name = "card-agent", version)]
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
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    allow_origins: Vec<String>,
    port: Option<u16>,
    bind: Option<IpAddr>,
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Exact origins (scheme://host[:port]) allowed to call the agent.
    pub allowed_origins: Vec<String>,
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
        Ok(Config {
            listen: SocketAddr::new(ip, port),
            allowed_origins,
        })
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
