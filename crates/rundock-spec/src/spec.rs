//! The validated service spec: the one source of truth written to `spec.json` and read
//! by the supervisor and the announcer.

use crate::address::{AnnounceAs, HostIp, InterfaceChoice};
use crate::endpoint::EtcdEndpoint;
use crate::image::ImageRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped when the meaning of `spec.json` changes incompatibly.
pub const SPEC_FORMAT: u32 = 2;

/// Substituted at container start with the host's private address (see `rundock-hostip`).
pub const PRIVATE_IP_TOKEN: &str = "$PRIVATE_IP";
/// Substituted at container start with the host's public address.
pub const PUBLIC_IP_TOKEN: &str = "$PUBLIC_IP";

/// Everything one service is, validated: what the module writes to `spec.json` and every process of
/// the tree reads from it, and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Always [`SPEC_FORMAT`]; [`Spec::from_json`] refuses any other.
    pub format: u32,
    /// DNS label; the service, container and DNS names derive from it.
    pub name: String,
    /// This host's name as a DNS label: the record's instance label, the container's
    /// default hostname prefix and its `rundock.host` label.
    pub host_label: String,
    /// The container the supervisor keeps running.
    pub container: ContainerSpec,
    /// Where and how the service is published in etcd; `None` when it is not announced (no record,
    /// no announcer).
    pub announce: Option<AnnounceSpec>,
    /// Where the tree, its link and its logs live on this host.
    pub paths: Paths,
    /// Which interfaces `private`, `public`, `$PRIVATE_IP` and `$PUBLIC_IP` resolve through.
    pub interfaces: Interfaces,
    /// Seconds between withdrawing the record and stopping the container.
    pub drain: u32,
    /// Templates rendered from live records (`services/watch`); absent from the JSON
    /// when unset, so trees without it keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<crate::watch::WatchSpec>,
    /// Commands around the container's start and stop (absent from spec.json when none).
    #[serde(default, skip_serializing_if = "crate::hooks::Hooks::is_empty")]
    pub hooks: crate::hooks::Hooks,
    /// Services that must be announced before the container starts (announced
    /// services only: the names are looked up in the same etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<crate::hooks::Requires>,
    /// How the drain ends: after `drain` seconds, or as soon as the container is idle
    /// (at most `drain` seconds). Absent from the JSON when fixed, so older trees keep
    /// their bytes.
    #[serde(default, skip_serializing_if = "DrainMode::is_fixed")]
    pub drain_mode: DrainMode,
    /// `update: start-first`: a changed container starts beside the old one and takes
    /// over its record once healthy. Absent (stop-first) from the JSON by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_first: Option<StartFirst>,
}

/// How a start-first update goes (see the supervisor's `switch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartFirst {
    /// Seconds the new container has to pass its health checks and take the record.
    pub timeout: u32,
}

/// The default of `update_timeout` ([`StartFirst::timeout`]): the module's option table
/// and every reader of a spec without `start_first` use this one value.
pub const DEFAULT_UPDATE_TIMEOUT: u32 = 60;

impl StartFirst {
    /// Seconds a start-first update gives its new container: the spec's
    /// `update_timeout`, or [`DEFAULT_UPDATE_TIMEOUT`] when the spec has no
    /// `start_first` (an interrupted switch finished under a stop-first spec).
    pub fn timeout_of(start_first: Option<StartFirst>) -> u32 {
        start_first.map_or(DEFAULT_UPDATE_TIMEOUT, |s| s.timeout)
    }
}

/// Where the supervisor leaves the outcome of a start-first update for the module, in
/// its working directory (the tree's `services/container`).
pub const UPDATE_FILE: &str = "rundock-update.json";

/// The name of the second container of a start-first update while it proves itself.
pub fn next_container_name(container_name: &str) -> String {
    format!("{container_name}-next")
}

/// The name the old container of a start-first update carries while it drains.
pub fn old_container_name(container_name: &str) -> String {
    format!("{container_name}-old")
}

/// How a drain ends (see [`Spec::drain`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainMode {
    /// Wait the whole `drain` seconds.
    #[default]
    Fixed,
    /// Wait until the container has no established TCP connection on its served port
    /// and accepted none for a moment, at most `drain` seconds.
    Idle,
}

impl DrainMode {
    /// Whether this is [`DrainMode::Fixed`], the default left out of `spec.json`.
    pub fn is_fixed(&self) -> bool {
        *self == DrainMode::Fixed
    }

    /// The option's spelling: `fixed` or `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainMode::Fixed => "fixed",
            DrainMode::Idle => "idle",
        }
    }
}

