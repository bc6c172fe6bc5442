//! The container calls rundock makes, each with the answer its callers act on: a
//! missing container is `None` or "done", not an error; and the one rule for whether a
//! container belongs to a service on this host ([`is_ours`]: both labels match).

use anyhow::Context;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    ListContainersOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use rundock_spec::{Spec, LABEL_HOST, LABEL_SERVICE, LABEL_SPEC};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// What the announcer and a start-first update need to know about a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerView {
    /// Docker has answered at least once (before that nothing is decided).
    pub known: bool,
    /// Docker last reported the container running, and neither paused nor restarting.
    /// `false` while nothing is `known`. The announcer's view keeps `ip`, `tcp_ports`,
    /// `id` and `pid` at their last running values when this turns `false`.
    pub running: bool,
    /// Its address on its Docker network (for `announce_as: container`).
    pub ip: Option<IpAddr>,
    /// Bumped on every change of `running`, so results of probes of an earlier run
    /// can be told from current ones.
    pub generation: u64,
    /// Container port → the host port Docker published it on (TCP, first binding), as
    /// the container reports it: where `announce: auto` reads the port Docker chose.
    pub tcp_ports: BTreeMap<u16, u16>,
    /// The container's id: a start-first update renames a new container to the watched
    /// name, and a new container is a new run whose checks must pass anew.
    pub id: Option<String>,
    /// The host pid of its init process while it runs: a `tcp` check reads the
    /// container's own TCP table through it (`/proc/<pid>/net/tcp{,6}`).
    pub pid: Option<u32>,
}

/// Whether `container` was made by rundock for `service` on `host`: it carries both
/// labels with these values. The one rule every removal and reuse goes by, so a
/// container someone else named like ours is never touched.
pub fn is_ours(container: &ContainerInspectResponse, service: &str, host: &str) -> bool {
    let labels = labels(container);
    labels.get(LABEL_SERVICE).map(String::as_str) == Some(service)
        && labels.get(LABEL_HOST).map(String::as_str) == Some(host)
}

/// The container's labels (none when Docker reports none).
pub fn labels(container: &ContainerInspectResponse) -> &HashMap<String, String> {
    static EMPTY: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();
    container
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .unwrap_or_else(|| EMPTY.get_or_init(HashMap::new))
}

/// Docker's state of the container (`EMPTY` when it reports none).
pub fn status(container: &ContainerInspectResponse) -> ContainerStateStatusEnum {
    container
        .state
        .as_ref()
        .and_then(|s| s.status)
        .unwrap_or(ContainerStateStatusEnum::EMPTY)
}

/// Whether Docker reports the container running.
pub fn is_running(container: &ContainerInspectResponse) -> bool {
    container
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// Whether the container runs and was made from `spec` (its `rundock.spec` label
/// carries [`Spec::container_hash`]).
pub fn is_running_spec(container: &ContainerInspectResponse, spec: &Spec) -> bool {
    is_running(container)
        && labels(container).get(LABEL_SPEC).map(String::as_str)
            == Some(spec.container_hash().as_str())
}

/// Whether the service's container (named as the spec says) runs `spec`; see
/// [`is_running_spec`].
pub async fn runs_spec(docker: &Docker, spec: &Spec) -> anyhow::Result<bool> {
    let named = inspect(docker, &spec.container.container_name).await?;
    Ok(named.is_some_and(|c| is_running_spec(&c, spec)))
}

/// The host pid of the container's init process, as Docker reports it (`None` for
/// none, or 0: not running).
pub fn pid(container: &ContainerInspectResponse) -> Option<u32> {
    container
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|pid| *pid > 0)
}

/// The TCP ports a container publishes, from its `NetworkSettings.Ports`
/// (`{"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}`): container port →
/// the first binding's host port. Unpublished ports (no bindings) are left out.
pub fn published_tcp_ports(ports: &bollard::models::PortMap) -> BTreeMap<u16, u16> {
    ports
        .iter()
        .filter_map(|(key, bindings)| {
            let container_port = key.strip_suffix("/tcp")?.parse().ok()?;
            let host_port = bindings
                .as_ref()?
                .iter()
                .find_map(|b| b.host_port.as_deref()?.parse().ok())?;
            Some((container_port, host_port))
        })
        .collect()
}

