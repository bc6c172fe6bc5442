//! Module parameters → validated [`Request`].
//!
//! Ansible neither validates, defaults, converts nor masks the arguments of a binary
//! module, so all of that happens here: ad hoc `-a 'k=v'` gives every value as a string
//! and playbooks keep JSON types, so each option is coerced the way Ansible coerces it
//! (ints from numeric strings, booleans from yes/no/true/false/1/0, lists from comma
//! strings) and every error names its option.

use crate::dockerargs::{self, split_words_on, DockerArgs};
use crate::error::{Result, SpecError};
use crate::spec::*;
use crate::validate::{self, quoted};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Every option the module accepts, in documentation order.
pub const OPTIONS: &[&str] = &[
    "state",
    "name",
    "image",
    "args",
    "command",
    "entrypoint",
    "env",
    "ports",
    "volumes",
    "volumes_from",
    "labels",
    "hostname",
    "user",
    "workdir",
    "network",
    "privileged",
    "cap_add",
    "cap_drop",
    "memory",
    "cpus",
    "container_name",
    "pull",
    "stop_timeout",
    "drain",
    "announce",
    "port",
    "announce_as",
    "domain",
    "host_label",
    "etcd",
    "ttl",
    "interval",
    "health",
    "priority",
    "weight",
    "text",
    "private_interface",
    "public_interface",
    "sv_dir",
    "service_dir",
    "log_dir",
    "install_dir",
    "wait",
    "wait_timeout",
    "watch",
];

pub const DEFAULT_DOMAIN: &str = "s.prod.example.com";
pub const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";
pub const DEFAULT_TTL: u32 = 60;
pub const DEFAULT_INTERVAL: u32 = 45;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Present,
    Enabled,
    Disabled,
    Absent,
    Restarted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Present => "present",
            State::Enabled => "enabled",
            State::Disabled => "disabled",
            State::Absent => "absent",
            State::Restarted => "restarted",
        }
    }
}

/// What the facts of the host contribute to defaults.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub hostname: String,
    /// The runner path is `<install_dir>/<version>/rundock`.
    pub version: String,
}

/// A validated module call. `spec` is there whenever an image was given; `absent`,
/// `disabled` and `restarted` may act on the installed tree without one.
#[derive(Debug, Clone)]
pub struct Request {
    pub state: State,
    pub name: String,
    pub paths: Paths,
    pub install_dir: PathBuf,
    pub spec: Option<Spec>,
    /// With `enabled`/`restarted`: return only once the container runs and, when
    /// announced, its record is in etcd; fail after this long.
    pub wait: Option<std::time::Duration>,
}

pub fn parse_request(params: &Map<String, Value>, facts: &HostFacts) -> Result<Request> {
    let mut p = Params::new(params)?;
    let state = match p.string("state")?.as_deref() {
        Some("present") => State::Present,
        Some("enabled") => State::Enabled,
        Some("disabled") => State::Disabled,
        Some("absent") => State::Absent,
        Some("restarted") => State::Restarted,
        Some(other) => {
            return Err(SpecError::new(
                "state",
                format!(
                    "{} is not a state: present, enabled, disabled, absent or restarted",
                    quoted(other)
                ),
            ))
        }
        None => {
            return Err(SpecError::new(
                "state",
                "is required: present, enabled, disabled, absent or restarted",
            ))
        }
    };
    let name = match p.string("name")? {
        Some(name) => validate::dns_label("name", &name)?,
        None => {
            return Err(SpecError::new(
                "name",
                format!("is required: {}", validate::LABEL_FORM),
            ))
        }
    };
    let install_dir = p
        .path("install_dir")?
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/rundock"));
    let paths = Paths {
        sv_dir: p
            .path("sv_dir")?
            .unwrap_or_else(|| PathBuf::from("/etc/sv")),
        service_dir: p
            .path("service_dir")?
            .unwrap_or_else(|| PathBuf::from("/etc/service")),
        log_dir: p
            .path("log_dir")?
            .unwrap_or_else(|| PathBuf::from("/var/log/rundock")),
        runner: install_dir.join(&facts.version).join("rundock"),
    };
    let wait_timeout = p.seconds("wait_timeout", 120, 1, 3600)?;
    let wait = p
        .boolean("wait")?
        .unwrap_or(false)
        .then(|| std::time::Duration::from_secs(wait_timeout.into()));
    let image = p.string("image")?;
    if image.is_none() && matches!(state, State::Present | State::Enabled) {
        return Err(SpecError::new(
            "image",
            format!(
                "is required with state={}: a Docker image reference such as registry:5000/influxdb:1.8",
                state.as_str()
            ),
        ));
    }
    let spec = match image {
        Some(image) if state != State::Absent => Some(build_spec(
            &mut p,
            name.clone(),
            &image,
            paths.clone(),
            facts,
        )?),
        _ => None,
    };
    if spec.is_none() {
        // absent (and disabled without an image) act on the installed tree: the other
        // options of the service may be given, as a play that flips `state` does, and
        // mean nothing here. Unknown names are still refused.
        p.values.retain(|key, _| !OPTIONS.contains(&key.as_str()));
    }
    p.finish()?;
    Ok(Request {
        state,
        name,
        paths,
        install_dir,
        spec,
        wait,
    })
}

