//! The supervisor's own Docker calls, on top of [`rundock_docker`]: start a created
//! container with its output attached first ([`attach_and_start`]), the reuse rule
//! ([`stale_reason`]), stopping ours on a stop signal ([`stop_ours`]) and removing every
//! container of a service ([`remove_service_containers`]). Both a plain start
//! (`supervise`) and a start-first switch (`switch`) build on these; nothing here
//! imports either.

use crate::log::prefix;
use crate::output::{self, Copy};
use crate::signals::{race, Raced, Signals};
use anyhow::Context;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::KillContainerOptions;
use bollard::Docker;
use rundock_docker::container::{self, inspect, is_ours, remove, short, stop_and_remove};
use rundock_runtime::say;
use rundock_spec::Spec;

/// A started container and the copy of its output.
pub(crate) struct Life {
    pub(crate) id: String,
    pub(crate) output: Copy,
}

/// Attaches to the created container `id` (before the start, so the first bytes are
/// not lost), then starts it.
pub(crate) async fn attach_and_start(
    docker: &Docker,
    spec: &Spec,
    id: &str,
) -> anyhow::Result<Life> {
    let container_name = spec.container.container_name.as_str();
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

/// Attaches to a container that already runs (adopted, or kept after a failed switch).
pub(crate) async fn attach_running(docker: &Docker, spec: &Spec, id: &str) -> anyhow::Result<Life> {
    let output = output::attach(docker, id).await.with_context(|| {
        format!(
            "cannot attach to container {}",
            spec.container.container_name
        )
    })?;
    Ok(Life {
        id: id.to_string(),
        output,
    })
}

/// Why a container named like ours cannot be reused, `None` if it can: it must be ours
/// ([`is_ours`]), carry every `identity` label with this value, be made from `image_id`
/// and be created, exited or running.
pub(crate) fn stale_reason(
    container: &ContainerInspectResponse,
    spec: &Spec,
    identity: &[(&'static str, String)],
    image_id: &str,
) -> Option<String> {
    if !is_ours(container, &spec.name, &spec.host_label) {
        return Some("it was not made by rundock for this service on this host".into());
    }
    let labels = container::labels(container);
    if let Some((key, _)) = identity
        .iter()
        .find(|(key, value)| labels.get(*key) != Some(value))
    {
        return Some(format!("its {key} label differs: the spec changed"));
    }
    if container.image.as_deref() != Some(image_id) {
        return Some("it was made from another image".into());
    }
    match container::status(container) {
        ContainerStateStatusEnum::CREATED
        | ContainerStateStatusEnum::EXITED
        | ContainerStateStatusEnum::RUNNING => None,
        other => Some(format!("it is {other}")),
    }
}

/// After a stop signal: stop and remove our container (one named ours and labelled as
/// this service) within the spec's `stop_timeout`; a second signal while it stops kills
/// it.
pub(crate) async fn stop_ours(docker: &Docker, spec: &Spec, signals: &mut Signals) {
    let name = &prefix(spec);
    let container_name = spec.container.container_name.as_str();
    let timeout = spec.container.stop_timeout;
    let ours = match inspect(docker, container_name).await {
        Ok(Some(c)) => is_ours(&c, &spec.name, &spec.host_label).then(|| c.id.unwrap_or_default()),
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
    let stop = docker.stop_container(&id, Some(container::stop_options(timeout)));
    match race(signals, stop).await {
        Raced::Done(Ok(())) => {}
        Raced::Done(Err(e)) => say!(name, "cannot stop container {container_name}: {e}"),
        Raced::Stopped(sig) => {
            say!(name, "second {sig}: killing container {container_name}");
            let kill = KillContainerOptions {
                signal: "KILL".into(),
            };
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

/// Stops and removes every container of the service (labelled as it, or named as its
/// container and ours); how many.
pub(crate) async fn remove_service_containers(
    docker: &Docker,
    service: &str,
    host: &str,
    container_name: &str,
    stop_timeout: u32,
) -> anyhow::Result<usize> {
    let ids = container::service_containers(docker, service, host, container_name).await?;
    for id in &ids {
        stop_and_remove(docker, id, stop_timeout).await?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState};
    use rundock_spec::{LABEL_HOST, LABEL_SERVICE};

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

    fn spec() -> Spec {
        crate::body::tests::spec(crate::body::tests::container())
    }

    const OURS: [(&str, &str); 3] = [
        ("rundock.service", "web"),
        ("rundock.host", "node1"),
        ("rundock.spec", "h1"),
    ];

    #[test]
    fn only_a_current_container_in_a_startable_state_is_reused() {
        use ContainerStateStatusEnum::*;
        let spec = spec();
        for state in [CREATED, EXITED, RUNNING] {
            assert_eq!(
                stale_reason(
                    &container(&OURS, "sha256:1", state),
                    &spec,
                    &identity(),
                    "sha256:1"
                ),
                None
            );
        }
        let why =
            |c: ContainerInspectResponse| stale_reason(&c, &spec, &identity(), "sha256:1").unwrap();
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
}