/// [`published_tcp_ports`] of an inspected container.
pub fn tcp_ports(container: &ContainerInspectResponse) -> BTreeMap<u16, u16> {
    container
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .map(published_tcp_ports)
        .unwrap_or_default()
}

/// The container called `name` (or with id `name`), `None` if there is none.
pub async fn inspect(
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

/// Ids of all containers (running or not) labelled as `service` on `host`.
pub async fn labelled(docker: &Docker, service: &str, host: &str) -> anyhow::Result<Vec<String>> {
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

/// The options of `docker stop -t timeout`.
pub fn stop_options(timeout: u32) -> StopContainerOptions {
    StopContainerOptions {
        t: Some(i32::try_from(timeout).unwrap_or(i32::MAX)),
        signal: None,
    }
}

/// `docker stop -t timeout` then `docker rm -f`; a container already gone is fine.
pub async fn stop_and_remove(docker: &Docker, id: &str, timeout: u32) -> anyhow::Result<()> {
    match docker.stop_container(id, Some(stop_options(timeout))).await {
        Ok(())
        | Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot stop container {}", short(id))),
    }
    remove(docker, id).await
}

/// `docker rm -f`; a container already gone, or being removed, is fine.
pub async fn remove(docker: &Docker, id: &str) -> anyhow::Result<()> {
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

/// `docker rename from to`.
pub async fn rename(docker: &Docker, from: &str, to: &str) -> anyhow::Result<()> {
    docker
        .rename_container(
            from,
            RenameContainerOptions {
                name: to.to_string(),
            },
        )
        .await
        .with_context(|| format!("cannot rename container {from} to {to}"))
}

/// Waits until the container is not running; its exit code.
pub async fn wait_exit(docker: &Docker, id: &str) -> anyhow::Result<i64> {
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

/// Ids of every container of `service` on `host`: those labelled so, and the one named
/// `container_name` if it is ours (a label filter and a name can disagree while a
/// container is being created).
pub async fn service_containers(
    docker: &Docker,
    service: &str,
    host: &str,
    container_name: &str,
) -> anyhow::Result<Vec<String>> {
    let mut ids = labelled(docker, service, host).await?;
    if let Some(named) = inspect(docker, container_name).await? {
        let id = named.id.clone().unwrap_or_default();
        if is_ours(&named, service, host) && !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{PortBinding, PortMap};

    fn binding(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        }
    }

    #[test]
    fn published_ports_are_read_as_docker_reports_them() {
        let ports: PortMap = HashMap::from([
            (
                "8080/tcp".to_string(),
                Some(vec![binding("127.0.0.1", "49153")]),
            ),
            // Exposed but not published.
            ("9090/tcp".to_string(), None),
            ("53/udp".to_string(), Some(vec![binding("0.0.0.0", "5353")])),
            // IPv4 and IPv6 bindings of one port: the first counts.
            (
                "443/tcp".to_string(),
                Some(vec![binding("0.0.0.0", "32768"), binding("::", "32768")]),
            ),
            ("80/tcp".to_string(), Some(vec![binding("127.0.0.1", "")])),
        ]);
        assert_eq!(
            published_tcp_ports(&ports),
            BTreeMap::from([(8080, 49153), (443, 32768)])
        );
    }

    /// A container as `docker inspect` shows it, with these labels.
    fn labelled_container(labels: serde_json::Value) -> ContainerInspectResponse {
        serde_json::from_value(serde_json::json!({ "Config": { "Labels": labels } })).unwrap()
    }

    #[test]
    fn a_container_is_ours_only_with_both_labels_matching() {
        let ours = labelled_container(serde_json::json!({
            "rundock.service": "web",
            "rundock.host": "node1",
        }));
        assert!(is_ours(&ours, "web", "node1"));
        assert!(!is_ours(&ours, "web", "node2"));
        assert!(!is_ours(&ours, "api", "node1"));
        let one_label = labelled_container(serde_json::json!({ "rundock.service": "web" }));
        assert!(!is_ours(&one_label, "web", "node1"));
        assert!(!is_ours(
            &ContainerInspectResponse::default(),
            "web",
            "node1"
        ));
    }
}
