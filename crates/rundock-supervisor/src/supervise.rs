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
//! Signals: TERM or INT at any point stops our container (with the spec's
//! `stop_timeout`), removes it, and exits 0; a second signal while stopping kills it.

use crate::backoff;
use crate::body::{self, create_body};
use crate::failure::{AtStage, StartFailure};
use crate::hooks;
use crate::image;
use crate::log::prefix;
use crate::output::{self, Copy};
use crate::requires;
use crate::switch;
use crate::tokens::Addresses;
use crate::EXIT_FAILURE;
use anyhow::Context;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use rundock_runtime::{say, Shutdown};
use rundock_spec::state::{self, Failure, FailureKind, FailureStage, ReplaceRequest, REPLACE_FILE};
use rundock_spec::{Spec, LABEL_HOST, LABEL_SERVICE};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the last output may take to arrive after the container exited.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Connects to the local Docker daemon (`DOCKER_HOST` if it is a `unix://` socket) and
/// pins the API version to the daemon's.
pub(crate) async fn connect(stop_timeout: u32) -> anyhow::Result<Docker> {
    let address =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let unreachable = || format!("cannot reach Docker at {address}");
    // A stop request answers only once the container is down: allow for stop_timeout.
    let timeout = Duration::from_secs(u64::from(stop_timeout).saturating_add(30).max(120));
    let docker = Docker::connect_with_local_defaults()
        .with_context(unreachable)?
        .with_timeout(timeout);
    docker.negotiate_version().await.with_context(unreachable)
}

/// A started container and the copy of its output.
pub(crate) struct Life {
    pub(crate) id: String,
    pub(crate) output: Copy,
}

