//! The demo's clinic side (docs/design.md §3.13): the clinic agent, set up for the demo clinic,
//! and the OQS terminal simulator on two demo folders — each a process of its own, as on a real
//! clinic PC (the gateway links no clinic-side code). Both executables are looked for beside this
//! one (`cargo build -p card-agent -p oqs-sim` puts them there) unless given.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::task::Poll;

use anyhow::Context as _;
use base64::Engine as _;

/// The sample request the printed command enqueues: an e-prescription issue request's shape
/// (docs/design.md §3.13; the simulator answers it with a success result).
const SAMPLE_FILE: &str = "EPSsiDMP01req_000000000001.xml";

/// The demo's folders and the agent's data directory under the demo directory.
pub(crate) struct ClinicFiles {
    /// The agent's `--data-dir`: relay.toml, client.pem, its journal and archive.
    pub agent_dir: PathBuf,
    /// The OQS terminal's request folder.
    pub req: PathBuf,
    /// Its answer folder.
    pub res: PathBuf,
    /// The JSON body of the printed enqueue command.
    pub sample: PathBuf,
}

/// Makes (or keeps) the folders, the agent's set-up — what its set-up page would store — and the
/// sample request, from the demo clinic's certificate and key in `clinic/`.
pub(crate) fn prepare(dir: &Path, port: u16, clinic_id: &str) -> anyhow::Result<ClinicFiles> {
    let files = ClinicFiles {
        agent_dir: dir.join("agent"),
        req: dir.join("oqs").join("req"),
        res: dir.join("oqs").join("res"),
        sample: dir.join("oqs").join("sample-request.json"),
    };
    for d in [&files.agent_dir, &files.req, &files.res] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let identity = files.agent_dir.join("client.pem");
    if !identity.exists() {
        let cert = std::fs::read_to_string(dir.join("clinic/client.pem")).context("reading the demo clinic's certificate")?;
        let key = std::fs::read_to_string(dir.join("clinic/client.key")).context("reading the demo clinic's key")?;
        devpki::write_file(&identity, format!("{cert}{key}").as_bytes(), true).with_context(|| format!("writing {}", identity.display()))?;
    }
    let relay = files.agent_dir.join("relay.toml");
    if !relay.exists() {
        let q = |p: &Path| toml_string(&p.display().to_string());
        let text = format!(
            "# The demo clinic's OQS relay, as the agent's set-up page would store it (docs/design.md §3.13).\n\
             gateway = \"https://localhost:{port}\"\n\
             gateway_ca = {}\n\
             identity = {}\n\
             clinic_id = \"{clinic_id}\"\n\
             req = {}\n\
             res = {}\n\
             archive = {}\n\
             state_dir = {}\n",
            q(&dir.join("tls/server-ca.pem")),
            q(&identity),
            q(&files.req),
            q(&files.res),
            q(&files.agent_dir.join("archive")),
            q(&files.agent_dir.join("state")),
        );
        devpki::write_file(&relay, text.as_bytes(), true).with_context(|| format!("writing {}", relay.display()))?;
    }
    let request = concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?><XmlMsg><MessageHeader>",
        "<MedicalInstitutionCode>1311234567</MedicalInstitutionCode><ArbitraryFileIdentifier>DEMO-0001</ArbitraryFileIdentifier>",
        "</MessageHeader><MessageBody><IssueType>1</IssueType></MessageBody></XmlMsg>"
    );
    let body = serde_json::json!({
        "file_name": SAMPLE_FILE,
        "content": base64::engine::general_purpose::STANDARD.encode(request),
    });
    std::fs::write(&files.sample, body.to_string()).with_context(|| format!("writing {}", files.sample.display()))?;
    Ok(files)
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `explicit`, else `name` beside this executable, if it exists.
pub(crate) fn find_exe(name: &str, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    let here = std::env::current_exe().ok()?;
    let path = here.parent()?.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    path.is_file().then_some(path)
}

/// `name` in a directory of `PATH`, if there is one.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(&file)).find(|path| path.is_file())
}

/// A child process of the demo. Dropped (the demo's task aborted, an error), it is killed.
pub(crate) struct DemoChild {
    pub name: &'static str,
    child: tokio::process::Child,
}

impl DemoChild {
    /// Starts `exe args…` with the terminal's stdout and stderr.
    pub fn spawn(name: &'static str, exe: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<Self> {
        Self::spawn_with_env(name, exe, args, &[])
    }

