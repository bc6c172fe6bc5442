//! runsv control from outside: whether runsv supervises a directory (and whether we may
//! know), `sv` with absolute paths and explicit waits. The module drives states with it;
//! stop-tree drives a tree's siblings with it.

use anyhow::{bail, Context, Result};
use rundock_spec::Spec;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a runsv process supervises `dir`: runsv holds `supervise/ok` (a FIFO) open for
/// reading, so a non-blocking open for writing succeeds only while it runs.
pub fn runsv_running(dir: &Path) -> bool {
    supervised(dir).unwrap_or(false)
}

/// [`runsv_running`] that reports what it cannot know: `supervise/ok` missing or without
/// a reader means not running; not being allowed to open it is an error naming the path
/// (an unprivileged check must not report a running service as stopped).
pub fn supervised(dir: &Path) -> Result<bool> {
    let ok = dir.join("supervise/ok");
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&ok)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(anyhow::anyhow!(
            "cannot open {}: permission denied — run with become (sudo)",
            ok.display()
        )),
        // ENXIO: a FIFO nobody reads; ENOENT: never supervised.
        Err(_) => Ok(false),
    }
}

/// Whether runsv holds the service down: `supervise/stat` says `down` while it is
/// supervised.
pub fn held_down(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("supervise/stat")).is_ok_and(|s| s.trim() == "down")
}

/// Waits until no runsv supervises `dir` (runsvdir notices a removed link within 5 s).
pub fn wait_runsv_gone(dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while runsv_running(dir) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// `sv -w WAIT COMMAND DIR`. `dir` must be absolute: sv resolves other names against
/// `$SVDIR`.
pub fn sv(command: &str, dir: &Path, wait_secs: u32) -> Result<()> {
    debug_assert!(dir.is_absolute());
    let output = Command::new("sv")
        .arg("-w")
        .arg(wait_secs.max(1).to_string())
        .arg(command)
        .arg(dir)
        .output()
        .context("cannot run sv (is runit installed?)")?;
    if !output.status.success() {
        bail!(
            "sv {command} {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(())
}

/// Seconds to wait for a whole tree to stop: drain, the container's stop timeout, slack.
pub fn stop_wait_secs(spec: Option<&Spec>) -> u32 {
    spec.map_or(60, |s| s.drain + s.container.stop_timeout + 20)
}
