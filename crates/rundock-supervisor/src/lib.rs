//! `rundock supervise`: keeps one service's container running, in the foreground under
//! runsv, through the Docker Engine API (bollard on a current-thread tokio runtime).
//!
//! One run of the supervisor is one life of the container:
//!
//! 1. back off first if the container has been crash-looping (`backoff`);
//! 2. wait until the services in `requires` are announced (`requires`), then make sure
//!    the image is there, per the spec's pull policy (`image`);
//! 3. remove stale containers of this service, or reuse the one that is still current
//!    (`supervise`);
//! 4. attach to its output before it starts, so nothing is lost (`output`), and start it
//!    from the create body built from the spec (`body`, with `$PRIVATE_IP` /
//!    `$PUBLIC_IP` substituted by `tokens`);
//! 5. run `post_start` in it (`hooks`): a failure stops it and fails the run;
//! 6. wait: when the container exits, exit with its exit code and let runsv start the
//!    next life. TERM or INT stops and removes the container and exits 0.
//!
//! Failures of the supervisor itself (Docker unreachable, image missing, create refused)
//! are logged as one line on stderr and end the run with [`EXIT_FAILURE`], the code
//! `docker run` uses for errors of the daemon; runit retries, with the same back-off.

mod backoff;
mod body;
mod failure;
mod hooks;
mod image;
mod log;
mod output;
mod requires;
mod supervise;
mod switch;
mod tokens;

use rundock_spec::Spec;
use std::path::Path;

/// The exit code of a run that failed before or around the container (not the
/// container's own exit code), as `docker run` exits 125 for daemon errors.
pub const EXIT_FAILURE: i32 = 125;

/// Name of the back-off state file, kept in the supervisor's working directory (runsv
/// starts it in the tree's `services/container`).
pub const STATE_FILE: &str = rundock_spec::state::SUPERVISOR_STATE_FILE;

pub use output::{OutputState, OUTPUT_STATE_FILE};
pub use rundock_spec::UPDATE_FILE;

/// How the last start-first update of a spec ended, as the supervisor leaves it in
/// [`UPDATE_FILE`] and the module reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdateOutcome {
    /// [`Spec::container_hash`] of the spec the update was to.
    pub spec: String,
    pub switched: bool,
    /// What happened; on failure, which check failed and why.
    pub message: String,
}

impl UpdateOutcome {
    pub fn switched(spec: &str, message: String) -> UpdateOutcome {
        UpdateOutcome {
            spec: spec.into(),
            switched: true,
            message,
        }
    }

    pub fn failed(spec: &str, message: String) -> UpdateOutcome {
        UpdateOutcome {
            spec: spec.into(),
            switched: false,
            message,
        }
    }

    /// Written as every state file is ([`rundock_spec::state::write`]); a failure is only logged (the update
    /// itself is done either way).
    pub fn save(&self, path: &Path) {
        if let Err(e) = rundock_spec::state::write(path, self) {
            eprintln!("rundock supervise: cannot write {}: {e}", path.display());
        }
    }

    /// The outcome in `path`, if there is one that parses.
    pub fn load(path: &Path) -> Option<UpdateOutcome> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }
}

/// Blocking: builds a current-thread tokio runtime. Returns the process exit code.
///
/// The code is the container's exit code when it exited, 0 after TERM/INT stopped it,
/// and [`EXIT_FAILURE`] when the supervisor could not get it running; in that last case
/// the reason has already been logged on stderr. `Err` only when no runtime can be built.
pub fn run(spec: Spec) -> anyhow::Result<i32> {
    let runtime = runtime()?;
    Ok(runtime.block_on(supervise::supervise(&spec, Path::new(STATE_FILE))))
}

/// Blocking: stop (with the spec's stop_timeout) and remove every container carrying labels
/// `rundock.service=<name>` and `rundock.host=<host_label>`, and one named `container_name`
/// if it carries those labels. Returns how many were removed.
pub fn remove_service_containers(
    name: &str,
    host_label: &str,
    container_name: &str,
    stop_timeout: u32,
) -> anyhow::Result<usize> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let docker = supervise::connect(stop_timeout).await?;
        supervise::remove_service_containers(
            &docker,
            name,
            host_label,
            container_name,
            stop_timeout,
        )
        .await
    })
}

/// Blocking: runs a `pre_stop`/`post_stop` hook for `container` (see
/// [`rundock_spec::hooks`] for the order); `Err` says why it failed.
pub fn run_hook(container: &str, hook: &rundock_spec::Hook) -> anyhow::Result<()> {
    hooks::run_blocking(container, hook)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the tokio runtime: {e}"))
}

/// Blocking: whether the service's container runs and was made from this spec (its
/// `rundock.spec` label carries [`Spec::container_hash`]). For the module's `wait`.
pub fn container_is_current(spec: &Spec) -> anyhow::Result<bool> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let docker = supervise::connect(spec.container.stop_timeout).await?;
        let Some(inspect) = supervise::inspect(&docker, &spec.container.container_name).await?
        else {
            return Ok(false);
        };
        let running = inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        let hash = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(rundock_spec::LABEL_SPEC).cloned());
        Ok(running && hash.as_deref() == Some(spec.container_hash().as_str()))
    })
}

/// What the module learns of a service's image before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCheck {
    /// The id the image reference resolves to now, as the pull policy gets it; `None`
    /// when finding out would pull and pulling was not allowed (check mode).
    pub id: Option<String>,
    /// The image id of the service's running container, when it runs and was made from
    /// the same spec.
    pub running: Option<String>,
}

/// Blocking, for the module before its first write: makes sure `spec`'s image can be
/// had the way its pull policy says, pulling it now where the policy pulls (only when
/// `may_pull`: check mode only looks), so a reference that exists nowhere fails the task
/// with the registry's answer instead of a crash loop under runsv.
pub fn check_image(spec: &Spec, may_pull: bool) -> anyhow::Result<ImageCheck> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let docker = supervise::connect(spec.container.stop_timeout).await?;
        let image = spec.container.image.as_str();
        let id = match (may_pull, spec.container.pull) {
            (true, _) | (false, rundock_spec::PullPolicy::Never) => {
                Some(image::ensure(&docker, spec).await?)
            }
            (false, _) => image::local_id(&docker, image).await?,
        };
        let running = match supervise::inspect(&docker, &spec.container.container_name).await? {
            Some(inspect) => {
                let current = inspect.state.as_ref().and_then(|s| s.running) == Some(true)
                    && inspect
                        .config
                        .as_ref()
                        .and_then(|c| c.labels.as_ref())
                        .and_then(|l| l.get(rundock_spec::LABEL_SPEC))
                        .map(String::as_str)
                        == Some(spec.container_hash().as_str());
                inspect.image.filter(|_| current)
            }
            None => None,
        };
        Ok(ImageCheck { id, running })
    })
}

/// Blocking: the host pid of the init process of the service's container while it runs
/// (`None` when there is no such container or it does not run). Drain until idle reads
/// the container's TCP table through it (`/proc/<pid>/net/tcp`).
pub fn container_pid(spec: &Spec) -> anyhow::Result<Option<u32>> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let docker = supervise::connect(spec.container.stop_timeout).await?;
        let Some(inspect) = supervise::inspect(&docker, &spec.container.container_name).await?
        else {
            return Ok(None);
        };
        let state = inspect.state.unwrap_or_default();
        let pid = state
            .pid
            .filter(|_| state.running == Some(true))
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0);
        Ok(pid)
    })
}