    /// [`DemoChild::spawn`] with these environment variables added.
    pub fn spawn_with_env(name: &'static str, exe: &Path, args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let child = tokio::process::Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the demo {name} ({})", exe.display()))?;
        Ok(Self { name, child })
    }

    /// SIGTERM (the child finishes what it is doing and exits 0), then waits; SIGKILL if it is
    /// still there after `limit`. On Ctrl-C in a terminal the child got the SIGINT too; a second
    /// signal is harmless.
    pub async fn stop(mut self, limit: std::time::Duration) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    tracing::warn!(%status, process = self.name, "a demo process exited with an error");
                }
            }
            Err(_) => {
                tracing::warn!(process = self.name, "a demo process did not stop in time; killing it");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// The first of `children` to exit, with its status; never, for none.
pub(crate) async fn first_exit(children: &mut [DemoChild]) -> (&'static str, std::io::Result<ExitStatus>) {
    let mut waits: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let name = c.name;
            Box::pin(async move { (name, c.child.wait().await) })
        })
        .collect();
    std::future::poll_fn(|cx| {
        for wait in &mut waits {
            if let Poll::Ready(exit) = wait.as_mut().poll(cx) {
                return Poll::Ready(exit);
            }
        }
        Poll::Pending
    })
    .await
}

/// Starts the agent and the simulator, or says which is missing and how to build it.
pub(crate) fn spawn(
    out: &mut (dyn Write + Send),
    files: &ClinicFiles,
    gateway_port: u16,
    agent_port: u16,
    agent_exe: Option<&Path>,
    sim_exe: Option<&Path>,
) -> anyhow::Result<Vec<DemoChild>> {
    let (Some(agent), Some(sim)) = (find_exe("card-agent", agent_exe), find_exe("oqs-sim", sim_exe)) else {
        writeln!(
            out,
            "(The clinic agent and the OQS simulator are not built beside this executable, so the demo runs without the OQS relay: \
             `cargo build --release -p card-agent -p oqs-sim`, then run the demo again.)"
        )?;
        return Ok(Vec::new());
    };
    let origin = format!("https://localhost:{gateway_port}");
    let port = agent_port.to_string();
    let data = files.agent_dir.as_os_str();
    let ca = files.agent_dir.parent().map(|d| d.join("tls/server-ca.pem")).unwrap_or_default();
    let agent_args: Vec<&std::ffi::OsStr> = vec![
        "--allow-origin".as_ref(),
        origin.as_ref(),
        "--port".as_ref(),
        port.as_ref(),
        "--data-dir".as_ref(),
        data,
        "--gateway".as_ref(),
        origin.as_ref(),
        "--gateway-ca".as_ref(),
        ca.as_os_str(),
    ];
    let agent = DemoChild::spawn("clinic agent", &agent, &agent_args)?;
    let sim_args: Vec<&std::ffi::OsStr> =
        vec!["--req".as_ref(), files.req.as_os_str(), "--res".as_ref(), files.res.as_os_str(), "--delay-ms".as_ref(), "300".as_ref()];
    let sim = DemoChild::spawn("OQS terminal simulator", &sim, &sim_args)?;
    Ok(vec![agent, sim])
}

/// The printed lines: what runs, and the EMR's enqueue and read commands (`emr` is the curl
/// prefix with the EMR's certificate).
pub(crate) fn print(out: &mut dyn Write, files: &ClinicFiles, emr: &str, port: u16, agent_port: u16, clinic_id: &str) -> anyhow::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "OQS relay: the clinic agent (http://127.0.0.1:{agent_port}/status, set up for clinic {clinic_id}) and the OQS terminal simulator on {} → {}:",
        files.req.display(),
        files.res.display()
    )?;
    writeln!(
        out,
        "   {emr} -H 'content-type: application/json' -d @{} https://localhost:{port}/api/v1/clinics/{clinic_id}/oqs/requests",
        files.sample.display()
    )?;
    writeln!(out, "   then, with the request_id it answers: {emr} 'https://localhost:{port}/api/v1/oqs/requests/REQUEST_ID?wait=10'")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape_what_toml_needs() {
        assert_eq!(toml_string(r"C:\OQS\req"), r#""C:\\OQS\\req""#);
        assert_eq!(toml_string("a\"b\n"), r#""a\"b\u000A""#);
    }
}
