//! A watch's first file exists before the container that reads it starts: the container
//! of a service with a watch waits for the watch's first render (here held back by an
//! etcd that is down), says so in its state (`rundock status`: waiting), and starts once
//! the file is there. The container refuses to run without the file, as nginx does
//! without its upstream file, so a start before the render shows as an exit.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn a_container_with_a_watch_starts_only_after_the_first_render() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let mut etcd = kit::Etcd::start();
    let files = tempfile::tempdir().unwrap();
    let (template, dest) = (files.path().join("up.j2"), files.path().join("up.conf"));
    std::fs::write(
        &template,
        "{% for i in names.web %}{{ i.address }}\n{% endfor %}",
    )
    .unwrap();
    let name = unique("firstfile");
    let container = format!("{name}-c");
    let _gone = Removed(container.clone());

    // The watch cannot list the records before etcd is back.
    etcd.stop();
    let (r, code) = host.call(
        json!({
            "state": "enabled", "name": name, "image": kit::TEST_IMAGE, "container_name": container,
            "command": ["sh", "-c", "test -f /conf/up.conf && exec sleep 600"],
            "volumes": [format!("{}:/conf:ro", files.path().display())],
            "stop_timeout": 1,
            "domain": "s.example.com", "etcd": {"endpoints": [etcd.endpoint()]},
            "watch": [{"names": ["web"], "template": template, "dest": dest}],
        }),
        false,
        false,
    );
    assert_eq!(code, 0, "{r}");

    let status = || -> Value {
        let out = kit::run(
            BIN,
            &[
                "status",
                &name,
                "--json",
                "--sv-dir",
                &host.sv_dir().to_string_lossy(),
            ],
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| v.as_array().and_then(|a| a.first().cloned()).unwrap_or(v))
            .unwrap_or(Value::Null)
    };
    let waiting = kit::wait_for(Duration::from_secs(15), || {
        let s = status();
        (s["state"] == "waiting").then_some(s)
    });
    let waiting = waiting.unwrap_or_else(|| panic!("never waiting: {}", status()));
    assert!(
        waiting["reason"]
            .as_str()
            .is_some_and(|r| r.contains("first render of") && r.contains("up.conf")),
        "{waiting}"
    );
    assert!(!dest.exists());
    assert!(
        !kit::docker(&["inspect", &container]).status.success(),
        "the container was created before the watch rendered"
    );

    etcd.restart();
    let running = kit::wait_for(Duration::from_secs(20), || {
        let out = kit::docker(&["inspect", "-f", "{{.State.Running}}", &container]);
        (kit::stdout(&out).trim() == "true").then_some(())
    });
    assert!(running.is_some(), "not running: {}", status());
    assert!(dest.exists());
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(
            host.tree(&name)
                .join("services/container")
                .join(rundock_spec::state::SUPERVISOR_STATE_FILE),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(state["exits"], json!(0), "the container exited: {state}");
    assert_eq!(state["waiting_for"], json!([]), "{state}");
}

/// Removes the container on drop, should the tree not have.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = kit::docker(&["rm", "-f", &self.0]);
    }
}
