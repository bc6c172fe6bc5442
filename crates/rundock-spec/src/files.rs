//! Directories and files whose modes never depend on the caller's umask, and the
//! ownership rule for the paths root will execute from or read its configuration from.
//!
//! Why explicit modes: `mkdir(2)` and `open(2)` apply the process umask, so a module run
//! from a shell with `umask 000` made every directory 0777 — including the runner's
//! directory, where any user could then replace the binary runsv starts as root. Every
//! directory rundock creates goes through [`create_dirs`], every state file through
//! [`crate::state::write`], each setting its mode with an explicit `chmod` after the
//! create (the mode given to `mkdir` is itself masked by the umask).
//!
//! Why [`check_strict`]: the same takeover works through a directory that already exists
//! with a loose owner or mode. It is sshd's `StrictModes` rule applied to the path and
//! each of its ancestors up to `/`.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every directory rundock creates: readable by all (runsv, `rundock
/// status` run by an operator), writable by the owner only. Secrets live in files of
/// their own mode (`spec.json` is 0600), not in the directory's.
pub const DIR_MODE: u32 = 0o755;

/// The mode of the log directories: application output may hold what others should
/// not read.
pub const LOG_DIR_MODE: u32 = 0o750;

/// Creates `dir` and its missing ancestors, each with exactly `mode`, whatever the umask.
/// Directories that exist already are left as they are. Returns the directories it
/// created, outermost first.
pub fn create_dirs(dir: &Path, mode: u32) -> std::io::Result<Vec<PathBuf>> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .collect();
    let mut created = Vec::new();
    for path in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => {
                fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
                created.push(path.to_path_buf());
            }
            // Made by a concurrent call in between: it is somebody's, keep its mode.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Why a path may not be trusted with what root will run or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// The path at fault (the given one or an ancestor).
    pub path: PathBuf,
    /// What is wrong with it, e.g. `is writable by its group (mode 0775, owner uid 1000)`.
    pub why: String,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.path.display(), self.why)
    }
}

/// The facts [`strict_verdict`] decides on, for one path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owning uid.
    pub uid: u32,
    /// `st_mode`; only the permission bits (`& 0o7777`) are looked at.
    pub mode: u32,
    /// Whether the component is a directory (a root-owned sticky directory may be world-writable).
    pub is_dir: bool,
}

/// sshd's `StrictModes`, for one existing component: it must be owned by root or by
/// `user`, and writable by nobody else. A directory writable by all with the sticky bit
/// and owned by root (`/tmp`) passes: there only an entry's owner may rename or remove
/// it, so what lies below it is as safe as its own owner and mode.
pub fn strict_verdict(owner: Owner, user: u32) -> Result<(), String> {
    let mode = owner.mode & 0o7777;
    if owner.uid != 0 && owner.uid != user {
        return Err(format!(
            "is owned by uid {} (mode {mode:04o}); it must be owned by root{}",
            owner.uid,
            if user == 0 {
                String::new()
            } else {
                format!(" or uid {user}")
            }
        ));
    }
    let sticky_root_dir = owner.is_dir && owner.uid == 0 && mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !sticky_root_dir {
        return Err(format!(
            "is writable by everyone (mode {mode:04o}, owner uid {})",
            owner.uid
        ));
    }
    if mode & 0o020 != 0 && !sticky_root_dir {
        return Err(format!(
            "is writable by its group (mode {mode:04o}, owner uid {})",
            owner.uid
        ));
    }
    Ok(())
}

/// Checks `path` (or, when it does not exist yet, its nearest existing ancestor) and
/// every ancestor up to `/` with [`strict_verdict`] for the effective user. Symbolic
/// links are followed (the real path is what the kernel uses).
pub fn check_strict(path: &Path) -> Result<(), Untrusted> {
    let user = nix::unistd::geteuid().as_raw();
    let existing = path
        .ancestors()
        .find(|a| fs::symlink_metadata(a).is_ok())
        .unwrap_or(Path::new("/"));
    let real = fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    for component in real.ancestors() {
        let Ok(meta) = fs::metadata(component) else {
            continue;
        };
        let owner = Owner {
            uid: meta.uid(),
            mode: meta.mode(),
            is_dir: meta.is_dir(),
        };
        strict_verdict(owner, user).map_err(|why| Untrusted {
            path: component.to_path_buf(),
            why,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: u32, mode: u32, is_dir: bool) -> Owner {
        Owner { uid, mode, is_dir }
    }

    #[test]
    fn strict_modes_accept_only_root_or_the_user_and_no_foreign_write() {
        let table = [
            // (owner, mode, dir, user, ok)
            (0, 0o755, true, 0, true),
            (0, 0o700, true, 1000, true),
            (1000, 0o755, true, 1000, true),
            (1000, 0o755, true, 0, false),
            (0, 0o775, true, 0, false),
            (0, 0o777, true, 0, false),
            (0, 0o757, true, 0, false),
            (0, 0o1777, true, 0, true),
            (1000, 0o1777, true, 1000, false),
            (0, 0o1777, false, 0, false),
            (0, 0o666, false, 0, false),
            (0, 0o644, false, 1000, true),
            (2000, 0o755, true, 1000, false),
        ];
        for (uid, mode, dir, user, ok) in table {
            let verdict = strict_verdict(owner(uid, mode, dir), user);
            assert_eq!(
                verdict.is_ok(),
                ok,
                "owner {uid} mode {mode:o} dir {dir} user {user}: {verdict:?}"
            );
            if let Err(why) = verdict {
                assert!(why.contains(&format!("{:04o}", mode & 0o7777)), "{why}");
            }
        }
    }

    fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
        // SAFETY-free: umask is process-wide, so the tests that change it take a lock.
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        let out = f();
        nix::sys::stat::umask(old);
        out
    }

    #[test]
    fn created_directories_have_the_mode_whatever_the_umask() {
        for mask in [0o000, 0o002, 0o022, 0o077, 0o777] {
            let root = tempfile::tempdir().unwrap();
            let deep = root.path().join("a/b/c");
            let created = with_umask(mask, || create_dirs(&deep, DIR_MODE).unwrap());
            assert_eq!(created.len(), 3, "umask {mask:o}");
            for dir in ["a", "a/b", "a/b/c"] {
                let mode = fs::metadata(root.path().join(dir)).unwrap().mode() & 0o7777;
                assert_eq!(mode, DIR_MODE, "umask {mask:o}: {dir}");
            }
            // Existing directories keep theirs.
            fs::set_permissions(root.path().join("a"), fs::Permissions::from_mode(0o700)).unwrap();
            let again = with_umask(mask, || create_dirs(&deep, DIR_MODE).unwrap());
            assert!(again.is_empty());
            let mode = fs::metadata(root.path().join("a")).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700);
        }
    }
}