fn build_spec(
    p: &mut Params,
    name: String,
    image: &str,
    paths: Paths,
    facts: &HostFacts,
) -> Result<Spec> {
    let image = validate::image("image", image)?;
    let host_label = match p.string("host_label")? {
        Some(label) => validate::dns_label("host_label", &label)?,
        None => validate::host_label_from_hostname(&facts.hostname).ok_or_else(|| {
            SpecError::new(
                "host_label",
                format!(
                    "not given, and this host's name {} does not make a DNS label; set host_label ({})",
                    quoted(&facts.hostname),
                    validate::LABEL_FORM
                ),
            )
        })?,
    };
    let from_args = match p.string("args")? {
        Some(text) => dockerargs::parse(&text)?,
        None => DockerArgs::default(),
    };
    let mut container = container_spec(p, &name, &host_label, image, from_args)?;
    // watch: parsed in watch.rs. It follows records under the announcer's domain and
    // etcd, or, for a service that announces nothing, under its own.
    let watch_templates = p
        .take("watch")
        .map(crate::watch::parse_option)
        .transpose()?;
    let watch_own = match (&watch_templates, p.has("announce")) {
        (Some(_), false) => Some((
            p.validated("domain", validate::domain)?
                .unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
            etcd_spec(p)?,
        )),
        _ => None,
    };
    let announce = announce_spec(p, &mut container)?;
    let watch = watch_templates.map(|templates| {
        let (domain, etcd) = watch_own.unwrap_or_else(|| {
            let a = announce.as_ref().expect("announce was given");
            (a.domain.clone(), a.etcd.clone())
        });
        crate::watch::WatchSpec {
            domain,
            etcd,
            templates,
        }
    });
    let drain = p.seconds("drain", 0, 0, 3600)?;
    let interfaces = Interfaces {
        private: p
            .words("private_interface")?
            .unwrap_or_else(|| vec!["eth1".into(), "eth0".into()]),
        public: p
            .words("public_interface")?
            .unwrap_or_else(|| vec!["eth0".into()]),
    };
    for (field, list) in [
        ("private_interface", &interfaces.private),
        ("public_interface", &interfaces.public),
    ] {
        for iface in list {
            interface_name(field, iface)?;
        }
    }
    Ok(Spec {
        format: SPEC_FORMAT,
        name,
        host_label,
        container,
        announce,
        paths,
        interfaces,
        drain,
        watch,
    })
}

