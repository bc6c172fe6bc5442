//! The Docker create body of a spec: a pure function from the [`Spec`] and the resolved
//! token addresses to bollard's `ContainerCreateBody`.
//!
//! Everything the container is made of comes from `spec.container`; rundock adds its own
//! labels (`rundock.service`, `rundock.spec`, `rundock.host`, and `rundock.addresses` when
//! tokens were substituted) so leftovers can be found and stale containers recognised.
//! No Docker restart policy is set: the supervisor and runit restart the container, and a
//! second restarter would fight them.
//!
//! Docker's own log of the container (`docker logs`) is a second copy of what svlogd
//! keeps: the spec's `docker_log`, by default json-file bounded and non-blocking
//! ([`rundock_spec::dockerlog`]), so neither copy can hold the container's output back.

use crate::tokens::Addresses;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, PortMap, RestartPolicy,
    RestartPolicyNameEnum,
};
use rundock_spec::{Spec, LABEL_HOST, LABEL_SERVICE, LABEL_SPEC};
use std::collections::HashMap;

/// Label recording what `$PRIVATE_IP` / `$PUBLIC_IP` stood for (see [`Addresses::label`]).
pub(crate) const LABEL_ADDRESSES: &str = "rundock.addresses";

/// Docker's own log of the container: the spec's choice, else the bounded default.
fn docker_log_config(spec: &Spec) -> HostConfigLogConfig {
    let log = spec.container.docker_log.clone().unwrap_or_default();
    HostConfigLogConfig {
        typ: Some(log.driver),
        config: Some(log.options.into_iter().collect()),
    }
}

/// The labels that make a container this spec's current container, and that a reusable
/// container must carry with exactly these values.
pub(crate) fn identity_labels(spec: &Spec, addresses: &Addresses) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        (LABEL_SERVICE, spec.name.clone()),
        (LABEL_HOST, spec.host_label.clone()),
        (LABEL_SPEC, spec.container_hash()),
    ];
    if let Some(value) = addresses.label() {
        labels.push((LABEL_ADDRESSES, value));
    }
    labels
}

