//! Test harness (features `sim` + `pcsc`): an isolated pcscd with the vpcd virtual reader, and
//! simulated cards plugged into it — the real PC/SC stack, no hardware, nothing shared with the host.
//!
//! [`Sandbox::start`] runs `unshare --mount --net` → a shell that brings up loopback, bind-mounts a
//! private run directory over `/run/pcscd`, and execs `pcscd --foreground --debug`. vpcd listens on
//! 0.0.0.0 inside that network namespace only. [`Sandbox::insert_card`] starts `card-sim` inside the same
//! network namespace with `nsenter --net=/proc/<pcscd>/ns/net`. Clients reach this pcscd through
//! `PCSCLITE_CSOCK_NAME=<run dir>/pcscd.comm`.
//!
//! Needs root and the Debian packages `pcscd`, `vsmartcard-vpcd`, `util-linux` (unshare, nsenter),
//! `iproute2` (ip), and `opensc` for the OpenSC oracle test.
//!
//! pcsc-lite reads `PCSCLITE_CSOCK_NAME` once per process, and setting environment variables is
//! `unsafe` in Rust 2024, so tests that use PC/SC in-process run through [`run_isolated`]: the test
//! re-executes itself with the variable set. Programs under test that run as child processes (the card
//! agent) just get the variable in their environment ([`Sandbox::pcsc_env`]).

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::hpki::SignStyle;
use crate::pcsc as card_pcsc;
use crate::sim::card::Profile;

/// The environment variable pcsc-lite clients read for the daemon's socket path.
pub const SOCKET_ENV: &str = "PCSCLITE_CSOCK_NAME";
/// Set in the re-executed child by [`run_isolated`]: the sandbox's run directory.
pub const RUN_DIR_ENV: &str = "CARD_SANDBOX_DIR";

/// How long to wait for pcscd, a card connection, or a presence change before failing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Polling interval while waiting for a file to appear.
const POLL: Duration = Duration::from_millis(10);

/// The namespace-side script: loopback up, private /run/pcscd, exec pcscd (`card/scripts/pcscd-sandbox.sh`).
const SANDBOX_SCRIPT: &str = include_str!("../../scripts/pcscd-sandbox.sh");

/// Harness failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A program could not be started.
    #[error("cannot start {program} (is it installed, and are we root?)")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A program exited before it was ready.
    #[error("{what} exited early ({status}); log:\n{log}")]
    Exited {
        /// What exited.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A control command was refused.
    #[error("card-sim control: {0}")]
    Control(String),
    /// The re-executed test failed or did not run.
    #[error("{0}")]
    Isolated(String),
    /// A needed program was not found.
    #[error("{0}")]
    NotFound(String),
    /// `PCSCLITE_CSOCK_NAME` does not point at this sandbox.
    #[error("{SOCKET_ENV} must be {0} in this process (use run_isolated)")]
    WrongSocketEnv(String),
    /// File-system or socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// PC/SC error while waiting for a card.
    #[error(transparent)]
    Card(#[from] crate::Error),
}

type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Name of the vpcd reader for `slot` (0 or 1).
pub fn reader_name(slot: u8) -> String {
    format!("Virtual PCD 00 {slot:02}")
}

/// Overrides where [`locate_card_sim`] looks for the simulator binary.
pub const CARD_SIM_ENV: &str = "CARD_SIM";

/// Finds the `card-sim` binary for tests outside the `card` package (inside it, use
/// `env!("CARGO_BIN_EXE_card-sim")`): `$CARD_SIM` if set, else `card-sim` in the target directory the
/// current test executable runs from (`target/<profile>/deps/..`). Cargo builds it for
/// `cargo test --workspace --all-features`, or explicitly with
/// `cargo build -p card --features sim --bin card-sim`.
pub fn locate_card_sim() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(CARD_SIM_ENV) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("card-sim"))
        .filter(|p| p.exists());
    candidate.ok_or_else(|| {
        HarnessError::NotFound(format!(
            "card-sim not found next to {}: set {CARD_SIM_ENV} or run `cargo build -p card --features sim --bin card-sim`",
            exe.display()
        ))
    })
}

/// An isolated pcscd. Dropping it kills pcscd (and the run directory, if the sandbox made it).
pub struct Sandbox {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pcscd: Child,
}

impl Sandbox {
    /// Starts pcscd in a fresh temporary run directory.
    pub fn start() -> Result<Sandbox> {
        let temp = tempfile::Builder::new().prefix("card-pcscd-").tempdir()?;
        let dir = temp.path().to_owned();
        Sandbox::spawn(dir, Some(temp))
    }

