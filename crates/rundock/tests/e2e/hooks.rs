//! Lifecycle hooks on real trees and containers: `pre_stop` runs in the container before
//! it stops and `post_stop` on the host after; a failing `post_start` keeps the service
//! unannounced while a passing one lets it be announced.

use crate::common;

use common::{unique, Host};
use rundock_testkit as kit;
use serde_json::json;
use std::time::Duration;

#[test]
fn pre_stop_runs_in_the_container_before_it_stops_and_post_stop_after() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("hook-stop");
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("log");
    let (r, _) = host.call(
        json!({"state": "enabled", "wait": true, "name": name, "image": kit::TEST_IMAGE,
               "volumes": [format!("{}:/data", data.path().display())],
               "command": ["sh", "-c", "echo started >>/data/log; trap 'echo stopped >>/data/log; exit 0' TERM; while true; do sleep 0.2; done"],
               "stop_timeout": 5,
               "pre_stop": ["sh", "-c", "echo pre_stop >>/data/log"],
               "post_stop": ["sh", "-c", format!("echo post_stop >>{}", log.display())]}),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    let started = kit::wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("started"))
    });
    assert!(started.is_some(), "the container never wrote to the volume");

    let (r, _) = host.call(
        json!({"state": "disabled", "name": name, "image": kit::TEST_IMAGE}),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    let done = kit::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("post_stop"))
    })
    .expect("post_stop never ran");
    assert_eq!(
        done.lines().collect::<Vec<_>>(),
        ["started", "pre_stop", "stopped", "post_stop"]
    );
}

#[test]
fn a_failing_post_start_keeps_the_service_unannounced() {
    kit::ensure_test_image();
    let etcd = kit::Etcd::start();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let web = |name: &str, port: u16, post_start: &[&str]| {
        json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE,
               "command": ["sh", "-c", "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www"],
               "ports": [format!("127.0.0.1:{port}:8080")], "announce": port, "port": 8080,
               "announce_as": "127.0.0.0/8", "domain": "s.test.example.com", "host_label": "node-1",
               "etcd": etcd.endpoint(), "ttl": 10, "stop_timeout": 2,
               "health": [format!("http:{port}/")], "post_start": post_start, "hook_timeout": 5})
    };
    let key = |name: &str| format!("/skydns/com/example/test/s/{name}/node-1");

    // The control: a post_start that succeeds lets the record be announced.
    let passing = unique("hook-pass");
    let mut options = web(&passing, kit::free_port(), &["sh", "-c", "sleep 1"]);
    options["wait"] = json!(true);
    options["wait_timeout"] = json!(30);
    let (r, _) = host.call(options, false, false);
    assert_eq!(r["changed"], json!(true), "{r}");
    assert!(!etcd.get_prefix(&key(&passing)).is_empty());
    assert_eq!(r["service"]["status"]["health"][1]["check"], "post_start");
    assert_eq!(r["service"]["status"]["health"][1]["pass"], json!(true));

    let failing = unique("hook-fail");
    let (r, _) = host.call(
        // Slow to fail: without the gate its healthy container would be announced.
        web(&failing, kit::free_port(), &["sh", "-c", "sleep 2; exit 4"]),
        false,
        false,
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    let log = host.path("log").join(&failing).join("container/current");
    let failed = kit::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("post_start failed"))
    });
    assert!(
        failed.is_some(),
        "the supervisor never reported the failing post_start"
    );
    // Through several starts (the health check passes each time), never announced.
    for _ in 0..20 {
        assert_eq!(
            etcd.get_prefix(&key(&failing)),
            "",
            "announced despite post_start"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
