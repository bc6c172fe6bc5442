//! Module parameters → validated [`Request`]: the Ansible side of the contract.
//!
//! Ansible neither validates, defaults, converts nor masks the arguments of a binary
//! module, so all of that happens here: ad hoc `-a 'k=v'` gives every value as a string
//! and playbooks keep JSON types, so each option is coerced the way Ansible coerces it
//! (ints from numeric strings, booleans from yes/no/true/false/1/0, lists from comma
//! strings) and every error names its option. Which options exist, their defaults and
//! choices come from [`crate::options::OPTIONS`]; the values themselves are parsed by
//! the types of `rundock_spec`, which the runtime uses too.

use crate::options::{self, option, Scope};
use rundock_spec::dockerargs::{self, split_words_on, DockerArgs};
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use rundock_spec::*;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// `interval` when not given: three quarters of `ttl`, at most this.
const DEFAULT_INTERVAL: u32 = 45;

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
    /// How long a change waits for the service's deploy lock ([`crate::lock`]).
    pub lock_timeout: std::time::Duration,
    /// How many revisions the tree keeps (`history`).
    pub history: usize,
    /// `rollback`: install a kept revision instead of a spec from the options.
    pub rollback: Option<rundock_spec::revisions::RollbackTarget>,
}

/// Ansible's answer to options a module does not have, in the words `AnsibleModule`
/// uses for a Python module ("Unsupported parameters for (NAME) module: a, b. Supported
/// parameters include: ..."), with a suggestion beside a near miss. Checked before
/// anything else, so a misspelt `image` is reported as such and not as a missing one.
/// The module's own keys (`_ansible_*`) are Ansible's, never unsupported.
pub fn unsupported_parameters(params: &Map<String, Value>) -> Option<String> {
    let unknown: BTreeSet<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("_ansible_") && !options::is_option(k))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    // Ansible names the module as the task called it (`rundock.rundock.rundock`, `rundock`).
    let module = params
        .get("_ansible_module_name")
        .and_then(Value::as_str)
        .unwrap_or("rundock");
    let named: Vec<String> = unknown
        .iter()
        .map(|k| match options::closest(k) {
            Some(option) => format!("{k} (did you mean {option}?)"),
            None => k.to_string(),
        })
        .collect();
    let mut supported: Vec<&str> = options::OPTIONS.iter().map(|o| o.name).collect();
    supported.sort_unstable();
    Some(format!(
        "Unsupported parameters for ({module}) module: {}. Supported parameters include: {}.",
        named.join(", "),
        supported.join(", ")
    ))
}

pub fn parse_request(params: &Map<String, Value>, facts: &HostFacts) -> Result<Request> {
    let mut p = Params::top_level(params)?;
    let state = match p.choice("state")? {
        Some("present") => State::Present,
        Some("enabled") => State::Enabled,
        Some("disabled") => State::Disabled,
        Some("absent") => State::Absent,
        Some("restarted") => State::Restarted,
        _ => {
            return Err(SpecError::new(
                "state",
                format!("is required: {}", one_of_words(options::STATES)),
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
    let install_dir = p.path_or_default("install_dir")?;
    let paths = Paths {
        sv_dir: p.path_or_default("sv_dir")?,
        service_dir: p.path_or_default("service_dir")?,
        log_dir: p.path_or_default("log_dir")?,
        runner: install_dir.join(&facts.version).join("rundock"),
    };
    let wait_timeout = p.seconds("wait_timeout", 1, 3600)?;
    let wait = p
        .boolean_or_default("wait")?
        .then(|| std::time::Duration::from_secs(wait_timeout.into()));
    let lock_timeout = std::time::Duration::from_secs(p.seconds("lock_timeout", 0, 86_400)?.into());
    let history = match p.int("history")? {
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(SpecError::new(
                "history",
                format!("{n} is out of range: a number of revisions from 1 to 100"),
            ))
        }
        None => option("history")
            .default_int()
            .expect("the table has a default") as usize,
    };
    let rollback = match p.string("rollback")? {
        Some(text) => Some(
            text.parse::<rundock_spec::revisions::RollbackTarget>()
                .map_err(|e| SpecError::new("rollback", e))?,
        ),
        None => None,
    };
    let image = p.string("image")?;
    if rollback.is_some() {
        if !matches!(state, State::Enabled | State::Restarted) {
            return Err(SpecError::new(
                "rollback",
                format!(
                    "works with state=enabled or state=restarted, not state={}",
                    state.as_str()
                ),
            ));
        }
        // The revision is the spec: options that would make another one are refused.
        let given: Vec<&str> = options::OPTIONS
            .iter()
            .filter(|o| o.scope != options::Scope::Call)
            .filter(|o| p.has(o.name) || (o.name == "image" && image.is_some()))
            .map(|o| o.name)
            .collect();
        if !given.is_empty() {
            return Err(SpecError::new(
                "rollback",
                format!(
                    "installs a kept revision's whole spec, so it takes no service options; remove {}",
                    given.join(", ")
                ),
            ));
        }
        p.finish()?;
        return Ok(Request {
            state,
            name,
            paths,
            install_dir,
            spec: None,
            wait,
            lock_timeout,
            history,
            rollback,
        });
    }
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
        p.values.retain(|key, _| !options::is_option(key));
    }
    p.finish()?;
    Ok(Request {
        state,
        name,
        paths,
        install_dir,
        spec,
        wait,
        lock_timeout,
        history,
        rollback,
    })
}

fn build_spec(
    p: &mut Params,
    name: String,
    image: &str,
    paths: Paths,
    facts: &HostFacts,
) -> Result<Spec> {
    let image = parse_as::<ImageRef>("image", image)?;
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
        .map(rundock_spec::watch::parse_option)
        .transpose()?;
    let watch_own = match (&watch_templates, p.has("announce")) {
        (Some(_), false) => Some((
            validate::domain("domain", &p.string_or_default("domain")?)?,
            etcd_spec(p)?,
        )),
        _ => None,
    };
    let announce = announce_spec(p, &mut container)?;
    if let Some(announce) = &announce {
        check_health_ports(announce, &container)?;
    }
    let watch = watch_templates.map(|templates| {
        let (domain, etcd) = watch_own.unwrap_or_else(|| {
            let a = announce.as_ref().expect("announce was given");
            (a.domain.clone(), a.etcd.clone())
        });
        rundock_spec::watch::WatchSpec {
            domain,
            etcd,
            templates,
        }
    });
    let drain = p.seconds("drain", 0, 3600)?;
    let hooks = hooks(p)?;
    let requires = match &announce {
        Some(a) => requires(p, &a.domain)?,
        None => None,
    };
    let start_first = start_first(p, announce.as_ref())?;
    let drain_mode = match p.choice_or_default("drain_mode")? {
        "idle" => DrainMode::Idle,
        _ => DrainMode::Fixed,
    };
    let interfaces = Interfaces {
        private: p.interfaces("private_interface")?,
        public: p.interfaces("public_interface")?,
    };
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
        hooks,
        requires,
        drain_mode,
        start_first,
    })
}

