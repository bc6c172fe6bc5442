//! runit, from both sides: [`control`] drives runsv from outside (`sv` with absolute
//! paths and explicit waits, whether runsv supervises a directory), which the module
//! uses for states; the rest is what a service tree's `control/t` and `log/run`
//! scripts exec (`rundock stop-tree`, `rundock log`).
//!
//! Why a crate of its own: the run scripts' side does not belong to the Ansible side
//! (rundock-module), and it is not a long-running process's concern (rundock-runtime);
//! one `sv` command line serves both the module and the tree.

#![warn(missing_docs)]

pub mod control;

use anyhow::{bail, Context, Result};
use control::{runsv_running, sv};
use rundock_spec::tree::{ANNOUNCE_SERVICE, CONTAINER_SERVICE};
use rundock_spec::Spec;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What stop-tree needs from the container's side, supplied by the binary so this crate
/// stays free of the Docker client.
pub trait ContainerSide {
    /// Runs one lifecycle hook of `container` (`docker exec`, or on the host).
    fn run_hook(&self, container: &str, hook: &rundock_spec::Hook) -> Result<()>;
    /// The pid of the service's running container's init process, if one runs.
    fn container_pid(&self, spec: &Spec) -> Result<Option<u32>>;
}

/// The tree's control/t: stop the announcer (the record goes first), run `pre_stop`,
/// drain for the rest of the drain time (see [`drain`]), stop the container, run
/// `post_stop`, then HUP the tree's runsvdir so it stops its runsv children and exits. A
/// plain TERM would make runsvdir exit at once and orphan them.
pub fn stop_tree(tree: &Path, side: &dyn ContainerSide) -> Result<()> {
    let spec = Spec::load(&tree.join(rundock_spec::SPEC_FILE));
    if let Err(e) = &spec {
        eprintln!("rundock stop-tree: {e}; stopping with default timeouts");
    }
    let spec = spec.ok();
    let announce = tree.join(ANNOUNCE_SERVICE);
    // For `rundock status`: the tree drains from now until the container is down.
    let drain_file = tree.join(rundock_spec::state::DRAIN_STATE_FILE);
    let announced = runsv_running(&announce);
    if announced {
        let drain = spec.as_ref().map_or(0, |s| s.drain);
        let since = rundock_spec::state::unix_now();
        let draining = rundock_spec::state::DrainState {
            since,
            until: since + u64::from(drain),
        };
        if let Err(e) = rundock_spec::state::write(&drain_file, &draining) {
            eprintln!(
                "rundock stop-tree: cannot write {}: {e}",
                drain_file.display()
            );
        }
        if let Err(e) = sv("down", &announce, 15) {
            eprintln!("rundock stop-tree: {e:#}");
        }
    }
    let withdrawn = Instant::now();
    let container = tree.join(CONTAINER_SERVICE);
    let hooks = spec
        .as_ref()
        .map(|s| (&s.container.container_name, &s.hooks));
    // pre_stop after the record is gone, while the container still serves; its time
    // counts towards the drain.
    if let (Some((name, hooks)), true) = (hooks, runsv_running(&container)) {
        if let Some(hook) = &hooks.pre_stop {
            run_hook(side, "pre_stop", name, hook);
        }
    }
    if let (true, Some(spec)) = (announced, &spec) {
        let limit = Duration::from_secs(spec.drain.into()).saturating_sub(withdrawn.elapsed());
        drain(spec, side, limit);
    }
    if runsv_running(&container) {
        let wait = spec.as_ref().map_or(30, |s| s.container.stop_timeout + 15);
        if let Err(e) = sv("down", &container, wait) {
            eprintln!("rundock stop-tree: {e:#}");
        }
    }
    let _ = std::fs::remove_file(&drain_file);
    if let Some((name, hooks)) = hooks {
        if let Some(hook) = &hooks.post_stop {
            run_hook(side, "post_stop", name, hook);
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

/// Runs a stop hook; a failure is logged and the stop goes on.
fn run_hook(side: &dyn ContainerSide, which: &str, container: &str, hook: &rundock_spec::Hook) {
    eprintln!("rundock stop-tree: running {which}");
    match side.run_hook(container, hook) {
        Ok(()) => eprintln!("rundock stop-tree: {which} succeeded"),
        Err(e) => eprintln!("rundock stop-tree: {which} failed: {e:#}; stopping anyway"),
    }
}

/// The wait between the record's withdrawal and the container's stop, at most `limit`:
/// [`rundock_drain::drain`] on the running container's process; nothing when no
/// container runs.
pub fn drain(spec: &Spec, side: &dyn ContainerSide, limit: Duration) {
    let pid = match side.container_pid(spec) {
        Ok(Some(pid)) => Some(pid),
        Ok(None) => return,
        Err(e) => {
            eprintln!(
                "rundock stop-tree: cannot find the container's process ({e:#}); draining {}s",
                limit.as_secs()
            );
            None
        }
    };
    let drained = rundock_drain::drain(spec, pid, limit);
    eprintln!("rundock stop-tree: {}: {drained}", spec.name);
}

/// The siblings of a tree whose output svlogd keeps, each in its own log dir.
pub const LOG_STREAMS: [&str; 3] = ["container", "announce", "watch"];

/// Where svlogd keeps one stream of a service: `<log_dir>/<name>/<stream>`.
pub fn log_dir(spec: &Spec, stream: &str) -> PathBuf {
    spec.paths.log_dir.join(&spec.name).join(stream)
}

/// The log/run of a sibling: make the log dir, then become svlogd.
pub fn exec_svlogd(tree: &Path, stream: &str) -> Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt;
    if !LOG_STREAMS.contains(&stream) {
        bail!("log stream {stream:?} is not container, announce or watch");
    }
    let spec = Spec::load(&tree.join(rundock_spec::SPEC_FILE)).map_err(anyhow::Error::msg)?;
    let dir = log_dir(&spec, stream);
    rundock_spec::files::create_dirs(&dir, rundock_spec::files::LOG_DIR_MODE)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let err = Command::new("svlogd").arg("-tt").arg(&dir).exec();
    Err(err).context("cannot exec svlogd (is runit installed?)")
}
