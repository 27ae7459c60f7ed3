//! Secret files: keys and URLs kept outside the database, read only when no other user can read
//! them, and created 0600 when the product generates them (decision 0014).

use std::path::Path;

use anyhow::{Context as _, bail};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// `n` random bytes from the system generator.
pub fn random_bytes<const N: usize>() -> anyhow::Result<Zeroizing<[u8; N]>> {
    let mut bytes = Zeroizing::new([0u8; N]);
    SystemRandom::new().fill(bytes.as_mut()).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(bytes)
}

/// Reads a secret file, creating it first (mode 0600, with `generate`'s content) if it does not
/// exist. A file readable by other users is refused ([`private_mode_allowed`]).
pub fn read_private_file(
    path: &Path,
    what: &str,
    generate: impl FnOnce() -> anyhow::Result<Zeroizing<String>>,
) -> anyhow::Result<Zeroizing<String>> {
    if !path.exists() {
        let contents = generate()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_private(path, contents.as_bytes())?;
        tracing::warn!(path = %path.display(), "created a new {what} file; every instance must use the same one");
    }
    read_existing_private_file(path, what)
}

/// Reads a configured secret file, which must exist: it is never generated, since every instance
/// has to read the same secret (decision 0014). A file readable by other users is refused
/// ([`private_mode_allowed`]).
pub fn read_existing_private_file(path: &Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{} ({what}) does not exist", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("{} ({what})", path.display())),
    };
    if !meta.is_file() {
        bail!("{} ({what}) is not a regular file", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let mode = meta.mode() & 0o777;
        let me = ProcessIds::current();
        if !private_mode_allowed(mode, meta.uid(), meta.gid(), me.as_ref()) {
            bail!(
                "{} ({what}) is readable by other users (mode {mode:o}, owner uid {}, group {}); chmod 600 it \
                 (a secret mounted by the platform may instead be root's, mode 0640 or 0440, with a group this \
                 process runs in)",
                path.display(),
                meta.uid(),
                meta.gid()
            );
        }
    }
    Ok(Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {} ({what})", path.display()))?))
}

/// Whether a secret file with permission bits `mode`, owned by `owner` and `group`, is private
/// enough for a process with the ids `me`: no bits for group or others; or a file of root's with
/// group read and nothing more, when that group is one this process (not root) runs in. The
/// second form is how Kubernetes mounts a secret for a pod's `fsGroup` (root-owned, group read
/// added, the fsGroup among the container's groups): the platform granted the read to the
/// gateway's group, and neither the gateway nor that group can widen it. Unknown ids (`None`)
/// allow the first form only (decision 0014).
pub fn private_mode_allowed(mode: u32, owner: u32, group: u32, me: Option<&ProcessIds>) -> bool {
    if mode & 0o077 == 0 {
        return true;
    }
    let Some(me) = me else { return false };
    owner == 0 && mode & 0o037 == 0 && me.uid != 0 && (me.gid == group || me.groups.contains(&group))
}

/// This process's effective user and group ids and its supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIds {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl ProcessIds {
    /// From `/proc/self/status` (Linux); `None` where it cannot be read or parsed.
    pub fn current() -> Option<Self> {
        Self::parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Parses the `Uid:`, `Gid:` (real, effective, saved, filesystem) and `Groups:` lines of
    /// `/proc/<pid>/status`. Any of them missing or malformed: `None`.
    pub fn parse_status(text: &str) -> Option<Self> {
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::split_whitespace);
        let effective = |name: &str| -> Option<u32> {
            let ids: Vec<u32> = field(name)?.map(str::parse).collect::<Result<_, _>>().ok()?;
            (ids.len() == 4).then(|| ids[1])
        };
        let groups = field("Groups:")?.map(str::parse).collect::<Result<Vec<u32>, _>>().ok()?;
        Some(Self { uid: effective("Uid:")?, gid: effective("Gid:")?, groups })
    }
}

/// Writes a new secret file, mode 0600; an existing file is an error (never overwritten).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}
