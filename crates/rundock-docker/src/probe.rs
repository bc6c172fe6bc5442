//! Health probes: one probe of one check against one container, for both callers that
//! decide by them: the announcer (publish while every check passes) and a start-first
//! update (the new container takes the record only once every check passes).
//!
//! A `tcp` check first reads the container's own TCP table (`/proc/<pid>/net/tcp{,6}`,
//! its network namespace) for a listener on the container port, then connects to the
//! announced address. The connect alone proves nothing: Docker's userland proxy accepts
//! a connection on a published port whether or not anything in the container listens,
//! so a container that never listens would be announced at once. A listener bound only
//! to loopback inside the container fails too: nothing outside can reach it. `http`
//! checks need no such help (the proxy never answers HTTP itself).

use crate::container::ContainerView;
use crate::exec::exec_in_container;
use bollard::Docker;
use rundock_drain::Listener;
use rundock_runtime::log::chain;
use rundock_spec::{CheckKind, HealthCheck};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where a probe goes: the announced address and the container it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// What is known of the container: its published ports translate a check's port
    /// ([`Target::probe_port`], [`Target::container_port`]), unless `addr` is the
    /// container's own address, where no translation applies; its pid, when known,
    /// spares asking Docker before a `tcp` check reads the container's TCP table.
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

/// How a check is named in logs and errors: `http :8080/health`, `tcp :5432`, `exec …`.
pub fn describe(check: &HealthCheck) -> String {
    match &check.check {
        CheckKind::Http { port, path } => format!("http :{port}{path}"),
        CheckKind::Tcp { port } => format!("tcp :{port}"),
        CheckKind::Exec { command } => format!("exec {}", command.join(" ")),
    }
}

/// One probe of `check` against `target` (`container` is where `exec` runs), bounded by
/// the check's `timeout` (at least a second; "no answer within Ns" past it): what the
/// announcer's probers run, and what a start-first update runs on its new container
/// before that container may take the record.
pub async fn probe(
    check: &HealthCheck,
    target: &Target,
    container: &str,
    docker: Option<Docker>,
    http: &reqwest::Client,
) -> Result<(), String> {
    let limit = Duration::from_secs(check.timeout.max(1).into());
    let once = async {
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
    };
    match tokio::time::timeout(limit, once).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", limit.as_secs())),
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