/// A fixed `announce` probes host ports: a check must name the announced port or one
/// `ports`/`-p` publishes, else it probes whatever else listens there (or nothing) and
/// the record never comes. With `announce: auto` a check names the container port,
/// which the announcer translates to the host port Docker chose; naming the container
/// port under a fixed announce is that mix-up, so the message says both rules. With
/// `announce_as: container` or the host's network, probes reach the container's own
/// ports, so any port may be meant.
fn check_health_ports(announce: &AnnounceSpec, container: &ContainerSpec) -> Result<()> {
    if announce.auto_port
        || announce.announce_as == rundock_spec::AnnounceAs::Container
        || container.network.as_deref() == Some("host")
    {
        return Ok(());
    }
    for (i, check) in announce.health.iter().enumerate() {
        let (kind, port) = match &check.check {
            CheckKind::Http { port, .. } => ("http", *port),
            CheckKind::Tcp { port } => ("tcp", *port),
            CheckKind::Exec { .. } => continue,
        };
        let published = port == announce.port
            || container
                .ports
                .iter()
                .any(|mapping| mapping.host_port == Some(port));
        if published {
            continue;
        }
        let hint = if port == announce.container_port {
            format!(
                "; with a fixed announce a check names the host port ({kind}:{}), only with \
                 announce: auto does it name the container port",
                announce.port
            )
        } else {
            String::new()
        };
        return Err(SpecError::new(
            format!("health[{i}]"),
            format!(
                "{kind}:{port} probes host port {port}, which is neither the announced port ({}) \
                 nor one that ports or args publish{hint}",
                announce.port
            ),
        ));
    }
    Ok(())
}

/// `requires` (names qualified with `domain` when they have no dot),
/// `requires_timeout`, `requires_on_timeout`.
fn requires(p: &mut Params, domain: &str) -> Result<Option<rundock_spec::Requires>> {
    let timeout = p.seconds("requires_timeout", 1, 86_400)?;
    let on_timeout = match p.choice_or_default("requires_on_timeout")? {
        "fail" => rundock_spec::OnTimeout::Fail,
        _ => rundock_spec::OnTimeout::Start,
    };
    let Some(names) = p.words("requires")? else {
        return Ok(None);
    };
    let names = names
        .iter()
        .map(|name| {
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            let name = if name.contains('.') {
                name
            } else {
                format!("{name}.{domain}")
            };
            validate::domain("requires", &name)
        })
        .collect::<Result<Vec<_>>>()?;
    if names.is_empty() {
        return Ok(None);
    }
    Ok(Some(rundock_spec::Requires {
        names,
        timeout,
        on_timeout,
    }))
}

/// `post_start`, `pre_stop`, `post_stop` with `hooks_on_host` and `hook_timeout`.
fn hooks(p: &mut Params) -> Result<rundock_spec::Hooks> {
    let on_host = p.boolean_or_default("hooks_on_host")?;
    let timeout = p.seconds("hook_timeout", 1, 3600)?;
    let mut hook = |key: &str, on_host: bool| -> Result<Option<rundock_spec::Hook>> {
        match p.command(key)? {
            Some(command) if command.is_empty() => Err(SpecError::new(
                key,
                "must not be empty: give the command's argv",
            )),
            Some(command) => Ok(Some(rundock_spec::Hook {
                command,
                on_host,
                timeout,
            })),
            None => Ok(None),
        }
    };
    Ok(rundock_spec::Hooks {
        post_start: hook("post_start", on_host)?,
        pre_stop: hook("pre_stop", on_host)?,
        post_stop: hook("post_stop", true)?,
    })
}

