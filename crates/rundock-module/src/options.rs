//! The module's options: one table, the single source of their names, types, defaults,
//! choices and the states that use them.
//!
//! [`crate::params`] parses by this table (an option it does not list is unknown; a
//! default or a choice comes from here), and tests hold the Ansible docs
//! (`rundock.yml`), the service role and the README against it. Adding an option is one
//! row here plus reading it in the file of its section under `params/` (an enum with
//! choices: one `choice!` line there too), then its behaviour.

/// An option's type, as Ansible's argument specs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (`type: str`).
    Str,
    /// A whole number (`type: int`).
    Int,
    /// A boolean, as Ansible coerces one (`yes`, `true`, `1`...).
    Bool,
    /// A file system path (`type: path`).
    Path,
    /// A list of strings (a JSON list, or a comma-separated string ad hoc).
    List,
    /// A string → string mapping (a JSON object, or `k=v, k2=v2` ad hoc).
    Dict,
    /// A list of mappings or strings (health checks).
    ListRaw,
    /// A list of mappings (watch templates).
    ListDict,
    /// A whole number or a word (announce: a port or `auto`).
    IntOrWord,
    /// A mapping, or a string shorthand (etcd: the endpoints). Documented as a dict:
    /// Ansible's docs allow suboptions only there, and its dict type takes strings too.
    DictOrStr,
}

impl Kind {
    /// The `type` (and `elements`) Ansible's docs give this kind.
    pub fn ansible_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            Kind::Str => ("str", None),
            Kind::Int => ("int", None),
            Kind::Bool => ("bool", None),
            Kind::Path => ("path", None),
            Kind::List => ("list", Some("str")),
            Kind::Dict => ("dict", None),
            Kind::ListRaw => ("list", Some("raw")),
            Kind::ListDict => ("list", Some("dict")),
            Kind::IntOrWord => ("raw", None),
            Kind::DictOrStr => ("dict", None),
        }
    }
}

/// A default as documented; `None` where the default is computed from other options or
/// the host (the docs then say how).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// No fixed default: computed from other options or the host, or the option is simply unset.
    None,
    /// Defaults to this text (for `Kind::Str` and `Kind::Path` options).
    Str(&'static str),
    /// Defaults to this number (for `Kind::Int` options).
    Int(u32),
    /// Defaults to this boolean (for `Kind::Bool` options).
    Bool(bool),
    /// Defaults to this list, in order (for `Kind::List` options).
    List(&'static [&'static str]),
}

/// Which calls an option belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every call (state, name, paths, wait).
    Call,
    /// The service's spec: the container and the host it runs on.
    Service,
    /// Only with `announce` set: the record and how it is kept.
    Announce,
}

/// One row of the option table: everything the parser, the docs and the role argument specs take
/// from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDef {
    /// The option's name as a task writes it.
    pub name: &'static str,
    /// What the parser accepts, and the type the docs and argument specs declare.
    pub kind: Kind,
    /// Whether a call must give it.
    pub required: bool,
    /// The default the docs and argument specs show; the parser applies the same value.
    pub default: Default,
    /// The values it accepts; empty when any value of its kind goes.
    pub choices: &'static [&'static str],
    /// Which calls it belongs to: an `Announce` option without `announce` is refused.
    pub scope: Scope,
    /// One line for the README's table; `rundock.yml` carries the full description.
    pub doc: &'static str,
}

const fn opt(name: &'static str, kind: Kind, scope: Scope, doc: &'static str) -> OptionDef {
    OptionDef {
        name,
        kind,
        required: false,
        default: Default::None,
        choices: &[],
        scope,
        doc,
    }
}

impl OptionDef {
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    const fn default(mut self, default: Default) -> Self {
        self.default = default;
        self
    }

