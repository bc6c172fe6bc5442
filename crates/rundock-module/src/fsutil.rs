//! Atomic file operations: every write goes to a temp file in the target's directory and
//! is renamed over it, so a reader (runsv, the supervisor) never sees half a file.
//!
//! Temp files are named `.rundock-tmp.<pid>.<random>`: a module killed mid-write (an
//! Ansible timeout, a lost SSH connection) leaves one behind, and the next run removes
//! those whose process is gone ([`remove_stale_temp_files`]) while leaving a concurrent
//! run's live ones alone. Files are read with [`read_if_exists`], which tells "missing"
//! from "not allowed to read" so an unprivileged check never mistakes one for the other.

use anyhow::{Context, Result};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Every temp file of ours starts with this.
pub const TEMP_PREFIX: &str = ".rundock-tmp.";

/// Temp files of earlier releases (`.rundock-XXXXXX`, `.rundock-link-NAME`) carry no
/// pid; they are stale once nothing could still be writing them.
const LEGACY_PREFIX: &str = ".rundock-";
const LEGACY_STALE_AFTER: Duration = Duration::from_secs(600);

fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}.", std::process::id())
}

/// Writes `contents` to `path` with `mode`, through a temp file and rename, creating
/// missing directories with [`rundock_spec::files::DIR_MODE`]. The temp file is created
/// 0600 by `tempfile`, so secrets are never readable by others, even briefly.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    rundock_spec::files::create_dirs(dir, rundock_spec::files::DIR_MODE)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix())
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
        "{}link-{}",
        temp_prefix(),
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

/// The file's bytes, `None` when it does not exist; any other failure (permission
/// denied above all) is an error that names the path.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// An I/O error as the module reports it: the path, what failed, and for a permission
/// error the usual cure.
pub fn io_error(action: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "cannot {action} {}: permission denied — run with become (sudo) or as the owner",
            path.display()
        )
    } else {
        anyhow::anyhow!("cannot {action} {}: {e}", path.display())
    }
}

/// Removes the temp files in `dir` (and its subdirectories when `recursive`) that no live
/// process is writing: a `.rundock-tmp.<pid>.*` whose pid is gone, or a legacy one older
/// than ten minutes. Returns what it removed. A missing `dir` has none.
pub fn remove_stale_temp_files(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_error("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry
            .file_type()
            .map_err(|e| io_error("inspect", &path, e))?;
        if file_type.is_dir() {
            // runit's own state (supervise/) holds no temp file of ours.
            if recursive && name != "supervise" {
                removed.extend(remove_stale_temp_files(&path, true)?);
            }
            continue;
        }
        if is_stale(&name, &path) {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                // A concurrent run renamed or removed it first.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path, e)),
            }
        }
    }
    Ok(removed)
}

fn is_stale(name: &str, path: &Path) -> bool {
    if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
        let pid = rest.split('.').next().and_then(|p| p.parse::<i32>().ok());
        return match pid {
            Some(pid) if pid > 0 => !process_alive(pid),
            _ => older_than(path, LEGACY_STALE_AFTER),
        };
    }
    name.starts_with(LEGACY_PREFIX) && older_than(path, LEGACY_STALE_AFTER)
}

fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        // It exists but belongs to someone else: alive.
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|elapsed| elapsed > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("services/container");
        fs::create_dir_all(sub.join("supervise")).unwrap();
        // pid 0x7ffffffe is never a live process on Linux (pid_max is at most 2^22).
        let dead = sub.join(format!("{TEMP_PREFIX}2147483646.abc"));
        let live = sub.join(format!("{}xyz", temp_prefix()));
        let ours_in_supervise = sub
            .join("supervise")
            .join(format!("{TEMP_PREFIX}2147483646.x"));
        let fresh_legacy = dir.path().join(".rundock-Ab12Cd");
        let other = dir.path().join("run");
        for f in [&dead, &live, &ours_in_supervise, &fresh_legacy, &other] {
            fs::write(f, "x").unwrap();
        }
        let removed = remove_stale_temp_files(dir.path(), true).unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        for kept in [&live, &ours_in_supervise, &fresh_legacy, &other] {
            assert!(kept.exists(), "{}", kept.display());
        }
        assert!(remove_stale_temp_files(&dir.path().join("missing"), true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn temp_files_carry_this_process_id() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_atomic(&target, b"x", 0o600).unwrap();
        symlink_atomic(&target, &dir.path().join("l")).unwrap();
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
        assert!(temp_prefix().starts_with(TEMP_PREFIX));
        assert!(temp_prefix().contains(&std::process::id().to_string()));
    }

    #[test]
    fn unreadable_is_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_if_exists(&dir.path().join("none")).unwrap(), None);
        let err = io_error(
            "read",
            Path::new("/etc/sv/x/spec.json"),
            std::io::Error::from(ErrorKind::PermissionDenied),
        );
        let text = err.to_string();
        assert!(text.contains("/etc/sv/x/spec.json"), "{text}");
        assert!(text.contains("permission denied"), "{text}");
        assert!(text.contains("become"), "{text}");
    }
}
