//! Drain until idle on real parts: a service announced with `announce: auto` (Docker
//! picks the port, the record carries it), stopped by `sv down` with `drain_mode: idle`.
//! A held connection keeps the container up until it closes or the drain time ends,
//! whichever comes first; an idle container stops at once.

use crate::common;

use common::{unique, Host};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.test.example.com";

fn options(name: &str, etcd: &kit::Etcd, drain: u32) -> Value {
    json!({
        "state": "enabled", "wait": true, "name": name, "image": kit::TEST_IMAGE,
        // httpd as PID 1 would ignore docker stop's TERM and wait out stop_timeout: the
        // shell stops it, so the times below are the drain's, not the image's.
        "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait"],
        "announce": "auto", "port": 8080, "announce_as": "127.0.0.0/8",
        "domain": DOMAIN, "host_label": "node-1", "etcd": etcd.endpoint(), "ttl": 10,
        "stop_timeout": 2, "health": [{"kind": "http", "port": 8080, "path": "/"}],
        "drain": drain, "drain_mode": "idle",
    })
}

fn running(name: &str) -> bool {
    kit::stdout(&kit::docker(&["inspect", "-f", "{{.State.Running}}", name])).trim() == "true"
}

fn record(etcd: &kit::Etcd, key: &str) -> Option<Value> {
    let text = etcd.get_prefix(key);
    serde_json::from_str(text.lines().nth(1)?).ok()
}

/// The host port Docker published container port 8080 on.
fn docker_port(name: &str) -> u16 {
    let text = kit::stdout(&kit::docker(&["port", name, "8080/tcp"]));
    text.lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// An open connection that sends half a request, so httpd waits on it.
fn hold(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // Through docker-proxy: give it the moment to open its side into the container.
    std::thread::sleep(Duration::from_millis(300));
    stream
}

fn sv(action: &str, tree: &std::path::Path) -> std::thread::JoinHandle<std::process::Output> {
    let tree = tree.to_string_lossy().into_owned();
    let action = action.to_string();
    std::thread::spawn(move || kit::run("sv", &["-w", "60", &action, &tree]))
}

fn wait_stopped(name: &str, limit: Duration) -> Option<Instant> {
    kit::wait_for(limit, || (!running(name)).then(Instant::now))
}

#[test]
fn a_held_connection_keeps_the_container_until_it_closes_or_the_drain_ends() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("idle");
    let key = format!("/skydns/com/example/test/s/{name}/node-1");
    let tree = host.tree(&name);

    let (r, _) = host.call(options(&name, &etcd, 20), false, false);
    assert_eq!(r["changed"], json!(true), "{r}");
    // announce: auto — the record carries the port Docker chose, bound on 127.0.0.1 only.
    let port = docker_port(&name);
    assert_eq!(
        record(&etcd, &key),
        Some(json!({"host": "127.0.0.1", "port": port, "ttl": 5}))
    );
    let bindings = kit::stdout(&kit::docker(&["port", &name, "8080/tcp"]));
    assert_eq!(bindings.trim(), format!("127.0.0.1:{port}"));

    // A held connection: the record goes at once, the container stays.
    let connection = hold(port);
    let down = sv("down", &tree);
    assert!(
        kit::wait_for(Duration::from_secs(5), || record(&etcd, &key)
            .is_none()
            .then_some(()))
        .is_some(),
        "record withdrawn on sv down"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(running(&name), "stopped while a connection was open");
    // Closed: the container stops soon after, far inside the 20 s drain time.
    drop(connection);
    let closed = Instant::now();
    let stopped = wait_stopped(&name, Duration::from_secs(30)).expect("stopped");
    let lived = stopped.duration_since(closed);
    eprintln!("old container lived {lived:?} after its last connection closed");
    assert!(lived < Duration::from_secs(8), "lived {lived:?}");
    assert!(down.join().unwrap().status.success());

    // Idle: stops at once.
    assert!(sv("up", &tree).join().unwrap().status.success());
    let port = kit::wait_for(Duration::from_secs(20), || {
        let port = record(&etcd, &key)?["port"].as_u64()?;
        Some(port as u16)
    })
    .expect("announced again");
    assert_eq!(port, docker_port(&name), "the record follows the new port");
    let started = Instant::now();
    let down = sv("down", &tree);
    let stopped = wait_stopped(&name, Duration::from_secs(30)).expect("stopped");
    let took = stopped.duration_since(started);
    eprintln!("idle container: sv down -> container stopped in {took:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(down.join().unwrap().status.success());

    // The drain time bounds it: a connection held past it is cut.
    let (r, _) = host.call(options(&name, &etcd, 3), false, false);
    assert_eq!(r["changed"], json!(true), "{r}");
    let port = docker_port(&name);
    let connection = hold(port);
    let started = Instant::now();
    let down = sv("down", &tree);
    let stopped = wait_stopped(&name, Duration::from_secs(30)).expect("stopped");
    let took = stopped.duration_since(started);
    eprintln!("held connection, drain=3: sv down -> container stopped in {took:?}");
    assert!(took >= Duration::from_millis(2900), "took {took:?}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    drop(connection);
    assert!(down.join().unwrap().status.success());

    let (r, _) = host.call(json!({"state": "absent", "name": name}), false, false);
    assert_eq!(r["changed"], json!(true), "{r}");
}
