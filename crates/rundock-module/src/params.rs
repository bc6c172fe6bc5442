//! Module parameters → validated [`Request`]: the Ansible side of the contract.
//!
//! Ansible neither validates, defaults, converts nor masks the arguments of a binary
//! module, so all of that happens here. Which options exist, their defaults and choices
//! come from [`crate::options::OPTIONS`]; the values themselves are parsed by the types
//! of `rundock_spec`, which the runtime uses too.
//!
//! One file per section of the option table under `params/`, each reading its own
//! options: `call` (state, name, directories, wait, lock), `releases` (history,
//! rollback), `host`, `container`, `announce`, `etcd`, `health`, `hooks`, `requires`,
//! `update` (drain and update order), `watch`; `info` reads the info module's
//! options (`rundock_info`, its own table). `coerce` reads Ansible's values
//! (strings ad hoc, JSON types from playbooks) the way Ansible coerces them, and
//! `choice` turns an option's words into its enum. This file only puts the sections
//! together, in the order their errors are reported.

mod announce;
mod call;
mod choice;
mod coerce;
mod container;
mod etcd;
mod health;
mod hooks;
mod host;
pub mod info;
mod releases;
mod requires;
#[cfg(test)]
mod testing;
mod update;
mod watch;

pub use call::State;
pub use coerce::ansible_bool;
pub use releases::{PlayLock, PlayLockCall};

use crate::options;
use coerce::{parse_as, Params};
use rundock_spec::error::{Result, SpecError};
use rundock_spec::{ImageRef, Paths, Spec, SPEC_FORMAT};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What the facts of the host contribute to defaults.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// This host's name (`gethostname`); its short form is the default `host_label`.
    pub hostname: String,
    /// The runner path is `<install_dir>/<version>/rundock`.
    pub version: String,
}

/// A validated module call. `spec` is there whenever an image was given; `absent`,
/// `disabled` and `restarted` may act on the installed tree without one.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `state` option: what the call makes of the service (install, link, stop, remove,
    /// restart).
    pub state: State,
    /// The service name, a DNS label (the runit service is `docker-NAME`).
    pub name: String,
    /// Where trees, links and logs live, and the runner the run scripts exec.
    pub paths: Paths,
    /// Where the runner is installed, `INSTALL_DIR/VERSION/rundock` (`/usr/local/lib/rundock` by
    /// default).
    pub install_dir: PathBuf,
    /// The validated spec to install; `None` when the call gave no image, with `rollback`
    /// (the spec comes from a kept revision) and with `state=absent`.
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
    /// `on_failure`: what a change that does not become ready leaves behind.
    pub on_failure: crate::revert::OnFailure,
    /// `lock_token`: the call runs under a playbook's deploy lock.
    pub lock_token: Option<String>,
}

/// Ansible's answer to options a module does not have, in the words `AnsibleModule`
/// uses for a Python module ("Unsupported parameters for (NAME) module: a, b. Supported
/// parameters include: ..."), with a suggestion beside a near miss. Checked before
/// anything else, so a misspelt `image` is reported as such and not as a missing one.
/// The module's own keys (`_ansible_*`) are Ansible's, never unsupported.
pub fn unsupported_parameters(params: &Map<String, Value>) -> Option<String> {
    unsupported_parameters_in(params, options::OPTIONS)
}

/// [`unsupported_parameters`] for the module whose options are `table` (the info module
/// has its own).
pub fn unsupported_parameters_in(
    params: &Map<String, Value>,
    table: &'static [options::OptionDef],
) -> Option<String> {
    let unknown: BTreeSet<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("_ansible_") && !table.iter().any(|o| o.name == *k))
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
        .map(|k| match options::closest_in(table, k) {
            Some(option) => format!("{k} (did you mean {option}?)"),
            None => k.to_string(),
        })
        .collect();
    let mut supported: Vec<&str> = table.iter().map(|o| o.name).collect();
    supported.sort_unstable();
    Some(format!(
        "Unsupported parameters for ({module}) module: {}. Supported parameters include: {}.",
        named.join(", "),
        supported.join(", ")
    ))
}

