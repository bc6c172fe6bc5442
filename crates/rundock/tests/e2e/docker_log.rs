//! Docker's own log of a service's container on a real Docker: bounded json-file by
//! default, the driver and options a task chooses (`log_driver`, `log_options`), and
//! bad choices refused before anything is written.

use crate::common;

use common::{unique, Host};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::time::Duration;

fn log_config(container: &str) -> Value {
    let out = kit::docker(&[
        "inspect",
        "--format",
        "{{json .HostConfig.LogConfig}}",
        container,
    ]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(kit::stdout(&out).trim()).unwrap()
}

fn service(name: &str, extra: Value) -> Value {
    let mut options = json!({
        "state": "enabled",
        "name": name,
        "image": kit::TEST_IMAGE,
        "command": ["httpd", "-f", "-p", "8080"],
        "stop_timeout": 2,
        "wait": true,
        "wait_timeout": 60,
    });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    options
}

/// The id of the container named `name` (empty when there is none).
fn container_id(name: &str) -> String {
    let out = kit::docker(&["inspect", "--format", "{{.Id}}", name]);
    kit::stdout(&out).trim().to_string()
}

#[test]
fn docker_logs_are_bounded_by_default_and_the_task_can_choose_the_driver() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("dlog-web");

    let (result, code) = host.call(service(&name, json!({})), false, false);
    assert_eq!(code, 0, "{result}");
    assert_eq!(
        log_config(&name),
        json!({"Type": "json-file", "Config": {
            "max-size": "10m", "max-file": "3", "mode": "non-blocking", "max-buffer-size": "1m"}})
    );
    // Saying the default is no change.
    let said = json!({"log_driver": "json-file", "log_options": {"max-file": "3"}});
    let (result, code) = host.call(service(&name, said), false, false);
    assert_eq!((code, &result["changed"]), (0, &json!(false)), "{result}");

    // Bad choices: refused naming the option, nothing written.
    let before = common::snapshot(&host.sv_dir());
    for (extra, wanted) in [
        (
            json!({"log_options": {"max-size": "-1"}}),
            "log_options: max-size \"-1\" is not a size like 10m",
        ),
        (
            json!({"log_driver": "none", "log_options": "max-size=1m"}),
            "log_options: \"max-size\" is not an option of the none driver",
        ),
        (
            json!({"log_driver": "Journal D"}),
            "log_driver: \"Journal D\" is not a log driver name",
        ),
    ] {
        let (result, code) = host.call(service(&name, extra.clone()), false, false);
        assert_eq!(code, 1, "{extra}: {result}");
        let msg = result["msg"].as_str().unwrap();
        assert!(msg.contains(wanted), "{extra}: {msg}");
    }
    assert_eq!(common::snapshot(&host.sv_dir()), before);

    // Another driver with its options (ad hoc form): the container is replaced with it.
    let old = container_id(&name);
    let local = json!({"log_driver": "local", "log_options": "max-size=5m, max-file=2"});
    let (result, code) = host.call(service(&name, local), false, false);
    assert_eq!((code, &result["changed"]), (0, &json!(true)), "{result}");
    let replaced = kit::wait_for(Duration::from_secs(30), || {
        let id = container_id(&name);
        (!id.is_empty() && id != old).then_some(id)
    });
    assert!(replaced.is_some(), "the container was not replaced");
    assert_eq!(
        log_config(&name),
        json!({"Type": "local", "Config": {
            "max-size": "5m", "max-file": "2", "mode": "non-blocking", "max-buffer-size": "1m"}})
    );
    // `docker logs` reads the chosen driver's copy.
    let exec = kit::docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo to-docker-logs >/proc/1/fd/1",
    ]);
    assert!(exec.status.success(), "{exec:?}");
    let seen = kit::wait_for(Duration::from_secs(10), || {
        let out = kit::docker(&["logs", &name]);
        kit::stdout(&out).contains("to-docker-logs").then_some(())
    });
    assert!(
        seen.is_some(),
        "docker logs does not show the container's output"
    );
}
