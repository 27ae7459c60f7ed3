//! Configuration layering both services use: built-in defaults, then a TOML file, then
//! environment variables with the service's prefix (`GATEWAY_…`, `NINSHO_SIGNER_…`), `__`
//! separating nested keys. Unknown and mistyped keys are errors, never ignored.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};

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

/// Defaults from `T::default()`, then `file` (if given; it must exist), then the variables
/// starting with `env_prefix`. `<PREFIX>CONFIG` names the file itself and is not a key.
pub fn layered<T: serde::Serialize + Default>(file: Option<&Path>, env_prefix: &str) -> Result<Figment, String> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(format!("file {} not found", file.display()));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    Ok(figment.merge(Env::prefixed(env_prefix).ignore(&["config"]).split("__")))
}

/// Defaults from `T::default()`, then TOML `text` (no environment); for tests and tools.
pub fn from_toml<T: serde::Serialize + Default>(text: &str) -> Figment {
    Figment::from(Serialized::defaults(T::default())).merge(Toml::string(text))
}

/// A URL kept in a secret file (a database URL with its password): the file must be private
/// ([`crate::secret_file::read_existing_private_file`]) and hold one line; trailing whitespace is
/// dropped.
pub fn read_url_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = crate::secret_file::read_existing_private_file(path, what)?;
    let line = text.trim_end().to_owned();
    if line.is_empty() || line.contains(['\n', '\r']) {
        anyhow::bail!("{} ({what}) must hold one URL on one line", path.display());
    }
    Ok(line)
}

/// `url` with any password replaced by `***`, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
