//! File writing with the right permissions from the first byte (no window where a key is world-readable).

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private key files.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Mode of directories we create.
pub(crate) const DIR_MODE: u32 = 0o755;

/// Creates `dir` and its parents (mode 0755) if missing.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_temp(path: &Path, data: &[u8], mode: u32) -> io::Result<PathBuf> {
    let tmp = temp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    // A stale temp file keeps its old mode: force ours before writing anything.
    f.set_permissions(Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(tmp)
}

/// Writes `path` atomically (temp file + rename), replacing any existing file.
pub(crate) fn write_replace(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, data, mode)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Writes `path` atomically but never replaces an existing file (fails with `AlreadyExists`).
pub(crate) fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, data, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked
}
