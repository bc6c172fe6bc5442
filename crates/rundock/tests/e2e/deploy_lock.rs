//! The deploy lock on real Docker and runit: two changes of one service started together
//! run one after the other (the module's own timeline proves it), a change that cannot
//! have the lock in time fails naming its holder and changes nothing, and a holder that
//! is SIGKILLed lets a waiting change go at once.

use crate::common;

use common::{unique, Host, BIN};
use rundock_module::lock::{lock_path, Holder};
use rundock_testkit as kit;
use serde_json::{json, Map, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A module call running in its own process, as Ansible starts one.
struct Call {
    child: Child,
    _args: tempfile::NamedTempFile,
}

impl Call {
    fn start(host: &Host, options: &Value) -> Call {
        let mut args: Map<String, Value> = host.dirs();
        for (k, v) in options.as_object().unwrap() {
            args.insert(k.clone(), v.clone());
        }
        args.insert("_ansible_check_mode".into(), json!(false));
        args.insert("_ansible_diff".into(), json!(false));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), Value::Object(args).to_string()).unwrap();
        let child = Command::new(BIN)
            .arg(file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the module");
        Call { child, _args: file }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The result and exit code.
    fn finish(self) -> (Value, i32) {
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "module printed no single JSON object ({e}): {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (value, out.status.code().unwrap_or(-1))
    }
}

/// Kills a call still running and removes the service, whatever the test did.
struct Cleanup<'a> {
    host: &'a Host,
    name: String,
    calls: Vec<Call>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for call in &mut self.calls {
            let _ = call.child.kill();
            let _ = call.child.wait();
        }
        let (r, _) = self.host.call(
            json!({"state": "absent", "name": self.name, "lock_timeout": 60}),
            false,
            false,
        );
        assert_eq!(r["failed"], Value::Null, "clean-up: {r}");
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn container_env(name: &str) -> String {
    kit::stdout(&kit::docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{.}} {{end}}",
        name,
    ]))
}

/// The record in the lock file, once the call with `pid` holds it.
fn wait_until_held_by(host: &Host, name: &str, pid: u32) -> Holder {
    let path = lock_path(&host.sv_dir(), name);
    kit::wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Holder::parse(&text))
            .filter(|h| h.pid == pid)
    })
    .unwrap_or_else(|| panic!("pid {pid} never took the lock of {name}"))
}

#[test]
fn two_changes_started_together_never_interleave() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("lock-two");
    let service = |version: &str| {
        json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
               "command": ["sleep", "3600"], "env": {"VERSION": version},
               "stop_timeout": 1, "wait": true, "wait_timeout": 60})
    };
    let mut cleanup = Cleanup {
        host: &host,
        name: name.clone(),
        calls: Vec::new(),
    };
    let (r, code) = host.call(service("0"), false, false);
    assert_eq!(code, 0, "{r}");

    let a = Call::start(&host, &service("a"));
    let b = Call::start(&host, &service("b"));
    let pids = [a.pid(), b.pid()];
    let results = [a.finish(), b.finish()];
    cleanup.calls.clear();
    for (r, code) in &results {
        assert_eq!((*code, &r["changed"]), (0, &json!(true)), "{r}");
    }
    let waited: Vec<usize> = (0..2)
        .filter(|&i| results[i].0["lock"].get("waited_for").is_some())
        .collect();
    assert_eq!(waited.len(), 1, "exactly one call waits: {results:?}");
    let (second, first) = (waited[0], 1 - waited[0]);
    let (first_r, second_r) = (&results[first].0, &results[second].0);

    // The second named the first as the holder it waited for ...
    assert_eq!(
        second_r["lock"]["waited_for"]["pid"],
        json!(pids[first]),
        "{second_r}"
    );
    assert!(second_r["lock"]["waited_seconds"].as_f64().unwrap() > 0.0);
    // ... and had the lock, so planned, applied and waited, only after the first let
    // it go, which it does as it returns, after its own wait.
    let first_released = first_r["lock"]["released_at"].as_f64().unwrap();
    let second_acquired = second_r["lock"]["acquired_at"].as_f64().unwrap();
    assert!(
        second_acquired >= first_released,
        "the second took the lock at {second_acquired}, before the first let it go at {first_released}"
    );
    println!(
        "order: first (pid {}) held {:.3}..{first_released:.3}; second (pid {}) waited {} s, held {second_acquired:.3}..{:.3}",
        pids[first],
        first_r["lock"]["acquired_at"].as_f64().unwrap(),
        pids[second],
        second_r["lock"]["waited_seconds"],
        second_r["lock"]["released_at"].as_f64().unwrap(),
    );

    // What runs is the second's spec, as a serial run of the two leaves it.
    let version = ["a", "b"][second];
    let spec: Value =
        serde_json::from_slice(&std::fs::read(host.tree(&name).join("spec.json")).unwrap())
            .unwrap();
    let spec = spec.to_string();
    assert!(
        spec.contains(&format!("\"VERSION\":\"{version}\"")),
        "{spec}"
    );
    assert!(
        container_env(&name).contains(&format!("VERSION={version} ")),
        "{}",
        container_env(&name)
    );

    // state=absent takes the lock too and leaves no lock file behind.
    drop(cleanup);
    assert!(!lock_path(&host.sv_dir(), &name).exists());
    assert!(std::fs::read_dir(host.sv_dir()).unwrap().next().is_none());
}

