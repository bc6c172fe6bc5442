//! `requires` on real parts: a grafana-like service waits, visibly in `rundock status`,
//! until an influxdb-like service's record is in etcd, then starts within about a
//! second of it appearing.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DOMAIN: &str = "s.test.example.com";

fn web(name: &str, port: u16, etcd: &str) -> Value {
    json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
           "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
           "ports": [format!("127.0.0.1:{port}:8080")], "announce": port, "port": 8080,
           "announce_as": "127.0.0.0/8", "domain": DOMAIN, "host_label": "node-1",
           "etcd": etcd, "ttl": 10, "stop_timeout": 2, "health": [format!("http:{port}/")]})
}

fn running(name: &str) -> bool {
    kit::stdout(&kit::docker(&["inspect", "-f", "{{.State.Running}}", name])).trim() == "true"
}

#[test]
fn grafana_waits_for_influxdb_and_starts_within_a_second_of_its_record() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let influx = unique("req-influx");
    let grafana = unique("req-grafana");
    let influx_fqdn = format!("{influx}.{DOMAIN}");

    let mut options = web(&grafana, kit::free_port(), &etcd.endpoint());
    options["requires"] = json!([influx]);
    let (r, _) = host.call(options, false, false);
    assert_eq!(r["changed"], json!(true), "{r}");

    // It waits, and says so.
    let sv_dir = host.sv_dir();
    let waiting = kit::wait_for(Duration::from_secs(15), || {
        let out = kit::run(
            BIN,
            &[
                "status",
                "--json",
                "--sv-dir",
                sv_dir.to_str().unwrap(),
                &grafana,
            ],
        );
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        (status[0]["state"] == "waiting").then(|| status[0].clone())
    })
    .expect("grafana never showed as waiting");
    assert_eq!(waiting["waiting_for"], json!([influx_fqdn]), "{waiting:#}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !running(&grafana),
        "grafana started before influxdb was announced"
    );

    let (r, _) = host.call(
        web(&influx, kit::free_port(), &etcd.endpoint()),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    let key = format!("/skydns/com/example/test/s/{influx}/");
    let appeared = kit::wait_for(Duration::from_secs(30), || {
        (!etcd.get_prefix(&key).is_empty()).then(Instant::now)
    })
    .expect("influxdb was never announced");
    let started = kit::wait_for(Duration::from_secs(10), || {
        running(&grafana).then(Instant::now)
    })
    .expect("grafana never started");
    let delay = started.saturating_duration_since(appeared);
    println!("grafana running {delay:?} after influxdb's record appeared");
    assert!(
        delay < Duration::from_millis(1500),
        "grafana started {delay:?} after the record"
    );

    let log = host.path("log").join(&grafana).join("container/current");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("waiting for").count(),
        1,
        "the wait is logged once per change:\n{text}"
    );
}