/// The container of a service, exactly as the supervisor creates it; its serialized form is what
/// [`Spec::container_hash`] digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The Docker container's name: `container_name`, else the service name.
    pub container_name: String,
    /// The image reference, parsed and checked once (registry, repository, tag or digest).
    pub image: ImageRef,
    /// When the supervisor pulls the image before a start.
    pub pull: PullPolicy,
    /// `None`: the image's own command.
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint; `None` keeps it.
    pub entrypoint: Option<Vec<String>>,
    /// Values may be secrets: never logged, masked in diffs.
    pub env: BTreeMap<String, String>,
    /// Published ports: those of `args -p`, then `ports`, then any mapping added for the
    /// announced port.
    pub ports: Vec<PortMapping>,
    /// Bind mounts and volumes, `SOURCE:TARGET[:OPTIONS]`, each validated.
    pub volumes: Vec<String>,
    /// Containers whose volumes are mounted too, `NAME[:ro|:rw]`.
    pub volumes_from: Vec<String>,
    /// Labels set on the container besides rundock's own ([`LABEL_SERVICE`], [`LABEL_SPEC`],
    /// [`LABEL_HOST`]).
    pub labels: BTreeMap<String, String>,
    /// The container's hostname; `None` leaves Docker's default.
    pub hostname: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; `None` runs as the image's user.
    pub user: Option<String>,
    /// The working directory, an absolute path; `None` keeps the image's.
    pub workdir: Option<String>,
    /// `host`, `bridge`, `none`, `container:NAME` or a network name; `None` is Docker's default
    /// network.
    pub network: Option<String>,
    /// Docker's `--privileged` (every capability and device); false unless asked for.
    pub privileged: bool,
    /// Capabilities added, named without the `CAP_` prefix, or `ALL`.
    pub cap_add: Vec<String>,
    /// Capabilities dropped, in the same form.
    pub cap_drop: Vec<String>,
    /// Bytes.
    pub memory: Option<u64>,
    /// Billionths of a CPU, as Docker's `NanoCpus`.
    pub nano_cpus: Option<u64>,
    /// Seconds `docker stop` waits before it kills.
    pub stop_timeout: u32,
    /// Docker's own log of the container; `None` for the default
    /// ([`crate::dockerlog::DockerLog::default`]), so specs written before the option
    /// read and hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_log: Option<crate::dockerlog::DockerLog>,
}

/// When the supervisor pulls the image (`pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Before every start, so a moved tag is followed.
    Always,
    /// Only when the image is not on the host.
    Missing,
    /// Never: a missing image fails the start.
    Never,
}

impl PullPolicy {
    /// The option's spelling: `always`, `missing` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::Missing => "missing",
            PullPolicy::Never => "never",
        }
    }
}

/// The protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, the default when a mapping names none.
    Tcp,
    /// UDP (`/udp`).
    Udp,
}

impl Protocol {
    /// Docker's spelling, as in `80/tcp`: `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `-p` mapping. `host_ip` is an address, or an address choice (`$PRIVATE_IP`,
/// `$PUBLIC_IP`, the announce choice) resolved on the host when the container is
/// created; `None` binds every address, as Docker does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Where the port binds on the host; `None` binds every address.
    pub host_ip: Option<HostIp>,
    /// `None`: Docker picks a free port (from `host_port_range` when there is one).
    pub host_port: Option<u16>,
    /// With `host_port` `None`: the host ports Docker picks from (`announce_port_range`);
    /// `None`: its ephemeral range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_range: Option<PortRange>,
    /// The container's port the host port forwards to (1-65535).
    pub container_port: u16,
    /// TCP unless the mapping says `/udp`.
    pub protocol: Protocol,
}

/// An inclusive range of host ports, `FIRST-LAST` as Docker's `-p` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// The lowest port of the range, at least 1.
    pub first: u16,
    /// The highest port, not below `first`.
    pub last: u16,
}

