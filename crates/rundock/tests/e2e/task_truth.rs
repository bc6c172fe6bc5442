//! A task reports what really happened: deploy mistakes that only show at run time fail
//! the module call with the reason, in seconds, on real Docker, runit, etcd and a
//! loopback `docker-registry`; a tag that moved under `pull: always` is a change.

use crate::common;

use common::{snapshot, unique, Host};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.truth.example.com";

/// A web service on `port` (127.0.0.1), announced with an HTTP check.
fn web(name: &str, port: u16, etcd: &str) -> Value {
    json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
           "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
           "ports": [format!("127.0.0.1:{port}:8080")], "announce": port, "port": 8080,
           "announce_as": "127.0.0.0/8", "domain": DOMAIN, "host_label": "node-1",
           "etcd": etcd, "ttl": 10, "stop_timeout": 2, "health": [format!("http:{port}/")],
           "wait": true, "wait_timeout": 60})
}

fn with(mut options: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        options[k.as_str()] = v.clone();
    }
    options
}

fn msg(r: &Value) -> &str {
    r["msg"].as_str().unwrap_or_default()
}

/// Removes what a call installed, so no container outlives the test.
fn remove(host: &Host, name: &str) {
    let (r, _) = host.call(json!({"state": "absent", "name": name}), false, false);
    assert_eq!(r["failed"], Value::Null, "{r}");
}

#[test]
fn an_image_that_exists_nowhere_fails_the_task_before_anything_is_written() {
    kit::ensure_test_image();
    let registry = kit::registry::Registry::start();
    let host = Host::new();
    let before = snapshot(host.root.path());
    let name = unique("tt-noimage");
    let image = format!("{}/nosuch/{name}:1", registry.host());
    let started = Instant::now();
    let (r, code) = host.call(
        json!({"state": "enabled", "name": name, "image": image}),
        false,
        false,
    );
    let took = started.elapsed();
    assert_eq!((r["failed"].clone(), code), (json!(true), 1), "{r}");
    let text = msg(&r);
    assert!(text.starts_with("image: cannot pull image "), "{text}");
    assert!(text.contains(&image), "{text}");
    // The registry's own answer is quoted.
    assert!(
        text.contains("not found") || text.contains("manifest unknown"),
        "{text}"
    );
    assert_eq!(snapshot(host.root.path()), before, "a failed call wrote");
    println!("missing image: failed in {took:?}: {text}");

    // pull: never with no local image fails the same way, in check mode too.
    for check in [false, true] {
        let (r, _) = host.call(
            json!({"state": "enabled", "name": name, "image": image, "pull": "never"}),
            check,
            false,
        );
        assert_eq!(r["failed"], json!(true), "check={check}: {r}");
        assert!(msg(&r).contains("pull is never"), "{r}");
    }
    assert_eq!(snapshot(host.root.path()), before, "a failed call wrote");
}

#[test]
fn a_host_port_in_use_fails_a_waiting_task_with_dockers_words_in_seconds() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let name = unique("tt-port");
    let started = Instant::now();
    let (r, _) = host.call(web(&name, port, &etcd.endpoint()), false, false);
    let took = started.elapsed();
    remove(&host, &name);
    assert_eq!(r["failed"], json!(true), "{r}");
    assert_eq!(r["changed"], json!(true), "the tree was written: {r}");
    let text = msg(&r);
    assert!(text.starts_with("wait: start failed: "), "{text}");
    assert!(
        text.contains("address already in use") || text.contains("port is already allocated"),
        "{text}"
    );
    assert!(
        took < Duration::from_secs(40),
        "took {took:?}, as long as the wait_timeout"
    );
    println!("port in use: failed in {took:?}: {text}");
}

#[test]
fn a_container_that_dies_at_once_fails_a_waiting_task_quoting_its_exit() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("tt-dies");
    let options = with(
        web(&name, kit::free_port(), &etcd.endpoint()),
        json!({"command": ["sh", "-c", "echo no config; exit 3"]}),
    );
    let started = Instant::now();
    let (r, _) = host.call(options, false, false);
    let took = started.elapsed();
    let (status, _) = host.call(json!({"state": "absent", "name": name}), false, false);
    assert_eq!(status["failed"], Value::Null, "{status}");
    assert_eq!(r["failed"], json!(true), "{r}");
    let text = msg(&r);
    assert!(
        text.starts_with("wait: exit failed: the container exited with code 3"),
        "{text}"
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
    println!("dies at once: failed in {took:?}: {text}");
}

#[test]
fn a_wait_names_the_failing_check_or_the_unreachable_etcd_first() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());

    let name = unique("tt-check");
    let port = kit::free_port();
    let options = with(
        web(&name, port, &etcd.endpoint()),
        json!({"health": [format!("http:{port}/missing")], "wait_timeout": 8}),
    );
    let (r, _) = host.call(options, false, false);
    remove(&host, &name);
    let text = msg(&r);
    // The check first, whatever address it names (`http :PORT/missing`).
    assert!(text.starts_with("wait: health check http "), "{text}");
    assert!(text.contains(&format!("{port}/missing fails: ")), "{text}");

    // etcd that nobody listens on.
    let name = unique("tt-etcd");
    let dead = format!("http://127.0.0.1:{}", kit::free_port());
    let options = with(
        web(&name, kit::free_port(), &dead),
        json!({"wait_timeout": 8}),
    );
    // Without wait the task succeeds, but says that the record cannot be published.
    let (r, _) = host.call(with(options.clone(), json!({"wait": false})), false, false);
    assert_eq!(r["failed"], Value::Null, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("etcd: "), "{r}");
    let (r, _) = host.call(options, false, false);
    remove(&host, &name);
    let text = msg(&r);
    assert!(text.starts_with("wait: etcd is unreachable: "), "{text}");
}

