//! Health checks: one task per check, probing while the container runs.
//!
//! Each check probes at its own `interval`, each probe bounded by its `timeout`. The
//! decisions, and why:
//! * A probe starts as soon as the container (re)starts, and until the first pass after
//!   a start the check probes every `min(interval, 1 s)`: a service that is ready gets
//!   announced within about a second, not a whole interval later. Once passing, it
//!   probes at `interval`.
//! * One failed probe withdraws the record at once (no failure threshold): a client
//!   sent to a broken instance costs more than one re-announce after a blip.
//! * Results carry the container generation they probed; the announcer drops results of
//!   an earlier run, so a probe in flight when the container died cannot announce the
//!   next run before its own probes pass.
//! * A `tcp` check first reads the container's own TCP table (`/proc/<pid>/net/tcp{,6}`,
//!   its network namespace) for a listener on the container port, then connects to the
//!   announced address. The connect alone proves nothing: Docker's userland proxy
//!   accepts a connection on a published port whether or not anything in the container
//!   listens, so a container that never listens would be announced at once. A listener
//!   bound only to loopback inside the container fails too: nothing outside can reach
//!   it. `http` checks need no such help (the proxy never answers HTTP itself).

use crate::docker::ContainerView;
use bollard::Docker;
use futures_util::StreamExt;
use rundock_drain::Listener;
use rundock_spec::{CheckKind, HealthCheck};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One probe's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub check: usize,
    pub generation: u64,
    /// `Err(why)` when the probe failed.
    pub result: Result<(), String>,
    /// How long the probe took (up to its timeout).
    pub latency: Duration,
}

/// Where a probe goes: the announced address and the container it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub view: ContainerView,
    /// The address the record would carry (`None`: not known yet).
    pub addr: Option<IpAddr>,
    /// With `announce: auto`, the container port whose chosen host port a check naming
    /// it probes.
    pub auto_port_of: Option<u16>,
}

impl Target {
    /// Where a check on `port` connects: the host port Docker chose when the service
    /// announces `auto` and the check names the container port, else `port` itself.
    pub fn probe_port(&self, port: u16) -> Result<u16, String> {
        match self.auto_port_of {
            Some(container_port) if container_port == port => self
                .view
                .tcp_ports
                .get(&port)
                .copied()
                .ok_or_else(|| format!("container port {port} is not published (yet)")),
            _ => Ok(port),
        }
    }

    /// The port inside the container that a check probing host port `probe_port`
    /// reaches: the container port Docker published on it; the port itself when the
    /// check goes to the container's own address, or nothing publishes it (host
    /// network, a shared namespace).
    pub fn container_port(&self, probe_port: u16) -> u16 {
        if self.addr.is_some() && self.addr == self.view.ip {
            return probe_port;
        }
        self.view
            .tcp_ports
            .iter()
            .find_map(|(container, host)| (*host == probe_port).then_some(*container))
            .unwrap_or(probe_port)
    }
}

pub fn describe(check: &HealthCheck) -> String {
    match &check.check {
        CheckKind::Http { port, path } => format!("http :{port}{path}"),
        CheckKind::Tcp { port } => format!("tcp :{port}"),
        CheckKind::Exec { command } => format!("exec {}", command.join(" ")),
    }
}

pub(crate) struct Prober {
    pub index: usize,
    pub check: HealthCheck,
    pub container: String,
    pub target: watch::Receiver<Target>,
    pub docker: watch::Receiver<Option<Docker>>,
    pub http: reqwest::Client,
    pub tx: mpsc::Sender<Outcome>,
}

impl Prober {
    pub async fn run(mut self) {
        let interval = Duration::from_secs(self.check.interval.max(1) as u64);
        let fast = interval.min(Duration::from_secs(1));
        let timeout = Duration::from_secs(self.check.timeout.max(1) as u64);
        let mut passed_generation = None;
        loop {
            let target = self.target.borrow_and_update().clone();
            let generation = target.view.generation;
            if !target.view.running {
                // Nothing to probe until it runs again.
                if self.target.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let probed = std::time::Instant::now();
            let result = match tokio::time::timeout(timeout, self.probe(&target)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
            };
            if result.is_ok() {
                passed_generation = Some(generation);
            }
            let outcome = Outcome {
                check: self.index,
                generation,
                result,
                latency: probed.elapsed(),
            };
            if self.tx.send(outcome).await.is_err() {
                return;
            }
            let wait = if passed_generation == Some(generation) {
                interval
            } else {
                fast
            };
            // A new run of the container is probed at once.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = self.target.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn probe(&self, target: &Target) -> Result<(), String> {
        let docker = self.docker.borrow().clone();
        probe(&self.check, target, &self.container, docker, &self.http).await
    }
}

/// One probe of `check` against `target` (`container` is where `exec` runs), unbounded:
/// what the announcer's probers run, and what a start-first update runs on its new
/// container before that container may take the record.
pub async fn probe(
    check: &HealthCheck,
    target: &Target,
    container: &str,
    docker: Option<Docker>,
    http: &reqwest::Client,
) -> Result<(), String> {
    {
        match &check.check {
            CheckKind::Http { port, path } => {
                let addr = target.addr.ok_or("no address to probe")?;
                let port = target.probe_port(*port)?;
                let url = format!("http://{}{}", SocketAddr::new(addr, port), path);
                let resp = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("GET {url}: {}", resp.status()))
                }
            }
            CheckKind::Tcp { port } => {
                let addr = target.addr.ok_or("no address to probe")?;
                let probe_port = target.probe_port(*port)?;
                let pid = match target.view.pid {
                    Some(pid) => pid,
                    None => container_pid(docker, container).await?,
                };
                listens(pid, target.container_port(probe_port))?;
                let sock = SocketAddr::new(addr, probe_port);
                tokio::net::TcpStream::connect(sock)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect {sock}: {e}"))
            }
            CheckKind::Exec { command } => {
                let docker = docker.ok_or("docker unreachable")?;
                exec(&docker, container, command).await
            }
        }
    }
}