/// The whole run; returns the process exit code.
pub(crate) async fn supervise(spec: &Spec, state_path: &Path) -> i32 {
    let name = &prefix(spec);
    // First of all, so a TERM during a pull or a back-off is ours to handle.
    let mut signals = match Shutdown::new() {
        Ok(signals) => signals,
        Err(e) => {
            say!(name, "cannot handle signals: {e}");
            return EXIT_FAILURE;
        }
    };
    // HUP: let go of the container (it keeps running) and exit, so runsv starts us
    // again on the spec now on disk; how the module asks for a start-first update.
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            say!(name, "cannot handle signals: {e}");
            return EXIT_FAILURE;
        }
    };
    let loaded = backoff::load(state_path);
    // A new life: no post_start has succeeded for it yet (the container may be the
    // same one, restarted), so the announcer holds the record until it has.
    let previous = backoff::State {
        post_start_done: None,
        ..loaded.clone()
    };
    if loaded != previous {
        if let Err(e) = backoff::save(state_path, &previous) {
            say!(
                name,
                "cannot save the state in {}: {e}",
                state_path.display()
            );
        }
    }
    let failures = previous.failures;
    let spec_hash = spec.container_hash();
    // `exit`: the container's exit code when it exited on its own (a restart);
    // `failure`: why this attempt failed, recorded for status, metrics and `wait`.
    let save_with = |failures: u32, exit: Option<i64>, failure: Option<StartFailure>| {
        let now = rundock_spec::state::unix_now();
        let mut next = backoff::next_state(&previous, failures, exit, now);
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
                    spec: spec_hash.clone(),
                });
            }
            // A life long enough to end the crash loop ends its failure too.
            None if exit.is_some() && failures == 0 => next.last_failure = None,
            None => {}
        }
        if next == previous {
            return;
        }
        if let Err(e) = backoff::save(state_path, &next) {
            say!(
                name,
                "cannot save the back-off state in {}: {e}",
                state_path.display()
            );
        }
    };
    let fail = |stage: FailureStage, error: anyhow::Error| {
        save_with(
            backoff::after_run(failures, None),
            None,
            Some(StartFailure::new(stage, error)),
        );
        EXIT_FAILURE
    };
    let save = |failures: u32| save_with(failures, None, None);

    let delay = backoff::delay(failures);
    if !delay.is_zero() {
        say!(
            name,
            "the container ran less than {}s {failures} time(s) in a row; waiting {}s before starting it",
            backoff::STABLE_AFTER.as_secs(),
            delay.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            sig = signals.recv() => {
                say!(name, "{sig} while waiting to start; exiting");
                save(0);
                return 0;
            }
        }
    }

    match wait_for_requires(spec, state_path, &previous, &mut signals).await {
        Waited::Go => {}
        Waited::Stop => {
            save(0);
            return 0;
        }
        Waited::Fail => {
            save(backoff::after_run(failures, None));
            return EXIT_FAILURE;
        }
    }

    let docker = match connect(spec.container.stop_timeout).await {
        Ok(docker) => docker,
        Err(e) => {
            say!(name, "{e:#}");
            return fail(FailureStage::Docker, e);
        }
    };

    let started = tokio::select! {
        result = start(&docker, spec) => result,
        sig = signals.recv() => {
            say!(name, "{sig} before the container was running");
            shutdown(&docker, spec, &mut signals).await;
            save(0);
            return 0;
        }
    };
    let life = match started {
        Ok(life) => life,
        Err(failure) => {
            say!(name, "{failure}");
            save_with(backoff::after_run(failures, None), None, Some(failure));
            return EXIT_FAILURE;
        }
    };

    if let Some(hook) = &spec.hooks.post_start {
        let ran = tokio::select! {
            result = hooks::run(&docker, &life.id, hook) => result,
            sig = signals.recv() => {
                say!(name, "{sig} while post_start ran");
                shutdown(&docker, spec, &mut signals).await;
                life.output.finish(OUTPUT_GRACE).await;
                save(0);
                return 0;
            }
        };
        match ran {
            Ok(()) => {
                say!(name, "post_start succeeded");
                let done = backoff::State {
                    post_start_done: Some(life.id.clone()),
                    ..previous.clone()
                };
                if let Err(e) = backoff::save(state_path, &done) {
                    say!(
                        name,
                        "cannot save the state in {}: {e}",
                        state_path.display()
                    );
                }
            }
            Err(why) => {
                say!(name, "post_start failed: {why}; stopping the container");
                shutdown(&docker, spec, &mut signals).await;
                life.output.finish(OUTPUT_GRACE).await;
                return fail(
                    FailureStage::PostStart,
                    anyhow::anyhow!("post_start failed: {why}"),
                );
            }
        }
    }

    let since = Instant::now();
    let exited = tokio::select! {
        result = wait_exit(&docker, &life.id) => result,
        _ = hangup.recv() => {
            say!(name, "HUP: leaving the container running and starting again on the spec on disk");
            life.output.finish(Duration::from_millis(200)).await;
            save(0);
            return 0;
        }
        sig = signals.recv() => {
            say!(name, "{sig}");
            shutdown(&docker, spec, &mut signals).await;
            life.output.finish(OUTPUT_GRACE).await;
            save(0);
            return 0;
        }
    };
    let uptime = since.elapsed();
    life.output.finish(OUTPUT_GRACE).await;
    match exited {
        Ok(code) => {
            say!(
                name,
                "container exited with code {code} after {:.1}s",
                uptime.as_secs_f64()
            );
            let after = backoff::after_run(failures, Some(uptime));
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
            save_with(after, Some(code), died_young);
            exit_code(code)
        }
        Err(e) => {
            say!(name, "lost track of the container: {e:#}");
            fail(
                FailureStage::Docker,
                e.context("lost track of the container"),
            )
        }
    }
}

/// How the wait for `requires` ended.
enum Waited {
    Go,
    Stop,
    Fail,
}

