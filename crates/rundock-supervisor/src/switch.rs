//! Start-first updates (`update: start-first`): the changed container starts beside the
//! old one, proves itself against the service's health checks, takes the record, and
//! only then is the old one drained, stopped and removed.
//!
//! Why the supervisor does it, at its own start: the supervisor is the one process that
//! creates and removes the service's containers, it runs under runsv (so it outlives an
//! Ansible connection), and its start is where an interrupted switch has to be finished
//! anyway. The module asks for a switch by writing the new spec and sending the
//! supervisor HUP: the supervisor lets go of its container (it keeps running) and exits,
//! runsv starts it again on the new spec, and [`try_switch`] finds the old container
//! running with a stale spec. A supervisor SIGKILLed at any moment of a switch comes
//! back the same way and converges from what Docker shows:
//!
//! | found | done |
//! |---|---|
//! | old (stale, running) named `NAME`, maybe a `NAME-next` | remove the `-next` (it never had the record), switch again |
//! | no `NAME`, old renamed `NAME-old` | rename it back to `NAME`, as above |
//! | current `NAME` running, an old one still running | wait for the record to point at `NAME`, drain and remove the old |
//! | current `NAME`, nothing else | nothing: the usual reuse |
//!
//! So at most two containers of the service exist at a time, and every start ends with
//! one. The record moves by the announcer's own rule ("announce only a running, healthy
//! container"): once the new container carries `NAME`, the announcer sees another
//! container under the name it watches (a `rename` event), forgets the old checks' results
//! and keeps the old record untouched until the new container's checks pass, then
//! writes the new value under the same key, one put. The supervisor's own probes only
//! decide whether the new container may take the name at all.
//!
//! The outcome for the module is written to [`crate::UPDATE_FILE`] in the working
//! directory, keyed by the spec's container hash.
//!
//! The same switch replaces a container that stopped answering (the announcer's
//! [`rundock_spec::state::REPLACE_FILE`] names the running, current container): the
//! new container is made from the same spec, and the hung one is stopped without a
//! drain once the record moved (it gets `stop_timeout` after the TERM); no outcome is
//! written for the module, which did not ask.

use crate::body;
use crate::containers::{attach_and_start, attach_running, stale_reason, Life};
use crate::log::prefix;
use crate::tokens::Addresses;
use anyhow::Context;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use rundock_docker::container::{
    self, inspect, is_ours, is_running, labelled, rename, short, stop_and_remove,
};
use rundock_docker::probe::{describe, probe, Target};
use rundock_docker::ContainerView;
use rundock_runtime::say;
use rundock_spec::skydns::record_key;
use rundock_spec::state::ReplaceRequest;
use rundock_spec::state::UpdateOutcome;
use rundock_spec::{next_container_name, old_container_name, Spec, StartFirst};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// How often the record is read while waiting for it to point at the new container.
const RECORD_POLL: Duration = Duration::from_millis(50);

/// What the start of a start-first supervisor found and did.
pub(crate) enum Switched {
    /// A life to watch: the new container, or the old one when the new failed.
    Life(Life),
    /// Nothing to switch: the usual start goes on.
    NotNeeded,
}