    const fn choices(mut self, choices: &'static [&'static str]) -> Self {
        self.choices = choices;
        self
    }

    /// The documented default as a number (for `Kind::Int` options).
    pub fn default_int(&self) -> Option<u32> {
        match self.default {
            Default::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The documented default as a string (for `Kind::Str` and `Kind::Path` options); `None` when
    /// the default is not a string.
    pub fn default_str(&self) -> Option<&'static str> {
        match self.default {
            Default::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The documented default as a boolean (for `Kind::Bool` options); `None` when it has none.
    pub fn default_bool(&self) -> Option<bool> {
        match self.default {
            Default::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The documented default as a list (for `Kind::List` options); `None` when it has none.
    pub fn default_list(&self) -> Option<&'static [&'static str]> {
        match self.default {
            Default::List(l) => Some(l),
            _ => None,
        }
    }
}

use Kind::*;
use Scope::*;

/// The values `state` accepts, in the order the docs list them.
pub const STATES: &[&str] = &["present", "enabled", "disabled", "absent", "restarted"];

/// Where service trees live: an option of both modules, with one default.
const SV_DIR: OptionDef =
    opt("sv_dir", Path, Call, "where service trees live").default(Default::Str("/etc/sv"));

/// The most output lines one `rundock_info` call returns per service.
pub const INFO_MAX_LINES: u32 = 1000;

/// Every option of the info module (`rundock_info`), in documentation order; its
/// sidecar docs are held to this table as `rundock.yml` is to [`OPTIONS`].
pub const INFO_OPTIONS: &[OptionDef] = &[
    opt(
        "name",
        List,
        Call,
        "the services to show; every service under `sv_dir` without it",
    ),
    SV_DIR,
    opt(
        "lines",
        Int,
        Call,
        "how many of the last lines of each container's output to return (0 to 1000)",
    )
    .default(Default::Int(10)),
];

/// Every option the module accepts, in documentation order.
pub const OPTIONS: &[OptionDef] = &[
    opt("state", Str, Call, "`present` (tree installed), `enabled` (linked into the service dir, runs), `disabled` (stopped, unlinked, tree kept), `absent` (stopped; tree, containers and record removed), `restarted`")
        .required()
        .choices(STATES),
    opt("name", Str, Call, "a DNS label; the runit service is `docker-NAME`, the record `NAME.DOMAIN`").required(),
    opt("image", Str, Service, "the image reference; required for `present` and `enabled` (not with `rollback`)"),
    opt("args", Str, Service, "docker-run flags, parsed, never given to a shell"),
    opt("command", List, Service, "the container command"),
    opt("entrypoint", List, Service, "the container entrypoint"),
    opt("env", Dict, Service, "environment (values are secrets: masked in diffs)"),
    opt("ports", List, Service, "published ports `[IP:][HOST_PORT:]CONTAINER_PORT[/proto]`"),
    opt("volumes", List, Service, "`SOURCE:TARGET[:OPTIONS]` mounts"),
    opt("volumes_from", List, Service, "containers to take volumes from"),
    opt("labels", Dict, Service, "container labels"),
    opt("hostname", Str, Service, "container host name (default `HOST_LABEL-NAME`)"),
    opt("user", Str, Service, "`NAME|UID[:GROUP|GID]`"),
    opt("workdir", Path, Service, "working directory in the container"),
    opt("network", Str, Service, "network mode or network name"),
    opt("privileged", Bool, Service, "run privileged").default(Default::Bool(false)),
    opt("cap_add", List, Service, "capabilities to add"),
    opt("cap_drop", List, Service, "capabilities to drop"),
    opt("memory", Str, Service, "memory limit, e.g. `512m`"),
    opt("cpus", Str, Service, "CPU limit, e.g. `1.5`"),
    opt("container_name", Str, Service, "the container's name (default `NAME`)"),
    opt("pull", Str, Service, "image pull policy")
        .default(Default::Str("missing"))
        .choices(&["always", "missing", "never"]),
    opt("stop_timeout", Int, Service, "seconds `docker stop` waits before it kills")
        .default(Default::Int(10)),
    opt("log_driver", Str, Service, "Docker's own log of the container (`docker logs`): `json-file`, `local`, `journald`, `syslog`, `none` or a plugin")
        .default(Default::Str(rundock_spec::dockerlog::DEFAULT_DRIVER)),
    opt("log_options", Dict, Service, "the driver's `--log-opt`s; json-file keeps `max-size=10m`, `max-file=3` and every driver `mode=non-blocking` unless given"),
    opt("drain", Int, Service, "seconds between withdrawing the record and stopping the container")
        .default(Default::Int(0)),
    opt("post_start", List, Service, "argv run in the container once it started; until it succeeds the record waits, if it fails the start fails"),
    opt("pre_stop", List, Service, "argv run in the container when the tree stops, after the record is withdrawn, before `drain` ends; a failure is logged"),
    opt("post_stop", List, Service, "argv run on the host after the container stopped; a failure is logged"),
    opt("hooks_on_host", Bool, Service, "run `post_start` and `pre_stop` on the host instead of in the container")
        .default(Default::Bool(false)),
    opt("hook_timeout", Int, Service, "seconds a hook may run before it is killed and fails")
        .default(Default::Int(30)),
    opt("drain_mode", Str, Announce, "`fixed`: wait all of `drain`; `idle`: stop once no TCP connection to `port` is open, at most `drain` seconds")
        .default(Default::Str("fixed"))
        .choices(&["fixed", "idle"]),
    opt("update", Str, Announce, "`stop-first`: stop, then start the changed container; `start-first`: start it beside the old one (needs `announce: auto`), switch the record once it is healthy, then drain the old")
        .default(Default::Str("stop-first"))
        .choices(&["stop-first", "start-first"]),
    opt("update_timeout", Int, Announce, "seconds a start-first container has to pass its health checks and take the record")
        .default(Default::Int(rundock_spec::DEFAULT_UPDATE_TIMEOUT)),
    opt("announce", IntOrWord, Service, "the host port the record carries, or `auto` (Docker picks it, from `announce_port_range` when given; the record follows); sets up the announcer"),
    opt("announce_port_range", Str, Announce, "with `announce: auto`: the host ports Docker picks from, `FIRST-LAST` (default: its ephemeral range)"),
    opt("port", Int, Announce, "the container port `announce` maps to (default `announce`)"),
    opt("announce_as", Str, Announce, "`private`, `public`, `container`, an interface or a CIDR: the address the record carries and the port is published on")
        .default(Default::Str("private")),
    opt("domain", Str, Announce, "the record is `NAME.DOMAIN` (also where `watch` looks)")
        .default(Default::Str("s.prod.example.com")),
    opt("host_label", Str, Service, "this host's instance label (default: the short host name)"),
    opt("etcd", DictOrStr, Announce, "endpoints, api, prefix, TLS files, username/password (also for `watch`)"),
    opt("requires", List, Announce, "DNS names (or service names in `domain`) that must be announced before the container starts"),
    opt("requires_timeout", Int, Announce, "seconds to wait for `requires`")
        .default(Default::Int(300)),
    opt("requires_on_timeout", Str, Announce, "what happens when `requires` is not met in time: `start` anyway, or `fail` the run (runit retries)")
        .default(Default::Str("start"))
        .choices(&["start", "fail"]),
    opt("ttl", Int, Announce, "seconds a record outlives a dead announcer (etcd lease TTL)")
        .default(Default::Int(60)),
    opt("dns_ttl", Int, Announce, "the record's `ttl`: how long resolvers may cache it (at most `ttl`)")
        .default(Default::Int(5)),
    opt("interval", Int, Announce, "seconds between lease refreshes, below `ttl` (default 3/4 of `ttl`, at most 45)"),
    opt("health", ListRaw, Announce, "checks that gate the record: `http`, `tcp`, `exec`"),
    opt("unhealthy_after", Int, Announce, "failed rounds of a health check in a row, after the container passed them once, that replace it (in the `update` order, backing off); 0: never")
        .default(Default::Int(rundock_spec::DEFAULT_UNHEALTHY_AFTER)),
    opt("priority", Int, Announce, "SRV priority"),
    opt("weight", Int, Announce, "SRV weight"),
    opt("text", Str, Announce, "TXT text, without control characters"),
    opt("watch", ListDict, Service, "templates rendered from live records, checked and reloaded (`rundock watch` as a sibling)"),
    opt("private_interface", List, Service, "interfaces tried for `private` and `$PRIVATE_IP`")
        .default(Default::List(&["eth1", "eth0"])),
    opt("public_interface", List, Service, "interfaces tried for `public` and `$PUBLIC_IP`")
        .default(Default::List(&["eth0"])),
    SV_DIR,
    opt("service_dir", Path, Call, "the directory runsvdir scans")
        .default(Default::Str("/etc/service")),
    opt("log_dir", Path, Call, "where svlogd keeps the logs")
        .default(Default::Str("/var/log/rundock")),
    opt("install_dir", Path, Call, "where the runner binary is installed")
        .default(Default::Str("/usr/local/lib/rundock")),
    opt("wait", Bool, Call, "return only once the container runs and its record is in etcd")
        .default(Default::Bool(false)),
    opt("wait_timeout", Int, Call, "seconds `wait` waits before it fails")
        .default(Default::Int(120)),
    opt("lock_timeout", Int, Call, "seconds a change waits for another change of the same service (the deploy lock) before it fails naming the holder")
        .default(Default::Int(300)),
    opt("history", Int, Call, "how many revisions of the spec the tree keeps (`rundock history NAME`), 1–100")
        .default(Default::Int(5)),
    opt("rollback", Str, Call, "`previous` or a revision number: install that revision's spec with its image pinned by id (`enabled`/`restarted`; no service options)"),
    opt("on_failure", Str, Call, "`fail`: a change that does not become ready within `wait_timeout` (or a start-first switch within `update_timeout`) stays and the task fails; `rollback`: the tree goes back to the revision before it (image pinned by id, no pull) and the task fails saying which check failed and which revision runs now (needs `wait`)")
        .default(Default::Str("fail"))
        .choices(&["fail", "rollback"]),
    opt("play_lock", Str, Call, "`acquire`: take the service's deploy lock in etcd for a whole playbook (from the installed tree's etcd and domain) and return it as `lock.token`, alive 60 s past each call that presents it; `release`: let it go (with `lock_token`). Takes only `name`, the directories, `lock_timeout` and `lock_token`")
        .choices(&["acquire", "release"]),
    opt("lock_token", Str, Call, "the `lock.token` a `play_lock: acquire` task returned: the call runs under the playbook's deploy lock in etcd (and keeps it alive) instead of taking its own"),
];

/// The row of `name`. Panics on a name the table lacks: the parser asks only for its own
/// options, and a test walks them all.
pub fn option(name: &str) -> &'static OptionDef {
    OPTIONS
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the option table"))
}

/// Whether `name` is an option of the `rundock` module (not of `rundock_info`).
pub fn is_option(name: &str) -> bool {
    OPTIONS.iter().any(|o| o.name == name)
}

/// The option `name` most likely misspells: one or two edits away (a letter wrong,
/// missing, extra, or two swapped; one edit for names under five letters), the nearest,
/// the first in the table on a tie.
pub fn closest(name: &str) -> Option<&'static str> {
    closest_in(OPTIONS, name)
}

/// [`closest`] among the options of `table`.
pub fn closest_in(table: &'static [OptionDef], name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let allowed = if name.chars().count() < 5 { 1 } else { 2 };
    table
        .iter()
        .map(|o| (edit_distance(&name, o.name), o.name))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, option)| option)
}

