//! One life of the container, from the supervisor's start to its exit code.
//!
//! Replace or reuse: a container of this service (same name, or labels
//! `rundock.service`/`rundock.host`) is **reused** when it carries this spec's hash (and
//! token addresses), was made from the image id we have now, and is created, exited or
//! still running; a running one is adopted (attached and waited for), a stopped one just
//! started again. Restarting an existing container skips the create and is the cheap path
//! when runsv brings the supervisor back after the container died. Every other container
//! of the service is stopped and removed before ours starts.
//!
//! A container the announcer asked to replace ([`rundock_spec::state::REPLACE_FILE`]:
//! it was healthy and stopped answering) is not reused even when current: stop-first
//! removes it and creates a new one here, start-first switches to a new one beside it
//! (see [`crate::switch`]). The request is removed once this start acted on it.
//!
//! Why exit and let runsv respawn us rather than restart the container in-process:
//! `benches/restart.sh` measured `kill -9` of the container's process to the container
//! running again at a median of about 300 ms this way, against about 330 ms for Docker's
//! own `--restart=always`. Most of it is Docker's: the exit is reported only after the
//! daemon has cleaned the container up, and a start costs about 190 ms; the respawn
//! itself (process start to attached) is about 20 ms. So a restart loop in-process
//! would save little, while a fresh process per life keeps runsv's view (`sv status`
//! uptime) and the back-off honest.
//!
//! Signals ([`crate::signals`], passed in): TERM or INT at any point stops our container
//! (with the spec's `stop_timeout`), removes it, and exits 0; a second signal while
//! stopping kills it. HUP while the container lives lets go of it and exits 0.
//!
//! The Docker calls are [`rundock_docker`]'s and [`crate::containers`]'; this module
//! owns only the order of one life and what is recorded of it.

use crate::backoff;
use crate::body::{self, create_body};
use crate::containers::{attach_and_start, attach_running, stale_reason, stop_ours, Life};
use crate::failure::{AtStage, StartFailure};
use crate::hooks;
use crate::image;
use crate::log::prefix;
use crate::requires;
use crate::signals::{race, race_or_let_go, Raced, Signals};
use crate::switch;
use crate::tokens::Addresses;
use crate::EXIT_FAILURE;
use anyhow::Context;
use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use rundock_docker::container::{
    self, inspect, labelled, remove, short, stop_and_remove, wait_exit,
};
use rundock_runtime::log::Prefix;
use rundock_runtime::say;
use rundock_spec::state::{self, Failure, FailureKind, FailureStage, ReplaceRequest, REPLACE_FILE};
use rundock_spec::Spec;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the last output may take to arrive after the container exited.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The whole run; returns the process exit code.
pub(crate) async fn supervise(spec: &Spec, state_path: &Path, mut signals: Signals) -> i32 {
    let run = Run::begin(spec, state_path);
    let delay = backoff::delay(run.failures);
    if !delay.is_zero() {
        say!(
            run.name,
            "the container ran less than {}s {} time(s) in a row; waiting {}s before starting it",
            backoff::STABLE_AFTER.as_secs(),
            run.failures,
            delay.as_secs()
        );
        if let Raced::Stopped(why) = race(&mut signals, tokio::time::sleep(delay)).await {
            return run
                .stop(why, " while waiting to start; exiting", None, &mut signals)
                .await;
        }
    }
    match run.wait_for_requires(&mut signals).await {
        Waited::Go => {}
        Waited::Stop => {
            run.save(0);
            return 0;
        }
        Waited::Fail => {
            run.save(backoff::after_run(run.failures, None));
            return EXIT_FAILURE;
        }
    }
    let request_limit = rundock_docker::stop_request_limit(spec.container.stop_timeout);
    let docker = match rundock_docker::connect(request_limit).await {
        Ok(docker) => docker,
        Err(e) => {
            say!(run.name, "{e:#}");
            return run.fail(FailureStage::Docker, e);
        }
    };
    let life = match race(&mut signals, start(&docker, spec)).await {
        Raced::Done(Ok(life)) => life,
        Raced::Done(Err(failure)) => {
            say!(run.name, "{failure}");
            run.save_with(backoff::after_run(run.failures, None), None, Some(failure));
            return EXIT_FAILURE;
        }
        Raced::Stopped(why) => {
            let during = " before the container was running";
            return run
                .stop(why, during, Some((&docker, None)), &mut signals)
                .await;
        }
    };
    if let Some(hook) = &spec.hooks.post_start {
        let ran = match race(&mut signals, hooks::run(&docker, &life.id, hook)).await {
            Raced::Done(ran) => ran,
            Raced::Stopped(why) => {
                let during = " while post_start ran";
                return run
                    .stop(why, during, Some((&docker, Some(life))), &mut signals)
                    .await;
            }
        };
        if let Err(why) = ran {
            say!(run.name, "post_start failed: {why}; stopping the container");
            stop_ours(&docker, spec, &mut signals).await;
            life.output.finish(OUTPUT_GRACE).await;
            return run.fail(
                FailureStage::PostStart,
                anyhow::anyhow!("post_start failed: {why}"),
            );
        }
        say!(run.name, "post_start succeeded");
        run.post_start_done(&life.id);
    }
    run.watch(&docker, life, &mut signals).await
}

