//! HAProxy follows rundock's records: three instances of a service deployed with the
//! module under runit, announced in etcd, found by HAProxy 2.6 through
//! `server-template … resolvers` asking `rundock dns` for `_http._tcp.NAME.DOMAIN` SRV.
//! A `docker kill` of one instance takes it out of HAProxy's servers; once runit has it
//! running and healthy again, HAProxy sends to it again. Requests go through HAProxy
//! every 50 ms all along; the failures and the time from death to removal are printed.
//! The test has HAProxy ask every 200 ms, so that it sees the withdrawal before the
//! restarted instance is announced again. `haproxy_removal_time` (ignored, run by
//! `benches/dns-haproxy.sh`) repeats the kill ten times with HAProxy's default 1 s, where
//! a quick restart can come back before HAProxy asks again, and prints the medians.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.test.example.com";
const INSTANCES: usize = 3;
const REQUEST_EVERY: Duration = Duration::from_millis(50);

/// `haproxy -f CONF -db` on a loopback port, with an admin socket; stopped on drop.
struct Haproxy {
    child: Child,
    port: u16,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `resolve_every` is HAProxy's `timeout resolve`: how often it asks again.
    fn start(dns_port: u16, srv_name: &str, resolve_every: Duration) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = kit::free_port();
        let socket = dir.path().join("admin.sock");
        let config = format!(
            "global\n\
             \x20   stats socket {socket} mode 600 level admin\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 500ms\n\
             \x20   timeout client 5s\n\
             \x20   timeout server 5s\n\
             resolvers rundock\n\
             \x20   nameserver rundock 127.0.0.1:{dns_port}\n\
             \x20   accepted_payload_size 1232\n\
             \x20   timeout resolve {resolve_ms}ms\n\
             \x20   timeout retry 200ms\n\
             \x20   hold obsolete 0s\n\
             frontend web\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend instances\n\
             backend instances\n\
             \x20   balance roundrobin\n\
             \x20   server-template inst 5 {srv_name} resolvers rundock init-addr none resolve-prefer ipv4\n",
            socket = socket.display(),
            resolve_ms = resolve_every.as_millis()
        );
        let conf = dir.path().join("haproxy.cfg");
        std::fs::write(&conf, config).unwrap();
        let child = kit::proxies::spawn_haproxy(&conf);
        Haproxy {
            child,
            port,
            socket,
            _dir: dir,
        }
    }

    /// The ports of the servers HAProxy would send to now (running, address resolved).
    fn active_ports(&self) -> BTreeSet<u16> {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return BTreeSet::new();
        };
        let _ = s.write_all(b"show servers state instances\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state … srv_port (18).
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 18 && f[5] == "2" && f[4] != "-")
            .filter_map(|f| f[18].parse().ok())
            .collect()
    }

    /// One GET through HAProxy: the body (the instance's name) on 200, else `None`.
    fn get(&self) -> Option<String> {
        let mut s =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1))
                .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1) == Some("200")).then(|| body.trim().to_string())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests through HAProxy every 50 ms on a thread: (failed, total) and the bodies.
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(usize, usize, Vec<String>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(haproxy: Arc<Haproxy>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((0, 0, Vec::new())));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let body = haproxy.get();
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.1 += 1;
                        match body {
                            Some(body) => seen.2.push(body),
                            None => seen.0 += 1,
                        }
                    }
                    std::thread::sleep(REQUEST_EVERY.saturating_sub(started.elapsed()));
                }
            })
        };
        Traffic {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// (failed, total) so far, and whether `body` was served since the last call.
    fn take(&self, body: &str) -> (usize, usize, bool) {
        let mut seen = self.seen.lock().unwrap();
        let served = seen.2.iter().any(|b| b == body);
        seen.2.clear();
        (seen.0, seen.1, served)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A web service answering its own name, announced under `group.DOMAIN`.
fn instance(host: &Host, name: &str, group: &str, port: u16, etcd: &kit::Etcd) -> String {
    format!(
        "name={name} image={} command=\"sh -c 'mkdir -p /www && echo {name} >/www/index.html && exec httpd -f -p 8080 -h /www'\" \
         ports=127.0.0.1:{port}:8080 announce={port} port=8080 announce_as=127.0.0.0/8 domain={group}.{DOMAIN} \
         host_label=node-1 etcd={} ttl=10 stop_timeout=2 health=http:{port}/ {}",
        kit::TEST_IMAGE,
        etcd.endpoint(),
        host.dirs_kv()
    )
}

struct Deployment {
    // Dropped first: stops the services while their tree (in `host`) still exists.
    _runsvdir: kit::Runsvdir,
    host: Host,
    names: Vec<String>,
    ports: Vec<u16>,
    srv_name: String,
}

impl Deployment {
    fn new(etcd: &kit::Etcd) -> Deployment {
        kit::ensure_test_image();
        let host = Host::new();
        let runsvdir = kit::Runsvdir::start(&host.service_dir());
        let group = unique("hx");
        let mut names = Vec::new();
        let mut ports = Vec::new();
        for i in 1..=INSTANCES {
            let name = format!("{group}-{i}");
            let port = kit::free_port();
            let (r, out) = host.adhoc(
                &format!(
                    "state=enabled wait=yes {}",
                    instance(&host, &name, &group, port, etcd)
                ),
                &[],
            );
            assert_eq!(r["changed"], json!(true), "{r} {out:?}");
            names.push(name);
            ports.push(port);
        }
        Deployment {
            host,
            _runsvdir: runsvdir,
            names,
            ports,
            srv_name: format!("_http._tcp.{group}.{DOMAIN}"),
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for name in &self.names {
            self.host.adhoc(
                &format!("state=absent name={name} {}", self.host.dirs_kv()),
                &[],
            );
        }
    }
}

/// What one kill of instance `victim` did.
struct KillRound {
    /// Death → HAProxy no longer has the instance among its servers; `None` when the
    /// instance was back (withdrawn and announced again) before HAProxy asked again.
    removed_after: Option<Duration>,
    /// Death → the instance serves through HAProxy again.
    back_after: Duration,
    failed: usize,
    total: usize,
}

fn kill_and_restore(
    deployment: &Deployment,
    haproxy: &Haproxy,
    traffic: &Traffic,
    victim: usize,
) -> KillRound {
    let (name, port) = (&deployment.names[victim], deployment.ports[victim]);
    let (failed_before, total_before, _) = traffic.take(name);
    let started = kit::stdout(&kit::docker(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}}",
        name,
    ]));
    let killed = Instant::now();
    assert!(kit::docker(&["kill", name]).status.success());
    let removed_after = kit::wait_for(Duration::from_secs(10), || {
        if !haproxy.active_ports().contains(&port) {
            return Some(Some(killed.elapsed()));
        }
        // Restarted, healthy and announced again between two of HAProxy's resolutions.
        let id = kit::stdout(&kit::docker(&[
            "inspect",
            "-f",
            "{{.State.StartedAt}}",
            name,
        ]));
        (id != started && traffic.take(name).2).then_some(None)
    })
    .expect("HAProxy still sends to the killed instance after 10 s, and it is not back");
    let listed = kit::wait_for(Duration::from_secs(60), || {
        haproxy.active_ports().contains(&port).then_some(())
    });
    assert!(
        listed.is_some(),
        "the restarted instance never came back into HAProxy"
    );
    // Requests sent before it left may still have reached it: only count new ones.
    traffic.take(name);
    let back = kit::wait_for(Duration::from_secs(10), || {
        (traffic.take(name).2).then(|| killed.elapsed())
    });
    let back_after = back.expect("the restarted instance never served through HAProxy again");
    let (failed, total, _) = traffic.take(name);
    KillRound {
        removed_after,
        back_after,
        failed: failed - failed_before,
        total: total - total_before,
    }
}