fn container_spec(
    p: &mut Params,
    name: &str,
    host_label: &str,
    image: ImageRef,
    args: DockerArgs,
) -> Result<ContainerSpec> {
    let pull = match p.choice_or_default("pull")? {
        "always" => PullPolicy::Always,
        "never" => PullPolicy::Never,
        _ => PullPolicy::Missing,
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
    let privileged = p.boolean_or_default("privileged")? || args.privileged;
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
        stop_timeout: p.seconds("stop_timeout", 0, 3600)?,
    })
}

/// `<host>-<name>`, cut to one DNS label.
fn default_hostname(host_label: &str, name: &str) -> String {
    let mut hostname = format!("{host_label}-{name}");
    hostname.truncate(63);
    hostname.trim_end_matches('-').to_string()
}

fn announce_spec(p: &mut Params, container: &mut ContainerSpec) -> Result<Option<AnnounceSpec>> {
    // `auto`, or a port number.
    let auto_port = p
        .values
        .get("announce")
        .is_some_and(|v| v.as_str().is_some_and(|s| s.trim() == "auto"));
    let announce = if auto_port {
        p.take("announce");
        Some(0)
    } else {
        p.int("announce").map_err(|e| {
            SpecError::new(
                "announce",
                format!("{}; it takes a port (1-65535) or auto", e.message),
            )
        })?
    };
    let Some(announce) = announce else {
        let announce_only = options::OPTIONS
            .iter()
            .filter(|o| o.scope == Scope::Announce);
        for dependent in announce_only {
            if p.has(dependent.name) {
                return Err(SpecError::new(
                    dependent.name,
                    "only applies to announced services: set announce to the host port to announce",
                ));
            }
        }
        return Ok(None);
    };
    let container_port = match p.int("port")? {
        Some(n) => Some(validate::port("port", n)?),
        None => None,
    };
    let (port, container_port) = match (auto_port, container_port) {
        (true, Some(container_port)) => (0, container_port),
        (true, None) => {
            return Err(SpecError::new(
                "announce",
                "auto needs port: the container port Docker publishes on a host port it picks",
            ))
        }
        (false, container_port) => {
            let port = validate::port("announce", announce)?;
            (port, container_port.unwrap_or(port))
        }
    };
    let announce_as = match p.validated("announce_as", parse_as::<AnnounceAs>)? {
        Some(choice) => choice,
        None => parse_as(
            "announce_as",
            option("announce_as").default_str().unwrap_or_default(),
        )?,
    };
    if announce_as == AnnounceAs::Container && auto_port {
        return Err(SpecError::new(
            "announce",
            "auto publishes a host port, and announce_as=container publishes none (the record carries the container's own address and port): give announce the container port",
        ));
    }
    if auto_port {
        if container
            .ports
            .iter()
            .any(|m| m.container_port == container_port && m.protocol == Protocol::Tcp)
        {
            return Err(SpecError::new(
                "announce",
                format!(
                    "auto publishes container port {container_port} itself, on the announce address: remove its ports/args -p entry"
                ),
            ));
        }
        // Docker picks the host port (HostPort ""), bound on the announce address only.
        container.ports.push(PortMapping {
            host_ip: Some(HostIp::Address(announce_as.clone())),
            host_port: None,
            container_port,
            protocol: Protocol::Tcp,
        });
    } else if announce_as == AnnounceAs::Container {
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
            // Announcing a port nobody can reach is never what is meant: publish it, on
            // the address the record carries and nowhere else (a backend announced as
            // private must not answer on the host's public interface).
            container.ports.push(PortMapping {
                host_ip: Some(HostIp::Address(announce_as.clone())),
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
    let domain = validate::domain("domain", &p.string_or_default("domain")?)?;
    let ttl = p.seconds("ttl", 2, 86_400)?;
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
    let dns_ttl = match p.int("dns_ttl")? {
        Some(n) => validate::seconds("dns_ttl", n, 1, 86_400)?,
        None => option("dns_ttl").default_int().unwrap_or(1).min(ttl),
    };
    if dns_ttl > ttl {
        return Err(SpecError::new(
            "dns_ttl",
            format!(
                "{dns_ttl} must not exceed ttl ({ttl}): a resolver must not keep a record longer than it can outlive its announcer"
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
    let unhealthy_after = match p.int("unhealthy_after")? {
        None => option("unhealthy_after").default_int().unwrap_or(0),
        Some(n @ 0..=MAX_UNHEALTHY_AFTER) => n as u32,
        Some(n) => {
            return Err(SpecError::new(
                "unhealthy_after",
                format!("{n} is out of range: 0 (never replace) or a number of failed check rounds from 1 to {MAX_UNHEALTHY_AFTER}"),
            ))
        }
    };
    Ok(Some(AnnounceSpec {
        port,
        auto_port,
        container_port,
        announce_as,
        domain,
        etcd,
        ttl,
        dns_ttl,
        interval,
        health,
        priority,
        weight,
        text,
        unhealthy_after,
    }))
}

/// The most failed rounds `unhealthy_after` waits for: beyond it a service is better
/// off with 0 (never replace) than with a rule that never fires in practice.
const MAX_UNHEALTHY_AFTER: i64 = 1000;

/// `update` and `update_timeout`. Start-first runs two containers of the service at
/// once, so they cannot share a host port: it needs a port Docker picks
/// (`announce: auto`), whose record SRV clients follow.
fn start_first(p: &mut Params, announce: Option<&AnnounceSpec>) -> Result<Option<StartFirst>> {
    let order = p.choice_or_default("update")?;
    let timeout = p.seconds("update_timeout", 1, 3600)?;
    if order != "start-first" {
        return Ok(None);
    }
    let announce = announce.expect("update is refused without announce");
    if announce.announce_as == AnnounceAs::Container {
        return Err(SpecError::new(
            "update",
            "start-first needs a published port Docker picks (announce: auto); announce_as=container publishes none and its record carries the container's address, which changes with every container",
        ));
    }
    if !announce.auto_port {
        return Err(SpecError::new(
            "update",
            format!(
                "start-first runs the new container beside the old one, and both cannot bind host port {}: use announce: auto (SRV clients follow the port)",
                announce.port
            ),
        ));
    }
    Ok(Some(StartFirst { timeout }))
}

fn small(field: &str, n: i64) -> Result<u16> {
    u16::try_from(n).map_err(|_| {
        SpecError::new(
            field,
            format!("{n} is out of range: a whole number from 0 to 65535"),
        )
    })
}

/// Parses `value` as `T`, the one parser the runtime uses too; the error names `field`.
fn parse_as<T>(field: &str, value: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| SpecError::new(field, e.to_string()))
}

/// `a, b or c` for messages.
fn one_of_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn etcd_spec(p: &mut Params) -> Result<EtcdSpec> {
    let mut spec = EtcdSpec::new(
        vec![DEFAULT_ETCD_ENDPOINT
            .parse()
            .expect("the default endpoint parses")],
        EtcdApi::V3,
    );
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
                .map(|ep| parse_as::<EtcdEndpoint>("endpoints", ep))
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
        spec.check_tls()
            .map_err(|(field, why)| SpecError::new(field, why))?;
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
    let interval = h.seconds_or("interval", 5, 1, 3600)?;
    let timeout = h.seconds_or("timeout", 2.min(interval), 1, 3600)?;
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
/// At the top level (the module's own options) every key asked for is a row of the
/// option table, and the `*_or_default` accessors take the table's default.
struct Params {
    values: BTreeMap<String, Value>,
    top_level: bool,
}

impl Params {
    fn top_level(map: &Map<String, Value>) -> Result<Self> {
        let mut params = Params::new(map)?;
        params.top_level = true;
        Ok(params)
    }

    fn new(map: &Map<String, Value>) -> Result<Self> {
        let values = map
            .iter()
            .filter(|(k, _)| !k.starts_with("_ansible_"))
            // Ansible sends `null` for options a play leaves unset (`x: "{{ omit }}"` aside).
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Params {
            values,
            top_level: false,
        })
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        debug_assert!(
            !self.top_level || options::is_option(key),
            "{key} is read but not in the option table"
        );
        self.values.remove(key)
    }

    /// A string option that must be one of the table's choices for `key`.
    fn choice(&mut self, key: &str) -> Result<Option<&'static str>> {
        let choices = option(key).choices;
        match self.string(key)? {
            None => Ok(None),
            Some(value) => choices
                .iter()
                .find(|c| **c == value)
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    SpecError::new(
                        key,
                        format!("{} is not one of {}", quoted(&value), one_of_words(choices)),
                    )
                }),
        }
    }

    fn choice_or_default(&mut self, key: &str) -> Result<&'static str> {
        Ok(self
            .choice(key)?
            .or(option(key).default_str())
            .expect("a choice option has a default in the table"))
    }

    fn string_or_default(&mut self, key: &str) -> Result<String> {
        Ok(match self.string(key)? {
            Some(value) => value,
            None => option(key)
                .default_str()
                .expect("the table has a default")
                .to_string(),
        })
    }

    fn path_or_default(&mut self, key: &str) -> Result<PathBuf> {
        match self.path(key)? {
            Some(path) => Ok(path),
            None => validate::absolute_path(key, option(key).default_str().unwrap_or_default()),
        }
    }

    fn boolean_or_default(&mut self, key: &str) -> Result<bool> {
        Ok(self
            .boolean(key)?
            .or(option(key).default_bool())
            .unwrap_or(false))
    }

    /// An interface list; an empty list names no interface, so it means the default.
    fn interfaces(&mut self, key: &str) -> Result<Vec<InterfaceChoice>> {
        let given = self.validated_list(key, parse_as::<InterfaceChoice>)?;
        if !given.is_empty() {
            return Ok(given);
        }
        option(key)
            .default_list()
            .unwrap_or_default()
            .iter()
            .map(|name| parse_as(key, name))
            .collect()
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
                format!("must be a string, not {}", validate::json_kind(&other)),
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
                format!(
                    "must be a whole number, not {}",
                    validate::json_kind(&other)
                ),
            )),
        }
    }

    fn required_int(&mut self, key: &str) -> Result<i64> {
        self.int(key)?
            .ok_or_else(|| SpecError::new(key, "is required: a whole number"))
    }

    /// Whole seconds within `min..=max`, the table's default when not given.
    fn seconds(&mut self, key: &str, min: i64, max: i64) -> Result<u32> {
        let default = option(key).default_int().expect("the table has a default");
        self.seconds_or(key, default, min, max)
    }

    fn seconds_or(&mut self, key: &str, default: u32, min: i64, max: i64) -> Result<u32> {
        match self.int(key)? {
            Some(n) => validate::seconds(key, n, min, max),
            None => Ok(default),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => ansible_bool(&value).map(Some).ok_or_else(|| {
                let shown = match &value {
                    Value::String(s) => quoted(s),
                    Value::Number(n) => n.to_string(),
                    other => validate::json_kind(other).to_string(),
                };
                SpecError::new(
                    key,
                    format!("{shown} is not a boolean: yes/no, true/false, on/off or 1/0"),
                )
            }),
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
                format!(
                    "must be a list of strings, not {}",
                    validate::json_kind(&other)
                ),
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
                    validate::json_kind(&other)
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
                format!("must be a mapping, not {}", validate::json_kind(&other)),
            )),
        }
    }
}

