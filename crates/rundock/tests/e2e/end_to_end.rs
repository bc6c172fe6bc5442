//! The whole path on real parts: Ansible deploys with the module, runit runs the tree,
//! the supervisor keeps the container up, the announcer publishes it in etcd, and
//! `rundock dns` answers `dig` for it — through kills, restarts and stops.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.test.example.com";

/// The running container's identity for one life: its id and start time (the
/// supervisor restarts the same container when its spec did not change).
fn container_id(name: &str) -> Option<String> {
    let out = kit::docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Id}} {{.State.StartedAt}}",
        name,
    ]);
    kit::stdout(&out)
        .strip_prefix("true ")
        .map(|id| id.trim().to_string())
}

/// A web service on `port`, announced as 127.0.0.1 once `/` answers.
fn web(host: &Host, name: &str, port: u16, etcd: &kit::Etcd, extra: &str) -> String {
    format!(
        "name={name} image={} command=\"sh -c 'mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www'\" ports=127.0.0.1:{port}:8080 announce={port} port=8080 \
         announce_as=127.0.0.0/8 domain={DOMAIN} host_label=node-1 etcd={} ttl=10 stop_timeout=2 health=http:{port}/ {extra} {}",
        kit::TEST_IMAGE,
        etcd.endpoint(),
        host.dirs_kv()
    )
}

#[test]
fn deploy_find_kill_and_find_again() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let dns = kit::DnsServer::start(Path::new(BIN), &etcd, DOMAIN);
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("e2e");
    let port = kit::free_port();
    let service = web(&host, &name, port, &etcd, "");
    let fqdn = format!("{name}.{DOMAIN}");

    // wait=yes returns once the container runs and the record is in etcd.
    let (r, out) = host.adhoc(&format!("state=enabled wait=yes {service}"), &[]);
    assert_eq!(r["changed"], json!(true), "{r} {out:?}");
    let key = format!("/skydns/com/example/test/s/{name}/node-1");
    assert_eq!(r["service"]["record_key"], json!(key));
    let value: serde_json::Value =
        serde_json::from_str(etcd.get_prefix(&key).lines().nth(1).expect("record")).unwrap();
    assert_eq!(value, json!({"host": "127.0.0.1", "port": port, "ttl": 5}));

    // dig finds it: A (all instances and this instance) and SRV with the port.
    let found = kit::wait_for(Duration::from_secs(5), || {
        (dns.dig(&fqdn, "A").trim() == "127.0.0.1").then_some(())
    });
    assert!(found.is_some(), "no A answer for {fqdn}");
    assert_eq!(dns.dig(&format!("node-1.{fqdn}"), "A").trim(), "127.0.0.1");
    let srv = dns.dig(&fqdn, "SRV");
    assert_eq!(srv.trim(), format!("10 100 {port} node-1.{fqdn}."), "{srv}");
    // ...and the address and port it gives reach the service.
    let http = kit::run(
        "curl",
        &[
            "-sf",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/"),
        ],
    );
    assert!(http.status.success());

    // docker kill: the record goes at once, runit brings a new container, and once it
    // answers HTTP the record is back.
    let first = container_id(&name).expect("running");
    let killed = Instant::now();
    assert!(kit::docker(&["kill", &name]).status.success());
    let gone = kit::wait_for(Duration::from_secs(5), || {
        dns.dig(&fqdn, "A")
            .trim()
            .is_empty()
            .then(|| killed.elapsed())
    });
    let gone = gone.expect("record still answered after the kill");
    assert!(gone < Duration::from_secs(2), "withdrawn after {gone:?}");
    let second = kit::wait_for(Duration::from_secs(15), || {
        container_id(&name).filter(|id| *id != first)
    });
    assert!(second.is_some(), "runit did not start the container again");
    let back = kit::wait_for(Duration::from_secs(15), || {
        (dns.dig(&fqdn, "A").trim() == "127.0.0.1").then_some(())
    });
    assert!(back.is_some(), "record not back after the restart");

    // The container's output reaches the svlogd log.
    let log = host.path("log").join(&name).join("container/current");
    let logged = kit::wait_for(Duration::from_secs(10), || {
        std::fs::metadata(&log).ok().filter(|m| m.len() > 0)
    });
    assert!(logged.is_some(), "nothing in {}", log.display());

    // absent: record, container and tree are gone.
    let (r, _) = host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
    assert_eq!(r["changed"], json!(true), "{r}");
    assert_eq!(etcd.get_prefix(&key), "");
    assert!(dns.dig(&fqdn, "A").trim().is_empty());
    assert_eq!(
        kit::stdout(&kit::docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=rundock.service={name}")
        ]))
        .trim(),
        ""
    );
}