fn start_all(rounds: usize, resolve_every: Duration) -> Vec<KillRound> {
    let etcd = kit::Etcd::start();
    let dns = kit::DnsServer::start(Path::new(BIN), &etcd, DOMAIN);
    let deployment = Deployment::new(&etcd);

    let srv = kit::wait_for(Duration::from_secs(5), || {
        let lines = dns.dig(&deployment.srv_name, "SRV");
        (lines.lines().count() == INSTANCES).then_some(lines)
    });
    assert!(
        srv.is_some(),
        "rundock dns does not answer {} SRV",
        deployment.srv_name
    );

    let haproxy = Arc::new(Haproxy::start(
        dns.port,
        &deployment.srv_name,
        resolve_every,
    ));
    let all: BTreeSet<u16> = deployment.ports.iter().copied().collect();
    let found = kit::wait_for(Duration::from_secs(15), || {
        (haproxy.active_ports() == all).then_some(())
    });
    assert!(
        found.is_some(),
        "HAProxy found {:?} of {all:?}",
        haproxy.active_ports()
    );
    // Every instance serves through HAProxy.
    let mut served = BTreeSet::new();
    for _ in 0..4 * INSTANCES {
        served.extend(haproxy.get());
    }
    let names: BTreeSet<String> = deployment.names.iter().cloned().collect();
    assert_eq!(served, names);

    let traffic = Traffic::start(haproxy.clone());
    (0..rounds)
        .map(|round| {
            let r = kill_and_restore(&deployment, &haproxy, &traffic, round % INSTANCES);
            eprintln!(
                "kill {}: out of HAProxy after {:?}, serving again after {:?}; {} of {} requests failed",
                round + 1,
                r.removed_after,
                r.back_after,
                r.failed,
                r.total
            );
            r
        })
        .collect()
}

#[test]
fn haproxy_finds_instances_by_srv_and_drops_a_killed_one() {
    // Asking every 200 ms, HAProxy sees the withdrawal before the restarted container
    // is announced again (about 2 s), so the removal itself is what is checked.
    let rounds = start_all(1, Duration::from_millis(200));
    assert!(
        rounds[0].removed_after.is_some(),
        "HAProxy kept the killed instance"
    );
}

/// Median over 10 kills: `benches/dns-haproxy.sh`.
#[test]
#[ignore = "benchmark: prints numbers"]
fn haproxy_removal_time() {
    // HAProxy's default interval: the instance may be back before it asks again.
    let rounds = start_all(10, Duration::from_secs(1));
    let removed: Vec<Duration> = rounds.iter().filter_map(|r| r.removed_after).collect();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let failed: usize = rounds.iter().map(|r| r.failed).sum();
    let total: usize = rounds.iter().map(|r| r.total).sum();
    println!(
        "HAProxy {} kills (timeout resolve 1s): out of HAProxy in {} (median {:?}, max {:?}), \
         back before HAProxy asked again in {}; death -> serving again median {:?}; \
         failed requests {failed} of {total} (every 50 ms, {:.1} per kill)",
        rounds.len(),
        removed.len(),
        (!removed.is_empty()).then(|| median(removed.clone())),
        removed.iter().max(),
        rounds.len() - removed.len(),
        median(rounds.iter().map(|r| r.back_after).collect()),
        failed as f64 / rounds.len() as f64
    );
}
