//! The checks that gate the record: `health` (a list of `{kind, port, path}`,
//! `{kind: exec, command}` or the short forms `http:PORT/PATH`, `tcp:PORT`,
//! `exec:COMMAND`) and `unhealthy_after`; and the rule that a check under a fixed
//! `announce` probes a port that is published.

use super::coerce::Params;
use crate::options::option;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use rundock_spec::{AnnounceAs, AnnounceSpec, CheckKind, ContainerSpec, HealthCheck};
use serde_json::{Map, Value};

/// `http:PORT/PATH`, `tcp:PORT`, `exec:COMMAND` as the mapping they stand for.
fn short_form(s: &str) -> Result<Map<String, Value>> {
    let (kind, rest) = s.split_once(':').ok_or_else(|| {
        SpecError::new("", format!("{} is not a check: {HEALTH_FORM}", quoted(s)))
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
    Ok(map)
}

/// The most failed rounds `unhealthy_after` waits for: beyond it a service is better
/// off with 0 (never replace) than with a rule that never fires in practice.
const MAX_UNHEALTHY_AFTER: i64 = 1000;

pub(super) fn unhealthy_after(p: &mut Params) -> Result<u32> {
    match p.int("unhealthy_after")? {
        None => Ok(option("unhealthy_after").default_int().unwrap_or(0)),
        Some(n @ 0..=MAX_UNHEALTHY_AFTER) => Ok(n as u32),
        Some(n) => Err(SpecError::new(
            "unhealthy_after",
            format!("{n} is out of range: 0 (never replace) or a number of failed check rounds from 1 to {MAX_UNHEALTHY_AFTER}"),
        )),
    }
}

pub(super) fn health_checks(p: &mut Params) -> Result<Vec<HealthCheck>> {
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
        Value::String(s) => short_form(&s)?,
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

/// A fixed `announce` probes host ports: a check must name the announced port or one
/// `ports`/`-p` publishes, else it probes whatever else listens there (or nothing) and
/// the record never comes. With `announce: auto` a check names the container port,
/// which the announcer translates to the host port Docker chose; naming the container
/// port under a fixed announce is that mix-up, so the message says both rules. With
/// `announce_as: container` or the host's network, probes reach the container's own
/// ports, so any port may be meant.
pub(super) fn check_health_ports(announce: &AnnounceSpec, container: &ContainerSpec) -> Result<()> {
    if announce.auto_port
        || announce.announce_as == AnnounceAs::Container
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

#[cfg(test)]
mod tests {
    use super::super::testing::{announced, request};
    use crate::options::option;
    use rundock_spec::Spec;
    use serde_json::{json, Value};

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
}
