//! `unhealthy_after` on real parts (Docker, runit, etcd; nginx through `rundock watch`):
//! a container whose HTTP server hangs while the container keeps running is replaced.
//!
//! The test container serves with busybox httpd until `/hang` appears in it, then
//! SIGSTOPs the server: the port still accepts connections (the kernel's backlog) and
//! nothing answers, pid 1 stays alive, so Docker sees a running container.
//!
//! * stop-first: the hung container is replaced by a new one within the configured
//!   rounds, the record comes back with it, the announcer's state file shows the
//!   replacement and its reason, the supervisor's log says it once;
//! * a container that never passed its check is not replaced by this rule;
//! * a container that hangs every time soon after it became healthy is replaced at the
//!   back-off rate (10 s, then 20 s), not in a loop;
//! * start-first through nginx: requests fail only while the hang is being detected.

use crate::common;

use common::{unique, Host, NginxFront};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.rp.example.com";

/// The module options of a service serving `ok` at `/` on 8080. `check_path` is what
/// the health check asks for; `hang_after`: the container hangs by itself that many
/// seconds after it started.
fn options(
    name: &str,
    etcd: &kit::Etcd,
    order: &str,
    check_path: &str,
    unhealthy_after: u32,
    hang_after: Option<u32>,
) -> Value {
    let self_hang = hang_after.map_or(String::new(), |s| format!("(sleep {s}; touch /hang) & "));
    let script = format!(
        "mkdir -p /www; echo ok >/www/index.html; httpd -f -p 8080 -h /www & h=$!; \
         trap 'kill -9 $h; exit 0' TERM; {self_hang}\
         while [ ! -e /hang ]; do sleep 0.1; done; kill -STOP $h; \
         while true; do sleep 0.2; done"
    );
    json!({
        "state": "enabled", "name": name, "image": kit::TEST_IMAGE,
        "pull": "never", "command": ["sh", "-c", script],
        "announce": "auto", "port": 8080, "announce_as": "127.0.0.0/8",
        "domain": DOMAIN, "host_label": "node-1", "etcd": etcd.endpoint(), "ttl": 10,
        "dns_ttl": 1, "stop_timeout": 2,
        "health": [{"kind": "http", "port": 8080, "path": check_path, "interval": 1, "timeout": 1}],
        "unhealthy_after": unhealthy_after, "update": order, "update_timeout": 15,
    })
}

fn key(name: &str) -> String {
    format!("/skydns/com/example/rp/s/{name}/node-1")
}

fn record_port(etcd: &kit::Etcd, name: &str) -> Option<u16> {
    let text = etcd.get_prefix(&key(name));
    let value: Value = serde_json::from_str(text.lines().nth(1)?).ok()?;
    value["port"].as_u64().map(|p| p as u16)
}

fn container_id(name: &str) -> Option<String> {
    let out = kit::docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", name]);
    let text = kit::stdout(&out);
    let (id, running) = text.trim().split_once(' ')?;
    (running == "true").then(|| id.to_string())
}

/// Containers of the service (any state, any name).
fn containers(name: &str) -> Vec<String> {
    let out = kit::docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=rundock.service={name}"),
        "--format",
        "{{.Names}}",
    ]);
    kit::stdout(&out).lines().map(str::to_string).collect()
}

fn docker_port(container: &str) -> Option<u16> {
    let text = kit::stdout(&kit::docker(&["port", container, "8080/tcp"]));
    text.lines().next()?.rsplit(':').next()?.trim().parse().ok()
}

/// The body of a 200 answer to GET `path`, `None` for anything else.
fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.trim().to_string())
}

fn hang(name: &str) {
    let out = kit::docker(&["exec", name, "touch", "/hang"]);
    assert!(out.status.success(), "docker exec touch /hang failed");
}

struct Service {
    host: Host,
    _runsvdir: kit::Runsvdir,
    name: String,
}

impl Service {
    fn deploy(prefix: &str, options_for: impl FnOnce(&str) -> Value) -> Service {
        kit::ensure_test_image();
        let host = Host::new();
        let runsvdir = kit::Runsvdir::start(&host.service_dir());
        let name = unique(prefix);
        let (r, _) = host.call(options_for(&name), false, false);
        assert!(r.get("failed").is_none(), "{r}");
        Service {
            host,
            _runsvdir: runsvdir,
            name,
        }
    }

