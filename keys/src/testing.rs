//! Test support (feature `testing`): a throwaway SoftHSM2 token store per test.
//!
//! SoftHSM2 finds its token store through the `SOFTHSM2_CONF` environment variable, read once per
//! process when the module is initialised, and setting a variable in a running multi-threaded test
//! process is not sound (`std::env::set_var` is `unsafe`). So [`in_softhsm_process`] runs the
//! calling test again in a child process of the same test binary, with `SOFTHSM2_CONF` naming a
//! fresh store in a temporary directory. That works the same under `cargo test` (threads) and
//! `cargo nextest run` (a process per test), and no two tests ever share a token:
//!
//! ```ignore
//! #[test]
//! fn signs_on_the_token() {
//!     let Some(hsm) = keys::testing::in_softhsm_process("signs_on_the_token") else { return };
//!     let backend = keys::Backend::Pkcs11(keys::Pkcs11Backend::open(&hsm.config()).unwrap());
//!     // …
//! }
//! ```
//!
//! Packages: Debian's `softhsm2` (`tests/run.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use secrecy::SecretString;

use crate::Pkcs11Config;

/// Debian's SoftHSM2 module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The label of the token [`in_softhsm_process`] initialises.
pub const TOKEN_LABEL: &str = "ninsho-test";
/// Its user PIN.
pub const USER_PIN: &str = "1234";
/// Its security officer PIN.
pub const SO_PIN: &str = "5678";

/// Set in the child process to the name of the test it runs.
const CHILD_MARKER: &str = "NINSHO_KEYS_SOFTHSM_TEST";

/// A SoftHSM2 token store, as seen from the child process that runs a test.
#[derive(Debug)]
pub struct SoftHsm {
    conf: PathBuf,
}

impl SoftHsm {
    /// The configuration that opens the store's token ([`TOKEN_LABEL`], [`USER_PIN`]).
    pub fn config(&self) -> Pkcs11Config {
        Pkcs11Config {
            module: PathBuf::from(SOFTHSM2_MODULE),
            token_label: TOKEN_LABEL.to_owned(),
            pin: SecretString::from(USER_PIN),
        }
    }

    /// The `softhsm2.conf` of this store: pass it as `SOFTHSM2_CONF` to other programs that should
    /// see the same tokens (OpenSC's `pkcs11-tool`, `softhsm2-util`).
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }
}

/// In the parent process: makes a token store, runs the test named `test` (its path as libtest
/// prints it, e.g. `pkcs11::signs` or just `signs` at the root of a test file) in a child process
/// that sees it, waits, panics with the child's output if the child failed, and returns `None`: the
/// caller returns. In that child: returns the store; the caller runs the test body.
///
/// Panics when SoftHSM2 is not installed or the store cannot be made.
pub fn in_softhsm_process(test: &str) -> Option<SoftHsm> {
    if std::env::var(CHILD_MARKER).as_deref() == Ok(test) {
        let conf = std::env::var_os("SOFTHSM2_CONF")
            .unwrap_or_else(|| panic!("{CHILD_MARKER} is set but SOFTHSM2_CONF is not"));
        return Some(SoftHsm { conf: PathBuf::from(conf) });
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let conf = make_store(dir.path()).unwrap_or_else(|e| panic!("SoftHSM2 token store: {e}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current test binary: {e}"));
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, test)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| panic!("running {test} in a child process: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A filter that matches nothing passes too: insist that the child ran exactly this test.
    if !output.status.success() || !stdout.contains("1 passed") {
        panic!("{test} failed in its SoftHSM2 process ({}):\n{stdout}\n{stderr}", output.status);
    }
    None
}

/// Writes a `softhsm2.conf` with its token directory under `dir` and initialises the token
/// [`TOKEN_LABEL`] in the first free slot. Returns the configuration file.
pub fn make_store(dir: &Path) -> Result<PathBuf, String> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    let text = format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    init_token(&conf, TOKEN_LABEL, USER_PIN)?;
    Ok(conf)
}

/// Initialises one more token labelled `label` in the store of `conf` (before the module is
/// initialised in the process that will use it).
pub fn init_token(conf: &Path, label: &str, pin: &str) -> Result<(), String> {
    let output = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SO_PIN])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .map_err(|e| format!("softhsm2-util (apt-get install softhsm2): {e}"))?;
    if !output.status.success() {
        return Err(format!("softhsm2-util --init-token: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(())
}
