//! `update: start-first` on real parts (Docker, runit, etcd, rundock dns, HAProxy and
//! nginx from Debian, all on loopback): a single-instance service, announced with
//! `announce: auto`, updated to a new image while requests run through a proxy.
//!
//! * through HAProxy (SRV `_http._tcp.NAME.DOMAIN`) and through nginx (upstream rendered
//!   by `rundock watch`): start-first loses no request and every slow request (2 s)
//!   completes; the same update stop-first is run for the contrast and its failures
//!   printed;
//! * a new container whose check never passes is removed, the old one keeps serving
//!   and its record, the module fails naming the check;
//! * the supervisor SIGKILLed at random moments of a switch: afterwards exactly one
//!   container runs, it is announced, nothing is left over.

use crate::common;

use common::{unique, Host, NginxFront, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const DOMAIN: &str = "s.sf.example.com";
const REQUEST_EVERY: Duration = Duration::from_millis(20);
pub(crate) const SLOW_REQUESTS: usize = 3;

/// Test images with distinct ids (each a busybox with its own marker label).
pub(crate) fn images() -> [String; 3] {
    kit::ensure_test_image();
    static BUILT: Mutex<bool> = Mutex::new(false);
    let tags = ["v1", "v2", "v3"].map(|v| format!("rundock-test-sf:{v}"));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        for (tag, marker) in tags.iter().zip(["sf-1", "sf-2", "sf-3"]) {
            if !kit::docker(&["image", "inspect", tag]).status.success() {
                kit::build_image_with_marker(tag, marker);
            }
        }
        *built = true;
    }
    tags
}

/// The service's module options: `version` is served at `/`, `/cgi-bin/slow` answers
/// after 2 s, and `/ready.html` (the health check) exists only when `ready`.
pub(crate) fn options(
    name: &str,
    etcd: &kit::Etcd,
    image: &str,
    version: &str,
    ready: bool,
    order: &str,
) -> Value {
    let ready = if ready {
        "echo ok >/www/ready.html; "
    } else {
        ""
    };
    let script = format!(
        "mkdir -p /www/cgi-bin; echo {version} >/www/index.html; {ready}\
         printf '#!/bin/sh\\nsleep 2\\nprintf \"Content-Type: text/plain\\\\r\\\\n\\\\r\\\\nslow {version}\\\\n\"\\n' >/www/cgi-bin/slow; \
         chmod +x /www/cgi-bin/slow; httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait"
    );
    json!({
        "state": "enabled", "wait": true, "wait_timeout": 60, "name": name, "image": image,
        "pull": "never", "command": ["sh", "-c", script],
        "announce": "auto", "port": 8080, "announce_as": "127.0.0.0/8",
        "domain": DOMAIN, "host_label": "node-1", "etcd": etcd.endpoint(), "ttl": 10,
        "dns_ttl": 1, "stop_timeout": 2,
        "health": [{"kind": "http", "port": 8080, "path": "/ready.html", "interval": 1, "timeout": 1}],
        "drain": 10, "drain_mode": "idle", "update": order, "update_timeout": 15,
    })
}

pub(crate) fn key(name: &str) -> String {
    format!("/skydns/com/example/sf/s/{name}/node-1")
}

pub(crate) fn record_port(etcd: &kit::Etcd, name: &str) -> Option<u16> {
    let text = etcd.get_prefix(&key(name));
    let value: Value = serde_json::from_str(text.lines().nth(1)?).ok()?;
    value["port"].as_u64().map(|p| p as u16)
}

/// Containers of the service (any state, any name): (name, running).
pub(crate) fn containers(name: &str) -> Vec<(String, bool)> {
    let out = kit::docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=rundock.service={name}"),
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    kit::stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, s)| (n.to_string(), s == "running"))
        .collect()
}

pub(crate) fn docker_port(container: &str) -> Option<u16> {
    let text = kit::stdout(&kit::docker(&["port", container, "8080/tcp"]));
    text.lines().next()?.rsplit(':').next()?.trim().parse().ok()
}

/// The status and body of GET `path`, or what went wrong.
fn http_answer(port: u16, path: &str, timeout: Duration) -> Result<(String, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}; got {response:?}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no head: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body.trim().to_string()))
}

pub(crate) fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.trim().to_string())
}

