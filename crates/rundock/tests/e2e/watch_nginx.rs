//! `rundock watch` in front of a real nginx (Debian's nginx-light, started here on
//! loopback with its own prefix, config and pid file): three backends deployed with the
//! module on three simulated hosts, the upstream rendered from their records, then a
//! kill, a drain (`sv down`) and their returns; and every kind of bad input, which must
//! leave the old file in place and the watcher running.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.watch.example.com";
const PREFIX: &str = "/skydns/com/example/watch/s";

/// The shipped example plus a map nginx serves at /_instances, so the test reads which
/// instances the running nginx workers were configured with.
fn frontend_template() -> String {
    format!(
        "{}map $host $rendered_instances {{\n    default \"{{% for i in instances %}}{{{{ i.instance }}}} {{% endfor %}}\";\n}}\n",
        include_str!("../../../../examples/nginx-upstream.conf.j2")
    )
}

/// nginx on loopback, configured and run from a temp dir; stopped on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx proxying `/` to upstream `upstream` (defined in `dir/upstream.conf`,
    /// which must exist) with retries off, so a request sent to a dead backend fails.
    fn start(dir: &Path, upstream: &str) -> Nginx {
        let port = kit::free_port();
        let child = kit::proxies::spawn_nginx(
            dir,
            port,
            &format!(
                "    location = /_instances {{ return 200 $rendered_instances; }}\n\
                 \x20   location / {{ proxy_pass http://{upstream}; proxy_next_upstream off; proxy_connect_timeout 1s; }}\n"
            ),
        );
        let nginx = Nginx {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        let up = kit::wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "nginx did not listen: {}", nginx.error_log());
        nginx
    }

    fn check_argv(&self) -> Vec<String> {
        kit::proxies::nginx_argv(&self.dir, &["-t", "-q"])
    }

    fn reload_argv(&self) -> Vec<String> {
        kit::proxies::nginx_argv(&self.dir, &["-s", "reload"])
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// How often the master has re-read its configuration.
    fn reloads(&self) -> usize {
        self.error_log().matches("reconfiguring").count()
    }

    /// The body of a 200 answer to GET `path`, else `None`.
    fn get(&self, path: &str) -> Option<String> {
        http_get(self.port, path)
    }

    fn instances(&self) -> String {
        self.get("/_instances").unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers; a KILL would orphan them.
        let _ = kit::run("kill", &["-TERM", &self.child.id().to_string()]);
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().to_string())
}

