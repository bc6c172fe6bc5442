//! Atomic file operations: every write goes to a temp file in the target's directory and
//! is renamed over it, so a reader (runsv, the supervisor) never sees half a file.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `contents` to `path` with `mode`, through a temp file and rename. The temp file
/// is created 0600 by `tempfile`, so secrets are never readable by others, even briefly.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".rundock-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    temp.write_all(contents)
        .and_then(|_| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Points `link` at `target` atomically (a temp symlink renamed over `link`).
pub fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let dir = link.parent().context("a link path has a parent")?;
    let temp = dir.join(format!(
        ".rundock-link-{}",
        link.file_name()
            .context("a link path has a name")?
            .to_string_lossy()
    ));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)
        .with_context(|| format!("cannot create a link in {}", dir.display()))?;
    fs::rename(&temp, link).with_context(|| format!("cannot rename into {}", link.display()))?;
    Ok(())
}

/// The file's mode bits, or `None` if there is no file.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.permissions().mode() & 0o7777)
}