/// `GET /` every 20 ms through the proxy on a thread: failed and total.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<(usize, usize)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new((0, 0)));
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answer = http_answer(port, "/", Duration::from_secs(3));
                    let ok = answer.as_ref().is_ok_and(|(status, _)| status == "200");
                    let mut counts = counts.lock().unwrap();
                    if !ok && counts.0 < 3 {
                        eprintln!("request failed after {:?}: {answer:?}", started.elapsed());
                    }
                    counts.1 += 1;
                    if !ok {
                        counts.0 += 1;
                    }
                    drop(counts);
                    std::thread::sleep(REQUEST_EVERY.saturating_sub(started.elapsed()));
                }
            })
        };
        Traffic {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    pub(crate) fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        *self.counts.lock().unwrap()
    }
}

/// What one update under traffic did.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) failed: usize,
    pub(crate) total: usize,
    pub(crate) slow_ok: usize,
    pub(crate) wall: Duration,
    pub(crate) module: Value,
}

/// Updates the service to `image`/`version` with `order` while requests run through
/// the proxy on `port`; slow requests start just before the module is called.
pub(crate) fn update_under_traffic(host: &Host, port: u16, new_options: Value) -> Report {
    let traffic = Traffic::start(port);
    std::thread::sleep(Duration::from_secs(1));
    let slow: Vec<_> = (0..SLOW_REQUESTS)
        .map(|_| {
            std::thread::spawn(move || http_get(port, "/cgi-bin/slow", Duration::from_secs(10)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (module, _) = host.call(new_options, false, false);
    let wall = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let slow_ok = slow
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|body| body.as_deref().is_some_and(|b| b.starts_with("slow")))
        .count();
    let (failed, total) = traffic.finish();
    Report {
        failed,
        total,
        slow_ok,
        wall,
        module,
    }
}

/// Exactly one container of the service runs, named as the service, and the record
/// carries its port.
pub(crate) fn assert_one_announced(etcd: &kit::Etcd, name: &str) {
    let found = kit::wait_for(Duration::from_secs(20), || {
        let list = containers(name);
        let port = docker_port(name)?;
        (list == [(name.to_string(), true)] && record_port(etcd, name) == Some(port)).then_some(())
    });
    assert!(
        found.is_some(),
        "one announced container: {:?}, record port {:?}, container port {:?}",
        containers(name),
        record_port(etcd, name),
        docker_port(name)
    );
}

pub(crate) struct Service {
    pub(crate) host: Host,
    _runsvdir: kit::Runsvdir,
    pub(crate) name: String,
}

impl Service {
    pub(crate) fn deploy(etcd: &kit::Etcd, prefix: &str, order: &str) -> Service {
        let [v1, _, _] = images();
        let host = Host::new();
        let runsvdir = kit::Runsvdir::start(&host.service_dir());
        let name = unique(prefix);
        let (r, _) = host.call(options(&name, etcd, &v1, "v1", true, order), false, false);
        assert_eq!(r["changed"], json!(true), "{r}");
        assert!(r.get("failed").is_none(), "{r}");
        Service {
            host,
            _runsvdir: runsvdir,
            name,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.host
            .call(json!({"state": "absent", "name": self.name}), false, false);
    }
}

/// `haproxy -f CONF -db` on loopback, servers from `_http._tcp.NAME.DOMAIN` SRV.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(dns_port: u16, name: &str) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = kit::free_port();
        let config = format!(
            "defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 500ms\n\
             \x20   timeout client 10s\n\
             \x20   timeout server 10s\n\
             \x20   retries 3\n\
             \x20   retry-on conn-failure empty-response response-timeout 502 503\n\
             \x20   option redispatch 1\n\
             resolvers rundock\n\
             \x20   nameserver rundock 127.0.0.1:{dns_port}\n\
             \x20   accepted_payload_size 1232\n\
             \x20   timeout resolve 200ms\n\
             \x20   timeout retry 200ms\n\
             \x20   hold valid 200ms\n\
             \x20   hold obsolete 1s\n\
             frontend web\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend instances\n\
             backend instances\n\
             \x20   server-template inst 2 _http._tcp.{name}.{DOMAIN} resolvers rundock init-addr none resolve-prefer ipv4\n"
        );
        let conf = dir.path().join("haproxy.cfg");
        std::fs::write(&conf, config).unwrap();
        let child = kit::proxies::spawn_haproxy(&conf);
        Haproxy {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serving(port: u16, version: &str) -> bool {
    kit::wait_for(Duration::from_secs(20), || {
        (http_get(port, "/", Duration::from_secs(2)).as_deref() == Some(version)).then_some(())
    })
    .is_some()
}

/// start-first then stop-first through the proxy on `port`; prints both.
fn both_orders(proxy: &str, etcd: &kit::Etcd, service: &Service, port: u16) {
    let [_, v2, _] = images();
    let name = &service.name;
    assert!(serving(port, "v1"), "{proxy} serves v1");

    let first = update_under_traffic(
        &service.host,
        port,
        options(name, etcd, &v2, "v2", true, "start-first"),
    );
    eprintln!(
        "{proxy} start-first: {} of {} requests failed, {} of {SLOW_REQUESTS} slow requests completed, module {:.1}s: {}",
        first.failed,
        first.total,
        first.slow_ok,
        first.wall.as_secs_f64(),
        first.module["msg"]
    );
    assert!(first.module.get("failed").is_none(), "{}", first.module);
    let outcome = service
        .host
        .tree(name)
        .join("services/container/rundock-update.json");
    eprintln!(
        "{proxy} start-first outcome: {}",
        std::fs::read_to_string(outcome).unwrap_or_default()
    );
    assert_one_announced(etcd, name);
    assert!(serving(port, "v2"), "{proxy} serves v2");

    let [v1, _, _] = images();
    let second = update_under_traffic(
        &service.host,
        port,
        options(name, etcd, &v1, "v1", true, "stop-first"),
    );
    eprintln!(
        "{proxy} stop-first: {} of {} requests failed, {} of {SLOW_REQUESTS} slow requests completed, module {:.1}s",
        second.failed,
        second.total,
        second.slow_ok,
        second.wall.as_secs_f64()
    );
    assert!(second.module.get("failed").is_none(), "{}", second.module);
    assert_one_announced(etcd, name);

    assert_eq!(first.failed, 0, "{proxy} start-first lost requests");
    assert_eq!(
        first.slow_ok, SLOW_REQUESTS,
        "{proxy} start-first cut slow requests"
    );
    assert!(first.total > 50, "{first:?}");
}

#[test]
fn start_first_through_haproxy_loses_no_request() {
    let etcd = kit::Etcd::start();
    let dns = kit::DnsServer::start(Path::new(BIN), &etcd, DOMAIN);
    let service = Service::deploy(&etcd, "sfh", "start-first");
    let haproxy = Haproxy::start(dns.port, &service.name);
    both_orders("haproxy", &etcd, &service, haproxy.port);
}

#[test]
fn start_first_through_nginx_loses_no_request() {
    let etcd = kit::Etcd::start();
    let service = Service::deploy(&etcd, "sfn", "start-first");
    let front = NginxFront::start(&etcd, DOMAIN, &service.name, 10);
    assert!(serving(front.port, "v1"), "nginx: {}", front.logs());
    // The worker of the first (placeholder) config answers 502 until it has finished
    // its graceful exit after the first reload: that is set-up, not the update.
    let settled = kit::wait_for(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(front.dir.path().join("error.log")).unwrap_or_default();
        log.contains("exited with code").then_some(())
    });
    assert!(settled.is_some(), "the first nginx worker did not exit");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        both_orders("nginx", &etcd, &service, front.port)
    }));
    if let Err(panic) = outcome {
        eprintln!(
            "nginx error.log:\n{}\nwatch log:\n{}",
            std::fs::read_to_string(front.dir.path().join("error.log")).unwrap_or_default(),
            front.logs()
        );
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_new_container_that_never_passes_its_check_is_removed_and_the_old_keeps_serving() {
    let etcd = kit::Etcd::start();
    let service = Service::deploy(&etcd, "sff", "start-first");
    let name = &service.name;
    let before_port = record_port(&etcd, name).expect("announced");
    let before_value = etcd.get_prefix(&key(name));
    let [_, _, v3] = images();
    let mut bad = options(name, &etcd, &v3, "v3", false, "start-first");
    bad["update_timeout"] = json!(4);
    let (r, _) = service.host.call(bad, false, false);
    assert_eq!(r["failed"], json!(true), "{r}");
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("health check http :8080/ready.html failed"),
        "the message names the check: {msg}"
    );
    // The old container serves, keeps its record (same value), and is the only one.
    assert_eq!(containers(name), [(name.to_string(), true)]);
    assert_eq!(etcd.get_prefix(&key(name)), before_value);
    assert_eq!(
        http_get(before_port, "/", Duration::from_secs(2)).as_deref(),
        Some("v1")
    );
    // The tree describes what runs: the old spec is back, so a second run of the failing
    // update tries again rather than reporting no change.
    let spec = std::fs::read_to_string(service.host.tree(name).join("spec.json")).unwrap();
    assert!(spec.contains("rundock-test-sf:v1"), "{spec}");
}

/// Kills the tree's supervisor (runsv starts it again) `delay` after the module sent
/// the update, and waits for the module.
fn kill_during_switch(service: &Service, new_options: Value, delay: Duration) -> Value {
    let pid_file: PathBuf = service
        .host
        .tree(&service.name)
        .join("services/container/supervise/pid");
    let killer = std::thread::spawn(move || {
        let until = Instant::now() + delay;
        // Every supervisor pid seen until then: the HUP restarts it once on purpose.
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Only a supervisor: runsv leaves the file empty (or stale) between two lives.
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid = pid.trim();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !pid.is_empty() && String::from_utf8_lossy(&cmdline).contains("supervise") {
            let _ = kit::run("kill", &["-KILL", pid]);
        }
    });
    let (r, _) = service.host.call(new_options, false, false);
    killer.join().unwrap();
    r
}

#[test]
fn a_supervisor_killed_mid_switch_converges_to_one_announced_container() {
    let runs: u64 = std::env::var("RUNDOCK_SF_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let etcd = kit::Etcd::start();
    let service = Service::deploy(&etcd, "sfk", "start-first");
    let name = &service.name;
    let [v1, v2, _] = images();
    // A cheap pseudo-random sequence of moments across the switch (about 0-3 s).
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    for run in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 3000);
        let (image, version) = if run % 2 == 0 {
            (&v2, "v2")
        } else {
            (&v1, "v1")
        };
        let r = kill_during_switch(
            &service,
            options(name, &etcd, image, version, true, "start-first"),
            delay,
        );
        // The restarted supervisor finishes the switch (or redoes it) and reports it.
        assert!(
            r.get("failed").is_none(),
            "run {run}, kill at {delay:?}: {r}"
        );
        assert_one_announced(&etcd, name);
        let port = docker_port(name).unwrap();
        let serves = http_get(port, "/", Duration::from_secs(2));
        eprintln!("run {run}: kill at {delay:?}: serving {serves:?}");
        // Converged on the newest healthy container: the one the module asked for.
        assert_eq!(serves.as_deref(), Some(version), "{r}");
    }
}

/// A `tcp` check on a new container that never listens: Docker's userland proxy accepts
/// on its published port all the same, but the check looks for the listener in the
/// container's own network namespace, so the update fails, naming the check, and the
/// old container keeps serving and its record.
#[test]
fn a_new_container_that_does_not_listen_fails_its_tcp_check_and_the_old_keeps_serving() {
    let etcd = kit::Etcd::start();
    let [v1, _, v3] = images();
    let tcp_checked = |mut options: Value| {
        options["health"] = json!([{"kind": "tcp", "port": 8080, "interval": 1, "timeout": 1}]);
        options
    };
    let host = Host::new();
    let runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("sft");
    let (r, _) = host.call(
        tcp_checked(options(&name, &etcd, &v1, "v1", true, "start-first")),
        false,
        false,
    );
    assert!(r.get("failed").is_none(), "{r}");
    let service = Service {
        host,
        _runsvdir: runsvdir,
        name,
    };
    let name = &service.name;
    let before_port = record_port(&etcd, name).expect("announced");
    let before_value = etcd.get_prefix(&key(name));

    let mut silent = tcp_checked(options(name, &etcd, &v3, "v3", false, "start-first"));
    silent["command"] = json!(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]);
    silent["update_timeout"] = json!(4);
    let (r, _) = service.host.call(silent, false, false);
    assert_eq!(r["failed"], json!(true), "{r}");
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("health check tcp :8080 failed")
            && msg.contains("nothing in the container listens on port 8080"),
        "the message names the check and why: {msg}"
    );
    assert_eq!(containers(name), [(name.to_string(), true)]);
    assert_eq!(etcd.get_prefix(&key(name)), before_value);
    assert_eq!(
        http_get(before_port, "/", Duration::from_secs(2)).as_deref(),
        Some("v1")
    );
}
