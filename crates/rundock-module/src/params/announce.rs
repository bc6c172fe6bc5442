//! The record's options: `announce` (the host port, or `auto`, in `announce_port_range`
//! when given), `port`, `announce_as`,
//! `domain`, `ttl`, `dns_ttl`, `interval`, `priority`, `weight`, `text`; and the rule
//! that the options of an announced service are refused without `announce`. An
//! announced port is published where the record points ([`publish`]). The record's
//! etcd and health checks are read by [`super::etcd`] and [`super::health`].

use super::coerce::{parse_as, Params};
use super::{etcd, health};
use crate::options::{self, option, Scope};
use rundock_spec::error::{Result, SpecError};
use rundock_spec::{skydns, validate};
use rundock_spec::{
    AnnounceAs, AnnounceSpec, ContainerSpec, HostIp, PortMapping, PortRange, Protocol,
};

/// `interval` when not given: three quarters of `ttl`, at most this.
const DEFAULT_INTERVAL: u32 = 45;

/// The record of an announced service; `None` when `announce` is not given. Ports it
/// needs published are added to `container`.
pub(super) fn announce_spec(
    p: &mut Params,
    container: &mut ContainerSpec,
) -> Result<Option<AnnounceSpec>> {
    let Some((auto_port, announce)) = announce_option(p)? else {
        refuse_announce_only(p)?;
        return Ok(None);
    };
    let (port, container_port) = ports(p, auto_port, announce)?;
    let announce_as = match p.validated("announce_as", parse_as::<AnnounceAs>)? {
        Some(choice) => choice,
        None => parse_as(
            "announce_as",
            option("announce_as").default_str().unwrap_or_default(),
        )?,
    };
    let range = p.validated("announce_port_range", PortRange::parse)?;
    if range.is_some() && !auto_port {
        return Err(SpecError::new(
            "announce_port_range",
            "only with announce: auto (a numbered announce is the host port itself)",
        ));
    }
    publish(
        container,
        &announce_as,
        (auto_port, range),
        port,
        container_port,
    )?;
    let domain = validate::domain("domain", &p.string_or_default("domain")?)?;
    let (ttl, interval, dns_ttl) = lease(p)?;
    let etcd = etcd::etcd_spec(p)?;
    let health = health::health_checks(p)?;
    let priority = p
        .int("priority")?
        .map(|n| small("priority", n))
        .transpose()?;
    let weight = p.int("weight")?.map(|n| small("weight", n)).transpose()?;
    let text = p.string("text")?.map(record_text).transpose()?;
    let unhealthy_after = health::unhealthy_after(p)?;
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

/// `announce`: `(true, 0)` for `auto`, `(false, n)` for a number (checked later).
fn announce_option(p: &mut Params) -> Result<Option<(bool, i64)>> {
    let auto_port = p
        .values
        .get("announce")
        .is_some_and(|v| v.as_str().is_some_and(|s| s.trim() == "auto"));
    if auto_port {
        p.take("announce");
        return Ok(Some((true, 0)));
    }
    let announce = p.int("announce").map_err(|e| {
        SpecError::new(
            "announce",
            format!("{}; it takes a port (1-65535) or auto", e.message),
        )
    })?;
    Ok(announce.map(|n| (false, n)))
}

/// Without `announce`, the options only an announced service has are refused.
fn refuse_announce_only(p: &Params) -> Result<()> {
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
    Ok(())
}

/// `(port, container_port)`: the record's port (0 with `auto`) and `port`.
fn ports(p: &mut Params, auto_port: bool, announce: i64) -> Result<(u16, u16)> {
    let container_port = match p.int("port")? {
        Some(n) => Some(validate::port("port", n)?),
        None => None,
    };
    match (auto_port, container_port) {
        (true, Some(container_port)) => Ok((0, container_port)),
        (true, None) => Err(SpecError::new(
            "announce",
            "auto needs port: the container port Docker publishes on a host port it picks",
        )),
        (false, container_port) => {
            let port = validate::port("announce", announce)?;
            Ok((port, container_port.unwrap_or(port)))
        }
    }
}

/// Publishes the announced port where the record points, or checks that `ports`/`-p`
/// already do.
fn publish(
    container: &mut ContainerSpec,
    announce_as: &AnnounceAs,
    (auto_port, range): (bool, Option<PortRange>),
    port: u16,
    container_port: u16,
) -> Result<()> {
    let container_only = *announce_as == AnnounceAs::Container;
    if container_only && auto_port {
        return Err(SpecError::new(
            "announce",
            "auto publishes a host port, and announce_as=container publishes none (the record carries the container's own address and port): give announce the container port",
        ));
    }
    if container_only {
        if port != container_port {
            return Err(SpecError::new(
                "announce",
                format!(
                    "with announce_as=container the record carries the container port: announce ({port}) must equal port ({container_port})"
                ),
            ));
        }
        return Ok(());
    }
    let published: Vec<&PortMapping> = container
        .ports
        .iter()
        .filter(|m| m.container_port == container_port && m.protocol == Protocol::Tcp)
        .collect();
    if auto_port && !published.is_empty() {
        return Err(SpecError::new(
            "announce",
            format!(
                "auto publishes container port {container_port} itself, on the announce address: remove its ports/args -p entry"
            ),
        ));
    }
    if published.is_empty() {
        // Announcing a port nobody can reach is never what is meant: publish it, on the
        // address the record carries and nowhere else (a backend announced as private
        // must not answer on the host's public interface). With `auto` Docker picks
        // the host port (HostPort "").
        container.ports.push(PortMapping {
            host_ip: Some(HostIp::Address(announce_as.clone())),
            host_port: (!auto_port).then_some(port),
            host_port_range: range,
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
    Ok(())
}

/// `ttl` (the lease), `interval` (its refresh) and `dns_ttl` (the record's own TTL).
fn lease(p: &mut Params) -> Result<(u32, u32, u32)> {
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
    Ok((ttl, interval, dns_ttl))
}

/// The record's TXT text, held to the rule readers apply to records.
fn record_text(text: String) -> Result<String> {
    if skydns::is_record_text(&text) {
        Ok(text)
    } else {
        Err(SpecError::new(
            "text",
            format!("{text:?} is not {}", skydns::TEXT_FORM),
        ))
    }
}

fn small(field: &str, n: i64) -> Result<u16> {
    u16::try_from(n).map_err(|_| {
        SpecError::new(
            field,
            format!("{n} is out of range: a whole number from 0 to 65535"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{announced, request};
    use rundock_spec::{HostIp, PortMapping, Protocol, Spec};
    use serde_json::{json, Value};

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
    fn a_text_readers_would_skip_is_refused_before_it_is_announced() {
        for bad in ["a\nb", "tab\there", "bell\u{7}"] {
            let err = announced(json!({"announce": 8086, "text": bad})).unwrap_err();
            assert_eq!(err.field, "text", "{bad:?}");
            assert!(
                err.to_string().contains("without control characters"),
                "{err}"
            );
        }
        let spec = announced(json!({"announce": 8086, "text": "v=1 \"quoted\" ; {x}"}))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(
            spec.announce.unwrap().text.as_deref(),
            Some("v=1 \"quoted\" ; {x}")
        );
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
                host_port_range: None,
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
    fn announce_auto_takes_its_host_port_from_a_range_when_given_one() {
        let spec = announced(
            json!({"announce": "auto", "port": 8080, "announce_port_range": "30000-30100"}),
        )
        .unwrap()
        .spec
        .unwrap();
        let range = spec.container.ports[0].host_port_range.unwrap();
        assert_eq!((range.first, range.last), (30000, 30100));
        assert_eq!(spec.container.ports[0].host_port, None);
        assert_eq!(Spec::from_json(&spec.to_json()).unwrap(), spec);
        // No range, no key: spec.json of services without one keeps its bytes.
        let plain = announced(json!({"announce": "auto", "port": 8080}))
            .unwrap()
            .spec
            .unwrap();
        assert!(!plain.to_json().contains("host_port_range"));

        for (options, start) in [
            (
                json!({"announce": 8080, "announce_port_range": "30000-30100"}),
                "only with announce: auto",
            ),
            (
                json!({"announce": "auto", "port": 8080, "announce_port_range": "30100-30000"}),
                "\"30100-30000\" is not a port range",
            ),
            (
                json!({"announce": "auto", "port": 8080, "announce_port_range": "30000"}),
                "\"30000\" is not a port range",
            ),
            (
                json!({"announce": "auto", "port": 8080, "announce_port_range": "0-10"}),
                "\"0-10\" is not a port range",
            ),
            (
                json!({"announce": "auto", "port": 8080, "announce_port_range": "+1-10"}),
                "\"+1-10\" is not a port range",
            ),
        ] {
            let err = announced(options.clone()).unwrap_err();
            assert_eq!(err.field, "announce_port_range", "{options}");
            assert!(err.message.starts_with(start), "{options}: {}", err.message);
        }
        let err = request(
            json!({"state": "enabled", "name": "web", "image": "busybox",
                                 "announce_port_range": "30000-30100"}),
        )
        .unwrap_err();
        assert_eq!(err.field, "announce_port_range");
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
}
