//! `rundock metrics` scraped by a real Prometheus (Debian's, started here on loopback
//! with a 1 s scrape interval and its own temp storage): after `docker kill`, its query
//! API shows the restart counter up by one and the container back up.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn prometheus_sees_a_kill_as_a_restart_and_the_container_back_up() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("metrics");
    let port = kit::free_port();
    let (r, _) = host.call(
        json!({"state": "enabled", "wait": true, "name": name, "image": kit::TEST_IMAGE,
               "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
               "ports": [format!("127.0.0.1:{port}:8080")], "announce": port, "port": 8080,
               "announce_as": "127.0.0.0/8", "domain": "s.test.example.com", "host_label": "node-1",
               "etcd": etcd.endpoint(), "ttl": 10, "stop_timeout": 2,
               "health": [format!("http:{port}/")]}),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");

    let metrics_addr = format!("127.0.0.1:{}", kit::free_port());
    let sv_dir = host.sv_dir();
    let _metrics = kit::load::Killed(
        Command::new(BIN)
            .args(["metrics", "--listen", &metrics_addr, "--sv-dir"])
            .arg(&sv_dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prometheus = kit::prometheus::Prometheus::start(&metrics_addr, None);

    let selector = format!("{{service=\"{name}\",host=\"node-1\"}}");
    let restarts = format!("rundock_container_restarts_total{selector}");
    let up = format!("rundock_container_up{selector}");
    let before = kit::wait_for(Duration::from_secs(30), || {
        (prometheus.query(&up) == Some(1.0)
            && prometheus.query(&format!("rundock_announced{selector}")) == Some(1.0))
        .then(|| prometheus.query(&restarts))
        .flatten()
    })
    .expect("prometheus never scraped the service up and announced");
    assert!(prometheus
        .query(&format!("rundock_health_check_latency_seconds{selector}"))
        .is_some());

    assert!(kit::docker(&["kill", &name]).status.success());
    let after = kit::wait_for(Duration::from_secs(30), || {
        prometheus.query(&restarts).filter(|r| *r >= before + 1.0)
    })
    .expect("prometheus never saw the restart counter go up");
    assert_eq!(after, before + 1.0);
    assert_eq!(
        prometheus.query(&format!("rundock_container_last_exit_code{selector}")),
        Some(137.0)
    );
    let back = kit::wait_for(Duration::from_secs(30), || {
        (prometheus.query(&up) == Some(1.0)).then_some(())
    });
    assert!(
        back.is_some(),
        "prometheus never saw the container up again"
    );
    // The scrape itself is healthy.
    assert_eq!(prometheus.query("up{job=\"rundock\"}"), Some(1.0));
}

#[test]
fn metrics_answers_only_get_metrics() {
    let host = Host::new();
    let addr = format!("127.0.0.1:{}", kit::free_port());
    let _metrics = kit::load::Killed(
        Command::new(BIN)
            .args(["metrics", "--listen", &addr, "--sv-dir"])
            .arg(host.sv_dir())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = |path: &str| format!("http://{addr}{path}");
    let ok = kit::wait_for(Duration::from_secs(5), || {
        let out = kit::run("curl", &["-sf", &url("/metrics")]);
        out.status.success().then(|| kit::stdout(&out))
    })
    .expect("no answer on /metrics");
    assert!(ok.contains("# TYPE rundock_container_up gauge"), "{ok}");
    let missing = kit::run(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", &url("/")],
    );
    assert_eq!(kit::stdout(&missing).trim(), "404");
}
