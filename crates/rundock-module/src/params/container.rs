//! The container's options: `args` (docker-run flags) and the options that say the same
//! things one by one (`command`, `entrypoint`, `env`, `ports`, `volumes`,
//! `volumes_from`, `labels`, `hostname`, `user`, `workdir`, `network`, `privileged`,
//! `cap_add`, `cap_drop`, `memory`, `cpus`, `container_name`), `pull`,
//! `stop_timeout`, and Docker's own log (`log_driver`, `log_options`). Where `args` and an option both set a value they must agree; lists
//! add up.

use super::choice::choice;
use super::coerce::Params;
use rundock_spec::dockerargs::{self, DockerArgs};
use rundock_spec::dockerlog::DockerLog;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use rundock_spec::{ContainerSpec, ImageRef, PullPolicy};
use std::collections::BTreeMap;

choice!(PullPolicy [Always, Missing, Never] as_str);

pub(super) fn container_spec(
    p: &mut Params,
    name: &str,
    host_label: &str,
    image: ImageRef,
) -> Result<ContainerSpec> {
    let args = match p.string("args")? {
        Some(text) => dockerargs::parse(&text)?,
        None => DockerArgs::default(),
    };
    let pull = p.choice_or_default::<PullPolicy>("pull")?;
    let env = env(p, args.env)?;
    let labels = labels(p, args.labels)?;
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
        docker_log: docker_log(p, args.log_driver, args.log_options)?,
    })
}

/// Docker's own log: `log_driver` and `log_options` with the `--log-driver` and
/// `--log-opt`s of `args`; `None` when that is the default.
fn docker_log(
    p: &mut Params,
    driver: Option<String>,
    mut options: BTreeMap<String, String>,
) -> Result<Option<DockerLog>> {
    let driver = one_of("log_driver", driver, p.string("log_driver")?)?;
    for (key, value) in p.dict("log_options")?.unwrap_or_default() {
        merge_entry(&mut options, "log_options", key, value)?;
    }
    Ok(DockerLog::resolve(driver.as_deref(), options)?.unless_default())
}

/// `env` over the `-e` of `args`.
fn env(p: &mut Params, mut env: BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if let Some(map) = p.dict("env")? {
        for (key, value) in map {
            let key = validate::env_name("env", &key)?;
            let value = validate::no_nul("env", "an environment value", &value)?;
            merge_entry(&mut env, "env", key, value)?;
        }
    }
    Ok(env)
}

/// `labels` over the `--label` of `args`; `rundock.*` is rundock's own.
fn labels(
    p: &mut Params,
    mut labels: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
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
    Ok(labels)
}

/// `<host>-<name>`, cut to one DNS label.
fn default_hostname(host_label: &str, name: &str) -> String {
    let mut hostname = format!("{host_label}-{name}");
    hostname.truncate(63);
    hostname.trim_end_matches('-').to_string()
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

#[cfg(test)]
mod tests {
    use super::super::testing::request;
    use serde_json::{json, Value};

    fn docker_log(extra: Value) -> Result<Option<rundock_spec::dockerlog::DockerLog>, String> {
        let mut args = json!({"state": "enabled", "name": "web", "image": "busybox"});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        request(args)
            .map(|r| r.spec.unwrap().container.docker_log)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn docker_log_comes_from_the_options_or_args_and_the_default_is_not_stored() {
        assert_eq!(docker_log(json!({})).unwrap(), None);
        assert_eq!(
            docker_log(json!({"log_driver": "json-file", "args": "--log-opt max-file=3"})).unwrap(),
            None
        );
        let log = docker_log(json!({"args": "--log-driver local --log-opt max-size=5m"}))
            .unwrap()
            .unwrap();
        assert_eq!(log.driver, "local");
        assert_eq!(log.options["max-size"], "5m");
        let log = docker_log(json!({"args": "--log-opt max-size=5m", "log_options": "max-file=2"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                log.options["max-size"].as_str(),
                log.options["max-file"].as_str()
            ),
            ("5m", "2")
        );
        for (extra, wanted) in [
            (
                json!({"args": "--log-driver local", "log_driver": "journald"}),
                "log_driver: is set both in args",
            ),
            (
                json!({"args": "--log-opt max-size=5m", "log_options": {"max-size": "6m"}}),
                "log_options: \"max-size\" is set both",
            ),
            (
                json!({"args": "--log-opt max-size"}),
                "args --log-opt: \"max-size\" must be KEY=VALUE",
            ),
            (
                json!({"log_options": {"max-size": "-1"}}),
                "log_options: max-size \"-1\"",
            ),
        ] {
            let err = docker_log(extra.clone()).unwrap_err();
            assert!(err.starts_with(wanted), "{extra}: {err}");
        }
    }
}