/// One run's record keeping: the back-off state it began with, and how it saves what
/// happened (for the next run's back-off, `rundock status`, metrics and `wait`).
struct Run<'a> {
    spec: &'a Spec,
    state_path: &'a Path,
    name: Prefix,
    previous: backoff::State,
    /// Short lives in a row before this run.
    failures: u32,
    spec_hash: String,
}

impl<'a> Run<'a> {
    /// A new life: no post_start has succeeded for it yet (the container may be the
    /// same one, restarted), so the announcer holds the record until it has.
    fn begin(spec: &'a Spec, state_path: &'a Path) -> Run<'a> {
        let loaded = backoff::load(state_path);
        let previous = backoff::State {
            post_start_done: None,
            ..loaded.clone()
        };
        let run = Run {
            spec,
            state_path,
            name: prefix(spec),
            failures: previous.failures,
            spec_hash: spec.container_hash(),
            previous,
        };
        if loaded != run.previous {
            run.write(&run.previous);
        }
        run
    }

    fn write(&self, next: &backoff::State) {
        if let Err(e) = backoff::save(self.state_path, next) {
            say!(
                self.name,
                "cannot save the state in {}: {e}",
                self.state_path.display()
            );
        }
    }

    /// `exit`: the container's exit code when it exited on its own (a restart);
    /// `failure`: why this attempt failed, recorded for status, metrics and `wait`.
    fn save_with(&self, failures: u32, exit: Option<i64>, failure: Option<StartFailure>) {
        let now = state::unix_now();
        let mut next = backoff::next_state(&self.previous, failures, exit, now);
        match failure {
            Some(failure) => {
                if failure.stage != FailureStage::Exit {
                    next.failed_starts = next.failed_starts.saturating_add(1);
                }
                next.last_failure = Some(Failure {
                    stage: failure.stage,
                    kind: failure.kind,
                    message: failure.message,
                    at: now,
                    spec: self.spec_hash.clone(),
                });
            }
            // A life long enough to end the crash loop ends its failure too.
            None if exit.is_some() && failures == 0 => next.last_failure = None,
            None => {}
        }
        if next != self.previous {
            self.write(&next);
        }
    }

    fn save(&self, failures: u32) {
        self.save_with(failures, None, None)
    }

    /// Records a failed start at `stage`; the exit code for it.
    fn fail(&self, stage: FailureStage, error: anyhow::Error) -> i32 {
        self.save_with(
            backoff::after_run(self.failures, None),
            None,
            Some(StartFailure::new(stage, error)),
        );
        EXIT_FAILURE
    }

    fn post_start_done(&self, id: &str) {
        self.write(&backoff::State {
            post_start_done: Some(id.to_string()),
            ..self.previous.clone()
        });
    }

    /// A stop request (`why`) arrived `during` a step: with Docker, stop and remove our
    /// container (and let its output finish); exit 0.
    async fn stop(
        &self,
        why: &str,
        during: &str,
        docker: Option<(&Docker, Option<Life>)>,
        signals: &mut Signals,
    ) -> i32 {
        say!(self.name, "{why}{during}");
        if let Some((docker, life)) = docker {
            stop_ours(docker, self.spec, signals).await;
            if let Some(life) = life {
                life.output.finish(OUTPUT_GRACE).await;
            }
        }
        self.save(0);
        0
    }

    /// The container's life, until it exits (its code is ours), a stop request stops
    /// it, or HUP lets go of it.
    async fn watch(&self, docker: &Docker, life: Life, signals: &mut Signals) -> i32 {
        let since = Instant::now();
        let exited = match race_or_let_go(signals, wait_exit(docker, &life.id)).await {
            Some(Raced::Done(exited)) => exited,
            None => {
                say!(
                    self.name,
                    "HUP: leaving the container running and starting again on the spec on disk"
                );
                life.output.finish(Duration::from_millis(200)).await;
                self.save(0);
                return 0;
            }
            Some(Raced::Stopped(why)) => {
                return self
                    .stop(why, "", Some((docker, Some(life))), signals)
                    .await;
            }
        };
        let uptime = since.elapsed();
        life.output.finish(OUTPUT_GRACE).await;
        match exited {
            Ok(code) => {
                say!(
                    self.name,
                    "container exited with code {code} after {:.1}s",
                    uptime.as_secs_f64()
                );
                let after = backoff::after_run(self.failures, Some(uptime));
                let died_young = (uptime < backoff::STABLE_AFTER).then(|| StartFailure {
                    stage: FailureStage::Exit,
                    // Twice in a row is no accident: the same spec will die again.
                    kind: if after >= 2 {
                        FailureKind::Permanent
                    } else {
                        FailureKind::Transient
                    },
                    message: format!(
                        "the container exited with code {code} after {:.1}s",
                        uptime.as_secs_f64()
                    ),
                });
                self.save_with(after, Some(code), died_young);
                exit_code(code)
            }
            Err(e) => {
                say!(self.name, "lost track of the container: {e:#}");
                self.fail(
                    FailureStage::Docker,
                    e.context("lost track of the container"),
                )
            }
        }
    }

    /// Waits until every service in `requires` is announced, within its timeout (see
    /// [`requires`]); nothing to wait for without `requires`.
    async fn wait_for_requires(&self, signals: &mut Signals) -> Waited {
        let spec = self.spec;
        let previous = &self.previous;
        let (Some(required), Some(announce)) = (&spec.requires, &spec.announce) else {
            return Waited::Go;
        };
        let name = &self.name;
        let client = match rundock_etcd::Client::new(&announce.etcd) {
            Ok(client) => client,
            Err(e) => {
                say!(name, "requires: cannot make an etcd client: {e}");
                return Waited::Fail;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(required.timeout.into());
        let mut last: Option<Result<Vec<String>, String>> = None;
        loop {
            let now = requires::missing(&client, &announce.etcd.prefix, required).await;
            if let Some(line) = requires::describe_change(last.as_ref(), &now) {
                if last.is_some() || !matches!(&now, Ok(m) if m.is_empty()) {
                    say!(name, "{line}");
                }
                let waiting_for = match &now {
                    Ok(missing) => missing.clone(),
                    Err(_) => required.names.clone(),
                };
                let state = backoff::State {
                    waiting_for,
                    ..previous.clone()
                };
                // Nothing waited for: the file already says so.
                if state != *previous {
                    self.write(&state);
                }
            }
            if matches!(&now, Ok(m) if m.is_empty()) {
                return Waited::Go;
            }
            last = Some(now);
            if Instant::now() >= deadline {
                return match required.on_timeout {
                    rundock_spec::OnTimeout::Start => {
                        say!(
                            name,
                            "requires not met after {}s; starting anyway",
                            required.timeout
                        );
                        Waited::Go
                    }
                    rundock_spec::OnTimeout::Fail => {
                        say!(
                            name,
                            "requires not met after {}s; failing",
                            required.timeout
                        );
                        Waited::Fail
                    }
                };
            }
            if let Raced::Stopped(why) = race(signals, tokio::time::sleep(requires::POLL)).await {
                say!(name, "{why} while waiting for requires; exiting");
                return Waited::Stop;
            }
        }
    }
}

/// How the wait for `requires` ended.
enum Waited {
    Go,
    Stop,
    Fail,
}

/// The container's exit code as ours; anything a process cannot exit with is a failure.
pub(crate) fn exit_code(code: i64) -> i32 {
    match i32::try_from(code) {
        Ok(code @ 0..=255) => code,
        _ => EXIT_FAILURE,
    }
}

/// Image, stale containers, then create (or reuse), attach and start; a failure says
/// at which stage.
async fn start(docker: &Docker, spec: &Spec) -> Result<Life, StartFailure> {
    use FailureStage::{Create, Image, Start};
    let image_id = image::ensure(docker, spec).await.at(Image)?;
    let addresses = Addresses::resolve(&spec.container, &spec.interfaces).at(Create)?;
    let identity = body::identity_labels(spec, &addresses);
    // The announcer's request to replace a container that stopped answering; dropped
    // once acted on, or when it names a container that is no longer ours.
    let replace_path = Path::new(REPLACE_FILE);
    let replace = state::read::<ReplaceRequest>(replace_path);

    if spec.start_first.is_some() {
        let result_path = Path::new(crate::UPDATE_FILE);
        let switched = switch::try_switch(
            docker,
            spec,
            &addresses,
            &identity,
            &image_id,
            result_path,
            replace.as_ref(),
        )
        .await
        .at(Start)?;
        if let switch::Switched::Life(life) = switched {
            drop_request(spec, replace_path, replace.as_ref());
            return Ok(life);
        }
    }
    let reusable = remove_stale(docker, spec, &identity, &image_id, replace.as_ref())
        .await
        .at(Create)?;
    drop_request(spec, replace_path, replace.as_ref());
    reuse_or_create(docker, spec, &addresses, reusable).await
}

/// Adopts the reusable container (attached if it runs, started if not), or creates a
/// new one from the spec when there is none or it cannot start.
async fn reuse_or_create(
    docker: &Docker,
    spec: &Spec,
    addresses: &Addresses,
    reusable: Option<(String, ContainerStateStatusEnum)>,
) -> Result<Life, StartFailure> {
    use FailureStage::{Create, Start};
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
    match reusable {
        Some((id, ContainerStateStatusEnum::RUNNING)) => {
            let life = attach_running(docker, spec, &id).await.at(Start)?;
            say!(
                name,
                "container {container_name} is already running; watching it"
            );
            return Ok(life);
        }
        Some((id, _)) => match attach_and_start(docker, spec, &id).await {
            Ok(life) => return Ok(life),
            // Something it depends on may have changed under it (a volumes_from
            // container recreated, a network removed): a fresh container may still work.
            Err(e) => {
                say!(name, "{e:#}; recreating it");
                remove(docker, &id).await.at(Create)?;
            }
        },
        None => {}
    }
    let options = CreateContainerOptions {
        name: Some(container_name.to_string()),
        ..Default::default()
    };
    let id = docker
        .create_container(Some(options), create_body(spec, addresses))
        .await
        .with_context(|| format!("cannot create container {container_name}"))
        .at(Create)?
        .id;
    attach_and_start(docker, spec, &id).await.at(Start)
}

/// Removes the replacement request once this start has acted on it: replaced the
/// container it named, or found that container gone. A failed replacement is not
/// retried from here: the announcer asks again after its back-off if the container
/// still does not answer, and a later restart (an update, a reboot) must not replace a
/// container that recovered meanwhile.
fn drop_request(spec: &Spec, path: &Path, request: Option<&ReplaceRequest>) {
    if request.is_none() {
        return;
    }
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            say!(prefix(spec), "cannot remove {}: {e}", path.display());
        }
    }
}