/// Optimal string alignment distance: Levenshtein plus the swap of two neighbours, so
/// `imgae` is one edit from `image`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_miss_names_the_option_it_misspells() {
        for (typo, option) in [
            ("anounce", "announce"),
            ("imgae", "image"),
            ("imagee", "image"),
            ("Image", "image"),
            ("servce_dir", "service_dir"),
            ("stop_timout", "stop_timeout"),
            ("prt", "port"),
        ] {
            assert_eq!(closest(typo), Some(option), "{typo}");
        }
        for unrelated in ["foo", "colour", "xyz", "restart_policy"] {
            assert_eq!(closest(unrelated), None, "{unrelated}");
        }
        assert_eq!(edit_distance("imgae", "image"), 1);
        assert_eq!(edit_distance("", "ttl"), 3);
    }

    #[test]
    fn names_are_unique_and_defaults_fit_their_kind() {
        for (i, o) in OPTIONS.iter().enumerate() {
            assert!(
                !OPTIONS[..i].iter().any(|p| p.name == o.name),
                "{} twice",
                o.name
            );
            let fits = match o.default {
                Default::None => true,
                Default::Str(s) => {
                    matches!(o.kind, Str | Path) && (o.choices.is_empty() || o.choices.contains(&s))
                }
                Default::Int(_) => o.kind == Int,
                Default::Bool(_) => o.kind == Bool,
                Default::List(_) => o.kind == List,
            };
            assert!(fits, "{}: default does not fit its kind", o.name);
            assert!(!(o.required && o.default != Default::None), "{}", o.name);
        }
    }
}
