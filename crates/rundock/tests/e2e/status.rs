//! `rundock status` on real trees, containers, runit and etcd: one host with a service
//! in each state an operator meets (healthy, crash-looping, held down, maintenance,
//! draining, etcd unreachable), read as a table and as JSON, and the module's
//! `service.status` and `wait` failure carrying the same object.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const DOMAIN: &str = "s.test.example.com";

/// Module options of a web service on `port`, announced once `/` answers.
fn web(name: &str, port: u16, etcd: &str) -> Value {
    json!({
        "name": name,
        "image": kit::TEST_IMAGE,
        "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
        "ports": [format!("127.0.0.1:{port}:8080")],
        "announce": port,
        "port": 8080,
        "announce_as": "127.0.0.0/8",
        "domain": DOMAIN,
        "host_label": "node-1",
        "etcd": etcd,
        "ttl": 10,
        "stop_timeout": 2,
        "health": [format!("http:{port}/")],
    })
}

fn with(mut options: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    options
}

fn status_json(host: &Host, names: &[&str]) -> Vec<Value> {
    let sv_dir = host.sv_dir();
    let mut args = vec!["status", "--json", "--sv-dir", sv_dir.to_str().unwrap()];
    args.extend_from_slice(names);
    let out = kit::run(BIN, &args);
    let statuses: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("status --json prints a JSON list");
    // Like `systemctl is-active`: 0 only when everything shown is up, else 3.
    let all_up = statuses.iter().all(|s| s["state"] == "up");
    assert_eq!(
        out.status.code(),
        Some(if all_up { 0 } else { 3 }),
        "{out:?}"
    );
    statuses
}

/// Waits until `name`'s status is in `state`; the status then.
fn wait_state(host: &Host, name: &str, state: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let found = kit::wait_for(timeout, || {
        last = status_json(host, &[name]).remove(0);
        (last["state"] == state).then(|| last.clone())
    });
    found.unwrap_or_else(|| panic!("{name} never became {state}; last status: {last:#}"))
}