impl PortRange {
    /// `FIRST-LAST`, two ports with `FIRST <= LAST`.
    pub fn parse(field: &str, value: &str) -> crate::error::Result<PortRange> {
        let bad = || {
            crate::error::SpecError::new(
                field,
                format!(
                    "{} is not a port range: FIRST-LAST, two ports from 1 to 65535 with FIRST <= LAST, such as 30000-30100",
                    crate::validate::quoted(value)
                ),
            )
        };
        let (first, last) = value.trim().split_once('-').ok_or_else(bad)?;
        let port = |text: &str| match text.parse::<u16>() {
            Ok(n) if n > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(bad()),
        };
        let (first, last) = (port(first)?, port(last)?);
        if first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// How a service is published in etcd: its record, the etcd it goes to, and the health checks that
/// decide whether it exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceSpec {
    /// The port written into the record (the host port clients connect to); 0 with
    /// `auto_port`, whose port is read from the container.
    pub port: u16,
    /// `announce: auto`: Docker picks a free host port for `container_port` on the
    /// announce address; the announcer publishes the port Docker chose, read from the
    /// container, and health checks naming `container_port` probe it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_port: bool,
    /// The container port it maps to.
    pub container_port: u16,
    /// Which address the record carries, and where an announced port is published.
    pub announce_as: AnnounceAs,
    /// e.g. `s.prod.example.com`; the record answers for `NAME.DOMAIN`.
    pub domain: String,
    /// The etcd the record is written to.
    pub etcd: EtcdSpec,
    /// Seconds a record outlives a dead announcer: the etcd lease TTL (v2: key TTL).
    pub ttl: u32,
    /// The record's own `ttl`: what SkyDNS-compatible servers answer with, so how long
    /// resolvers may keep an instance after its record is gone. At most `ttl`.
    pub dns_ttl: u32,
    /// Seconds between refreshes; always < ttl.
    pub interval: u32,
    /// Checks that must all pass before the record is published; empty: running is enough.
    pub health: Vec<HealthCheck>,
    /// The record's SRV priority; `None` leaves it out of the record.
    pub priority: Option<u16>,
    /// The record's SRV weight; `None` leaves it out of the record.
    pub weight: Option<u16>,
    /// The record's TXT text, free of control characters
    /// ([`crate::skydns::is_record_text`], which readers apply too); `None` leaves it out.
    pub text: Option<String>,
    /// Failed rounds of a health check in a row, after the container passed them all
    /// once, that make the announcer ask the supervisor to replace it; 0 never does.
    /// The default is left out of `spec.json`, so a spec written before the option
    /// existed reads as the default and an upgrade rewrites no spec (restarts no tree).
    #[serde(
        default = "default_unhealthy_after",
        skip_serializing_if = "is_default_unhealthy_after"
    )]
    pub unhealthy_after: u32,
}

/// `unhealthy_after` when the module is not given one (see [`AnnounceSpec`]).
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;

fn default_unhealthy_after() -> u32 {
    DEFAULT_UNHEALTHY_AFTER
}

fn is_default_unhealthy_after(rounds: &u32) -> bool {
    *rounds == DEFAULT_UNHEALTHY_AFTER
}

/// How to reach etcd: the endpoints, the protocol, TLS and authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// Tried in order (the client fails over); never empty.
    pub endpoints: Vec<EtcdEndpoint>,
    /// Which etcd API the endpoints speak.
    pub api: EtcdApi,
    /// Key prefix, `/skydns` by default.
    pub prefix: String,
    /// The CA that signed etcd's certificate; required with an `https` endpoint (no system roots
    /// are trusted).
    pub ca_file: Option<PathBuf>,
    /// A client certificate for TLS; given together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key; given together with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The etcd user; `None` connects without authentication.
    pub username: Option<String>,
    /// A secret: masked in diffs, never logged.
    pub password: Option<String>,
}

/// The etcd API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdApi {
    /// etcd v3 through its JSON gateway (`/v3/...`), with leases.
    V3,
    /// The v2 keys API (`/v2/keys`), with key TTLs.
    V2,
}

/// One health check and how often it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The probe: an HTTP GET, a TCP connect or a command in the container.
    pub check: CheckKind,
    /// Seconds between probes.
    pub interval: u32,
    /// Seconds one probe may take.
    pub timeout: u32,
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum CheckKind {
    /// 2xx from `http://<announced address>:<port><path>`.
    Http {
        /// The port probed on the announced address; with `announce: auto`, naming the
        /// container port probes the host port Docker chose for it.
        port: u16,
        /// The request path: starts with `/`, no spaces or control characters (`/` when
        /// not given).
        path: String,
    },
    /// A TCP connect to `<announced address>:<port>`.
    Tcp {
        /// The port connected to, as for `Http`.
        port: u16,
    },
    /// A command run inside the container (`docker exec`); exit 0 passes.
    Exec {
        /// The argv, run without a shell; never empty.
        command: Vec<String>,
    },
}

/// Where things live on the host. Tests point these at temp dirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// Where service trees are made (`/etc/sv` by default).
    pub sv_dir: PathBuf,
    /// The directory runsvdir scans, where the enabling link goes (`/etc/service` by default).
    pub service_dir: PathBuf,
    /// Where svlogd keeps the logs, one directory per service (`/var/log/rundock` by default).
    pub log_dir: PathBuf,
    /// The rundock binary the run scripts exec.
    pub runner: PathBuf,
}

/// Interface rules for `$PRIVATE_IP` / `$PUBLIC_IP` and `announce_as: private|public`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Tried in order; the first that exists with an address wins.
    pub private: Vec<InterfaceChoice>,
    /// Tried in order for `public` and `$PUBLIC_IP`, like `private`.
    pub public: Vec<InterfaceChoice>,
}