fn container_spec(
    p: &mut Params,
    name: &str,
    host_label: &str,
    image: String,
    args: DockerArgs,
) -> Result<ContainerSpec> {
    let pull = match p.string("pull")?.as_deref() {
        None | Some("missing") => PullPolicy::Missing,
        Some("always") => PullPolicy::Always,
        Some("never") => PullPolicy::Never,
        Some(other) => {
            return Err(SpecError::new(
                "pull",
                format!(
                    "{} is not a pull policy: always, missing or never",
                    quoted(other)
                ),
            ))
        }
    };
    let mut env = args.env;
    if let Some(map) = p.dict("env")? {
        for (key, value) in map {
            let key = validate::env_name("env", &key)?;
            let value = validate::no_control("env", "an environment value", &value)?;
            merge_entry(&mut env, "env", key, value)?;
        }
    }
    let mut labels = args.labels;
    if let Some(map) = p.dict("labels")? {
        for (key, value) in map {
            let key = validate::label_key("labels", &key)?;
            if key.starts_with("rundock.") {
                return Err(SpecError::new(
                    "labels",
                    format!(
                        "{} is reserved: labels starting with 'rundock.' are set by rundock",
                        quoted(&key)
                    ),
                ));
            }
            merge_entry(&mut labels, "labels", key, value)?;
        }
    }
    let mut ports = args.ports;
    ports.extend(p.validated_list("ports", dockerargs::parse_publish)?);
    let mut volumes = args.volumes;
    volumes.extend(p.validated_list("volumes", validate::volume)?);
    let mut volumes_from = args.volumes_from;
    volumes_from.extend(p.validated_list("volumes_from", validate::volumes_from)?);
    let mut cap_add = args.cap_add;
    cap_add.extend(p.validated_list("cap_add", validate::capability)?);
    let mut cap_drop = args.cap_drop;
    cap_drop.extend(p.validated_list("cap_drop", validate::capability)?);
    let hostname = one_of(
        "hostname",
        args.hostname,
        p.validated("hostname", validate::hostname)?,
    )?
    .unwrap_or_else(|| default_hostname(host_label, name));
    let user = one_of("user", args.user, p.validated("user", validate::user)?)?;
    let workdir = one_of(
        "workdir",
        args.workdir,
        p.path("workdir")?.map(|w| w.to_string_lossy().into_owned()),
    )?;
    let network = one_of(
        "network",
        args.network,
        p.validated("network", validate::network)?,
    )?;
    let memory = one_of(
        "memory",
        args.memory,
        p.validated("memory", validate::memory)?,
    )?;
    let nano_cpus = one_of("cpus", args.nano_cpus, p.validated("cpus", validate::cpus)?)?;
    let entrypoint = one_of("entrypoint", args.entrypoint, p.command("entrypoint")?)?;
    let privileged = p.boolean("privileged")?.unwrap_or(false) || args.privileged;
    let command = p.command("command")?;
    let container_name = match p.string("container_name")? {
        Some(n) => validate::docker_name("container_name", &n)?,
        None => name.to_string(),
    };
    Ok(ContainerSpec {
        container_name,
        image,
        pull,
        command,
        entrypoint,
        env,
        ports,
        volumes,
        volumes_from,
        labels,
        hostname: Some(hostname),
        user,
        workdir,
        network,
        privileged,
        cap_add,
        cap_drop,
        memory,
        nano_cpus,
        stop_timeout: p.seconds("stop_timeout", 10, 0, 3600)?,
    })
}

/// `<host>-<name>`, cut to one DNS label.
fn default_hostname(host_label: &str, name: &str) -> String {
    let mut hostname = format!("{host_label}-{name}");
    hostname.truncate(63);
    hostname.trim_end_matches('-').to_string()
}

