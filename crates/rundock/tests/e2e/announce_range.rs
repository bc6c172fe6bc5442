//! `announce: auto` with `announce_port_range`: Docker publishes the container port on a
//! host port of that range (on the announce address only), and the record carries it.

use crate::common;

use common::{unique, Host};
use rundock_testkit as kit;
use serde_json::{json, Value};

#[test]
fn announce_auto_publishes_and_announces_a_port_of_the_given_range() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let etcd = kit::Etcd::start();
    let name = unique("ranged");
    // Three ports, the first free a moment ago; Docker takes a free one of them.
    let first = kit::free_port().min(65533);
    let range = format!("{first}-{}", first + 2);
    let (r, code) = host.call(
        json!({
            "state": "enabled", "wait": true, "wait_timeout": 60, "name": name,
            "image": kit::TEST_IMAGE, "pull": "never",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/"],
            "announce": "auto", "port": 8080, "announce_port_range": range,
            "announce_as": "127.0.0.0/8", "domain": "s.range.example.com", "host_label": "node-1",
            "etcd": etcd.endpoint(), "ttl": 10, "stop_timeout": 1,
            "health": [{"kind": "tcp", "port": 8080, "interval": 1, "timeout": 1}],
        }),
        false,
        false,
    );
    assert_eq!(code, 0, "{r}");

    let text = etcd.get_prefix(&format!("/skydns/com/example/range/s/{name}/node-1"));
    let record: Value = serde_json::from_str(text.lines().nth(1).unwrap_or("null")).unwrap();
    let port = record["port"].as_u64().unwrap_or(0) as u16;
    assert!(
        (first..=first + 2).contains(&port),
        "record {record} not in {range}"
    );
    let published = kit::stdout(&kit::docker(&["port", &name, "8080/tcp"]));
    assert_eq!(published.trim(), format!("127.0.0.1:{port}"), "{published}");
    // The rest of the range is not published.
    let bindings = kit::stdout(&kit::docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        &name,
    ]));
    assert!(
        bindings.contains(&format!("\"HostPort\":\"{range}\"")),
        "{bindings}"
    );

    let (r, code) = host.call(json!({"state": "absent", "name": name}), false, false);
    assert_eq!(code, 0, "{r}");
}
