//! Writing generated files: keys, PKCS#12 files and passwords readable by their owner only.

use std::io::Write as _;
use std::path::Path;

/// Writes `contents` to `path`, replacing the file. With `private`, the file is mode 0600 on Unix
/// from the moment it holds any byte: a new file is created so (not widened by the umask and
/// narrowed afterwards), and an existing one is narrowed, through the open handle, while still
/// empty after truncation.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}
