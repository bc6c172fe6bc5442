//! Whether the service's container is running, from Docker's event stream.
//!
//! The stream is opened with `since` a moment before the first inspect, so an event
//! that happens while the inspect is in flight is replayed afterwards rather than
//! missed; every reconnect resumes `since` the last event seen. Events are processed in
//! order and inspects are awaited in line, so a later event always wins over an
//! earlier inspect. When Docker is unreachable or the stream drops, the last known
//! state stands (containers outlive a dockerd restart with live-restore, and the health
//! checks still watch the service) and the watcher reconnects with a capped backoff.

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use rundock_runtime::log::Prefix;
use rundock_runtime::{say, Backoff};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the rest of the announcer needs to know about the container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerView {
    /// Docker has answered at least once (before that nothing is decided).
    pub known: bool,
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

pub(crate) struct Watcher {
    pub name: Prefix,
    pub container: String,
    /// The network whose address counts, if the spec names one.
    pub network: Option<String>,
    /// How long a container may take to stop after a TERM before we look again.
    pub stop_timeout: Duration,
    pub tx: watch::Sender<ContainerView>,
}

/// Connects to the local dockerd and pins the API version to the daemon's.
pub async fn connect() -> Result<Docker, bollard::errors::Error> {
    Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await
}

fn since(nanos: i128) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl Watcher {
    pub async fn run(self, docker_slot: watch::Sender<Option<Docker>>) {
        // One second back covers clock granularity; replayed events are harmless.
        let mut since_nanos = now_nanos() - 1_000_000_000;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut docker_down = false;
        loop {
            let docker = match connect().await {
                Ok(docker) => docker,
                Err(e) => {
                    if !docker_down {
                        say!(self.name, "docker unreachable: {e}; retrying");
                        docker_down = true;
                    }
                    backoff.sleep().await;
                    continue;
                }
            };
            if docker_down {
                say!(self.name, "docker reachable again");
                docker_down = false;
            }
            let _ = docker_slot.send(Some(docker.clone()));
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("container".to_string(), vec![self.container.clone()]),
                (
                    "event".to_string(),
                    [
                        "start", "restart", "die", "kill", "stop", "pause", "unpause", "destroy",
                        "rename",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ),
            ]);
            let mut events = docker.events(Some(EventsOptions {
                since: Some(since(since_nanos)),
                until: None,
                filters: Some(filters),
            }));
            if !self.inspect(&docker, "at start").await {
                backoff.sleep().await;
                continue;
            }
            let mut recheck: Option<Instant> = None;
            let ended = loop {
                let next = tokio::select! {
                    next = events.next() => next,
                    _ = sleep_until(recheck) => {
                        recheck = None;
                        self.inspect(&docker, "after a stop signal").await;
                        continue;
                    }
                };
                match next {
                    Some(Ok(event)) => {
                        backoff.reset();
                        if let Some(t) = event.time_nano {
                            since_nanos = since_nanos.max(t as i128);
                        }
                        let action = event.action.unwrap_or_default();
                        let attrs = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                        // Docker's `container` filter matches name prefixes: `web`
                        // also gets the events of `web-2` (or of a start-first
                        // `web-next`). Only our own name counts.
                        if attrs.get("name") != Some(&self.container) {
                            continue;
                        }
                        match action.as_str() {
                            "start" | "restart" | "unpause" | "rename" => {
                                recheck = None;
                                self.inspect(&docker, &action).await;
                            }
                            "die" | "stop" | "pause" | "destroy" => {
                                recheck = None;
                                self.set(false, None, BTreeMap::new(), None, None, &action);
                            }
                            "kill" => {
                                let signal = attrs.get("signal").map(String::as_str).unwrap_or("");
                                // TERM and KILL stop it: withdraw now, before it dies,
                                // and look again should it survive the TERM. Other
                                // signals (HUP to reload) leave it serving.
                                if matches!(
                                    signal,
                                    "9" | "15" | "KILL" | "TERM" | "SIGKILL" | "SIGTERM"
                                ) {
                                    self.set(
                                        false,
                                        None,
                                        BTreeMap::new(),
                                        None,
                                        None,
                                        &format!("kill {signal}"),
                                    );
                                    recheck = Some(Instant::now() + self.stop_timeout);
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(Err(e)) => break format!("failed: {e}"),
                    None => break "closed".to_string(),
                }
            };
            say!(self.name, "docker event stream {ended}; reconnecting");
            let _ = docker_slot.send(None);
            backoff.sleep().await;
        }
    }

    /// Reads the container's state; false if Docker did not answer.
    async fn inspect(&self, docker: &Docker, why: &str) -> bool {
        match docker.inspect_container(&self.container, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let running = state.running.unwrap_or(false)
                    && !state.paused.unwrap_or(false)
                    && !state.restarting.unwrap_or(false);
                let settings = info.network_settings.unwrap_or_default();
                let tcp_ports = settings
                    .ports
                    .as_ref()
                    .map(published_tcp_ports)
                    .unwrap_or_default();
                let ip = settings.networks.and_then(|nets| self.pick_ip(nets));
                let pid = state
                    .pid
                    .and_then(|pid| u32::try_from(pid).ok())
                    .filter(|pid| *pid > 0);
                self.set(running, ip, tcp_ports, info.id, pid, why);
                true
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.set(
                    false,
                    None,
                    BTreeMap::new(),
                    None,
                    None,
                    "no such container",
                );
                true
            }
            Err(e) => {
                say!(self.name, "docker inspect failed: {e}");
                false
            }
        }
    }

    fn pick_ip(&self, nets: HashMap<String, bollard::models::EndpointSettings>) -> Option<IpAddr> {
        let mut names: Vec<&String> = nets.keys().collect();
        names.sort();
        // The spec's network first, then Docker's default bridge, then by name.
        if let Some(pos) = names.iter().position(|n| *n == "bridge") {
            let bridge = names.remove(pos);
            names.insert(0, bridge);
        }
        if let Some(wanted) = &self.network {
            if let Some(pos) = names.iter().position(|n| *n == wanted) {
                let net = names.remove(pos);
                names.insert(0, net);
            }
        }
        names.into_iter().find_map(|n| {
            let ep = &nets[n];
            [&ep.ip_address, &ep.global_ipv6_address]
                .into_iter()
                .flatten()
                .find_map(|a| a.parse().ok())
        })
    }

    fn set(
        &self,
        running: bool,
        ip: Option<IpAddr>,
        tcp_ports: BTreeMap<u16, u16>,
        id: Option<String>,
        pid: Option<u32>,
        why: &str,
    ) {
        self.tx.send_if_modified(|view| {
            let changed_running = view.running != running;
            let other_container = running && view.running && id.is_some() && view.id != id;
            if changed_running || other_container {
                view.generation += 1;
            }
            if other_container {
                say!(
                    self.name,
                    "{} is another container now ({why}): probing it before it is announced",
                    self.container
                );
            }
            if changed_running || !view.known {
                say!(
                    self.name,
                    "container {} {} ({why})",
                    self.container,
                    if running { "running" } else { "not running" }
                );
            }
            let changed = changed_running
                || other_container
                || !view.known
                || (running && (view.ip != ip || view.tcp_ports != tcp_ports || view.pid != pid));
            view.known = true;
            view.running = running;
            if running {
                view.ip = ip;
                view.tcp_ports = tcp_ports;
                view.id = id;
                view.pid = pid;
            }
            changed
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
}