const DOMAIN: &str = "s.lock.example.com";

/// A web service that runs but never passes its check, so a waiting call holds the lock
/// until its `wait_timeout`; `path: "/"` passes.
fn web(name: &str, port: u16, etcd: &str, path: &str) -> Value {
    json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
           "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
           "ports": [format!("127.0.0.1:{port}:8080")], "announce": port, "port": 8080,
           "announce_as": "127.0.0.0/8", "domain": DOMAIN, "host_label": "node-1",
           "etcd": etcd, "ttl": 10, "stop_timeout": 1, "health": [format!("http:{port}{path}")],
           "wait": true, "wait_timeout": 120})
}

#[test]
fn a_change_that_cannot_have_the_lock_in_time_fails_naming_the_holder() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("lock-busy");
    let port = kit::free_port();
    let mut cleanup = Cleanup {
        host: &host,
        name: name.clone(),
        calls: Vec::new(),
    };
    let holder = Call::start(&host, &web(&name, port, &etcd.endpoint(), "/never"));
    let holder_pid = holder.pid();
    cleanup.calls.push(holder);
    let record = wait_until_held_by(&host, &name, holder_pid);
    let spec_before = kit::wait_for(Duration::from_secs(10), || {
        std::fs::read(host.tree(&name).join("spec.json")).ok()
    })
    .unwrap();

    let started = Instant::now();
    let (r, code) = host.call(
        json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
               "command": ["sleep", "3600"], "lock_timeout": 1}),
        false,
        false,
    );
    let took = started.elapsed();
    assert_eq!(
        (code, &r["failed"], &r["changed"]),
        (1, &json!(true), &json!(false)),
        "{r}"
    );
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("lock_timeout: "), "{msg}");
    assert!(
        msg.contains(&format!("pid {holder_pid} (user {}", record.user)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("on {}, since ", record.host)),
        "{msg}"
    );
    assert!(msg.contains("doing state=enabled image="), "{msg}");
    assert!(
        msg.contains("waited lock_timeout=1 s (nothing was changed)"),
        "{msg}"
    );
    assert!(took >= Duration::from_secs(1), "gave up after {took:?}");
    assert_eq!(
        std::fs::read(host.tree(&name).join("spec.json")).unwrap(),
        spec_before,
        "the refused change wrote the spec"
    );
    println!("refused after {took:?}: {msg}");
}

#[test]
fn a_sigkilled_holder_lets_a_waiting_change_go_at_once() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("lock-kill");
    let port = kit::free_port();
    let mut cleanup = Cleanup {
        host: &host,
        name: name.clone(),
        calls: Vec::new(),
    };
    let holder = Call::start(&host, &web(&name, port, &etcd.endpoint(), "/never"));
    let holder_pid = holder.pid();
    cleanup.calls.push(holder);
    wait_until_held_by(&host, &name, holder_pid);

    let mut change = web(&name, port, &etcd.endpoint(), "/");
    change["lock_timeout"] = json!(120);
    let waiter = Call::start(&host, &change);
    // The waiter is in its wait when the lock file still names the holder a while after
    // the waiter started: it planned (a change) and found the lock taken.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        Holder::parse(&std::fs::read_to_string(lock_path(&host.sv_dir(), &name)).unwrap())
            .map(|h| h.pid),
        Some(holder_pid)
    );
    let killed_at = unix_now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (r, code) = waiter.finish();
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["lock"]["waited_for"]["pid"], json!(holder_pid), "{r}");
    let acquired = r["lock"]["acquired_at"].as_f64().unwrap();
    let after_kill = acquired - killed_at;
    // Released by the kernel with the process: bounded by the waiter's retry, not a TTL.
    assert!(
        (0.0..1.0).contains(&after_kill),
        "the waiter had the lock {after_kill:.3} s after the kill"
    );
    println!(
        "lock taken {:.0} ms after the holder's SIGKILL",
        after_kill * 1000.0
    );
}

/// An etcd that does not answer must not stop a deploy (the deploy may be the fix): the
/// change goes ahead within seconds under the host's lock, and the task says that the
/// fleet-wide lock was not taken.
#[test]
fn an_unreachable_etcd_leaves_the_hosts_lock_and_a_warning() {
    let host = Host::new();
    let name = unique("lock-noetcd");
    let closed = kit::free_port();
    let started = Instant::now();
    let (result, code) = host.call(
        json!({
            "name": name,
            "state": "present",
            "image": kit::TEST_IMAGE,
            "announce": 8080,
            "domain": "s.noetcd.example.com",
            "etcd": {"endpoints": [format!("http://127.0.0.1:{closed}")]},
        }),
        false,
        false,
    );
    let took = started.elapsed();
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["changed"], json!(true), "{result}");
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains("held on this host only") && warnings.contains("/rundock/locks/"),
        "{result}"
    );
    // Not the whole lock_timeout (300 s): etcd is given a few seconds, not a holder's wait.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(host.tree(&name).join("spec.json").exists());
}