/// `rundock watch FILE`, its stderr in a file; stopped on drop.
struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(dir: &Path, etcd: &kit::Etcd, templates: serde_json::Value) -> Watcher {
        let spec = dir.join("watch.json");
        std::fs::write(
            &spec,
            json!({
                "domain": DOMAIN,
                "etcd": {"endpoints": [etcd.endpoint()], "api": "v3", "prefix": "/skydns"},
                "templates": templates,
            })
            .to_string(),
        )
        .unwrap();
        let log = dir.join("watch.log");
        let child = Command::new(BIN)
            .arg("watch")
            .arg(&spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rundock watch");
        Watcher { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, count: usize) -> bool {
        kit::wait_for(Duration::from_secs(10), || {
            (self.log().matches(needle).count() >= count).then_some(())
        })
        .is_some()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = kit::run("kill", &["-TERM", &self.child.id().to_string()]);
        let _ = self.child.wait();
    }
}

fn etcdctl_put(etcd: &kit::Etcd, key: &str, value: &str) {
    let out = kit::run(
        "etcdctl",
        &["--endpoints", &etcd.endpoint(), "put", key, value],
    );
    assert!(out.status.success(), "{out:?}");
}

/// One backend on its own simulated host: a busybox httpd answering its host label.
struct Backend {
    // Dropped first: stops the services while their tree (in `host`) still exists.
    _runsvdir: kit::Runsvdir,
    host: Host,
    name: String,
    label: String,
}

impl Backend {
    fn deploy(name: &str, label: &str, etcd: &kit::Etcd) -> Backend {
        let host = Host::new();
        let runsvdir = kit::Runsvdir::start(&host.service_dir());
        let port = kit::free_port();
        let (r, code) = host.call(
            json!({
                "state": "enabled", "wait": true, "name": name,
                "container_name": format!("{name}-{label}"),
                "image": kit::TEST_IMAGE,
                // Stops at once on docker stop (a PID 1 without a TERM handler would
                // serve on until the stop timeout and hide a missing drain).
                "command": ["sh", "-c", format!("mkdir -p /www; echo {label} >/www/index.html; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")],
                "ports": format!("127.0.0.1:{port}:8080"), "announce": port, "port": 8080,
                "announce_as": "127.0.0.0/8", "domain": DOMAIN, "host_label": label,
                "etcd": etcd.endpoint(), "ttl": 10, "stop_timeout": 2,
                "health": format!("http:{port}/"), "drain": 2,
            }),
            false,
            false,
        );
        assert_eq!(code, 0, "{r}");
        Backend {
            host,
            _runsvdir: runsvdir,
            name: name.into(),
            label: label.into(),
        }
    }

    fn container(&self) -> String {
        format!("{}-{}", self.name, self.label)
    }

    fn tree(&self) -> String {
        self.host.tree(&self.name).display().to_string()
    }
}

/// GETs `/` through nginx every 20 ms until `stop`; returns (requests, failures).
fn request_loop(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let (mut sent, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            sent += 1;
            if http_get(port, "/").is_none() {
                failed += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (sent, failed)
    })
}

/// Backends node-1..3 of `name`, deployed through the module.
fn three_backends(name: &str, etcd: &kit::Etcd) -> Vec<Backend> {
    ["node-1", "node-2", "node-3"]
        .iter()
        .map(|label| Backend::deploy(name, label, etcd))
        .collect()
}

/// The upstream nginx starts with, before the watcher has rendered one.
fn write_placeholder(upstream: &Path, name: &str) {
    std::fs::write(
        upstream,
        format!("upstream {name} {{ server 127.0.0.1:9 down; }}\nmap $host $rendered_instances {{ default \"\"; }}\n"),
    )
    .unwrap();
}

#[test]
fn nginx_follows_the_records_through_kill_and_drain_without_failed_requests_on_drain() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let name = unique("front");
    let backends = three_backends(&name, &etcd);
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream.conf");
    write_placeholder(&upstream, &name);
    std::fs::set_permissions(&upstream, std::fs::Permissions::from_mode(0o640)).unwrap();
    let nginx = Nginx::start(dir.path(), &name);
    let template = dir.path().join("upstream.conf.j2");
    std::fs::write(&template, frontend_template()).unwrap();
    let watcher = Watcher::start(
        dir.path(),
        &etcd,
        json!([{"names": [name], "template": template, "dest": upstream,
                "check": nginx.check_argv(), "reload": nginx.reload_argv()}]),
    );

    // The rendered upstream holds all three and nginx runs with it.
    let all = "node-1 node-2 node-3";
    let loaded = kit::wait_for(Duration::from_secs(15), || {
        (nginx.instances() == all).then_some(())
    });
    assert!(
        loaded.is_some(),
        "nginx serves {:?}; watch log:\n{}",
        nginx.instances(),
        watcher.log()
    );
    let rendered = std::fs::read_to_string(&upstream).unwrap();
    assert_eq!(
        rendered.matches("    server 127.0.0.1:").count(),
        3,
        "{rendered}"
    );
    let mode = std::fs::metadata(&upstream).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the old file's mode is kept");
    let mut answered: Vec<String> = (0..12).filter_map(|_| nginx.get("/")).collect();
    answered.sort();
    answered.dedup();
    assert_eq!(answered, ["node-1", "node-2", "node-3"]);

    // A change elsewhere wakes the watcher but renders the same bytes: no write, no reload.
    let reloads = nginx.reloads();
    let mtime = std::fs::metadata(&upstream).unwrap().modified().unwrap();
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/other-{name}/node-1"),
        r#"{"host":"127.0.0.1","port":9}"#,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(nginx.reloads(), reloads, "{}", nginx.error_log());
    assert_eq!(
        std::fs::metadata(&upstream).unwrap().modified().unwrap(),
        mtime
    );

    // docker kill node-3: its record goes, nginx is reloaded without it, and once runit
    // brought it back and its health check passed, it is back in the upstream.
    let stop = Arc::new(AtomicBool::new(false));
    let during_kill = request_loop(nginx.port, stop.clone());
    let reloads = nginx.reloads();
    let killed = Instant::now();
    assert!(kit::docker(&["kill", &backends[2].container()])
        .status
        .success());
    let dropped = kit::wait_for(Duration::from_secs(10), || {
        (nginx.instances() == "node-1 node-2").then(|| killed.elapsed())
    });
    let dropped = dropped.unwrap_or_else(|| panic!("node-3 still in nginx:\n{}", watcher.log()));
    assert!(nginx.reloads() > reloads, "{}", nginx.error_log());
    let back = kit::wait_for(Duration::from_secs(30), || {
        (nginx.instances() == all).then(|| killed.elapsed())
    });
    let back = back.unwrap_or_else(|| panic!("node-3 not back in nginx:\n{}", watcher.log()));
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = during_kill.join().unwrap();
    eprintln!(
        "kill: out of nginx after {dropped:?}, back after {back:?}; {failed} of {sent} requests failed"
    );

    // sv down node-2: the tree withdraws the record, waits the drain time, then stops the
    // container. The watcher must take it out of nginx inside the drain: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let during_drain = request_loop(nginx.port, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let down = kit::run("sv", &["-w", "60", "down", &backends[1].tree()]);
    assert!(down.status.success(), "{down:?}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = during_drain.join().unwrap();
    eprintln!("drain: {failed} of {sent} requests failed");
    assert!(sent > 50, "only {sent} requests");
    assert_eq!(failed, 0, "requests failed during the drain");
    assert_eq!(nginx.instances(), "node-1 node-3");

    // sv up: the instance is back in the upstream and answers.
    let up = kit::run("sv", &["up", &backends[1].tree()]);
    assert!(up.status.success());
    let back = kit::wait_for(Duration::from_secs(30), || {
        (nginx.instances() == all).then_some(())
    });
    assert!(back.is_some(), "node-2 not back:\n{}", watcher.log());
    let reached = kit::wait_for(Duration::from_secs(5), || {
        (nginx.get("/").as_deref() == Some("node-2")).then_some(())
    });
    assert!(reached.is_some(), "no request reached node-2 again");
}

#[test]
fn bad_input_is_named_leaves_the_old_file_and_the_watcher_keeps_running() {
    let etcd = kit::Etcd::start();
    let name = unique("bad");
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{name}/node-1"),
        r#"{"host":"127.0.0.1","port":8001}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = |file: &str, text: &str| {
        let path = d.join(file);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        path
    };
    // a: a template that does not parse.
    let bad_template = d.join("a.j2");
    std::fs::write(&bad_template, "{% for i in instances %}{{ i.host }").unwrap();
    let a = old("a.conf", "old a\n");
    // b: a rendering nginx -t refuses (the config includes b.conf).
    std::fs::write(
        d.join("check.conf"),
        format!(
            "pid {0}/check.pid;\nevents {{}}\nhttp {{ include {0}/b.conf; }}\n",
            d.display()
        ),
    )
    .unwrap();
    let b_template = d.join("b.j2");
    std::fs::write(
        &b_template,
        "upstream x {\n{% for i in instances %}    server {{ i.address }} no_such_parameter;\n{% endfor %}}\n",
    )
    .unwrap();
    let b = old("b.conf", "upstream x { server 127.0.0.1:9; }\n");
    let check = [
        "nginx",
        "-p",
        &d.display().to_string(),
        "-e",
        &d.join("check.log").display().to_string(),
        "-c",
        &d.join("check.conf").display().to_string(),
        "-t",
        "-q",
    ]
    .map(String::from);
    // c: a dest in a missing directory.
    let good_template = d.join("good.j2");
    std::fs::write(
        &good_template,
        "{% for i in instances %}{{ i.address }}\n{% endfor %}",
    )
    .unwrap();
    let c = d.join("missing/c.conf");
    // e: a reload command that does not exist.
    let e = d.join("e.conf");
    let watcher_dir = d.join("w");
    std::fs::create_dir(&watcher_dir).unwrap();
    let mut watcher = Watcher::start(
        &watcher_dir,
        &etcd,
        json!([
            {"names": [name], "template": bad_template, "dest": a, "reload": ["true"]},
            {"names": [name], "template": b_template, "dest": b, "check": check, "reload": ["true"]},
            {"names": [name], "template": good_template, "dest": c},
            {"names": [name], "template": good_template, "dest": e, "reload": ["/nonexistent/reload-nginx", "-s", "reload"]},
        ]),
    );
    let expect = [
        format!("rendering template {}: syntax error", bad_template.display()),
        "check [\"nginx\",\"-p\"".to_string(),
        format!("failed for {}: exit 1", b.display()),
        "no_such_parameter".to_string(),
        "the old file is back, no reload".to_string(),
        format!("writing {}: No such file or directory", c.display()),
        "reload [\"/nonexistent/reload-nginx\",\"-s\",\"reload\"] failed: cannot start /nonexistent/reload-nginx: No such file or directory".to_string(),
    ];
    for needle in &expect {
        assert!(
            watcher.wait_log(needle, 1),
            "no {needle:?} in the log:\n{}",
            watcher.log()
        );
    }
    let unchanged = |path: &Path, text: &str| {
        assert_eq!(std::fs::read_to_string(path).unwrap(), text);
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    };
    unchanged(&a, "old a\n");
    unchanged(&b, "upstream x { server 127.0.0.1:9; }\n");
    assert!(!c.exists() && !d.join("missing").exists());
    // A failed reload leaves the checked file written.
    assert_eq!(std::fs::read_to_string(&e).unwrap(), "127.0.0.1:8001\n");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.ends_with(".tmp").then_some(name)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(watcher.running(), "the watcher exited:\n{}", watcher.log());

    // Still running: a fixed template renders on the next change, and the reload that
    // failed is tried again.
    std::fs::write(
        &bad_template,
        "{% for i in instances %}{{ i.address }}\n{% endfor %}",
    )
    .unwrap();
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{name}/node-2"),
        r#"{"host":"127.0.0.2","port":8002}"#,
    );
    let fixed = kit::wait_for(Duration::from_secs(10), || {
        (std::fs::read_to_string(&a).ok()? == "127.0.0.1:8001\n127.0.0.2:8002\n").then_some(())
    });
    assert!(fixed.is_some(), "a.conf not rendered:\n{}", watcher.log());
    assert!(watcher.wait_log("reload [\"/nonexistent/reload-nginx\"", 2));
    unchanged(&b, "upstream x { server 127.0.0.1:9; }\n");
    assert!(watcher.running());
}

