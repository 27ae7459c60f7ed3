//! `ninsho-release`: makes and checks signed clinic-agent releases (docs/design.md §3.14).
//!
//! - `keygen`: a release key pair in the minisign format (the secret key encrypted with a
//!   password unless `--unencrypted`); the public key goes into the gateway's
//!   `agent_releases.public_keys` and the agent's trusted slots.
//! - `sign`: the manifest of a binary (version, target, SHA-256, size, notes), signed as a whole;
//!   writes `MANIFEST` and `MANIFEST.minisig`.
//! - `verify`: checks a manifest's signature under given public keys, and a binary against it.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use release::sign::{self, Password};
use release::{PublicKey, check_binary, verify_manifest};

#[derive(Debug, Parser)]
#[command(name = "ninsho-release", version, about = "Signed clinic-agent releases: keys, signing, verification")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a release key pair (minisign format, Ed25519).
    Keygen {
        /// Where to write the public key (minisign.pub form). Never overwritten.
        #[arg(long)]
        public_key: PathBuf,
        /// Where to write the secret key (mode 0600). Never overwritten.
        #[arg(long)]
        secret_key: PathBuf,
        /// Leave the secret key unencrypted (tests only; a release key is kept encrypted, offline).
        #[arg(long, conflicts_with = "password_stdin")]
        unencrypted: bool,
        /// Read the password from the first line of standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Write a binary's manifest and sign it.
    Sign {
        /// The secret key file.
        #[arg(long)]
        secret_key: PathBuf,
        /// The agent binary.
        #[arg(long)]
        binary: PathBuf,
        /// Its version, MAJOR.MINOR.PATCH.
        #[arg(long)]
        version: String,
        /// Its target triple, e.g. x86_64-pc-windows-msvc.
        #[arg(long)]
        target: String,
        /// Release notes in Japanese.
        #[arg(long)]
        notes_ja: String,
        /// Release notes in English.
        #[arg(long)]
        notes_en: String,
        /// Where to write the manifest (default: BINARY.manifest.json); the signature goes to
        /// MANIFEST.minisig. Neither is overwritten.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Read the key's password from the first line of standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Check a manifest's signature (and a binary against the manifest).
    Verify {
        /// The manifest.
        manifest: PathBuf,
        /// A trusted public key file (minisign.pub) or its base64 line; repeat for two.
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<String>,
        /// The signature (default: MANIFEST.minisig).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The binary to check against the manifest.
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ninsho-release: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Keygen { public_key, secret_key, unencrypted, password_stdin } => {
            for path in [&public_key, &secret_key] {
                if path.exists() {
                    bail!("{} exists: a key file is never overwritten (nothing was written)", path.display());
                }
            }
            let password = if unencrypted {
                Password::None
            } else if password_stdin {
                Password::Given(read_password()?)
            } else {
                Password::Prompt
            };
            let pair = sign::generate(password)?;
            write_new(&secret_key, pair.secret_text.as_bytes(), true)?;
            if let Err(e) = write_new(&public_key, pair.public_text.as_bytes(), false) {
                // Leave nothing half-made: the secret key alone is of no use.
                let _ = std::fs::remove_file(&secret_key);
                return Err(e);
            }
            writeln!(out, "key id {}", pair.public.key_id())?;
            writeln!(out, "public key {}", pair.public.to_base64())?;
            writeln!(out, "wrote {} and {}", public_key.display(), secret_key.display())?;
        }
        Command::Sign { secret_key, binary, version, target, notes_ja, notes_en, manifest, password_stdin } => {
            let manifest_path = manifest.unwrap_or_else(|| with_suffix(&binary, ".manifest.json"));
            let signature_path = with_suffix(&manifest_path, ".minisig");
            for path in [&manifest_path, &signature_path] {
                if path.exists() {
                    bail!("{} exists: not overwritten (nothing was written)", path.display());
                }
            }
            let secret = read_text(&secret_key)?;
            let bytes = std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
            let m = sign::manifest_for(&bytes, &version, &target, &notes_ja, &notes_en)?;
            let password = if !sign::needs_password(&secret)? {
                Password::None
            } else if password_stdin {
                Password::Given(read_password()?)
            } else {
                Password::Prompt
            };
            let (manifest_bytes, signature) = sign::sign_manifest(&secret, password, &m)?;
            write_new(&manifest_path, &manifest_bytes, false)?;
            if let Err(e) = write_new(&signature_path, signature.as_bytes(), false) {
                let _ = std::fs::remove_file(&manifest_path);
                return Err(e);
            }
            writeln!(out, "{} {} {} bytes sha256 {}", m.version, m.target, m.size, m.sha256)?;
            writeln!(out, "wrote {} and {}", manifest_path.display(), signature_path.display())?;
        }
        Command::Verify { manifest, public_keys, signature, binary } => {
            let keys = public_keys
                .iter()
                .map(|k| {
                    let text = if Path::new(k).exists() { read_text(Path::new(k))? } else { k.clone() };
                    PublicKey::decode(&text).with_context(|| format!("public key {k}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let signature_path = signature.unwrap_or_else(|| with_suffix(&manifest, ".minisig"));
            let manifest_bytes = std::fs::read(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
            let signature_text = read_text(&signature_path)?;
            let m = verify_manifest(&manifest_bytes, &signature_text, &keys)?;
            writeln!(out, "signature good: {} {} {} bytes sha256 {}", m.version, m.target, m.size, m.sha256)?;
            if let Some(binary) = binary {
                let bytes = std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
                check_binary(&m, &bytes)?;
                writeln!(out, "binary good: {}", binary.display())?;
            }
        }
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// Writes a new file (never replacing one); `private`: mode 0600 on Unix.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}
