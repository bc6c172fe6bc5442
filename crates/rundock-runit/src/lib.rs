//! The tree's side of runit at run time: what a service tree's `control/t` and
//! `log/run` scripts exec (`rundock stop-tree`, `rundock log`), as opposed to the
//! module, which writes the tree and drives it from outside with `sv`.
//!
//! Why a crate of its own: only run scripts use this code, so it does not belong to the
//! Ansible side (rundock-module), and it is not a long-running process's concern
//! (rundock-runtime). It drives runsv with the module's `sv` control
//! ([`rundock_module::runit`]), so there is one `sv` command line for both sides.

use anyhow::{bail, Context, Result};
use rundock_drain::Drained;
use rundock_module::runit::{runsv_running, sv};
use rundock_spec::tree::{ANNOUNCE_SERVICE, CONTAINER_SERVICE};
use rundock_spec::{DrainMode, Spec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The tree's control/t: stop the announcer (the record goes first), drain (see
/// [`drain`]), stop the container, then HUP the tree's runsvdir so it stops its runsv children
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
        if let Some(spec) = &spec {
            drain(spec);
        }
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

/// The wait between the record's withdrawal and the container's stop: all of `drain`
/// seconds, or with `drain_mode: idle` until the container serves no connection on its
/// port (at most `drain` seconds; see rundock-drain).
pub fn drain(spec: &Spec) {
    let limit = Duration::from_secs(spec.drain.into());
    let served_port = spec.announce.as_ref().map(|a| a.container_port);
    let (DrainMode::Idle, Some(port)) = (spec.drain_mode, served_port) else {
        std::thread::sleep(limit);
        return;
    };
    let pid = match rundock_supervisor::container_pid(spec) {
        Ok(Some(pid)) => pid,
        Ok(None) => return,
        Err(e) => {
            eprintln!(
                "rundock stop-tree: cannot find the container's process ({e:#}); draining {}s",
                spec.drain
            );
            std::thread::sleep(limit);
            return;
        }
    };
    match rundock_drain::wait_until_idle(pid, port, limit) {
        Drained::Idle(after) => eprintln!(
            "rundock stop-tree: {} idle on port {port} after {} ms",
            spec.name,
            after.as_millis()
        ),
        Drained::TimedOut { established } => eprintln!(
            "rundock stop-tree: {} still had {established} connection(s) on port {port} when the drain time ({}s) ended",
            spec.name, spec.drain
        ),
        Drained::Gone => {}
    }
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