/// Finishes or performs a switch if Docker shows one is due; see the module docs.
pub(crate) async fn try_switch(
    docker: &Docker,
    spec: &Spec,
    addresses: &Addresses,
    identity: &[(&'static str, String)],
    image_id: &str,
    result_path: &Path,
    replace: Option<&ReplaceRequest>,
) -> anyhow::Result<Switched> {
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
    let ours = |c: &ContainerInspectResponse| is_ours(c, &spec.name, &spec.host_label);
    let mut named = inspect(docker, container_name).await?.filter(|c| ours(c));
    if named.is_none() {
        // Interrupted between the two renames: the old one is still the serving one.
        let old_name = old_container_name(container_name);
        if let Some(old) = inspect(docker, &old_name)
            .await?
            .filter(|c| ours(c) && is_running(c))
        {
            say!(
                name,
                "{old_name} was being replaced; taking it back as {container_name}"
            );
            rename(docker, &old_name, container_name).await?;
            named = Some(old);
        }
    }
    let Some(named) = named.filter(is_running) else {
        return Ok(Switched::NotNeeded);
    };
    let named_id = named.id.clone().unwrap_or_default();
    let replacing = replace
        .filter(|r| r.container == named_id)
        .map(|r| r.reason.as_str());
    // Made from this spec and image, by rundock for this service on this host, and in a
    // state that can serve: the supervisor's own reuse rule.
    let current = stale_reason(&named, spec, identity, image_id).is_none() && replacing.is_none();
    let others = other_containers(docker, spec, &named_id).await?;
    if current {
        // Switched already (an earlier life was stopped mid-way), but the old one may
        // still be up: finish its drain, and tell the module the update is done.
        let finishing = !others.is_empty();
        for old in others {
            let port = host_port(&named, spec);
            await_record(spec, port, deadline(spec)).await;
            retire(docker, spec, &old, true).await?;
        }
        if finishing || !result_path.exists() {
            let message = format!(
                "{container_name} ({}) runs the current spec",
                short(&named_id)
            );
            leave(
                UpdateOutcome::switched(&spec.container_hash(), message),
                result_path,
            );
        }
        return Ok(Switched::NotNeeded);
    }
    for leftover in others {
        say!(
            name,
            "removing container {} left by an interrupted update (it never had the record)",
            short(&leftover)
        );
        stop_and_remove(docker, &leftover, spec.container.stop_timeout).await?;
    }
    switch(docker, spec, addresses, named, result_path, replacing).await
}

/// `replacing`: the container is current but stopped answering (the announcer's
/// reason); then the module is not waiting for an outcome, and the old container,
/// which cannot drain, is stopped at once.
async fn switch(
    docker: &Docker,
    spec: &Spec,
    addresses: &Addresses,
    old: ContainerInspectResponse,
    result_path: &Path,
    replacing: Option<&str>,
) -> anyhow::Result<Switched> {
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
    let next_name = next_container_name(container_name);
    let old_id = old.id.clone().unwrap_or_default();
    let hash = spec.container_hash();
    let started = std::time::Instant::now();
    match replacing {
        Some(reason) => say!(
            name,
            "replacing container {container_name} ({}): replaced: {reason}; starting {next_name} beside it",
            short(&old_id)
        ),
        None => say!(
            name,
            "start-first update: starting {next_name} ({}) beside {container_name} ({})",
            spec.container.image,
            short(&old_id)
        ),
    }
    let what = if replacing.is_some() {
        "replacement"
    } else {
        "start-first update"
    };
    let options = CreateContainerOptions {
        name: Some(next_name.clone()),
        ..Default::default()
    };
    let id = docker
        .create_container(Some(options), body::create_body(spec, addresses))
        .await
        .with_context(|| format!("cannot create container {next_name}"))?
        .id;
    let life = attach_and_start(docker, spec, &id).await?;
    let deadline = deadline(spec);
    let port = match vet(docker, spec, &id, deadline).await {
        Ok(port) => port,
        Err(why) => {
            say!(name, "{what} failed: {why}; {container_name} keeps running");
            life.output.finish(Duration::from_millis(200)).await;
            stop_and_remove(docker, &id, spec.container.stop_timeout).await?;
            if replacing.is_none() {
                leave(UpdateOutcome::failed(&hash, why), result_path);
            }
            return Ok(Switched::Life(attach_running(docker, spec, &old_id).await?));
        }
    };
    // The old container's name goes first so the new one can take it; the announcer
    // watches the name and sees only the new container arrive under it.
    let old_name = old_container_name(container_name);
    rename(docker, container_name, &old_name).await?;
    rename(docker, &next_name, container_name).await?;
    let switch_start = std::time::Instant::now();
    let moved = await_record(spec, Some(port), deadline).await;
    let record_took = switch_start.elapsed();
    retire(docker, spec, &old_id, replacing.is_none()).await?;
    let message = format!(
        "switched to {} on port {port}: record {} {:.2}s after the rename, whole {what} {:.1}s",
        short(&id),
        if moved { "moved" } else { "did not move" },
        record_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    say!(name, "{message}");
    if replacing.is_none() {
        leave(UpdateOutcome::switched(&hash, message), result_path);
    }
    Ok(Switched::Life(life))
}

/// Waits until the new container runs and passes every health check; its published
/// host port. `Err` names the check that did not pass, or why the container is unfit.
async fn vet(docker: &Docker, spec: &Spec, id: &str, deadline: Instant) -> Result<u16, String> {
    let announce = spec.announce.as_ref().ok_or("start-first needs announce")?;
    let addr = rundock_hostip::resolve(&announce.announce_as, &spec.interfaces)
        .map_err(|e| format!("no address to probe: {e}"))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let mut last_failure;
    loop {
        let info = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| format!("cannot inspect the new container: {e}"))?;
        let state = info.state.clone().unwrap_or_default();
        if state.running != Some(true)
            && state.status != Some(bollard::models::ContainerStateStatusEnum::CREATED)
        {
            return Err(format!(
                "the new container exited with code {}",
                state.exit_code.unwrap_or(-1)
            ));
        }
        let ports = container::tcp_ports(&info);
        if let Some(&port) = ports.get(&announce.container_port) {
            let target = Target {
                view: ContainerView {
                    known: true,
                    running: true,
                    tcp_ports: ports.clone(),
                    id: Some(id.to_string()),
                    ..ContainerView::default()
                },
                addr: Some(addr),
                auto_port_of: Some(announce.container_port),
            };
            let mut failed = None;
            for check in &announce.health {
                let docker = Some(docker.clone());
                if let Err(why) = probe(check, &target, id, docker, &http).await {
                    failed = Some(format!("health check {} failed: {why}", describe(check)));
                    break;
                }
            }
            match failed {
                None => return Ok(port),
                Some(why) => last_failure = why,
            }
        } else {
            last_failure = format!(
                "container port {} is not published",
                announce.container_port
            );
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{last_failure} (the new container had {}s, update_timeout)",
                StartFirst::timeout_of(spec.start_first)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the record carries `port` (the new container's), at most until
/// `deadline`; whether it did. Without a port to look for it waits for nothing.
async fn await_record(spec: &Spec, port: Option<u16>, deadline: Instant) -> bool {
    let (Some(port), Some(announce), Some(key)) = (port, spec.announce.as_ref(), record_key(spec))
    else {
        return false;
    };
    let Ok(client) = rundock_etcd::Client::new(&announce.etcd) else {
        return false;
    };
    loop {
        if let Ok(Ok(Some(entry))) =
            tokio::time::timeout(Duration::from_secs(2), client.get(&key)).await
        {
            let carried = serde_json::from_str::<serde_json::Value>(&entry.value)
                .ok()
                .and_then(|v| v["port"].as_u64());
            if carried == Some(u64::from(port)) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            say!(
                prefix(spec),
                "the record did not move to port {port} in time; retiring the old container anyway"
            );
            return false;
        }
        tokio::time::sleep(RECORD_POLL).await;
    }
}

/// Drains the old container (no longer announced) by the spec's drain mode (the same
/// [`rundock_drain::drain`] as stop-tree), then stops and removes it. Without `drain`
/// (a container replaced because it stopped answering: whatever it holds does not
/// finish) it gets only `stop_timeout` after the TERM.
async fn retire(docker: &Docker, spec: &Spec, id: &str, drain: bool) -> anyhow::Result<()> {
    let name = &prefix(spec);
    let limit = Duration::from_secs(spec.drain.into());
    // Not running: nothing to drain.
    let pid = inspect(docker, id)
        .await
        .ok()
        .flatten()
        .and_then(|c| container::pid(&c));
    if let (true, Some(pid)) = (drain, pid) {
        let spec = spec.clone();
        let drained =
            tokio::task::spawn_blocking(move || rundock_drain::drain(&spec, Some(pid), limit))
                .await
                .context("the drain task failed")?;
        say!(name, "old container {}: {drained}", short(id));
    }
    stop_and_remove(docker, id, spec.container.stop_timeout).await?;
    say!(name, "old container {} stopped and removed", short(id));
    Ok(())
}

fn deadline(spec: &Spec) -> Instant {
    let secs = StartFirst::timeout_of(spec.start_first);
    Instant::now() + Duration::from_secs(secs.into())
}

fn host_port(container: &ContainerInspectResponse, spec: &Spec) -> Option<u16> {
    let container_port = spec.announce.as_ref()?.container_port;
    container::tcp_ports(container)
        .get(&container_port)
        .copied()
}

/// The service's containers (running or not) other than `except`.
async fn other_containers(
    docker: &Docker,
    spec: &Spec,
    except: &str,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for id in labelled(docker, &spec.name, &spec.host_label).await? {
        if id == except {
            continue;
        }
        let container = inspect(docker, &id).await?;
        if container.is_some_and(|c| is_ours(&c, &spec.name, &spec.host_label)) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Leaves `outcome` for the module at `path`, written as every state file is; a
/// failure is only logged (the update itself is done either way).
fn leave(outcome: UpdateOutcome, path: &Path) {
    if let Err(e) = rundock_spec::state::write(path, &outcome) {
        eprintln!("rundock supervise: cannot write {}: {e}", path.display());
    }
}
