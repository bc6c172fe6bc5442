//! `rundock supervise`: keeps one service's container running, in the foreground under
//! runsv, through the Docker Engine API (bollard on a current-thread tokio runtime).
//!
//! One run of the supervisor is one life of the container:
//!
//! 1. back off first if the container has been crash-looping (`backoff`);
//! 2. wait until the services in `requires` are announced (`requires`), then make sure
//!    the image is there, per the spec's pull policy (`image`); with a `watch`, the
//!    container first waits for the watch's first files ([`wait_for_first_render`],
//!    which the binary calls before [`run`]; at once when they exist);
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
#![warn(missing_docs)]

mod backoff;
mod body;
mod containers;
mod failure;
mod first_render;
mod hooks;
mod image;
mod log;
mod output;
mod requires;
mod signals;
mod supervise;
mod switch;
mod tokens;

use rundock_docker::container;
use rundock_spec::Spec;
pub use signals::{SignalSender, Signals};
use std::path::Path;

/// The exit code of a run that failed before or around the container (not the
/// container's own exit code), as `docker run` exits 125 for daemon errors.
pub const EXIT_FAILURE: i32 = 125;

/// Name of the back-off state file, kept in the supervisor's working directory (runsv
/// starts it in the tree's `services/container`).
pub const STATE_FILE: &str = rundock_spec::state::SUPERVISOR_STATE_FILE;

pub use output::{OutputState, OUTPUT_STATE_FILE};
pub use rundock_spec::state::UpdateOutcome;
pub use rundock_spec::UPDATE_FILE;

/// Blocking, before [`run`]: with a `watch`, waits (at most 30 s) until the watch has
/// written every template's `dest`, so the container never starts before the file it
/// reads (see `first_render`); returns at once when they exist or there is no watch.
/// Keeps `waiting_for` in the state file ([`STATE_FILE`], in the working directory).
pub fn wait_for_first_render(spec: &Spec) {
    let name = log::prefix(spec);
    first_render::wait(spec, Path::new(STATE_FILE), |line| {
        rundock_runtime::say!(name, "{line}")
    });
}

/// Blocking: builds a current-thread tokio runtime. Returns the process exit code.
///
/// The code is the container's exit code when it exited, 0 after TERM/INT stopped it,
/// and [`EXIT_FAILURE`] when the supervisor could not get it running; in that last case
/// the reason has already been logged on stderr. `Err` only when no runtime can be built.
pub fn run(spec: Spec) -> anyhow::Result<i32> {
    let runtime = rundock_runtime::current_thread()?;
    Ok(runtime.block_on(async {
        // First of all, so a TERM during a pull or a back-off is ours to handle.
        match Signals::install() {
            Ok(signals) => supervise_with(&spec, Path::new(STATE_FILE), signals).await,
            Err(e) => {
                rundock_runtime::say!(log::prefix(&spec), "cannot handle signals: {e}");
                EXIT_FAILURE
            }
        }
    }))
}

/// One life of the container as [`run`] lives it, with the stop and let-go requests
/// coming from `signals` instead of the process's own signals, and the back-off state
/// in `state_path`: for running a supervisor inside another program (a test). The
/// start-first outcome and the announcer's replace request are still read from and
/// written to the working directory.
pub async fn supervise_with(spec: &Spec, state_path: &Path, signals: Signals) -> i32 {
    supervise::supervise(spec, state_path, signals).await
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
    let runtime = rundock_runtime::current_thread()?;
    runtime.block_on(async {
        let docker =
            rundock_docker::connect(rundock_docker::stop_request_limit(stop_timeout)).await?;
        containers::remove_service_containers(
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
    rundock_runtime::current_thread()?.block_on(async {
        let docker = rundock_docker::connect(rundock_docker::stop_request_limit(
            spec.container.stop_timeout,
        ))
        .await?;
        let image = spec.container.image.as_str();
        let id = match (may_pull, spec.container.pull) {
            (true, _) | (false, rundock_spec::PullPolicy::Never) => {
                Some(image::ensure(&docker, spec).await?)
            }
            (false, _) => image::local_id(&docker, image).await?,
        };
        let named = container::inspect(&docker, &spec.container.container_name).await?;
        let running = named
            .filter(|c| container::is_running_spec(c, spec))
            .and_then(|c| c.image);
        Ok(ImageCheck { id, running })
    })
}

/// Blocking: the host pid of the init process of the service's container while it runs
/// (`None` when there is no such container or it does not run). Drain until idle reads
/// the container's TCP table through it (`/proc/<pid>/net/tcp`).
pub fn container_pid(spec: &Spec) -> anyhow::Result<Option<u32>> {
    rundock_runtime::current_thread()?.block_on(async {
        let docker = rundock_docker::connect(rundock_docker::stop_request_limit(
            spec.container.stop_timeout,
        ))
        .await?;
        let named = container::inspect(&docker, &spec.container.container_name).await?;
        Ok(named
            .filter(container::is_running)
            .and_then(|c| container::pid(&c)))
    })
}