#[test]
fn status_shows_each_state_as_table_and_json() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let endpoint = etcd.endpoint();
    let dead_etcd = format!("http://127.0.0.1:{}", kit::free_port());
    let healthy = unique("st-healthy");
    let crashy = unique("st-crashy");
    let held = unique("st-held");
    let maint = unique("st-maint");
    let drain = unique("st-drain");
    let noetcd = unique("st-noetcd");

    // Healthy: the module's own result carries the status.
    let (r, _) = host.call(
        with(
            web(&healthy, kit::free_port(), &endpoint),
            json!({"state": "enabled", "wait": true}),
        ),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    let status = &r["service"]["status"];
    assert_eq!(status["state"], "up", "{status:#}");
    assert_eq!(status["announced"], json!(true));
    assert_eq!(status["container"]["running"], json!(true));

    // Crash-looping.
    let (r, _) = host.call(
        json!({"state": "enabled", "name": crashy, "image": kit::TEST_IMAGE,
               "command": ["sh", "-c", "exit 3"], "stop_timeout": 1}),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");

    for (name, extra) in [
        (&held, json!({})),
        (&maint, json!({})),
        (&drain, json!({"drain": 8})),
    ] {
        let (r, _) = host.call(
            with(
                web(name, kit::free_port(), &endpoint),
                with(json!({"state": "enabled", "wait": true}), extra),
            ),
            false,
            false,
        );
        assert_eq!(r["changed"], json!(true), "{r}");
    }
    // etcd unreachable: runs, healthy, but cannot be announced.
    let (r, _) = host.call(
        with(
            web(&noetcd, kit::free_port(), &dead_etcd),
            json!({"state": "enabled"}),
        ),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");

    let sv = |args: &[&str], dir: &Path| {
        let mut argv: Vec<&str> = args.to_vec();
        let dir = dir.to_string_lossy().into_owned();
        argv.push(&dir);
        kit::run("sv", &argv)
    };
    sv(
        &["-w", "15", "down"],
        &host.tree(&held).join("services/container"),
    );
    sv(&["1"], &host.tree(&maint).join("services/announce"));
    // The tree's control/t withdraws, then drains 8 s: sv returns before it is down.
    sv(&["-w", "1", "down"], &host.tree(&drain));

    let s = wait_state(&host, &crashy, "backing-off", Duration::from_secs(20));
    assert!(s["container"]["restarts"].as_u64().unwrap() >= 1, "{s:#}");
    assert_eq!(s["container"]["exit_code"], json!(3));
    assert!(s["backoff"]["failures"].as_u64().unwrap() >= 1, "{s:#}");
    assert_eq!(s["backoff"]["active"], json!(true));

    let s = wait_state(&host, &held, "held-down", Duration::from_secs(10));
    assert_eq!(s["container"]["running"], json!(false), "{s:#}");
    assert_eq!(s["runit"]["container"]["state"], "down");

    let s = wait_state(&host, &maint, "maintenance", Duration::from_secs(10));
    assert_eq!(s["maintenance"], json!(true));
    let gone = kit::wait_for(Duration::from_secs(5), || {
        let s = status_json(&host, &[&maint]).remove(0);
        (s["announced"] == json!(false)).then_some(s)
    });
    assert!(gone.is_some(), "maintenance left the record in etcd");

    let s = wait_state(&host, &drain, "draining", Duration::from_secs(5));
    assert_eq!(s["draining"], json!(true), "{s:#}");
    assert_eq!(s["container"]["running"], json!(true));
    assert_eq!(s["announced"], json!(false));

    wait_state(&host, &noetcd, "unannounced", Duration::from_secs(15));
    let s = kit::wait_for(Duration::from_secs(10), || {
        let s = status_json(&host, &[&noetcd]).remove(0);
        (s["health"][0]["pass"] == json!(true)).then_some(s)
    })
    .expect("the health check of the service without etcd never passed");
    assert_eq!(s["state"], "unannounced", "{s:#}");
    assert!(s["record"]["error"].is_string(), "{s:#}");
    assert!(s["etcd"]["error"].is_string(), "{s:#}");
    assert!(s["etcd"]["errors"].as_u64().unwrap() >= 1);

    let s = status_json(&host, &[&healthy]).remove(0);
    assert_eq!(s["state"], "up", "{s:#}");
    assert_eq!(s["health"][0]["pass"], json!(true));
    assert!(
        s["health"][0]["latency_secs"].as_f64().unwrap() > 0.0,
        "{s:#}"
    );
    assert_eq!(s["record"]["value"]["host"], "127.0.0.1");
    assert!(s["etcd"]["last_refresh_at"].is_u64(), "{s:#}");
    assert_eq!(s["runit"]["tree"]["state"], "run");
    assert!(s["runit"]["tree"]["pid"].is_u64());
    assert_eq!(s["container"]["image"], kit::TEST_IMAGE);
    assert!(s["container"]["id"].as_str().unwrap().len() == 64);

    // The table: a header, then one line per service with its state.
    let sv_dir = host.sv_dir();
    let out = kit::run(BIN, &["status", "--sv-dir", sv_dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "not every service is up: {out:?}"
    );
    let table = String::from_utf8(out.stdout).unwrap();
    println!("{table}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("SERVICE"), "{table}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 6, "{table}");
    for (name, state) in [
        (&healthy, "up"),
        (&crashy, "backing-off"),
        (&held, "held-down"),
        (&maint, "maintenance"),
        (&noetcd, "unannounced"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        assert_eq!(row.split_whitespace().nth(1), Some(state), "{table}");
    }
    // The drain ends with the container stopped and the tree held down.
    wait_state(&host, &drain, "held-down", Duration::from_secs(20));

    // Nothing is left behind on the shared dockerd.
    for name in [&healthy, &crashy, &held, &maint, &drain, &noetcd] {
        let (r, _) = host.call(json!({"state": "absent", "name": name}), false, false);
        assert_eq!(r["failed"], Value::Null, "{r}");
    }
}

#[test]
fn status_of_unknown_service_fails_naming_it() {
    let host = Host::new();
    let sv_dir = host.sv_dir();
    let out = kit::run(
        BIN,
        &["status", "--sv-dir", sv_dir.to_str().unwrap(), "nosuch"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no rundock service nosuch"), "{err}");
    // No services at all: just the header.
    let out = kit::run(BIN, &["status", "--sv-dir", sv_dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn a_wait_that_fails_quotes_the_status() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("st-wait");
    let port = kit::free_port();
    let options = with(
        web(&name, port, &etcd.endpoint()),
        json!({"state": "enabled", "wait": true, "wait_timeout": 6,
               "health": [format!("http:{port}/missing")]}),
    );
    let (r, _) = host.call(options, false, false);
    assert_eq!(r["failed"], json!(true), "{r}");
    let msg = r["msg"].as_str().unwrap();
    let quoted = msg.split_once("; status: ").map(|(_, s)| s).expect(msg);
    let status: Value = serde_json::from_str(quoted).expect("the status is JSON");
    assert_eq!(status["state"], "unhealthy", "{status:#}");
    // The failing check is quoted with what went wrong: a 404, or, while the server is
    // still coming up, a refused or reset connection to the same URL.
    let error = status["health"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("/missing"), "{status:#}");
}
