//! runit control: whether runsv supervises a directory, `sv` with absolute paths and
//! explicit waits, the ordered stop of a tree (control/t) and the log service.

use anyhow::{bail, Context, Result};
use rundock_spec::tree::{ANNOUNCE_SERVICE, CONTAINER_SERVICE};
use rundock_spec::Spec;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a runsv process supervises `dir`: runsv holds `supervise/ok` (a FIFO) open for
/// reading, so a non-blocking open for writing succeeds only while it runs.
pub fn runsv_running(dir: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.join("supervise/ok"))
        .is_ok()
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

/// Waits until runsv supervises `dir`.
pub fn wait_runsv_up(dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !runsv_running(dir) {
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

/// The tree's control/t: stop the announcer (the record goes first), wait the drain
/// time, stop the container, then HUP the tree's runsvdir so it stops its runsv children
/// and exits. A plain TERM would make runsvdir exit at once and orphan them.
pub fn stop_tree(tree: &Path) -> Result<()> {
    let spec = Spec::load(&tree.join(rundock_spec::SPEC_FILE));
    if let Err(e) = &spec {
        eprintln!("rundock stop-tree: {e}; stopping with default timeouts");
    }
    let spec = spec.ok();
    let announce = tree.join(ANNOUNCE_SERVICE);
    if runsv_running(&announce) {
        if let Err(e) = sv("down", &announce, 15) {
            eprintln!("rundock stop-tree: {e:#}");
        }
        let drain = spec.as_ref().map_or(0, |s| s.drain);
        std::thread::sleep(Duration::from_secs(drain.into()));
    }
    let container = tree.join(CONTAINER_SERVICE);
    if runsv_running(&container) {
        let wait = spec.as_ref().map_or(30, |s| s.container.stop_timeout + 15);
        if let Err(e) = sv("down", &container, wait) {
            eprintln!("rundock stop-tree: {e:#}");
        }
    }
    let pid_file = tree.join("supervise/pid");
    let pid = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("cannot read {}", pid_file.display()))?;
    let pid: i32 = pid
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", pid_file.display()))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("cannot signal the tree's runsvdir ({pid})"))?;
    Ok(())
}

/// Where svlogd keeps one stream of a service: `<log_dir>/<name>/<stream>`.
pub fn log_dir(spec: &Spec, stream: &str) -> PathBuf {
    spec.paths.log_dir.join(&spec.name).join(stream)
}

/// The log/run of a sibling: make the log dir, then become svlogd.
pub fn exec_svlogd(tree: &Path, stream: &str) -> Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt;
    if !["container", "announce", "watch"].contains(&stream) {
        bail!("log stream {stream:?} is not container, announce or watch");
    }
    let spec = Spec::load(&tree.join(rundock_spec::SPEC_FILE)).map_err(anyhow::Error::msg)?;
    let dir = log_dir(&spec, stream);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let err = Command::new("svlogd").arg("-tt").arg(&dir).exec();
    Err(err).context("cannot exec svlogd (is runit installed?)")
}