#[test]
fn the_module_runs_watch_as_a_sibling_in_the_service_tree() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let backend = unique("sib-web");
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{backend}/node-1"),
        r#"{"host":"127.0.0.1","port":8001}"#,
    );
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let files = tempfile::tempdir().unwrap();
    let template = files.path().join("upstream.j2");
    std::fs::write(
        &template,
        "{% for i in instances %}{{ i.address }}\n{% endfor %}",
    )
    .unwrap();
    let dest = files.path().join("upstream.conf");
    let reloads = files.path().join("reloads");
    let name = unique("sib-front");
    let (r, code) = host.call(
        json!({
            "state": "enabled", "wait": true, "name": name, "image": kit::TEST_IMAGE,
            "command": "sleep 3600", "stop_timeout": 1, "host_label": "node-1",
            "domain": DOMAIN, "etcd": etcd.endpoint(),
            "watch": [{"names": [backend], "template": template, "dest": dest,
                       "reload": ["/bin/sh", "-c", format!("echo reload >>{}", reloads.display())]}],
        }),
        false,
        false,
    );
    assert_eq!(code, 0, "{r}");
    let tree = host.tree(&name);
    assert!(tree.join("services/watch/run").is_file());
    let rendered = |text: &'static str| {
        kit::wait_for(Duration::from_secs(15), || {
            (std::fs::read_to_string(&dest).ok()? == text).then_some(())
        })
        .is_some()
    };
    let log = host.path("log").join(&name).join("watch/current");
    assert!(
        rendered("127.0.0.1:8001\n"),
        "not rendered; watch log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{backend}/node-2"),
        r#"{"host":"127.0.0.2","port":8002}"#,
    );
    assert!(rendered("127.0.0.1:8001\n127.0.0.2:8002\n"));
    let reloaded = kit::wait_for(Duration::from_secs(5), || {
        (std::fs::read_to_string(&reloads).ok()?.lines().count() == 2).then_some(())
    });
    assert!(reloaded.is_some(), "two changes, two reloads");
    let logged = kit::wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).ok().filter(|t| {
            t.contains("rundock watch: ") && t.contains("2 instance(s), written, reloaded")
        })
    });
    assert!(
        logged.is_some(),
        "the watch log has no render line:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The watch reports: status shows what it rendered, and a template that stops
    // rendering makes the service unhealthy, saying why.
    let status = || -> serde_json::Value {
        let sv_dir = host.sv_dir();
        let out = kit::run(
            BIN,
            &[
                "status",
                "--json",
                "--sv-dir",
                sv_dir.to_str().unwrap(),
                &name,
            ],
        );
        let mut all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        all.remove(0)
    };
    let s = status();
    assert_eq!(s["state"], "up", "{s}");
    assert_eq!(s["watch"]["running"], true, "{s}");
    assert_eq!(s["watch"]["templates"][0]["instances"], 2, "{s}");
    assert_eq!(s["watch"]["templates"][0]["reload"]["ok"], true, "{s}");
    assert!(s["watch"]["error"].is_null(), "{s}");
    std::fs::write(&template, "{% for i in instances %}{{ i.address }").unwrap();
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{backend}/node-4"),
        r#"{"host":"127.0.0.4","port":8004}"#,
    );
    let unhealthy = kit::wait_for(Duration::from_secs(10), || {
        let s = status();
        (s["state"] == "unhealthy").then_some(s)
    });
    let s = unhealthy.unwrap_or_else(|| panic!("still {}", status()));
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "watch: {}: render: rendering template ",
            dest.display()
        )) && reason.contains("syntax error"),
        "{reason}"
    );
    let down = kit::run("sv", &["-w", "30", "down", &tree.display().to_string()]);
    assert!(down.status.success(), "{down:?}");
    // Stopped with its tree: a later change renders nothing.
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{backend}/node-3"),
        r#"{"host":"127.0.0.3","port":8003}"#,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        "127.0.0.1:8001\n127.0.0.2:8002\n"
    );
}

