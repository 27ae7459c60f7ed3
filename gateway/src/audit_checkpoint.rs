//! Signed checkpoints of the audit chain (docs/design.md §3.9, decision 0013).
//!
//! The keyed chain stops whoever can write the database but does not hold the audit key. A
//! checkpoint covers the rest: the row count and head link at a moment, signed with an Ed25519
//! key held outside the database and kept outside it too (the log, a file, a ticket). Whoever
//! later rewrites rows before that count, even with the audit key, cannot make the chain produce
//! the same head link again, and `gateway admin audit checkpoint --verify FILE` says so.
//!
//! A checkpoint is one JSON line; the signature covers the JSON array
//! `["ninsho-audit-checkpoint/1", rows, head, keyed_from, at, key]`.

use std::path::Path;

use anyhow::{Context as _, bail};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::{AuditVerification, Store};

const CONTEXT: &str = "ninsho-audit-checkpoint/1";

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

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
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

/// The Ed25519 key that signs checkpoints.
pub struct CheckpointKey(Ed25519KeyPair);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", self.public_key())
    }
}

impl CheckpointKey {
    /// Reads the key file (base64 PKCS#8), creating it with a new key if it does not exist.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_private_file(path, "audit checkpoint key", || {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| anyhow::anyhow!("key generation failed"))?;
            Ok(Zeroizing::new(STANDARD.encode(pkcs8.as_ref())))
        })?;
        Self::from_text(path, &text)
    }

    /// Reads a configured key file (base64 PKCS#8), which must exist.
    pub fn from_existing_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_existing_private_file(path, "audit checkpoint key")?;
        Self::from_text(path, &text)
    }

    fn from_text(path: &Path, text: &str) -> anyhow::Result<Self> {
        let der = Zeroizing::new(
            STANDARD.decode(text.trim()).map_err(|_| anyhow::anyhow!("{}: the checkpoint key is not valid base64", path.display()))?,
        );
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key", path.display()))?;
        Ok(Self(pair))
    }

    /// The public key, base64url: what a checkpoint names and is verified with.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.public_key().as_ref())
    }
}

/// A signed statement of the chain's head at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Rows in the chain.
    pub rows: i64,
    /// Hex link of row `rows` (64 zeros for an empty chain).
    pub head: String,
    /// First keyed row (`None`: the chain had no keyed segment yet).
    pub keyed_from: Option<i64>,
    /// Unix seconds when it was taken.
    pub at: i64,
    /// The signing public key, base64url Ed25519.
    pub key: String,
    /// base64url Ed25519 signature.
    pub sig: String,
}

fn signed_bytes(rows: i64, head: &str, keyed_from: Option<i64>, at: i64, key: &str) -> Vec<u8> {
    serde_json::to_vec(&(CONTEXT, rows, head, keyed_from, at, key)).unwrap_or_default()
}

impl Checkpoint {
    /// As one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a saved checkpoint: the last non-empty line of `text`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let line = text.lines().map(str::trim).rfind(|l| !l.is_empty()).context("no checkpoint in the file")?;
        serde_json::from_str(line).context("not a checkpoint line")
    }
}

/// Signs the chain's current head at `now`. The head is taken as stored: `audit verify` checks
/// the rows behind it.
pub async fn take(store: &Store, key: &CheckpointKey, now: i64) -> anyhow::Result<Checkpoint> {
    let head = store.audit_head().await?;
    let head_hex = hex::encode(&head.link);
    let public = key.public_key();
    let sig = key.0.sign(&signed_bytes(head.rows, &head_hex, head.keyed_from, now, &public));
    Ok(Checkpoint { rows: head.rows, head: head_hex, keyed_from: head.keyed_from, at: now, key: public, sig: URL_SAFE_NO_PAD.encode(sig.as_ref()) })
}

/// Checks a saved checkpoint: signed by `key`, and the database's chain up to its row count still
/// verifies and ends in its head link. The error says what differs.
pub async fn verify(store: &Store, key: &CheckpointKey, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let c = checkpoint;
    if c.key != key.public_key() {
        bail!("the checkpoint was signed by another key ({}), not this gateway's checkpoint key ({})", c.key, key.public_key());
    }
    let sig = URL_SAFE_NO_PAD.decode(&c.sig).map_err(|_| anyhow::anyhow!("the checkpoint signature is not base64url"))?;
    UnparsedPublicKey::new(&ED25519, key.0.public_key().as_ref())
        .verify(&signed_bytes(c.rows, &c.head, c.keyed_from, c.at, &c.key), &sig)
        .map_err(|_| anyhow::anyhow!("the checkpoint's signature does not verify: it was altered"))?;
    if c.rows < 0 {
        bail!("the checkpoint names a negative row count");
    }
    let (verdict, link) = store.audit_verify_to(Some(c.rows)).await?;
    match verdict {
        AuditVerification::Intact { rows, .. } if rows == c.rows => {}
        AuditVerification::Truncated { last_seq, .. } => {
            bail!("the checkpoint covers {} rows but the log holds only {last_seq}", c.rows)
        }
        broken => bail!("the chain up to row {} does not verify: {}", c.rows, describe(&broken)),
    }
    if hex::encode(&link) != c.head {
        bail!(
            "the chain up to row {} no longer produces the checkpoint's head link: rows up to it were rewritten after {}",
            c.rows,
            crate::clock::jst(c.at)
        );
    }
    let head = store.audit_head().await?;
    if c.keyed_from.is_some() && head.keyed_from != c.keyed_from {
        bail!("the keyed segment started at row {:?} at the checkpoint, and now at {:?}", c.keyed_from, head.keyed_from);
    }
    Ok(())
}

/// Explains a failed verification.
pub fn describe(v: &AuditVerification) -> String {
    match v {
        AuditVerification::Intact { rows, keyed_from } => {
            format!("intact ({rows} rows: {})", AuditVerification::segments(*rows, *keyed_from))
        }
        AuditVerification::Modified { seq } => format!("row {seq} was modified"),
        AuditVerification::Missing { seq, expected } => format!("row {expected} is missing (next row is {seq})"),
        AuditVerification::BrokenLink { seq } => format!("row {seq} does not link to the row before it (inserted or reordered)"),
        AuditVerification::Truncated { last_seq, head_seq } => {
            format!("rows after {last_seq} were removed (the chain head is at {head_seq})")
        }
        AuditVerification::KeyedStartMoved { seq } => {
            format!("the keyed segment is said to start at row {seq}, which is not an audit_chain_keyed event (the boundary was moved)")
        }
    }
}