#[test]
fn sv_down_withdraws_the_record_before_the_container_stops() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("drain");
    let port = kit::free_port();
    let (r, _) = host.adhoc(
        &format!(
            "state=enabled wait=yes drain=3 {}",
            web(&host, &name, port, &etcd, "")
        ),
        &[],
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    let key = format!("/skydns/com/example/test/s/{name}/node-1");
    assert!(!etcd.get_prefix(&key).is_empty());

    let tree = host.tree(&name);
    let stopper =
        std::thread::spawn(move || kit::run("sv", &["-w", "60", "down", &tree.to_string_lossy()]));
    let withdrawn = kit::wait_for(Duration::from_secs(5), || {
        etcd.get_prefix(&key).is_empty().then_some(())
    });
    assert!(withdrawn.is_some(), "record not withdrawn on sv down");
    assert!(
        container_id(&name).is_some(),
        "the container stopped before the drain time was over"
    );
    assert!(stopper.join().unwrap().status.success());
    assert_eq!(
        container_id(&name),
        None,
        "container still running after sv down"
    );
    host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
}

#[test]
fn wait_fails_clearly_when_the_health_check_never_passes() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("sick");
    let port = kit::free_port();
    let service = web(&host, &name, port, &etcd, "wait_timeout=8").replace(
        &format!("health=http:{port}/"),
        &format!("health=http:{port}/missing"),
    );
    let (r, out) = host.adhoc(&format!("state=enabled wait=yes {service}"), &[]);
    assert!(!out.status.success());
    let msg = r["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("wait:") && msg.contains("not announced"),
        "{r}"
    );
    assert_eq!(r["changed"], json!(true), "the deploy itself happened: {r}");
    assert!(container_id(&name).is_some());
    assert_eq!(
        etcd.get_prefix(&format!("/skydns/com/example/test/s/{name}")),
        ""
    );
    host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
}

/// An announced port without an explicit mapping is published on the announced address
/// only: a backend announced on one address does not answer on the host's others.
#[test]
fn an_announced_port_binds_only_the_announced_address() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("bind");
    let port = kit::free_port();
    let service = format!(
        "name={name} image={} command=\"sh -c 'mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www'\" \
         announce={port} port=8080 announce_as=lo:inet domain={DOMAIN} host_label=node-1 etcd={} ttl=10 \
         stop_timeout=2 health=http:{port}/ {}",
        kit::TEST_IMAGE,
        etcd.endpoint(),
        host.dirs_kv()
    );
    let (r, out) = host.adhoc(&format!("state=enabled wait=yes {service}"), &[]);
    assert_eq!(r["changed"], json!(true), "{r} {out:?}");
    let bindings = kit::stdout(&kit::docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        &name,
    ]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&bindings).unwrap(),
        json!({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": port.to_string()}]})
    );
    let curl = |addr: &str| {
        kit::run(
            "curl",
            &[
                "-sf",
                "-m",
                "2",
                "-o",
                "/dev/null",
                &format!("http://{addr}:{port}/"),
            ],
        )
        .status
        .success()
    };
    assert!(curl("127.0.0.1"), "reachable on the announced address");
    // 127.0.0.2 is this host too (all of 127/8 is local), but not the announced address.
    assert!(!curl("127.0.0.2"), "not reachable on another local address");
    host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
}