/// Standard base64 (the etcd v3 JSON gateway's keys and values).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One etcd v3 gateway call over a plain socket, so the clock starts at the write and not
/// at a process start.
fn etcd_call(etcd: &kit::Etcd, path: &str, body: serde_json::Value) -> String {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", etcd.client_port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `median M (min A, max B)` of the rounds: the README quotes the range.
fn spread(samples: Vec<Duration>) -> String {
    let (min, max) = (samples.iter().min().copied(), samples.iter().max().copied());
    format!(
        "median {} (min {}, max {})",
        ms(median(samples)),
        ms(min.unwrap_or_default()),
        ms(max.unwrap_or_default())
    )
}

/// benches/watch.sh: etcd change -> nginx serving the new config, against nginx's own
/// reload as the floor; instance death -> nginx no longer configured with it.
#[test]
#[ignore = "a benchmark: benches/watch.sh"]
fn bench_watch() {
    let rounds: usize = std::env::var("RUNDOCK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let name = unique("bench");
    let backends = three_backends(&name, &etcd);
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream.conf");
    write_placeholder(&upstream, &name);
    let nginx = Nginx::start(dir.path(), &name);
    let all = "node-1 node-2 node-3";

    // Floor: write the file by hand and reload nginx; time until it serves the new map.
    let mut floor = Vec::new();
    for i in 0..rounds {
        let text = format!("upstream {name} {{ server 127.0.0.1:9 down; }}\nmap $host $rendered_instances {{ default \"floor-{i}\"; }}\n");
        let start = Instant::now();
        std::fs::write(&upstream, text).unwrap();
        let out = kit::run(
            "nginx",
            &nginx
                .reload_argv()
                .iter()
                .skip(1)
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert!(out.status.success());
        floor.push(settled(start, || nginx.instances() == format!("floor-{i}")));
    }

    let template = dir.path().join("upstream.conf.j2");
    std::fs::write(&template, frontend_template()).unwrap();
    let watcher = Watcher::start(
        dir.path(),
        &etcd,
        json!([{"names": [name], "template": template, "dest": upstream,
                "check": nginx.check_argv(), "reload": nginx.reload_argv()}]),
    );
    assert!(poll(|| nginx.instances() == all), "{}", watcher.log());

    // etcd put / delete of an instance -> nginx serving a config with / without it.
    let key = format!("{PREFIX}/{name}/extra");
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        etcd_call(
            &etcd,
            "/v3/kv/put",
            json!({"key": base64(key.as_bytes()), "value": base64(br#"{"host":"127.0.0.1","port":9}"#)}),
        );
        added.push(settled(start, || nginx.instances().starts_with("extra ")));
        let start = Instant::now();
        etcd_call(
            &etcd,
            "/v3/kv/deleterange",
            json!({"key": base64(key.as_bytes())}),
        );
        removed.push(settled(start, || nginx.instances() == all));
    }

    // docker kill -> nginx no longer configured with the instance; then wait for its return.
    let (mut withdrawn, mut death) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let victim = &backends[i % 3];
        let rest: Vec<&str> = ["node-1", "node-2", "node-3"]
            .into_iter()
            .filter(|l| *l != victim.label)
            .collect();
        let rest = rest.join(" ");
        let start = Instant::now();
        // The CLI returns well after the container died (and often after nginx followed):
        // spawn it and start polling at once.
        let mut kill = Command::new("docker")
            .args(["kill", &victim.container()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let record = format!("{PREFIX}/{name}/{}", victim.label);
        let range = json!({"key": base64(record.as_bytes())});
        assert!(poll(
            || !etcd_call(&etcd, "/v3/kv/range", range.clone()).contains("\"kvs\"")
        ));
        withdrawn.push(start.elapsed());
        death.push(settled(start, || nginx.instances() == rest));
        assert!(kill.wait().unwrap().success());
        let back = kit::wait_for(Duration::from_secs(30), || {
            (nginx.instances() == all).then_some(())
        });
        assert!(back.is_some(), "{} not back", victim.label);
    }
    println!(
        "rundock watch -> nginx 1.22 ({rounds} rounds each; debounce quiet {} ms)",
        rundock_watch::QUIET.as_millis()
    );
    println!(
        "  hand-written file + nginx -s reload -> served (floor): {}",
        spread(floor)
    );
    println!(
        "  etcd put    -> nginx serving it:                      {}",
        spread(added)
    );
    println!(
        "  etcd delete -> nginx serving without it:              {}",
        spread(removed)
    );
    println!(
        "  docker kill -> record gone from etcd:                  {}",
        spread(withdrawn)
    );
    println!(
        "  docker kill -> nginx no longer sending to it:          {}",
        spread(death)
    );
}

/// When nginx settled on the new configuration: the first answer from it after the last
/// answer from the old one. nginx lets the old workers accept for about 100 ms after a
/// reload (the master starts the new workers, sleeps 100 ms, then stops the old ones),
/// so the first new answer is not yet the end. Polls every millisecond; panics if the
/// new configuration is not served within 10 s.
fn settled(start: Instant, mut is_new: impl FnMut() -> bool) -> Duration {
    assert!(poll(&mut is_new), "the change never reached nginx");
    let mut first_new_after_old = start.elapsed();
    let window = Instant::now() + Duration::from_millis(500);
    let mut was_new = true;
    while Instant::now() < window {
        let now_new = is_new();
        if now_new && !was_new {
            first_new_after_old = start.elapsed();
        }
        was_new = now_new;
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(was_new, "nginx went back to the old configuration");
    first_new_after_old
}

/// Polls every 2 ms for up to 10 s.
fn poll(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// The start-up order of a frontend: the watch starts before nginx, with no seed file,
/// and a check that cannot pass until nginx runs (like `docker exec PROXY nginx -t` on a
/// container that is not up). The first file must be there for nginx to start with, and
/// once nginx runs the retried check passes and the owed reload follows.
#[test]
fn the_first_file_is_kept_for_nginx_to_start_with_and_reloaded_once_its_check_passes() {
    let etcd = kit::Etcd::start();
    let name = unique("first");
    etcdctl_put(
        &etcd,
        &format!("{PREFIX}/{name}/node-1"),
        r#"{"host":"127.0.0.1","port":9}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream.conf");
    let template = dir.path().join("upstream.conf.j2");
    std::fs::write(&template, frontend_template()).unwrap();
    let nginx_t = kit::proxies::nginx_argv(dir.path(), &["-t", "-q"])
        .iter()
        .map(|word| format!("'{word}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let check = format!(
        "kill -0 \"$(cat '{}/nginx.pid' 2>/dev/null)\" 2>/dev/null || {{ echo nginx is not running >&2; exit 1; }}; exec {nginx_t}",
        dir.path().display()
    );
    let watcher_dir = dir.path().join("w");
    std::fs::create_dir(&watcher_dir).unwrap();
    let watcher = Watcher::start(
        &watcher_dir,
        &etcd,
        json!([{"names": [name], "template": template, "dest": upstream,
                "check": ["/bin/sh", "-c", check],
                "reload": kit::proxies::nginx_argv(dir.path(), &["-s", "reload"])}]),
    );
    assert!(
        watcher.wait_log("is kept: there is no earlier file to put back", 1),
        "{}",
        watcher.log()
    );
    // Still there after a retry of the check: nothing deletes the only file.
    assert!(
        watcher.wait_log("nginx is not running", 2),
        "{}",
        watcher.log()
    );
    assert!(upstream.is_file(), "{}", watcher.log());
    let nginx = Nginx::start(dir.path(), &name);
    assert_eq!(
        nginx.instances(),
        "node-1",
        "nginx started with the kept file"
    );
    // The retry (back-off 1, 2, 4 s ...) checks the same bytes and reloads once.
    let reloaded = kit::wait_for(Duration::from_secs(20), || {
        watcher
            .log()
            .contains("1 instance(s), reloaded")
            .then_some(())
    });
    assert!(reloaded.is_some(), "{}", watcher.log());
    let hups = nginx.error_log().matches("(SIGHUP) received").count();
    assert_eq!(hups, 1, "one reload:\n{}", nginx.error_log());
    let log = watcher.log();
    assert!(!log.contains("the old file is back"), "{log}");
}
