//! The module refuses a watch that cannot work before it writes anything: a template
//! that cannot be read or does not render with no instances, a destination whose
//! directory does not exist; the message names `watch[i].template` or `watch[i].dest`.

use crate::common;

use common::Host;
use serde_json::json;

#[test]
fn a_watch_that_cannot_work_is_refused_naming_the_field_and_nothing_is_written() {
    let host = Host::new();
    let files = tempfile::tempdir().unwrap();
    let template = files.path().join("upstream.j2");
    let dest = files.path().join("upstream.conf");
    let call = |template: &std::path::Path, dest: &std::path::Path| {
        host.call(
            json!({
                "state": "present", "name": "front", "image": "rundock-test/busybox:latest",
                "domain": "s.example.com", "etcd": "http://127.0.0.1:2379",
                "watch": [{"names": ["web"], "template": template, "dest": dest}],
            }),
            false,
            false,
        )
    };
    let refused = |r: &serde_json::Value, code: i32, prefix: &str| {
        assert_ne!(code, 0, "{r}");
        let msg = r["msg"].as_str().unwrap_or_default();
        assert!(msg.starts_with(prefix), "{msg}");
        assert!(msg.ends_with("(nothing was changed)"), "{msg}");
        assert!(!host.tree("front").exists(), "the tree was written: {r}");
    };

    let (r, code) = call(&template, &dest);
    refused(&r, code, "watch[0].template: cannot read ");

    std::fs::write(
        &template,
        "{% for i in names.web %}{{ i.address }}{% endfor %",
    )
    .unwrap();
    let (r, code) = call(&template, &dest);
    refused(&r, code, "watch[0].template: ");
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("does not render with no instances"),
        "{r}"
    );

    std::fs::write(
        &template,
        "{% for i in names.web %}{{ i.address }}\n{% endfor %}",
    )
    .unwrap();
    let (r, code) = call(&template, &files.path().join("missing/upstream.conf"));
    refused(&r, code, "watch[0].dest: the directory ");

    let (r, code) = call(&template, &dest);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["changed"], json!(true), "{r}");
    assert!(host.tree("front").join("services/watch/run").is_file());
    assert!(!dest.exists(), "the module renders nothing itself");
}