impl ContainerSpec {
    /// A container of `image` named `container_name`, with the image's command and
    /// Docker's defaults for everything else (pull if missing, 10 s stop timeout).
    pub fn new(container_name: impl Into<String>, image: ImageRef) -> ContainerSpec {
        ContainerSpec {
            container_name: container_name.into(),
            image,
            pull: PullPolicy::Missing,
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            volumes_from: Vec::new(),
            labels: BTreeMap::new(),
            hostname: None,
            user: None,
            workdir: None,
            network: None,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            memory: None,
            nano_cpus: None,
            stop_timeout: 10,
            docker_log: None,
        }
    }
}

impl EtcdSpec {
    /// `endpoints` speaking `api`, keys under `/skydns`, no TLS, no authentication.
    pub fn new(endpoints: Vec<EtcdEndpoint>, api: EtcdApi) -> EtcdSpec {
        EtcdSpec {
            endpoints,
            api,
            prefix: DEFAULT_PREFIX.into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
        }
    }
}

impl EtcdSpec {
    /// The rules TLS puts on an endpoint list, checked by the module before anything is
    /// written and by the etcd client before it dials: https needs the CA (no system
    /// roots are built in), and a client certificate needs its key. Returns the option
    /// at fault and why.
    pub fn check_tls(&self) -> Result<(), (&'static str, String)> {
        if self.ca_file.is_none() && self.endpoints.iter().any(EtcdEndpoint::is_https) {
            return Err((
                "ca_file",
                "is required with https endpoints: the CA that signed etcd's certificate \
                 (this build trusts no system roots)"
                    .into(),
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err((
                "cert_file",
                "needs key_file too: give both or neither".into(),
            )),
            (None, Some(_)) => Err((
                "key_file",
                "needs cert_file too: give both or neither".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl Spec {
    /// The runit service name: `docker-NAME`, as the original module named it.
    pub fn service_name(&self) -> String {
        format!("docker-{}", self.name)
    }

    /// The service tree, `SV_DIR/docker-NAME`.
    pub fn tree_dir(&self) -> PathBuf {
        self.paths.sv_dir.join(self.service_name())
    }

    /// The link that enables the tree, `SERVICE_DIR/docker-NAME`.
    pub fn link_path(&self) -> PathBuf {
        self.paths.service_dir.join(self.service_name())
    }

    /// `SV_DIR/docker-NAME/spec.json`: the file every process of the tree reads.
    pub fn spec_path(&self) -> PathBuf {
        self.tree_dir().join(SPEC_FILE)
    }

    /// A stable digest of what the container is made of; a container carrying another
    /// digest in its `rundock.spec` label is stale and gets replaced.
    pub fn container_hash(&self) -> String {
        let bytes = serde_json::to_vec(&self.container).expect("spec serializes");
        let digest = Sha256::digest(&bytes);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `spec.json` text: pretty JSON with a trailing newline; the same spec always gives the
    /// same bytes.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("spec serializes");
        text.push('\n');
        text
    }

    /// Reads a `spec.json` text; refuses JSON that does not match, unknown fields and any format
    /// but [`SPEC_FORMAT`].
    pub fn from_json(text: &str) -> Result<Spec, String> {
        let spec: Spec = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if spec.format != SPEC_FORMAT {
            return Err(format!(
                "spec format {} is not the {} this rundock reads",
                spec.format, SPEC_FORMAT
            ));
        }
        Ok(spec)
    }

    /// Reads and parses the file at `path`; the error names the file.
    pub fn load(path: &Path) -> Result<Spec, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Spec::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The spec as it may be shown: secrets replaced by a marker.
    pub fn masked(&self) -> Spec {
        let mut shown = self.clone();
        for value in shown.container.env.values_mut() {
            *value = MASK.to_string();
        }
        if let Some(announce) = shown.announce.as_mut() {
            if announce.etcd.password.is_some() {
                announce.etcd.password = Some(MASK.to_string());
            }
        }
        if let Some(watch) = shown.watch.as_mut() {
            if watch.etcd.password.is_some() {
                watch.etcd.password = Some(MASK.to_string());
            }
        }
        shown
    }
}

/// Where records are looked for and written when nothing else is said.
pub const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";
/// SkyDNS's key prefix.
pub const DEFAULT_PREFIX: &str = "/skydns";

/// The spec's file name in the tree.
pub const SPEC_FILE: &str = "spec.json";
/// What stands for a secret wherever a spec is shown.
pub const MASK: &str = "********";

/// Labels every rundock container carries, so leftovers can be found and removed.
pub const LABEL_SERVICE: &str = "rundock.service";
/// The label with the [`Spec::container_hash`] a container was made from; another value makes it
/// stale.
pub const LABEL_SPEC: &str = "rundock.spec";
/// The label with the host label of the host that made the container.
pub const LABEL_HOST: &str = "rundock.host";