    /// Starts pcscd with `dir` (which must exist and be empty of a previous pcscd) as its run directory.
    pub fn start_in(dir: &Path) -> Result<Sandbox> {
        Sandbox::spawn(dir.to_owned(), None)
    }

    fn spawn(dir: PathBuf, temp: Option<tempfile::TempDir>) -> Result<Sandbox> {
        let log = File::create(dir.join("pcscd.log"))?;
        let pcscd = Command::new("unshare")
            .args(["--mount", "--net", "--", "sh", "-c", SANDBOX_SCRIPT, "sh"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: "unshare".into(),
                source,
            })?;
        let mut sandbox = Sandbox {
            dir,
            _temp: temp,
            pcscd,
        };
        let socket = sandbox.socket();
        let log = sandbox.dir.join("pcscd.log");
        wait_until(
            "pcscd's socket",
            DEFAULT_TIMEOUT,
            &mut sandbox.pcscd,
            &log,
            || socket.exists(),
        )?;
        Ok(sandbox)
    }

    /// The run directory (pcscd's socket and log, card logs, control sockets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// pcscd's socket: the value for `PCSCLITE_CSOCK_NAME`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("pcscd.comm")
    }

    /// The environment a PC/SC client process needs to use this sandbox.
    pub fn pcsc_env(&self) -> (&'static str, PathBuf) {
        (SOCKET_ENV, self.socket())
    }

    /// pcscd's process id (its network namespace is the sandbox's).
    pub fn pid(&self) -> u32 {
        self.pcscd.id()
    }

    /// Starts `card-sim` (the binary at `sim_binary`) as the card in vpcd slot `slot` and waits until
    /// its control socket is up. Call [`Sandbox::wait_for_card`] to wait until PC/SC sees the card.
    pub fn insert_card(&self, sim_binary: &Path, slot: u8, card: &SimArgs) -> Result<SimProcess> {
        let control = self.dir.join(format!("card-{slot}.ctl"));
        let log_path = self.dir.join(format!("card-{slot}.log"));
        let log = File::create(&log_path)?;
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .arg("--")
            .arg(sim_binary)
            .args(card.to_args())
            .arg("--vpcd")
            .arg(format!("127.0.0.1:{}", 35963 + u32::from(slot)))
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: "nsenter".into(),
                source,
            })?;
        wait_until(
            "card-sim's control socket",
            DEFAULT_TIMEOUT,
            &mut child,
            &log_path,
            || UnixStream::connect(&control).is_ok(),
        )?;
        Ok(SimProcess {
            child,
            control,
            slot,
            log: log_path,
        })
    }

    /// Waits until PC/SC reports a card present in (or absent from) the reader of `slot`.
    /// Needs `PCSCLITE_CSOCK_NAME` pointing at this sandbox in the current process.
    pub fn wait_for_card(&self, slot: u8, present: bool) -> Result<()> {
        let expected: OsString = self.socket().into_os_string();
        if std::env::var_os(SOCKET_ENV).as_ref() != Some(&expected) {
            return Err(HarnessError::WrongSocketEnv(
                self.socket().display().to_string(),
            ));
        }
        let ctx = card_pcsc::establish()?;
        let reader = reader_name(slot);
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        // The reader itself appears a moment after pcscd starts; until then the name is unknown.
        loop {
            match card_pcsc::wait_for_card(
                &ctx,
                &reader,
                present,
                deadline.saturating_duration_since(Instant::now()),
            ) {
                Ok(true) => return Ok(()),
                Ok(false) => break,
                Err(crate::Error::NoReader) if Instant::now() < deadline => thread::sleep(POLL),
                Err(e) => return Err(e.into()),
            }
        }
        let state = if present { "present" } else { "absent" };
        Err(HarnessError::Timeout(format!("card {state} in {reader}")))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Only our own child, by its handle. pcscd removes nothing we need; the run dir goes with TempDir.
        let _ = self.pcscd.kill();
        let _ = self.pcscd.wait();
    }
}

/// How to start one simulated card.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// Card type and, for HPKI, signing style.
    pub profile: Profile,
    /// Directory with the PEM files (see [`crate::sim::files`]).
    pub dir: PathBuf,
    /// Authentication PIN.
    pub pin: String,
    /// Signing PIN (`None`: the simulator's default).
    pub sign_pin: Option<String>,
    /// HPKI authentication AID (hex; `None`: the JMA AID).
    pub hpki_aid: Option<String>,
}