    fn announcer_state(&self) -> Value {
        let path = self
            .host
            .tree(&self.name)
            .join("services/announce/rundock-announce.json");
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    fn replace_file(&self) -> std::path::PathBuf {
        self.host
            .tree(&self.name)
            .join("services/container/rundock-replace.json")
    }

    fn log(&self, sibling: &str) -> String {
        let path = self
            .host
            .path("log")
            .join(&self.name)
            .join(sibling)
            .join("current");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits until the record carries the running container's port and it answers;
    /// that container's id and port.
    fn announced(&self, etcd: &kit::Etcd, timeout: Duration) -> Option<(String, u16)> {
        kit::wait_for(timeout, || {
            let id = container_id(&self.name)?;
            let port = docker_port(&self.name)?;
            (record_port(etcd, &self.name) == Some(port)
                && http_get(port, "/", Duration::from_secs(1)).as_deref() == Some("ok"))
            .then_some((id, port))
        })
    }

    fn dump(&self) -> String {
        format!(
            "containers {:?}\nannouncer state {}\ncontainer log:\n{}\nannounce log:\n{}",
            containers(&self.name),
            self.announcer_state(),
            self.log("container"),
            self.log("announce")
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.host
            .call(json!({"state": "absent", "name": self.name}), false, false);
    }
}

/// Hangs the announced container and waits for another one to serve in its place; the
/// time from the hang to the replacement being announced and answering.
fn hang_and_await_replacement(service: &Service, etcd: &kit::Etcd) -> (String, String, Duration) {
    let (old, _) = service
        .announced(etcd, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("announced before the hang\n{}", service.dump()));
    let hung_at = Instant::now();
    hang(&service.name);
    let (new, _) = kit::wait_for(Duration::from_secs(45), || {
        service
            .announced(etcd, Duration::from_millis(1))
            .filter(|(id, _)| *id != old)
    })
    .unwrap_or_else(|| panic!("no replacement served\n{}", service.dump()));
    (old, new, hung_at.elapsed())
}

#[test]
fn a_hung_container_is_replaced_stop_first() {
    let etcd = kit::Etcd::start();
    let service = Service::deploy("rps", |name| {
        options(name, &etcd, "stop-first", "/", 2, None)
    });
    let (old, new, took) = hang_and_await_replacement(&service, &etcd);
    eprintln!("stop-first: hang to the replacement serving (announced, answering): {took:.1?}");
    // 2 rounds of (interval 1 s + timeout 1 s) to detect, then stop (the hung server
    // ignores nothing: pid 1 handles TERM) and a new container: well within 30 s.
    assert!(took < Duration::from_secs(30), "bounded: {took:?}");
    assert_eq!(containers(&service.name), vec![service.name.clone()]);
    let state = kit::wait_for(Duration::from_secs(15), || {
        let state = service.announcer_state();
        (state["replacements"] == json!(1)).then_some(state)
    })
    .unwrap_or_else(|| panic!("the replacement is in the state file\n{}", service.dump()));
    let last = &state["last_replacement"];
    assert_eq!(last["container"], json!(old), "{state}");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("http :8080/") && reason.contains("failed 2 times in a row"),
        "{reason}"
    );
    assert!(state["replace_backoff_until"].as_u64().is_some(), "{state}");
    assert!(
        !service.replace_file().exists(),
        "the request is removed once acted on"
    );
    let said = kit::wait_for(Duration::from_secs(10), || {
        let log = service.log("container");
        (log.matches("replaced: health check").count() >= 1).then_some(log)
    })
    .unwrap_or_else(|| panic!("the supervisor logs the replacement\n{}", service.dump()));
    assert_eq!(
        said.matches("replaced: health check").count(),
        1,
        "said once: {said}"
    );
    assert!(said.contains(&old[..12]), "{said}");
    assert_ne!(old, new);
}

#[test]
fn a_container_that_never_was_healthy_is_not_replaced() {
    let etcd = kit::Etcd::start();
    // The check asks for a page that never exists; one failed round would be enough.
    let service = Service::deploy("rpn", |name| {
        options(name, &etcd, "stop-first", "/missing.html", 1, None)
    });
    let first = kit::wait_for(Duration::from_secs(30), || container_id(&service.name))
        .unwrap_or_else(|| panic!("the container runs\n{}", service.dump()));
    let failing = kit::wait_for(Duration::from_secs(15), || {
        (service.announcer_state()["checks"][0]["pass"] == json!(false)).then_some(())
    });
    assert!(failing.is_some(), "the check fails\n{}", service.dump());
    // Many rounds of a failing check (interval 1 s, timeout 1 s).
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        container_id(&service.name).as_deref(),
        Some(first.as_str()),
        "{}",
        service.dump()
    );
    let state = service.announcer_state();
    assert_eq!(state["replacements"], json!(0), "{state}");
    assert!(!service.replace_file().exists());
    assert!(
        !service.log("announce").contains("replace"),
        "{}",
        service.dump()
    );
}

#[test]
fn a_container_that_keeps_hanging_is_replaced_at_the_back_off_rate() {
    let etcd = kit::Etcd::start();
    // Healthy within about a second, hung 3 s after its start, every time.
    let service = Service::deploy("rpb", |name| {
        options(name, &etcd, "stop-first", "/", 1, Some(3))
    });
    let started = Instant::now();
    let mut requests: Vec<(String, u64)> = Vec::new();
    while started.elapsed() < Duration::from_secs(45) {
        let state = service.announcer_state();
        let last = &state["last_replacement"];
        if let (Some(container), Some(at)) = (last["container"].as_str(), last["at"].as_u64()) {
            if requests.last().map(|(c, _)| c.as_str()) != Some(container) {
                requests.push((container.to_string(), at));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let gaps: Vec<u64> = requests.windows(2).map(|w| w[1].1 - w[0].1).collect();
    eprintln!(
        "back-off: {} replacements in 45 s, gaps {gaps:?} s",
        requests.len()
    );
    // Without a back-off one cycle (healthy, hang after 3 s, one failed round, restart)
    // takes about 6 s: 7 or more in 45 s.
    assert!(
        (2..=4).contains(&requests.len()),
        "{requests:?}\n{}",
        service.dump()
    );
    for (i, gap) in gaps.iter().enumerate() {
        // 10 s, 20 s, ...; the times are whole seconds.
        let least = 10u64 << i;
        assert!(
            *gap + 1 >= least,
            "gap {i} is {gap}s, at least {least}s: {gaps:?}"
        );
    }
}

/// `GET /` every 20 ms through the proxy on a thread: (failed, total, when the last
/// failure was).
struct Traffic {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<(usize, usize, Option<Instant>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new((0, 0, None)));
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let ok = http_get(port, "/", Duration::from_secs(5)).as_deref() == Some("ok");
                    let mut counts = counts.lock().unwrap();
                    counts.1 += 1;
                    if !ok {
                        counts.0 += 1;
                        counts.2 = Some(Instant::now());
                    }
                    drop(counts);
                    std::thread::sleep(Duration::from_millis(20).saturating_sub(started.elapsed()));
                }
            })
        };
        Traffic {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize, Option<Instant>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        *self.counts.lock().unwrap()
    }
}