fn announce_spec(p: &mut Params, container: &mut ContainerSpec) -> Result<Option<AnnounceSpec>> {
    let announce = p.int("announce")?;
    let Some(announce) = announce else {
        for dependent in [
            "port",
            "announce_as",
            "domain",
            "etcd",
            "ttl",
            "interval",
            "health",
            "priority",
            "weight",
            "text",
        ] {
            if p.has(dependent) {
                return Err(SpecError::new(
                    dependent,
                    "only applies to announced services: set announce to the host port to announce",
                ));
            }
        }
        return Ok(None);
    };
    let port = validate::port("announce", announce)?;
    let container_port = match p.int("port")? {
        Some(n) => validate::port("port", n)?,
        None => port,
    };
    let announce_as = match p.string("announce_as")?.as_deref() {
        None | Some("private") => AnnounceAs::Private,
        Some("public") => AnnounceAs::Public,
        Some("container") => AnnounceAs::Container,
        Some(other) if other.contains('/') => AnnounceAs::Cidr(cidr("announce_as", other)?),
        Some(other) => AnnounceAs::Interface(interface_name("announce_as", other)?),
    };
    if announce_as == AnnounceAs::Container {
        if port != container_port {
            return Err(SpecError::new(
                "announce",
                format!(
                    "with announce_as=container the record carries the container port: announce ({port}) must equal port ({container_port})"
                ),
            ));
        }
    } else {
        let published: Vec<&PortMapping> = container
            .ports
            .iter()
            .filter(|m| m.container_port == container_port && m.protocol == Protocol::Tcp)
            .collect();
        if published.is_empty() {
            // Announcing a port nobody can reach is never what is meant: publish it.
            container.ports.push(PortMapping {
                host_ip: None,
                host_port: Some(port),
                container_port,
                protocol: Protocol::Tcp,
            });
        } else if !published.iter().any(|m| m.host_port == Some(port)) {
            return Err(SpecError::new(
                "announce",
                format!(
                    "{port} is not where container port {container_port} is published (ports/args -p publish it on {}); announce the host port",
                    published
                        .iter()
                        .map(|m| m.host_port.map_or("a random port".to_string(), |h| h.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let domain = match p.string("domain")? {
        Some(d) => validate::domain("domain", &d)?,
        None => DEFAULT_DOMAIN.to_string(),
    };
    let ttl = p.seconds("ttl", DEFAULT_TTL, 2, 86_400)?;
    let interval = match p.int("interval")? {
        Some(n) => validate::seconds("interval", n, 1, 86_400)?,
        None => DEFAULT_INTERVAL.min(ttl * 3 / 4).max(1),
    };
    if interval >= ttl {
        return Err(SpecError::new(
            "interval",
            format!(
                "{interval} must be less than ttl ({ttl}): the record is refreshed every interval seconds and expires after ttl"
            ),
        ));
    }
    let etcd = etcd_spec(p)?;
    let health = health_checks(p)?;
    let priority = p
        .int("priority")?
        .map(|n| small("priority", n))
        .transpose()?;
    let weight = p.int("weight")?.map(|n| small("weight", n)).transpose()?;
    let text = p.string("text")?;
    Ok(Some(AnnounceSpec {
        port,
        container_port,
        announce_as,
        domain,
        etcd,
        ttl,
        interval,
        health,
        priority,
        weight,
        text,
    }))
}

fn small(field: &str, n: i64) -> Result<u16> {
    u16::try_from(n).map_err(|_| {
        SpecError::new(
            field,
            format!("{n} is out of range: a whole number from 0 to 65535"),
        )
    })
}

/// `eth0`, `eth0:inet`, `eth0:inet6`, `eth0[1]`.
fn interface_name(field: &str, value: &str) -> Result<String> {
    let (name, rest) = match value.find([':', '[']) {
        Some(i) => value.split_at(i),
        None => (value, ""),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-@".contains(&c));
    let rest_ok = match rest {
        "" | ":inet" | ":inet6" => true,
        r => r
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|n| n.parse::<u8>().is_ok()),
    };
    if name_ok && rest_ok {
        Ok(value.to_string())
    } else {
        Err(SpecError::new(
            field,
            format!(
                "{} is not an address choice: private, public, container, an interface \
                 (eth0, eth0:inet6, eth0[1]) or a CIDR (10.0.0.0/8)",
                quoted(value)
            ),
        ))
    }
}

fn cidr(field: &str, value: &str) -> Result<String> {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        }
    });
    if ok {
        Ok(value.to_string())
    } else {
        Err(SpecError::new(
            field,
            format!(
                "{} is not a CIDR: ADDRESS/BITS such as 10.0.0.0/8 or fd00::/8",
                quoted(value)
            ),
        ))
    }
}

fn etcd_spec(p: &mut Params) -> Result<EtcdSpec> {
    let mut spec = EtcdSpec::new(vec![DEFAULT_ETCD.to_string()], EtcdApi::V3);
    let Some(value) = p.take("etcd") else {
        return Ok(spec);
    };
    let map = match value {
        Value::String(s) if !s.trim_start().starts_with('{') => {
            let mut map = Map::new();
            map.insert("endpoints".into(), Value::String(s));
            map
        }
        other => Params::to_object("etcd", other)?,
    };
    let mut e = Params::new(&map).map_err(|err| err.within("etcd"))?;
    let inner = (|| -> Result<()> {
        if let Some(endpoints) = e.words("endpoints")? {
            if endpoints.is_empty() {
                return Err(SpecError::new(
                    "endpoints",
                    "needs at least one http(s)://HOST:PORT",
                ));
            }
            spec.endpoints = endpoints
                .iter()
                .map(|ep| validate::etcd_endpoint("endpoints", ep))
                .collect::<Result<_>>()?;
        }
        spec.api = match e.string("api")?.as_deref() {
            None | Some("v3") => EtcdApi::V3,
            Some("v2") => EtcdApi::V2,
            Some(other) => {
                return Err(SpecError::new(
                    "api",
                    format!("{} is not an etcd API: v3 or v2", quoted(other)),
                ))
            }
        };
        if let Some(prefix) = e.string("prefix")? {
            spec.prefix = validate::key_prefix("prefix", &prefix)?;
        }
        spec.ca_file = e.path("ca_file")?;
        spec.cert_file = e.path("cert_file")?;
        spec.key_file = e.path("key_file")?;
        if spec.cert_file.is_some() != spec.key_file.is_some() {
            return Err(SpecError::new(
                "cert_file",
                "cert_file and key_file go together: give both or neither",
            ));
        }
        spec.username = e.string("username")?;
        spec.password = e.string("password")?;
        if spec.username.is_some() != spec.password.is_some() {
            return Err(SpecError::new(
                "username",
                "username and password go together: give both or neither",
            ));
        }
        e.finish()
    })();
    inner.map_err(|err| err.within("etcd"))?;
    Ok(spec)
}

fn health_checks(p: &mut Params) -> Result<Vec<HealthCheck>> {
    let Some(value) = p.take("health") else {
        return Ok(Vec::new());
    };
    let items: Vec<Value> = match value {
        Value::Array(items) => items,
        Value::String(s) if s.trim_start().starts_with('[') => match serde_json::from_str(&s) {
            Ok(Value::Array(items)) => items,
            _ => return Err(SpecError::new("health", "is not a JSON list of checks")),
        },
        Value::String(s) => s
            .split(',')
            .map(|item| Value::String(item.trim().to_string()))
            .filter(|v| v.as_str() != Some(""))
            .collect(),
        Value::Object(o) => vec![Value::Object(o)],
        _ => return Err(SpecError::new("health", HEALTH_FORM)),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| health_check(item).map_err(|e| e.within(&format!("health[{i}]"))))
        .collect()
}

const HEALTH_FORM: &str = "checks are {kind: http, port, path} | {kind: tcp, port} | \
    {kind: exec, command}, each with optional interval and timeout seconds, or the short forms \
    http:PORT/PATH, tcp:PORT, exec:COMMAND";

fn health_check(item: Value) -> Result<HealthCheck> {
    let map = match item {
        Value::String(s) => {
            let (kind, rest) = s.split_once(':').ok_or_else(|| {
                SpecError::new("", format!("{} is not a check: {HEALTH_FORM}", quoted(&s)))
            })?;
            let mut map = Map::new();
            map.insert("kind".into(), Value::String(kind.into()));
            match kind {
                "http" => {
                    let (port, path) = match rest.find('/') {
                        Some(i) => rest.split_at(i),
                        None => (rest, "/"),
                    };
                    map.insert("port".into(), Value::String(port.into()));
                    map.insert("path".into(), Value::String(path.into()));
                }
                "tcp" => {
                    map.insert("port".into(), Value::String(rest.into()));
                }
                _ => {
                    map.insert("command".into(), Value::String(rest.into()));
                }
            }
            map
        }
        Value::Object(map) => map,
        _ => return Err(SpecError::new("", HEALTH_FORM)),
    };
    let mut h = Params::new(&map)?;
    let kind = h.string("kind")?;
    let check = match kind.as_deref() {
        Some("http") => {
            let port = validate::port("port", h.required_int("port")?)?;
            let path = h.string("path")?.unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(SpecError::new(
                    "path",
                    format!(
                        "{} is not a URL path: it starts with '/' and has no spaces",
                        quoted(&path)
                    ),
                ));
            }
            CheckKind::Http { port, path }
        }
        Some("tcp") => CheckKind::Tcp {
            port: validate::port("port", h.required_int("port")?)?,
        },
        Some("exec") => CheckKind::Exec {
            command: h
                .command("command")?
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    SpecError::new(
                        "command",
                        "is required for an exec check: a list of words or a string",
                    )
                })?,
        },
        Some(other) => {
            return Err(SpecError::new(
                "kind",
                format!("{} is not a check kind: http, tcp or exec", quoted(other)),
            ))
        }
        None => return Err(SpecError::new("kind", "is required: http, tcp or exec")),
    };
    let interval = h.seconds("interval", 5, 1, 3600)?;
    let timeout = h.seconds("timeout", 2.min(interval), 1, 3600)?;
    if timeout > interval {
        return Err(SpecError::new(
            "timeout",
            format!("{timeout} must not exceed interval ({interval})"),
        ));
    }
    h.finish()?;
    Ok(HealthCheck {
        check,
        interval,
        timeout,
    })
}

fn merge_entry(
    map: &mut BTreeMap<String, String>,
    field: &str,
    key: String,
    value: String,
) -> Result<()> {
    match map.get(&key) {
        Some(existing) if *existing != value => Err(SpecError::new(
            field,
            format!(
                "{} is set both in args and in {field} with different values",
                quoted(&key)
            ),
        )),
        _ => {
            map.insert(key, value);
            Ok(())
        }
    }
}

fn one_of<T: PartialEq>(
    field: &str,
    from_args: Option<T>,
    from_option: Option<T>,
) -> Result<Option<T>> {
    match (from_args, from_option) {
        (Some(a), Some(b)) if a != b => Err(SpecError::new(
            field,
            format!(
                "is set both in args and as the {field} option with different values: keep one"
            ),
        )),
        (a, b) => Ok(b.or(a)),
    }
}

/// The parameters not yet consumed; whatever is left at [`Params::finish`] is unknown.
struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    fn new(map: &Map<String, Value>) -> Result<Self> {
        let values = map
            .iter()
            .filter(|(k, _)| !k.starts_with("_ansible_"))
            // Ansible sends `null` for options a play leaves unset (`x: "{{ omit }}"` aside).
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Params { values })
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.values.remove(key)
    }

    fn finish(self) -> Result<()> {
        let unknown: BTreeSet<&String> = self.values.keys().collect();
        let Some(first) = unknown.iter().next() else {
            return Ok(());
        };
        Err(SpecError::new(
            first.as_str(),
            format!(
                "unsupported parameter{} {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|k| quoted(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    fn string(&mut self, key: &str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(SpecError::new(
                key,
                format!("must be a string, not {}", kind(&other)),
            )),
        }
    }

    /// A string option checked (and normalised) by `validator`.
    fn validated<T>(
        &mut self,
        key: &str,
        validator: fn(&str, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        self.string(key)?.map(|v| validator(key, &v)).transpose()
    }

    /// A list option, each entry checked by `validator`.
    fn validated_list<T>(
        &mut self,
        key: &str,
        validator: fn(&str, &str) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.words(key)?
            .unwrap_or_default()
            .iter()
            .map(|v| validator(key, v))
            .collect()
    }

    fn path(&mut self, key: &str) -> Result<Option<PathBuf>> {
        self.string(key)?
            .map(|s| validate::absolute_path(key, &s))
            .transpose()
    }

    fn int(&mut self, key: &str) -> Result<Option<i64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| SpecError::new(key, format!("{n} is not a whole number"))),
            Some(Value::String(s)) => {
                s.trim().parse::<i64>().map(Some).map_err(|_| {
                    SpecError::new(key, format!("{} is not a whole number", quoted(&s)))
                })
            }
            Some(other) => Err(SpecError::new(
                key,
                format!("must be a whole number, not {}", kind(&other)),
            )),
        }
    }

    fn required_int(&mut self, key: &str) -> Result<i64> {
        self.int(key)?
            .ok_or_else(|| SpecError::new(key, "is required: a whole number"))
    }

    fn seconds(&mut self, key: &str, default: u32, min: i64, max: i64) -> Result<u32> {
        match self.int(key)? {
            Some(n) => validate::seconds(key, n, min, max),
            None => Ok(default),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>> {
        let bad = |shown: String| {
            SpecError::new(
                key,
                format!("{shown} is not a boolean: yes/no, true/false, on/off or 1/0"),
            )
        };
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(bad(n.to_string())),
            },
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "y" | "true" | "t" | "on" | "1" => Ok(Some(true)),
                "no" | "n" | "false" | "f" | "off" | "0" => Ok(Some(false)),
                _ => Err(bad(quoted(&s))),
            },
            Some(other) => Err(bad(kind(&other).to_string())),
        }
    }

    /// A list of strings: a JSON list, or a comma-separated string as Ansible splits it.
    fn words(&mut self, key: &str) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| scalar_string(key, item))
                .collect::<Result<_>>()
                .map(Some),
            Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Array(items)) => items
                        .into_iter()
                        .map(|item| scalar_string(key, item))
                        .collect::<Result<_>>()
                        .map(Some),
                    _ => Err(SpecError::new(key, "is not a JSON list of strings")),
                }
            }
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(|w| w.trim().to_string())
                    .filter(|w| !w.is_empty())
                    .collect(),
            )),
            Some(Value::Number(n)) => Ok(Some(vec![n.to_string()])),
            Some(other) => Err(SpecError::new(
                key,
                format!("must be a list of strings, not {}", kind(&other)),
            )),
        }
    }

    /// A command: a JSON list of words, or a string split into words as a shell would
    /// split them (quotes honoured, nothing expanded or run).
    fn command(&mut self, key: &str) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| scalar_string(key, item))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Vec<String>>(&s) {
                    Ok(words) => Ok(Some(words)),
                    Err(_) => Err(SpecError::new(key, "is not a JSON list of strings")),
                }
            }
            Some(Value::String(s)) => split_words_on(&s, key, false).map(Some),
            Some(other) => Err(SpecError::new(
                key,
                format!(
                    "must be a list of strings or a string, not {}",
                    kind(&other)
                ),
            )),
        }
        .and_then(|words| {
            if let Some(words) = &words {
                for w in words {
                    validate::no_control(key, "a command word", w)?;
                }
            }
            Ok(words)
        })
    }

    /// A string → string map: a JSON object, a JSON string of one, or `k=v, k2=v2`.
    fn dict(&mut self, key: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let object = match value {
            Value::String(s) if !s.trim_start().starts_with('{') => {
                let mut map = BTreeMap::new();
                for word in split_words_on(&s, key, true)? {
                    let (k, v) = word.split_once('=').ok_or_else(|| {
                        SpecError::new(
                            key,
                            format!(
                                "{} is not KEY=VALUE: give a mapping or k=v, k2=v2",
                                quoted(&word)
                            ),
                        )
                    })?;
                    map.insert(k.to_string(), v.to_string());
                }
                return Ok(Some(map));
            }
            other => Params::to_object(key, other)?,
        };
        object
            .into_iter()
            .map(|(k, v)| Ok((k, scalar_string(key, v)?)))
            .collect::<Result<_>>()
            .map(Some)
    }

    fn to_object(key: &str, value: Value) -> Result<Map<String, Value>> {
        match value {
            Value::Object(map) => Ok(map),
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(SpecError::new(key, "is not a JSON object")),
            },
            other => Err(SpecError::new(
                key,
                format!("must be a mapping, not {}", kind(&other)),
            )),
        }
    }
}