/// Removes every container of this service except one that can be reused, which is
/// returned with its state. The container `replace` names is not reused.
async fn remove_stale(
    docker: &Docker,
    spec: &Spec,
    identity: &[(&'static str, String)],
    image_id: &str,
    replace: Option<&ReplaceRequest>,
) -> anyhow::Result<Option<(String, ContainerStateStatusEnum)>> {
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
    let timeout = spec.container.stop_timeout;
    let mut keep = None;
    let mut handled = None;
    if let Some(named) = inspect(docker, container_name).await? {
        let id = named.id.clone().unwrap_or_default();
        let replaced = replace
            .filter(|r| r.container == id)
            .map(|r| format!("replaced: {}", r.reason));
        match replaced.or_else(|| stale_reason(&named, spec, identity, image_id)) {
            None => {
                let state = container::status(&named);
                keep = Some((id.clone(), state));
            }
            Some(reason) => {
                say!(name, "replacing container {container_name}: {reason}");
                stop_and_remove(docker, &id, timeout).await?;
            }
        }
        handled = Some(id);
    }
    for id in labelled(docker, &spec.name, &spec.host_label).await? {
        if Some(&id) != handled.as_ref() {
            say!(
                name,
                "removing container {} of this service: not named {container_name}",
                short(&id)
            );
            stop_and_remove(docker, &id, timeout).await?;
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_odd_ones_are_failures() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(137), 137);
        assert_eq!(exit_code(255), 255);
        assert_eq!(exit_code(-1), EXIT_FAILURE);
        assert_eq!(exit_code(256), EXIT_FAILURE);
    }
}