impl SimArgs {
    /// A card of `profile` with files from `dir` and authentication PIN `pin`.
    pub fn new(profile: Profile, dir: &Path, pin: &str) -> SimArgs {
        SimArgs {
            profile,
            dir: dir.to_owned(),
            pin: pin.to_owned(),
            sign_pin: None,
            hpki_aid: None,
        }
    }

    /// Command-line arguments for `card-sim` (without `--vpcd` and `--control`).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: OsString| {
            args.push(flag.into());
            args.push(value);
        };
        match self.profile {
            Profile::Jpki => push("--kind", "jpki".into()),
            Profile::Hpki(style) => {
                push("--kind", "hpki".into());
                let style = match style {
                    SignStyle::CardPadded => "card-padded",
                    SignStyle::HostPadded => "host-padded",
                };
                push("--hpki-style", style.into());
            }
        }
        push("--dir", self.dir.clone().into_os_string());
        push("--pin", self.pin.clone().into());
        if let Some(sign_pin) = &self.sign_pin {
            push("--sign-pin", sign_pin.into());
        }
        if let Some(aid) = &self.hpki_aid {
            push("--hpki-aid", aid.into());
        }
        args
    }
}

/// A running `card-sim`. Dropping it kills the process (the card disappears from the reader).
pub struct SimProcess {
    child: Child,
    control: PathBuf,
    slot: u8,
    log: PathBuf,
}

impl SimProcess {
    /// The vpcd slot the card sits in.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The PC/SC reader name of that slot.
    pub fn reader(&self) -> String {
        reader_name(self.slot)
    }

    /// The simulator's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Sends one control line and returns the reply line; an `error: …` reply is an error.
    pub fn control(&self, line: &str) -> Result<String> {
        let mut stream = UnixStream::connect(&self.control)?;
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT + Duration::from_secs(1)))?;
        writeln!(stream, "{line}")?;
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply)?;
        let reply = reply.trim().to_owned();
        if reply.starts_with("error") || reply.is_empty() {
            Err(HarnessError::Control(format!("{line}: {reply}")))
        } else {
            Ok(reply)
        }
    }

    /// Pulls the card (closes the vpcd connection).
    pub fn remove(&self) -> Result<()> {
        self.control("remove").map(drop)
    }

    /// Reinserts the card (reconnects to vpcd).
    pub fn insert(&self) -> Result<()> {
        self.control("insert").map(drop)
    }

    /// Arms a pull: the next command APDU with instruction byte `ins` removes the card unanswered.
    pub fn pull_on_ins(&self, ins: u8) -> Result<()> {
        self.control(&format!("pull-on-ins {ins:02X}")).map(drop)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 10 ms until it holds, the child exits (error with its log), or the timeout passes.
fn wait_until(
    what: &str,
    timeout: Duration,
    child: &mut Child,
    log: &Path,
    ready: impl Fn() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(HarnessError::Exited {
                what: what.into(),
                status,
                log: log_tail(log),
            });
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout(format!(
                "{what}; log:\n{}",
                log_tail(log)
            )));
        }
        thread::sleep(POLL);
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `body` against a fresh [`Sandbox`] in a re-executed copy of the current test binary whose
/// `PCSCLITE_CSOCK_NAME` points at the sandbox.
///
/// `test_name` must be the test's full libtest name (e.g. `jpki_sign_and_verify`, or `module::name`);
/// the child runs exactly that test, which calls `run_isolated` again and this time runs `body`. The
/// parent fails if the child fails or if no test by that name ran. The child's output is replayed
/// through `print!`, so the test framework captures it as usual.
pub fn run_isolated(
    test_name: &str,
    body: impl FnOnce(&Sandbox) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    if let Some(dir) = std::env::var_os(RUN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        std::fs::write(dir.join("ran"), test_name)?;
        let sandbox = Sandbox::start_in(&dir)?;
        return body(&sandbox)
            .map_err(|e| HarnessError::Isolated(format!("isolated test {test_name} failed: {e}")));
    }
    let temp = tempfile::Builder::new().prefix("card-pcscd-").tempdir()?;
    let output = Command::new(std::env::current_exe()?)
        .args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(RUN_DIR_ENV, temp.path())
        .env(SOCKET_ENV, temp.path().join("pcscd.comm"))
        .stdin(Stdio::null())
        .output()?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !temp.path().join("ran").exists() {
        return Err(HarnessError::Isolated(format!(
            "{test_name} did not run: is the name right?"
        )));
    }
    if !output.status.success() {
        let pcscd = log_tail(&temp.path().join("pcscd.log"));
        return Err(HarnessError::Isolated(format!(
            "isolated test {test_name} failed ({}); pcscd log tail:\n{pcscd}",
            output.status
        )));
    }
    Ok(())
}