#[test]
fn a_hung_container_is_replaced_start_first_through_nginx() {
    let etcd = kit::Etcd::start();
    let service = Service::deploy("rpf", |name| {
        options(name, &etcd, "start-first", "/", 2, None)
    });
    let front = NginxFront::start(&etcd, DOMAIN, &service.name, 2);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let served = kit::wait_for(Duration::from_secs(30), || {
            (http_get(front.port, "/", Duration::from_secs(2)).as_deref() == Some("ok"))
                .then_some(())
        });
        assert!(served.is_some(), "nginx serves the service");
        // The worker of the placeholder config answers 502 until it has exited.
        let settled = kit::wait_for(Duration::from_secs(10), || {
            let log =
                std::fs::read_to_string(front.dir.path().join("error.log")).unwrap_or_default();
            log.contains("exited with code").then_some(())
        });
        assert!(settled.is_some(), "the first nginx worker did not exit");
        let traffic = Traffic::start(front.port);
        std::thread::sleep(Duration::from_secs(1));
        let (old, new, took) = hang_and_await_replacement(&service, &etcd);
        let hung_at = Instant::now() - took;
        // nginx follows the record within its watch's reload: wait until it answers.
        let through_nginx = kit::wait_for(Duration::from_secs(20), || {
            (http_get(front.port, "/", Duration::from_secs(2)).as_deref() == Some("ok"))
                .then(Instant::now)
        })
        .expect("nginx serves the replacement");
        std::thread::sleep(Duration::from_secs(3));
        let (failed, total, last_failure) = traffic.finish();
        eprintln!(
            "start-first through nginx: replacement announced {took:.1?} after the hang, served through nginx {:.1?} after it; {failed} of {total} requests failed, the last {:.1?} after the hang",
            through_nginx - hung_at,
            last_failure.map(|at| at.saturating_duration_since(hung_at))
        );
        assert_ne!(old, new);
        assert_eq!(
            containers(&service.name),
            vec![service.name.clone()],
            "the hung one is gone"
        );
        // Requests fail only while the hang is detected, not after the switch.
        let last_failure = last_failure.expect("requests to the hung container fail");
        assert!(
            last_failure <= through_nginx + Duration::from_secs(3),
            "no failure once the replacement serves (a request in flight may end in nginx's 2 s read timeout)"
        );
        assert!(service.log("container").contains("replaced: health check"));
    }));
    if let Err(panic) = outcome {
        eprintln!("{}\n{}", front.logs(), service.dump());
        std::panic::resume_unwind(panic);
    }
}