/// Reads one call's options into a [`Request`] (Ansible's own `_ansible_*` keys and
/// `null`s are set aside); the first bad option is the error, naming it and its allowed form.
pub fn parse_request(params: &Map<String, Value>, facts: &HostFacts) -> Result<Request> {
    let mut p = Params::top_level(params)?;
    let call = call::call_options(&mut p, facts)?;
    let releases = releases::release_options(&mut p, call.wait.is_some())?;
    let image = p.string("image")?;
    let spec = if releases.rollback.is_some() {
        releases::check_rollback(&p, call.state, image.is_some())?;
        None
    } else {
        if image.is_none() && matches!(call.state, State::Present | State::Enabled) {
            return Err(SpecError::new(
                "image",
                format!(
                    "is required with state={}: a Docker image reference such as registry:5000/influxdb:1.8",
                    call.state.as_str()
                ),
            ));
        }
        let spec = match image {
            Some(image) if call.state != State::Absent => Some(build_spec(
                &mut p,
                call.name.clone(),
                &image,
                call.paths.clone(),
                facts,
            )?),
            _ => None,
        };
        if spec.is_none() {
            // absent (and disabled without an image) act on the installed tree: the
            // other options of the service may be given, as a play that flips `state`
            // does, and mean nothing here. Unknown names are still refused.
            p.values.retain(|key, _| !options::is_option(key));
        }
        spec
    };
    p.finish()?;
    Ok(Request {
        state: call.state,
        name: call.name,
        paths: call.paths,
        install_dir: call.install_dir,
        spec,
        wait: call.wait,
        lock_timeout: call.lock_timeout,
        history: releases.history,
        rollback: releases.rollback,
        on_failure: releases.on_failure,
        lock_token: releases.lock_token,
    })
}

/// A call with `play_lock` (it acts on the service's deploy lock only), validated;
/// `None` for every other call.
pub fn parse_play_lock(params: &Map<String, Value>) -> Result<Option<PlayLockCall>> {
    let mut p = Params::top_level(params)?;
    let call = releases::play_lock_call(&mut p)?;
    if call.is_some() {
        p.finish()?;
    }
    Ok(call)
}

/// The service's spec, each section read by its own file.
fn build_spec(
    p: &mut Params,
    name: String,
    image: &str,
    paths: Paths,
    facts: &HostFacts,
) -> Result<Spec> {
    let image = parse_as::<ImageRef>("image", image)?;
    let host_label = host::host_label(p, facts)?;
    let mut container = container::container_spec(p, &name, &host_label, image)?;
    let watch = watch::watch_option(p)?;
    let announce = announce::announce_spec(p, &mut container)?;
    if let Some(announce) = &announce {
        health::check_health_ports(announce, &container)?;
    }
    let watch = watch.map(|watch| watch.spec(announce.as_ref()));
    let drain = update::drain(p)?;
    let hooks = hooks::hooks(p)?;
    let requires = match &announce {
        Some(a) => requires::requires(p, &a.domain)?,
        None => None,
    };
    let start_first = update::start_first(p, announce.as_ref())?;
    let drain_mode = update::drain_mode(p)?;
    let interfaces = host::interfaces(p)?;
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

#[cfg(test)]
mod tests {
    use super::testing::{one_watch, request};
    use super::*;
    use crate::options::option;
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
                 Supported parameters include: announce, announce_as, announce_port_range, args, "
            ),
            "{msg}"
        );
        assert!(msg.ends_with(", workdir."), "{msg}");
    }

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
                "log_driver" => json!("local"),
                "log_options" => json!({"max-size": "5m"}),
                "drain_mode" => json!("idle"),
                "update" => json!("stop-first"),
                "on_failure" => json!("rollback"),
                "lock_token" => json!("0123abcd"),
                _ => match o.kind {
                    options::Kind::Bool => json!(true),
                    options::Kind::Int => json!(7),
                    _ => panic!("{}: give it a value in this test", o.name),
                },
            }
        };
        let mut all = Map::new();
        // `rollback` installs a kept revision and refuses service options, `play_lock`
        // makes a call of its own, `announce_port_range` needs `announce: auto` (a
        // numbered port here): their own tests.
        for o in options::OPTIONS
            .iter()
            .filter(|o| !["rollback", "play_lock", "announce_port_range"].contains(&o.name))
        {
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
}