/// Whether something in the network namespace of process `pid` listens on `port`,
/// reachable from outside it.
fn listens(pid: u32, port: u16) -> Result<(), String> {
    let table = rundock_drain::read_table(pid)
        .map_err(|e| format!("cannot read the container's TCP table (/proc/{pid}/net/tcp): {e}"))?;
    match rundock_drain::listener_on(&table, port) {
        Listener::Reachable => Ok(()),
        Listener::LoopbackOnly => Err(format!(
            "port {port} listens only on loopback inside the container: nothing outside it can connect"
        )),
        Listener::None => Err(format!("nothing in the container listens on port {port}")),
    }
}

/// The host pid of `container`'s init process, asked of Docker (for a caller whose
/// target does not carry it, such as a start-first update's new container).
async fn container_pid(docker: Option<Docker>, container: &str) -> Result<u32, String> {
    let docker = docker.ok_or("docker unreachable")?;
    let info = docker
        .inspect_container(container, None)
        .await
        .map_err(|e| format!("docker inspect {container}: {e}"))?;
    info.state
        .and_then(|state| state.pid)
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("{container} has no process"))
}

async fn exec(docker: &Docker, container: &str, command: &[String]) -> Result<(), String> {
    // The output is not kept (it may hold anything); the exit code is the verdict.
    match exec_in_container(docker, container, command, |_| {}).await? {
        Some(0) => Ok(()),
        Some(code) => Err(format!("{} exited {code}", command.join(" "))),
        None => Err(format!("{} did not finish", command.join(" "))),
    }
}

/// `docker exec` of `command` in `container`, its output handed to `output` chunk by
/// chunk as it comes; returns the exit code (`None` if Docker reports none). Shared by
/// the exec health check and the supervisor's lifecycle hooks.
pub async fn exec_in_container(
    docker: &Docker,
    container: &str,
    command: &[String],
    mut output: impl FnMut(&[u8]),
) -> Result<Option<i64>, String> {
    let created = docker
        .create_exec(
            container,
            bollard::models::ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("docker exec: {e}"))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| format!("docker exec: {e}"))?;
    if let bollard::exec::StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        // The stream ends when the command exits.
        while let Some(Ok(chunk)) = stream.next().await {
            output(&chunk.into_bytes());
        }
    }
    let info = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| format!("docker exec: {e}"))?;
    Ok(info.exit_code)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(addr: &str, ip: Option<&str>, ports: &[(u16, u16)]) -> Target {
        Target {
            view: ContainerView {
                known: true,
                running: true,
                ip: ip.map(|ip| ip.parse().unwrap()),
                tcp_ports: ports.iter().copied().collect::<BTreeMap<_, _>>(),
                ..ContainerView::default()
            },
            addr: Some(addr.parse().unwrap()),
            auto_port_of: None,
        }
    }

    #[test]
    fn a_tcp_check_looks_for_the_listener_behind_the_port_it_probes() {
        // `-p 18080:8080`: the check on the host port looks for 8080 inside.
        let published = target("127.0.0.1", Some("172.17.0.2"), &[(8080, 18080)]);
        assert_eq!(published.container_port(18080), 8080);
        // A port nothing publishes (host network): the same port inside.
        let host = target("127.0.0.1", None, &[]);
        assert_eq!(host.container_port(9000), 9000);
        // `announce_as: container`: the check goes to the container's own address,
        // whose ports are its own, even if a host port happens to have that number.
        let own = target(
            "172.17.0.2",
            Some("172.17.0.2"),
            &[(80, 8080), (8080, 18080)],
        );
        assert_eq!(own.container_port(8080), 8080);
        // `announce: auto`: the probe port is the chosen host port, the listener the
        // container port.
        let auto = Target {
            auto_port_of: Some(8080),
            ..target("127.0.0.1", Some("172.17.0.2"), &[(8080, 49153)])
        };
        let probed = auto.probe_port(8080).unwrap();
        assert_eq!((probed, auto.container_port(probed)), (49153, 8080));
    }
}