fn scalar_string(key: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(SpecError::new(
            key,
            format!("must hold strings, not {}", kind(&other)),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: Value) -> Result<Request> {
        let facts = HostFacts {
            hostname: "node-1.example.com".into(),
            version: "0.0.0".into(),
        };
        parse_request(value.as_object().unwrap(), &facts)
    }

    #[test]
    fn absent_accepts_the_options_of_the_service_but_not_unknown_ones() {
        let full = json!({"state": "absent", "name": "web", "image": "busybox", "announce": 80, "args": "-e A=1"});
        assert!(request(full).unwrap().spec.is_none());
        let err = request(json!({"state": "absent", "name": "web", "imagee": "x"})).unwrap_err();
        assert_eq!(err.field, "imagee");
    }

    #[test]
    fn defaults_follow_the_host_and_the_announce_port_is_published() {
        let spec = request(
            json!({"state": "enabled", "name": "web", "image": "busybox", "announce": "8086"}),
        )
        .unwrap()
        .spec
        .unwrap();
        assert_eq!(spec.host_label, "node-1");
        assert_eq!(spec.container.hostname.as_deref(), Some("node-1-web"));
        assert_eq!(spec.container.ports[0].host_port, Some(8086));
        let announce = spec.announce.unwrap();
        assert_eq!((announce.ttl, announce.interval), (60, 45));
        assert_eq!(announce.domain, DEFAULT_DOMAIN);
    }

    #[test]
    fn announcing_a_port_published_elsewhere_is_refused() {
        let err = request(
            json!({"state": "enabled", "name": "web", "image": "busybox",
                                 "args": "-p 9000:8086", "announce": 8086}),
        )
        .unwrap_err();
        assert_eq!(err.field, "announce");
    }
}
