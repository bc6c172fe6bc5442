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
use rundock_docker::container::{self, ContainerView};
use rundock_runtime::log::Prefix;
use rundock_runtime::{say, Backoff};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) struct Watcher {
    pub name: Prefix,
    pub container: String,
    /// The network whose address counts, if the spec names one.
    pub network: Option<String>,
    /// How long a container may take to stop after a TERM before we look again.
    pub stop_timeout: Duration,
    pub tx: watch::Sender<ContainerView>,
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
            let docker = match rundock_docker::connect(rundock_docker::REQUEST_LIMIT).await {
                Ok(docker) => docker,
                Err(e) => {
                    if !docker_down {
                        say!(self.name, "docker unreachable: {e:#}; retrying");
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
                                self.set_not_running(&action);
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
                                    self.set_not_running(&format!("kill {signal}"));
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
        match container::inspect(docker, &self.container).await {
            Ok(Some(info)) => {
                let pid = container::pid(&info);
                let tcp_ports = container::tcp_ports(&info);
                let state = info.state.unwrap_or_default();
                let running = state.running.unwrap_or(false)
                    && !state.paused.unwrap_or(false)
                    && !state.restarting.unwrap_or(false);
                let ip = info
                    .network_settings
                    .and_then(|settings| settings.networks)
                    .and_then(|nets| self.pick_ip(nets));
                self.set(running, ip, tcp_ports, info.id, pid, why);
                true
            }
            Ok(None) => {
                self.set_not_running("no such container");
                true
            }
            Err(e) => {
                say!(self.name, "docker inspect failed: {e:#}");
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

    fn set_not_running(&self, why: &str) {
        self.set(false, None, BTreeMap::new(), None, None, why);
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