/// A boolean as Ansible reads one: JSON booleans, 1/0, and yes/no, y/n, true/false, t/f,
/// on/off, 1/0 in any case. The module's own flags (`_ansible_check_mode`) and its
/// boolean options go through this one reading.
pub fn ansible_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "t" | "on" | "1" => Some(true),
            "no" | "n" | "false" | "f" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn scalar_string(key: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(SpecError::new(
            key,
            format!("must hold strings, not {}", validate::json_kind(&other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsupported_parameters_name_the_module_as_ansible_called_it() {
        let args = |extra: Value| {
            let mut map: Map<String, Value> = serde_json::from_value(json!({
                "state": "enabled", "name": "web", "_ansible_check_mode": true,
                "_ansible_module_name": "rundock.rundock.rundock"
            }))
            .unwrap();
            map.extend(extra.as_object().unwrap().clone());
            map
        };
        assert_eq!(unsupported_parameters(&args(json!({}))), None);
        let msg = unsupported_parameters(&args(json!({"imgae": null}))).unwrap();
        assert!(
            msg.starts_with(
                "Unsupported parameters for (rundock.rundock.rundock) module: imgae (did you mean image?). \
                 Supported parameters include: announce, announce_as, args, "
            ),
            "{msg}"
        );
        assert!(msg.ends_with(", workdir."), "{msg}");
    }

    fn request(value: Value) -> Result<Request> {
        let facts = HostFacts {
            hostname: "node-1.example.com".into(),
            version: "0.0.0".into(),
        };
        parse_request(value.as_object().unwrap(), &facts)
    }

    #[test]
    fn a_check_of_a_port_nothing_publishes_is_refused_and_the_auto_rule_explained() {
        let base = json!({"state": "present", "name": "web", "image": "busybox",
                          "announce": 27080, "port": 8080});
        let with = |extra: Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k.as_str()] = x.clone();
            }
            request(v)
        };
        let err = with(json!({"health": ["http:8080/"]}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("health[0]: http:8080 probes host port 8080"),
            "{err}"
        );
        assert!(
            err.contains("(http:27080)") && err.contains("announce: auto"),
            "{err}"
        );
        let err = with(json!({"health": ["tcp:27080", "tcp:9999"]}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("health[1]: tcp:9999"), "{err}");
        assert!(!err.contains("announce: auto"), "{err}");
        // The announced port, a published one, auto, the container's own address and
        // the host's network are fine.
        assert!(with(json!({"health": ["http:27080/"]})).is_ok());
        assert!(with(json!({"health": ["tcp:9090"], "ports": ["127.0.0.1:9090:9090"]})).is_ok());
        assert!(with(json!({"announce": "auto", "health": ["http:8080/"]})).is_ok());
        let container =
            with(json!({"announce_as": "container", "announce": 8080, "health": ["tcp:9000"]}));
        assert!(container.is_ok(), "{:?}", container.err());
        assert!(with(json!({"network": "host", "health": ["tcp:8080"]})).is_ok());
    }

    #[test]
    fn hooks_are_argv_lists_with_a_place_and_a_timeout() {
        let spec = |extra: Value| {
            let mut args = json!({"state": "present", "name": "web", "image": "busybox:1"});
            for (k, v) in extra.as_object().unwrap() {
                args[k] = v.clone();
            }
            request(args)
        };
        let parsed = spec(
            json!({"post_start": "curl -sf localhost", "pre_stop": ["sh", "-c", "x y"],
                                 "post_stop": ["logger", "stopped"], "hook_timeout": "9"}),
        )
        .unwrap();
        let hooks = parsed.spec.unwrap().hooks;
        let post_start = hooks.post_start.unwrap();
        assert_eq!(post_start.command, ["curl", "-sf", "localhost"]);
        assert_eq!((post_start.on_host, post_start.timeout), (false, 9));
        assert_eq!(hooks.pre_stop.unwrap().command, ["sh", "-c", "x y"]);
        assert!(
            hooks.post_stop.unwrap().on_host,
            "post_stop always runs on the host"
        );
        let on_host = spec(json!({"pre_stop": ["true"], "hooks_on_host": "yes"})).unwrap();
        assert!(on_host.spec.unwrap().hooks.pre_stop.unwrap().on_host);
        let none = spec(json!({})).unwrap().spec.unwrap();
        assert!(none.hooks.is_empty());
        assert!(
            !none.to_json().contains("hooks"),
            "no hooks key in spec.json without hooks"
        );
        let empty = spec(json!({"post_start": []})).unwrap_err().to_string();
        assert!(empty.contains("post_start"), "{empty}");
        let zero = spec(json!({"hook_timeout": 0})).unwrap_err().to_string();
        assert!(zero.contains("hook_timeout"), "{zero}");
    }

    #[test]
    fn requires_names_are_qualified_with_the_domain_and_need_announce() {
        let base = json!({"state": "present", "name": "grafana", "image": "grafana:1",
                          "announce": 3000, "domain": "s.example.com"});
        let with = |extra: Value| {
            let mut args = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                args[k] = v.clone();
            }
            request(args)
        };
        let parsed =
            with(json!({"requires": "influxdb, db.other.example.com.", "requires_timeout": 30}))
                .unwrap();
        let requires = parsed.spec.unwrap().requires.unwrap();
        assert_eq!(
            requires.names,
            ["influxdb.s.example.com", "db.other.example.com"]
        );
        assert_eq!(requires.timeout, 30);
        assert_eq!(requires.on_timeout, rundock_spec::OnTimeout::Start);
        let fail = with(json!({"requires": ["influxdb"], "requires_on_timeout": "fail"})).unwrap();
        assert_eq!(
            fail.spec.unwrap().requires.unwrap().on_timeout,
            rundock_spec::OnTimeout::Fail
        );
        let bad = with(json!({"requires": ["in flux"]}))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("requires"), "{bad}");
        let mut unannounced = base.clone();
        unannounced.as_object_mut().unwrap().remove("announce");
        unannounced.as_object_mut().unwrap().remove("domain");
        unannounced["requires"] = json!(["influxdb"]);
        let needs = request(unannounced).unwrap_err().to_string();
        assert!(
            needs.contains("requires") && needs.contains("announce"),
            "{needs}"
        );
    }

    /// A valid value for every row of the option table: the parser must read them all
    /// (an option in the table it ignored would be refused as unknown by `finish`).
    #[test]
    fn the_parser_reads_every_option_of_the_table() {
        let value_for = |o: &options::OptionDef| -> Value {
            match o.name {
                "state" => json!("enabled"),
                "name" => json!("web"),
                "image" => json!("busybox:1"),
                "args" => json!("-e A=1"),
                "ports" => json!(["127.0.0.1:8080:8080"]),
                "volumes" => json!(["/data:/data"]),
                "volumes_from" => json!(["data"]),
                "cap_add" | "cap_drop" => json!(["NET_ADMIN"]),
                "memory" => json!("512m"),
                "cpus" => json!("1.5"),
                "workdir" => json!("/srv"),
                "announce" | "port" => json!(8080),
                "announce_as" => json!("lo"),
                "domain" => json!("s.example.com"),
                "etcd" => json!({"endpoints": ["http://127.0.0.1:2379"]}),
                "ttl" => json!(30),
                "dns_ttl" => json!(5),
                "interval" => json!(20),
                "health" => json!([{"kind": "tcp", "port": 8080}]),
                "text" => json!("t"),
                "watch" => json!([one_watch()]),
                "env" | "labels" => json!({"k": "v"}),
                "command" | "entrypoint" => json!(["sh"]),
                "post_start" | "pre_stop" | "post_stop" => json!(["true"]),
                "requires" => json!(["influxdb"]),
                "requires_on_timeout" => json!("fail"),
                "private_interface" | "public_interface" => json!(["eth0"]),
                "sv_dir" | "service_dir" | "log_dir" | "install_dir" => json!("/srv/x"),
                "hostname" | "container_name" | "host_label" | "user" | "network" => json!("web-1"),
                "pull" => json!("never"),
                "drain_mode" => json!("idle"),
                "update" => json!("stop-first"),
                _ => match o.kind {
                    options::Kind::Bool => json!(true),
                    options::Kind::Int => json!(7),
                    _ => panic!("{}: give it a value in this test", o.name),
                },
            }
        };
        let mut all = Map::new();
        // `rollback` installs a kept revision and refuses service options: its own test.
        for o in options::OPTIONS.iter().filter(|o| o.name != "rollback") {
            all.insert(o.name.to_string(), value_for(o));
        }
        let facts = HostFacts {
            hostname: "node-1".into(),
            version: "0.0.0".into(),
        };
        let request = parse_request(&all, &facts).unwrap();
        assert!(request.spec.is_some());
    }

    #[test]
    fn rollback_takes_the_call_options_only() {
        let facts = HostFacts {
            hostname: "node-1".into(),
            version: "0.0.0".into(),
        };
        let args = |extra: Value| {
            let mut map = json!({"state": "enabled", "name": "web", "sv_dir": "/srv/sv",
                                 "wait": true, "history": 3})
            .as_object()
            .unwrap()
            .clone();
            map.extend(extra.as_object().unwrap().clone());
            map
        };
        let request = parse_request(&args(json!({"rollback": "2"})), &facts).unwrap();
        assert_eq!(
            request.rollback,
            Some(rundock_spec::revisions::RollbackTarget::Number(2))
        );
        assert_eq!(request.history, 3);
        assert!(request.spec.is_none());
        let e = parse_request(
            &args(json!({"rollback": "previous", "image": "busybox", "env": {"A": "1"}})),
            &facts,
        )
        .unwrap_err();
        assert_eq!(e.field, "rollback");
        assert!(e.message.contains("remove image, env"), "{e}");
        let e = parse_request(
            &args(json!({"rollback": "previous", "state": "present"})),
            &facts,
        )
        .unwrap_err();
        assert!(
            e.message.contains("state=enabled or state=restarted"),
            "{e}"
        );
        let e =
            parse_request(&args(json!({"history": 0, "image": "busybox"})), &facts).unwrap_err();
        assert_eq!(e.field, "history");
    }

    #[test]
    fn defaults_come_from_the_table() {
        let spec =
            request(json!({"state": "enabled", "name": "web", "image": "busybox", "announce": 80}))
                .unwrap()
                .spec
                .unwrap();
        assert_eq!(
            spec.container.stop_timeout,
            option("stop_timeout").default_int().unwrap()
        );
        assert_eq!(spec.drain, option("drain").default_int().unwrap());
        assert_eq!(
            spec.paths.sv_dir,
            PathBuf::from(option("sv_dir").default_str().unwrap())
        );
        let announce = spec.announce.unwrap();
        assert_eq!(announce.dns_ttl, option("dns_ttl").default_int().unwrap());
        assert_eq!(announce.ttl, option("ttl").default_int().unwrap());
        assert_eq!(
            announce.announce_as.to_string(),
            option("announce_as").default_str().unwrap()
        );
        let private: Vec<String> = spec
            .interfaces
            .private
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(private, option("private_interface").default_list().unwrap());
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
        assert_eq!(announce.domain, "s.prod.example.com");
    }

    #[test]
    fn an_announced_port_binds_where_the_record_points() {
        let spec = |announce_as: &str| {
            request(
                json!({"state": "enabled", "name": "web", "image": "busybox",
                           "announce": 8086, "announce_as": announce_as}),
            )
            .unwrap()
            .spec
            .unwrap()
        };
        for choice in ["private", "public", "eth1:inet6[1]", "10.0.0.0/8"] {
            let ports = spec(choice).container.ports;
            assert_eq!(ports.len(), 1);
            assert_eq!(
                ports[0].host_ip,
                Some(HostIp::Address(choice.parse().unwrap())),
                "{choice}"
            );
        }
        assert!(
            spec("container").container.ports.is_empty(),
            "container publishes nothing"
        );
        // An explicit mapping stays as written.
        let explicit = request(
            json!({"state": "enabled", "name": "web", "image": "busybox",
                                      "announce": 8086, "ports": ["8086:8086"]}),
        )
        .unwrap()
        .spec
        .unwrap();
        assert_eq!(explicit.container.ports[0].host_ip, None);
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

    fn one_watch() -> Value {
        json!({"names": ["web", "api"], "template": "/etc/rundock/web.conf.j2",
               "dest": "/etc/nginx/conf.d/web.conf",
               "check": ["nginx", "-t"], "reload": ["nginx", "-s", "reload"]})
    }

    fn watch_module(options: Value) -> Result<Request> {
        let facts = HostFacts {
            hostname: "node-1".into(),
            version: "0.0.0".into(),
        };
        let mut args = json!({"state": "present", "name": "front", "image": "nginx"});
        for (k, v) in options.as_object().unwrap() {
            args[k] = v.clone();
        }
        parse_request(args.as_object().unwrap(), &facts)
    }

    #[test]
    fn the_module_option_lands_in_the_spec_and_the_tree_gets_a_watch_sibling() {
        // Not announced: the watch takes domain and etcd itself.
        let request = watch_module(json!({"watch": [one_watch()], "domain": "s.test",
                                    "etcd": "http://10.0.0.1:2379"}))
        .unwrap();
        let spec = request.spec.unwrap();
        let watch = spec.watch.as_ref().unwrap();
        assert_eq!(watch.domain, "s.test");
        assert_eq!(watch.etcd.endpoints[0].as_str(), "http://10.0.0.1:2379");
        watch.validate().unwrap();
        let files = rundock_spec::tree::render(&spec);
        let run = files
            .iter()
            .find(|f| f.path == std::path::Path::new("services/watch/run"))
            .expect("services/watch/run");
        assert!(String::from_utf8_lossy(&run.contents).ends_with(" watch '/etc/sv/docker-front'\n"));
        assert!(files
            .iter()
            .any(|f| f.path == std::path::Path::new("services/watch/log/run")));
        let reread = Spec::from_json(&spec.to_json()).unwrap();
        assert_eq!(reread, spec);

        // Announced: the announcer's domain and etcd.
        let request =
            watch_module(json!({"watch": [one_watch()], "announce": 80, "domain": "s.other"}))
                .unwrap();
        assert_eq!(request.spec.unwrap().watch.unwrap().domain, "s.other");

        // Without watch nothing changes: no sibling, no key in spec.json.
        let spec = watch_module(json!({})).unwrap().spec.unwrap();
        assert!(!spec.to_json().contains("watch"));
        assert!(!rundock_spec::tree::render(&spec)
            .iter()
            .any(|f| f.path.starts_with("services/watch")));
    }

    #[test]
    fn module_errors_name_the_entry_and_field() {
        let err =
            watch_module(json!({"watch": [{"names": ["web"], "template": "/t.j2"}]})).unwrap_err();
        assert_eq!(err.field, "watch[0].dest");
        let err = watch_module(json!({"watch": "nope"})).unwrap_err();
        assert_eq!(err.field, "watch");
    }

    fn announced(extra: Value) -> Result<Request> {
        let mut args = json!({"state": "enabled", "name": "web", "image": "busybox"});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        request(args)
    }

    #[test]
    fn announce_auto_lets_docker_pick_the_host_port_on_the_announce_address() {
        let spec = announced(json!({"announce": "auto", "port": "8080", "announce_as": "lo"}))
            .unwrap()
            .spec
            .unwrap();
        let announce = spec.announce.as_ref().unwrap();
        assert!(announce.auto_port);
        assert_eq!((announce.port, announce.container_port), (0, 8080));
        assert_eq!(
            spec.container.ports,
            [PortMapping {
                host_ip: Some(HostIp::Address("lo".parse().unwrap())),
                host_port: None,
                container_port: 8080,
                protocol: Protocol::Tcp,
            }]
        );
        let reread = Spec::from_json(&spec.to_json()).unwrap();
        assert_eq!(reread, spec);
        // A fixed port keeps its spec.json bytes: no auto_port key.
        let fixed = announced(json!({"announce": 80})).unwrap().spec.unwrap();
        assert!(!fixed.to_json().contains("auto_port"));
        assert!(!fixed.announce.unwrap().auto_port);
    }

    #[test]
    fn announce_auto_is_refused_where_it_cannot_work() {
        let message = |extra: Value| {
            let err = announced(extra).unwrap_err();
            assert_eq!(err.field, "announce");
            err.message
        };
        assert!(message(json!({"announce": "auto"})).contains("auto needs port"));
        assert!(
            message(json!({"announce": "auto", "port": 80, "announce_as": "container"}))
                .contains("announce_as=container publishes none")
        );
        assert!(
            message(json!({"announce": "auto", "port": 80, "ports": ["127.0.0.1:81:80"]}))
                .contains("remove its ports/args -p entry")
        );
        assert!(message(json!({"announce": "sometimes"})).contains("a port (1-65535) or auto"));
    }

    #[test]
    fn drain_mode_idle_is_stored_and_needs_an_announced_port() {
        let spec = announced(json!({"announce": 80, "drain": 30, "drain_mode": "idle"}))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!((spec.drain, spec.drain_mode), (30, DrainMode::Idle));
        let json: Value = serde_json::from_str(&spec.to_json()).unwrap();
        assert_eq!(json["drain_mode"], "idle");
        let fixed = announced(json!({"announce": 80})).unwrap().spec.unwrap();
        assert_eq!(fixed.drain_mode, DrainMode::Fixed);
        assert!(!fixed.to_json().contains("drain_mode"));
        let err = announced(json!({"drain_mode": "idle"})).unwrap_err();
        assert_eq!(err.field, "drain_mode");
        let err = announced(json!({"announce": 80, "drain_mode": "soon"})).unwrap_err();
        assert_eq!(err.field, "drain_mode");
    }

    #[test]
    fn unhealthy_after_is_a_count_of_rounds_with_a_default_and_0_for_never() {
        let rounds = |extra: Value| announced(extra).map(|r| r.spec.unwrap().announce.unwrap());
        let default = rounds(json!({"announce": 80})).unwrap();
        assert_eq!(
            default.unhealthy_after,
            option("unhealthy_after").default_int().unwrap()
        );
        let off = rounds(json!({"announce": 80, "unhealthy_after": 0})).unwrap();
        assert_eq!(off.unhealthy_after, 0);
        // The default is left out of spec.json, so a spec written before the option
        // existed is the same spec; any other value is kept.
        let spec = |extra: Value| announced(extra).unwrap().spec.unwrap();
        let written = spec(json!({"announce": 80})).to_json();
        assert!(!written.contains("unhealthy_after"), "{written}");
        let read = Spec::from_json(&written).unwrap();
        assert_eq!(
            read.announce.unwrap().unhealthy_after,
            default.unhealthy_after
        );
        let written = spec(json!({"announce": 80, "unhealthy_after": 0})).to_json();
        let read = Spec::from_json(&written).unwrap();
        assert_eq!(read.announce.unwrap().unhealthy_after, 0);
        for bad in [json!(-1), json!(1001), json!("soon")] {
            let err = rounds(json!({"announce": 80, "unhealthy_after": bad})).unwrap_err();
            assert_eq!(err.field, "unhealthy_after", "{bad}");
        }
        let err = rounds(json!({"announce": 80, "unhealthy_after": 1001})).unwrap_err();
        assert!(err.message.contains("0 (never replace)"), "{}", err.message);
        let err = announced(json!({"unhealthy_after": 3})).unwrap_err();
        assert_eq!(err.field, "unhealthy_after");
    }

    #[test]
    fn start_first_needs_a_port_docker_picks() {
        let spec = announced(
            json!({"announce": "auto", "port": 80, "update": "start-first",
                                    "update_timeout": 30}),
        )
        .unwrap()
        .spec
        .unwrap();
        assert_eq!(spec.start_first, Some(StartFirst { timeout: 30 }));
        let json: Value = serde_json::from_str(&spec.to_json()).unwrap();
        assert_eq!(json["start_first"], json!({"timeout": 30}));
        let stop_first = announced(json!({"announce": "auto", "port": 80})).unwrap();
        assert_eq!(stop_first.spec.unwrap().start_first, None);

        let refused = |extra: Value| {
            let err = announced(extra).unwrap_err();
            (err.field.clone(), err.message)
        };
        let (field, msg) = refused(json!({"announce": 8080, "update": "start-first"}));
        assert_eq!(field, "update");
        assert!(msg.contains("both cannot bind host port 8080"), "{msg}");
        let (field, msg) = refused(json!({"announce": 8080, "announce_as": "container",
                                          "update": "start-first"}));
        assert_eq!(field, "update");
        assert!(
            msg.contains("announce_as=container publishes none"),
            "{msg}"
        );
        let (field, _) = refused(json!({"update": "start-first"}));
        assert_eq!(field, "update", "start-first without announce");
        let (field, _) = refused(json!({"announce": "auto", "port": 80, "update": "later"}));
        assert_eq!(field, "update");
    }
}