/// Waits until every service in `requires` is announced, within its timeout (see
/// [`requires`]); nothing to wait for without `requires`.
async fn wait_for_requires(
    spec: &Spec,
    state_path: &Path,
    previous: &backoff::State,
    signals: &mut Shutdown,
) -> Waited {
    let (Some(required), Some(announce)) = (&spec.requires, &spec.announce) else {
        return Waited::Go;
    };
    let name = &prefix(spec);
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
            if state == *previous {
                // Nothing was waited for: the file already says so.
            } else if let Err(e) = backoff::save(state_path, &state) {
                say!(
                    name,
                    "cannot save the state in {}: {e}",
                    state_path.display()
                );
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
        tokio::select! {
            _ = tokio::time::sleep(requires::POLL) => {}
            sig = signals.recv() => {
                say!(name, "{sig} while waiting for requires; exiting");
                return Waited::Stop;
            }
        }
    }
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
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
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
    match reusable {
        Some((id, ContainerStateStatusEnum::RUNNING)) => {
            let output = output::attach(docker, &id)
                .await
                .with_context(|| format!("cannot attach to container {container_name}"))
                .at(Start)?;
            say!(
                name,
                "container {container_name} is already running; watching it"
            );
            return Ok(Life { id, output });
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
        .create_container(Some(options), create_body(spec, &addresses))
        .await
        .with_context(|| format!("cannot create container {container_name}"))
        .at(Create)?
        .id;
    attach_and_start(docker, spec, &id).await.at(Start)
}

pub(crate) async fn attach_and_start(
    docker: &Docker,
    spec: &Spec,
    id: &str,
) -> anyhow::Result<Life> {
    let container_name = spec.container.container_name.as_str();
    // Attached before the start, so the first bytes are not lost.
    let output = output::attach(docker, id)
        .await
        .with_context(|| format!("cannot attach to container {container_name}"))?;
    docker
        .start_container(id, None)
        .await
        .with_context(|| format!("cannot start container {container_name}"))?;
    say!(
        prefix(spec),
        "started container {container_name} ({}, image {})",
        short(id),
        spec.container.image
    );
    Ok(Life {
        id: id.to_string(),
        output,
    })
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
        match replaced.or_else(|| stale_reason(&named, identity, image_id)) {
            None => {
                let state = status(&named);
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

/// Why a container named like ours cannot be reused, `None` if it can.
pub(crate) fn stale_reason(
    container: &ContainerInspectResponse,
    identity: &[(&'static str, String)],
    image_id: &str,
) -> Option<String> {
    let empty = HashMap::new();
    let labels = container
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .unwrap_or(&empty);
    if !carries_service_labels(labels, identity) {
        return Some("it was not made by rundock for this service on this host".into());
    }
    if let Some((key, _)) = identity
        .iter()
        .find(|(key, value)| labels.get(*key) != Some(value))
    {
        return Some(format!("its {key} label differs: the spec changed"));
    }
    if container.image.as_deref() != Some(image_id) {
        return Some("it was made from another image".into());
    }
    match status(container) {
        ContainerStateStatusEnum::CREATED
        | ContainerStateStatusEnum::EXITED
        | ContainerStateStatusEnum::RUNNING => None,
        other => Some(format!("it is {other}")),
    }
}

pub(crate) fn carries_service_labels(
    labels: &HashMap<String, String>,
    identity: &[(&str, String)],
) -> bool {
    identity
        .iter()
        .filter(|(key, _)| *key == LABEL_SERVICE || *key == LABEL_HOST)
        .all(|(key, value)| labels.get(*key) == Some(value))
}

pub(crate) fn status(container: &ContainerInspectResponse) -> ContainerStateStatusEnum {
    container
        .state
        .as_ref()
        .and_then(|s| s.status)
        .unwrap_or(ContainerStateStatusEnum::EMPTY)
}

/// The container called `name`, `None` if there is none.
pub(crate) async fn inspect(
    docker: &Docker,
    name: &str,
) -> anyhow::Result<Option<ContainerInspectResponse>> {
    match docker.inspect_container(name, None).await {
        Ok(container) => Ok(Some(container)),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect container {name}")),
    }
}

/// Ids of all containers (running or not) labelled as this service on this host.
pub(crate) async fn labelled(
    docker: &Docker,
    service: &str,
    host: &str,
) -> anyhow::Result<Vec<String>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_SERVICE}={service}"),
            format!("{LABEL_HOST}={host}"),
        ],
    )]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let list = docker
        .list_containers(Some(options))
        .await
        .context("cannot list containers")?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// `docker stop -t timeout` then `docker rm -f`; a container already gone is fine.
pub(crate) async fn stop_and_remove(docker: &Docker, id: &str, timeout: u32) -> anyhow::Result<()> {
    let stop = StopContainerOptions {
        t: Some(i32::try_from(timeout).unwrap_or(i32::MAX)),
        signal: None,
    };
    match docker.stop_container(id, Some(stop)).await {
        Ok(())
        | Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot stop container {}", short(id))),
    }
    remove(docker, id).await
}

pub(crate) async fn remove(docker: &Docker, id: &str) -> anyhow::Result<()> {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        // 404: gone already; 409: another removal is under way.
        Ok(())
        | Err(DockerError::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove container {}", short(id))),
    }
}

/// TERM/INT: stop and remove our container (one named ours and labelled as this
/// service); a second signal while it stops kills it.
async fn shutdown(docker: &Docker, spec: &Spec, signals: &mut Shutdown) {
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
    let timeout = spec.container.stop_timeout;
    let ours = match inspect(docker, container_name).await {
        Ok(Some(c)) => {
            let labels = c
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            let identity = [
                (LABEL_SERVICE, spec.name.clone()),
                (LABEL_HOST, spec.host_label.clone()),
            ];
            carries_service_labels(&labels, &identity).then(|| c.id.unwrap_or_default())
        }
        Ok(None) => None,
        Err(e) => {
            say!(name, "{e:#}");
            None
        }
    };
    let Some(id) = ours else {
        say!(name, "no container of ours to stop; exiting");
        return;
    };
    say!(
        name,
        "stopping container {container_name} (up to {timeout}s)"
    );
    let stop = StopContainerOptions {
        t: Some(i32::try_from(timeout).unwrap_or(i32::MAX)),
        signal: None,
    };
    tokio::select! {
        result = docker.stop_container(&id, Some(stop)) => {
            if let Err(e) = result {
                say!(name, "cannot stop container {container_name}: {e}");
            }
        }
        sig = signals.recv() => {
            say!(name, "second {sig}: killing container {container_name}");
            let kill = KillContainerOptions { signal: "KILL".into() };
            if let Err(e) = docker.kill_container(&id, Some(kill)).await {
                say!(name, "cannot kill container {container_name}: {e}");
            }
        }
    }
    match remove(docker, &id).await {
        Ok(()) => say!(name, "container {container_name} stopped and removed"),
        Err(e) => say!(name, "{e:#}"),
    }
}

/// Waits until the container is not running; its exit code.
async fn wait_exit(docker: &Docker, id: &str) -> anyhow::Result<i64> {
    let options = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let mut wait = docker.wait_container(id, Some(options));
    match wait.next().await {
        Some(Ok(response)) => Ok(response.status_code),
        // bollard reports a non-zero exit as an error; for us it is just the code.
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(e.into()),
        None => anyhow::bail!("Docker ended the wait without an exit code"),
    }
}

/// Stops and removes every container of the service; see [`crate::remove_service_containers`].
pub(crate) async fn remove_service_containers(
    docker: &Docker,
    service: &str,
    host: &str,
    container_name: &str,
    stop_timeout: u32,
) -> anyhow::Result<usize> {
    let mut ids = labelled(docker, service, host).await?;
    if let Some(named) = inspect(docker, container_name).await? {
        let labels = named.config.and_then(|c| c.labels).unwrap_or_default();
        let identity = [
            (LABEL_SERVICE, service.to_string()),
            (LABEL_HOST, host.to_string()),
        ];
        let id = named.id.unwrap_or_default();
        if carries_service_labels(&labels, &identity) && !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in &ids {
        stop_and_remove(docker, id, stop_timeout).await?;
    }
    Ok(ids.len())
}

pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState};

    fn container(
        labels: &[(&str, &str)],
        image: &str,
        state: ContainerStateStatusEnum,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("abc".into()),
            image: Some(image.into()),
            config: Some(ContainerConfig {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn identity() -> Vec<(&'static str, String)> {
        vec![
            (LABEL_SERVICE, "web".into()),
            (LABEL_HOST, "node1".into()),
            (rundock_spec::LABEL_SPEC, "h1".into()),
        ]
    }

    const OURS: [(&str, &str); 3] = [
        ("rundock.service", "web"),
        ("rundock.host", "node1"),
        ("rundock.spec", "h1"),
    ];

    #[test]
    fn only_a_current_container_in_a_startable_state_is_reused() {
        use ContainerStateStatusEnum::*;
        for state in [CREATED, EXITED, RUNNING] {
            assert_eq!(
                stale_reason(
                    &container(&OURS, "sha256:1", state),
                    &identity(),
                    "sha256:1"
                ),
                None
            );
        }
        let why = |c: ContainerInspectResponse| stale_reason(&c, &identity(), "sha256:1").unwrap();
        assert!(why(container(&OURS, "sha256:1", DEAD)).contains("dead"));
        assert!(why(container(&OURS, "sha256:0", EXITED)).contains("another image"));
        let mut other_hash = OURS;
        other_hash[2].1 = "h0";
        assert!(why(container(&other_hash, "sha256:1", EXITED)).contains("rundock.spec"));
        assert!(why(container(&[], "sha256:1", EXITED)).contains("not made by rundock"));
        let mut other_host = OURS;
        other_host[1].1 = "node2";
        assert!(why(container(&other_host, "sha256:1", RUNNING)).contains("not made by rundock"));
    }

    #[test]
    fn exit_codes_pass_through_and_odd_ones_are_failures() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(137), 137);
        assert_eq!(exit_code(255), 255);
        assert_eq!(exit_code(-1), EXIT_FAILURE);
        assert_eq!(exit_code(256), EXIT_FAILURE);
    }
}