#[test]
fn a_moved_tag_under_pull_always_is_a_change_that_replaces_the_container() {
    kit::ensure_test_image();
    let registry = kit::registry::Registry::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("tt-tag");
    // Two different images under one tag, one after the other.
    let first = registry.push(kit::TEST_IMAGE, &format!("{name}:1"));
    let options = json!({"state": "enabled", "name": name, "image": first, "pull": "always",
                         "command": ["sleep", "3600"], "stop_timeout": 1,
                         "wait": true, "wait_timeout": 60});
    let (r, _) = host.call(options.clone(), false, false);
    assert_eq!(r["failed"], Value::Null, "{r}");
    let image_of = || kit::stdout(&kit::docker(&["inspect", "-f", "{{.Image}}", &name]));
    let old = image_of();
    let (r, _) = host.call(options.clone(), false, false);
    assert_eq!(r["changed"], json!(false), "nothing moved yet: {r}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}\nRUN echo {name} >/moved\n", kit::TEST_IMAGE),
    )
    .unwrap();
    let local = format!("rundock-test/moved-{name}:1");
    let out = kit::docker(&["build", "-q", "-t", &local, &dir.path().to_string_lossy()]);
    assert!(out.status.success(), "{out:?}");
    registry.push(&local, &format!("{name}:1"));
    // The registry has the new image under the tag; the host's copy of the tag names
    // the old one until a pull, as on a host where someone else pushed.
    let out = kit::docker(&["tag", old.trim(), &first]);
    assert!(out.status.success(), "{out:?}");
    let out = kit::docker(&["rmi", &local]);
    assert!(out.status.success(), "{out:?}");

    let (check, _) = host.call(options.clone(), true, true);
    assert_eq!(
        check["changed"],
        json!(false),
        "check mode does not pull: {check}"
    );
    let (r, _) = host.call(options.clone(), false, true);
    assert_eq!(r["changed"], json!(true), "{r}");
    let diff = r["diff"].to_string();
    assert!(diff.contains(old.trim()), "{diff}");
    let new = image_of();
    assert_ne!(new.trim(), old.trim(), "the container was not replaced");
    assert!(diff.contains(new.trim()), "{diff}");
    let (r, _) = host.call(options, false, false);
    assert_eq!(r["changed"], json!(false), "{r}");
    remove(&host, &name);
    let _ = kit::docker(&["rmi", &first]);
}

/// The module binary is what Ansible runs: a failure must also come back as a failed
/// task through `ansible`, with the same message.
#[test]
fn the_failure_reaches_ansible_adhoc() {
    kit::ensure_test_image();
    let registry = kit::registry::Registry::start();
    let host = Host::new();
    let name = unique("tt-adhoc");
    let image = format!("{}/nosuch/{name}:1", registry.host());
    let (r, out) = host.adhoc(
        &format!("state=enabled name={name} image={image} {}", host.dirs_kv()),
        &[],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("localhost | FAILED!"),
        "{out:?}"
    );
    assert!(msg(&r).starts_with("image: cannot pull image "), "{r}");
}

#[test]
fn a_wait_covers_the_watch_render_check_and_reload() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let files = tempfile::tempdir().unwrap();
    let template = files.path().join("upstream.j2");
    std::fs::write(
        &template,
        "{% for i in instances %}{{ i.address }}\n{% endfor %}# end\n",
    )
    .unwrap();
    let dest = files.path().join("upstream.conf");
    let service = |name: &str, check: &str| {
        json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
               "command": ["sleep", "3600"], "stop_timeout": 1, "host_label": "node-1",
               "domain": DOMAIN, "etcd": etcd.endpoint(), "wait": true, "wait_timeout": 8,
               "watch": [{"names": ["web"], "template": template, "dest": dest, "check": [check]}]})
    };

    // A watch that renders and passes its check: the call returns once the file is there.
    let good = unique("tt-watch");
    let (r, _) = host.call(service(&good, "true"), false, false);
    let written = std::fs::read_to_string(&dest).unwrap_or_default();
    remove(&host, &good);
    assert_eq!(r["failed"], Value::Null, "{r}");
    assert_eq!(
        written, "# end\n",
        "wait returned before the watch rendered"
    );

    // A check that never passes: the wait fails naming the watch, not the container.
    std::fs::remove_file(&dest).unwrap();
    let bad = unique("tt-watch-bad");
    let (r, _) = host.call(service(&bad, "false"), false, false);
    remove(&host, &bad);
    let text = msg(&r);
    assert!(
        text.starts_with(&format!("wait: watch: {}: check: ", dest.display())),
        "{text}"
    );
}