pub(crate) fn create_body(spec: &Spec, addresses: &Addresses) -> ContainerCreateBody {
    let c = &spec.container;
    let sub = |text: &String| addresses.substitute(text);

    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    for (key, value) in identity_labels(spec, addresses) {
        labels.insert(key.to_string(), value);
    }

    let mut exposed_ports = Vec::new();
    let mut port_bindings = PortMap::new();
    for port in &c.ports {
        let key = format!("{}/{}", port.container_port, port.protocol.as_str());
        if !exposed_ports.contains(&key) {
            exposed_ports.push(key.clone());
        }
        let binding = PortBinding {
            host_ip: port.host_ip.as_ref().map(|ip| addresses.host_ip(ip)),
            // An empty host port asks Docker for a free one, `FIRST-LAST` for a free one
            // in that range.
            host_port: Some(match (port.host_port, port.host_port_range) {
                (Some(p), _) => p.to_string(),
                (None, Some(range)) => range.to_string(),
                (None, None) => String::new(),
            }),
        };
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }

    // Docker refuses a hostname when the container shares another's (or the host's) UTS
    // namespace; the spec always carries a default hostname, so leave it off there.
    let shares_uts = c
        .network
        .as_deref()
        .is_some_and(|n| n == "host" || n.starts_with("container:"));
    let hostname = if shares_uts { None } else { c.hostname.clone() };

    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

    ContainerCreateBody {
        image: Some(c.image.to_string()),
        cmd: c
            .command
            .as_ref()
            .map(|words| words.iter().map(sub).collect()),
        entrypoint: c
            .entrypoint
            .as_ref()
            .map(|words| words.iter().map(sub).collect()),
        env: (!c.env.is_empty()).then(|| {
            c.env
                .iter()
                .map(|(key, value)| format!("{key}={}", sub(value)))
                .collect()
        }),
        exposed_ports: (!exposed_ports.is_empty()).then_some(exposed_ports),
        labels: Some(labels),
        hostname,
        user: c.user.clone(),
        working_dir: c.workdir.clone(),
        stop_timeout: Some(i64::from(c.stop_timeout)),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            binds: non_empty(&c.volumes),
            volumes_from: non_empty(&c.volumes_from),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            network_mode: c.network.clone(),
            privileged: Some(c.privileged),
            cap_add: non_empty(&c.cap_add),
            cap_drop: non_empty(&c.cap_drop),
            memory: c.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            nano_cpus: c.nano_cpus.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            log_config: Some(docker_log_config(spec)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rundock_spec::{AnnounceAs, HostIp};
    use rundock_spec::{ContainerSpec, Interfaces, Paths, PortMapping, Protocol, SPEC_FORMAT};

    pub(crate) fn container() -> ContainerSpec {
        ContainerSpec {
            hostname: Some("node1-web".into()),
            ..ContainerSpec::new("web", "registry.example:5000/web:1".parse().unwrap())
        }
    }

    pub(crate) fn spec(container: ContainerSpec) -> Spec {
        Spec {
            format: SPEC_FORMAT,
            name: "web".into(),
            host_label: "node1".into(),
            container,
            announce: None,
            paths: Paths {
                sv_dir: "/etc/sv".into(),
                service_dir: "/etc/service".into(),
                log_dir: "/var/log/rundock".into(),
                runner: "/usr/local/bin/rundock".into(),
            },
            interfaces: Interfaces {
                private: vec!["eth1".parse().unwrap()],
                public: vec!["eth0".parse().unwrap()],
            },
            drain: 0,
            watch: None,
            hooks: Default::default(),
            requires: None,
            drain_mode: Default::default(),
            start_first: None,
        }
    }

    #[test]
    fn a_full_spec_maps_field_by_field() {
        let mut c = container();
        c.command = Some(vec!["serve".into(), "--advertise=$PRIVATE_IP".into()]);
        c.entrypoint = Some(vec!["/bin/tini".into(), "--".into()]);
        c.env.insert("A".into(), "1".into());
        c.env.insert("ADDR".into(), "$PUBLIC_IP:9000".into());
        c.ports = vec![
            PortMapping {
                host_ip: Some(HostIp::Address(AnnounceAs::Private)),
                host_port: Some(8086),
                host_port_range: None,
                container_port: 8086,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host_ip: Some(HostIp::Ip("127.0.0.1".parse().unwrap())),
                host_port: Some(18086),
                host_port_range: None,
                container_port: 8086,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host_ip: None,
                host_port: None,
                host_port_range: None,
                container_port: 53,
                protocol: Protocol::Udp,
            },
            PortMapping {
                host_ip: Some(HostIp::Ip("127.0.0.1".parse().unwrap())),
                host_port: None,
                host_port_range: Some(rundock_spec::PortRange {
                    first: 30000,
                    last: 30100,
                }),
                container_port: 8080,
                protocol: Protocol::Tcp,
            },
        ];
        c.volumes = vec!["/srv/data:/data:ro".into()];
        c.volumes_from = vec!["data-box".into()];
        c.labels.insert("team".into(), "db".into());
        c.user = Some("1000:1000".into());
        c.workdir = Some("/data".into());
        c.network = Some("backend".into());
        c.privileged = true;
        c.cap_add = vec!["NET_ADMIN".into()];
        c.cap_drop = vec!["MKNOD".into()];
        c.memory = Some(256 << 20);
        c.nano_cpus = Some(1_500_000_000);
        c.stop_timeout = 25;
        let spec = spec(c);
        let addrs = Addresses {
            resolved: vec![
                (AnnounceAs::Private, "10.0.0.5".parse().unwrap()),
                (AnnounceAs::Public, "203.0.113.7".parse().unwrap()),
            ],
        };
        let body = create_body(&spec, &addrs);

        assert_eq!(body.image.as_deref(), Some("registry.example:5000/web:1"));
        assert_eq!(
            body.cmd,
            Some(vec![
                "serve".to_string(),
                "--advertise=10.0.0.5".to_string()
            ])
        );
        assert_eq!(body.entrypoint, Some(vec!["/bin/tini".into(), "--".into()]));
        assert_eq!(
            body.env,
            Some(vec!["A=1".to_string(), "ADDR=203.0.113.7:9000".to_string()])
        );
        assert_eq!(
            body.exposed_ports,
            Some(vec![
                "8086/tcp".to_string(),
                "53/udp".to_string(),
                "8080/tcp".to_string()
            ])
        );
        assert_eq!(body.hostname.as_deref(), Some("node1-web"));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.working_dir.as_deref(), Some("/data"));
        assert_eq!(body.stop_timeout, Some(25));
        let labels = body.labels.unwrap();
        assert_eq!(labels["team"], "db");
        assert_eq!(labels[LABEL_SERVICE], "web");
        assert_eq!(labels[LABEL_HOST], "node1");
        assert_eq!(labels[LABEL_SPEC], spec.container_hash());
        assert_eq!(
            labels[LABEL_ADDRESSES],
            "private=10.0.0.5,public=203.0.113.7"
        );

        let host = body.host_config.unwrap();
        let bindings = host.port_bindings.unwrap();
        let tcp = bindings["8086/tcp"].as_ref().unwrap();
        assert_eq!(tcp.len(), 2);
        assert_eq!(tcp[0].host_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(tcp[0].host_port.as_deref(), Some("8086"));
        assert_eq!(tcp[1].host_ip.as_deref(), Some("127.0.0.1"));
        let udp = bindings["53/udp"].as_ref().unwrap();
        assert_eq!(udp[0].host_ip, None);
        assert_eq!(
            udp[0].host_port.as_deref(),
            Some(""),
            "Docker picks the port"
        );
        let ranged = bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(
            ranged[0].host_port.as_deref(),
            Some("30000-30100"),
            "Docker picks the port in the range"
        );
        assert_eq!(host.binds, Some(vec!["/srv/data:/data:ro".to_string()]));
        assert_eq!(host.volumes_from, Some(vec!["data-box".to_string()]));
        assert_eq!(host.network_mode.as_deref(), Some("backend"));
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["MKNOD".to_string()]));
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
    }

    #[test]
    fn a_minimal_spec_leaves_docker_defaults_alone() {
        let body = create_body(&spec(container()), &Addresses::default());
        assert_eq!(body.cmd, None, "the image's own command");
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.env, None);
        assert_eq!(body.exposed_ports, None);
        let labels = body.labels.unwrap();
        assert_eq!(labels.len(), 3, "no rundock.addresses without tokens");
        let host = body.host_config.unwrap();
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.binds, None);
        assert_eq!(host.network_mode, None);
        assert_eq!(host.memory, None);
        let log = host.log_config.expect("Docker's log is always bounded");
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let options = log.config.unwrap();
        assert_eq!(options["max-size"], "10m");
        assert_eq!(options["max-file"], "3");
        assert_eq!(options["mode"], "non-blocking");
        // A chosen driver goes to Docker as the spec holds it.
        let mut c = container();
        c.docker_log = Some(
            rundock_spec::dockerlog::DockerLog::resolve(
                Some("local"),
                [("max-size".to_string(), "5m".to_string())].into(),
            )
            .unwrap(),
        );
        let log = create_body(&spec(c), &Addresses::default())
            .host_config
            .unwrap()
            .log_config
            .unwrap();
        assert_eq!(log.typ.as_deref(), Some("local"));
        let options = log.config.unwrap();
        assert_eq!(options["max-size"], "5m");
        assert_eq!(options["mode"], "non-blocking");
        assert_eq!(options.get("max-file"), None);
    }

    #[test]
    fn no_hostname_when_the_uts_namespace_is_shared() {
        for network in ["host", "container:other"] {
            let mut c = container();
            c.network = Some(network.into());
            let body = create_body(&spec(c), &Addresses::default());
            assert_eq!(body.hostname, None, "{network}");
        }
    }

    #[test]
    fn env_values_never_reach_the_labels() {
        let mut c = container();
        c.env.insert("PASSWORD".into(), "hunter2".into());
        let body = create_body(&spec(c), &Addresses::default());
        assert!(!body.labels.unwrap().values().any(|v| v.contains("hunter2")));
    }
}
