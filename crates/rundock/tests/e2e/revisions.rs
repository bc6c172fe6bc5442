//! Revisions and rollback on real Docker, runit and a loopback `docker-registry`: every
//! spec the module installs is a numbered revision with the image id it ran,
//! `rundock history` lists them, and `rollback` puts a kept one back by image id, by the
//! service's update order, idempotently, also after its tag moved.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

const DOMAIN: &str = "s.rev.example.com";

/// A container that says which version it is in `/version` and serves it on 8080.
fn build_version(name: &str, version: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo {version}-{name} >/version\n",
            kit::TEST_IMAGE
        ),
    )
    .unwrap();
    let local = format!("rundock-test/rev-{name}:{version}");
    let out = kit::docker(&["build", "-q", "-t", &local, &dir.path().to_string_lossy()]);
    assert!(out.status.success(), "{out:?}");
    local
}

pub(crate) fn image_id(reference: &str) -> String {
    kit::stdout(&kit::docker(&[
        "image", "inspect", "-f", "{{.Id}}", reference,
    ]))
    .trim()
    .to_string()
}

/// The image id the service's container was made from.
pub(crate) fn running_image(name: &str) -> String {
    kit::stdout(&kit::docker(&["inspect", "-f", "{{.Image}}", name]))
        .trim()
        .to_string()
}

fn options(name: &str, image: &str, order: &str, etcd: Option<&kit::Etcd>) -> Value {
    let mut options = json!({
        "state": "enabled", "name": name, "image": image, "pull": "missing",
        "command": ["sh", "-c", "mkdir -p /www && cp /version /www/index.html && exec httpd -f -p 8080 -h /www"],
        "stop_timeout": 1, "wait": true, "wait_timeout": 60,
    });
    if let Some(etcd) = etcd {
        options["update"] = json!(order);
        for (k, v) in json!({
            "announce": "auto", "port": 8080, "announce_as": "127.0.0.0/8",
            "domain": DOMAIN, "host_label": "node-1", "etcd": etcd.endpoint(), "ttl": 10,
            "health": [{"kind": "http", "port": 8080, "path": "/", "interval": 1, "timeout": 1}],
            "update_timeout": 30,
        })
        .as_object()
        .unwrap()
        {
            options[k.as_str()] = v.clone();
        }
    }
    options
}

/// What a test made on the shared dockerd, removed on drop, also when it fails. Made
/// before the runsvdir, so it is dropped after it: no supervisor recreates a container.
struct Leftovers {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = kit::docker(&["rm", "-f", name, &format!("{name}-next")]);
        }
        for image in &self.images {
            let _ = kit::docker(&["rmi", "-f", image]);
        }
    }
}

fn ok(r: &Value) {
    assert_eq!(r["failed"], Value::Null, "{r}");
}

fn history_json(host: &Host, name: &str) -> Value {
    let out = kit::run(
        BIN,
        &[
            "history",
            name,
            "--json",
            "--sv-dir",
            &host.sv_dir().to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rollback(host: &Host, name: &str, to: &str) -> (Value, f64) {
    let started = Instant::now();
    let (r, _) = host.call(
        json!({"state": "enabled", "name": name, "rollback": to, "wait": true, "wait_timeout": 60}),
        false,
        false,
    );
    (r, started.elapsed().as_secs_f64())
}

/// v1 → v2 → v3, history, rollback to v2, then to v1 after v1's tag moved (in the
/// registry and on the host): the exact old image runs; asking again changes nothing.
fn update_history_and_rollback(order: &str, etcd: Option<&kit::Etcd>) {
    kit::ensure_test_image();
    let registry = kit::registry::Registry::start();
    let host = Host::new();
    let name = unique(&format!("rev-{}", &order[..order.find('-').unwrap()]));
    let mut leftovers = Leftovers {
        containers: vec![name.clone()],
        images: Vec::new(),
    };
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let mut references = Vec::new();
    let mut ids = Vec::new();
    for version in ["v1", "v2", "v3"] {
        let local = build_version(&name, version);
        references.push(registry.push(&local, &format!("{name}:{version}")));
        ids.push(image_id(&local));
        let _ = kit::docker(&["rmi", &local]);
    }
    leftovers
        .images
        .extend(references.iter().chain(&ids).cloned());

    for (i, reference) in references.iter().enumerate() {
        let (r, _) = host.call(options(&name, reference, order, etcd), false, false);
        ok(&r);
        assert_eq!(r["service"]["revision"], json!(i + 1), "{r}");
        assert_eq!(running_image(&name), ids[i]);
    }
    let file = host.tree(&name).join("revisions.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "revisions.json holds specs (secrets)");

    let history = history_json(&host, &name);
    let revisions = history["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 3, "{history}");
    assert_eq!(history["current"], json!(3));
    for (i, revision) in revisions.iter().enumerate() {
        assert_eq!(revision["number"], json!(i + 1));
        assert_eq!(revision["image"], json!(references[i]));
        assert_eq!(revision["image_id"], json!(ids[i]));
        assert_eq!(
            revision["outcome"]["result"],
            json!("healthy"),
            "{revision}"
        );
        assert!(!revision["applied_by"]["user"].as_str().unwrap().is_empty());
    }
    let table = kit::run(
        BIN,
        &[
            "history",
            &name,
            "--sv-dir",
            &host.sv_dir().to_string_lossy(),
        ],
    );
    let table = kit::stdout(&table);
    eprintln!("rundock history {name} ({order}):\n{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("3*"), "{table}");
    assert!(table.contains(&ids[0]["sha256:".len().."sha256:".len() + 12]));

    // Back to the previous revision, by its image id.
    let (r, secs) = rollback(&host, &name, "previous");
    ok(&r);
    eprintln!("rollback to v2 ({order}): {secs:.2} s");
    assert_eq!(r["changed"], json!(true), "{r}");
    assert_eq!(r["service"]["rollback_to"], json!(2), "{r}");
    assert_eq!(r["service"]["revision"], json!(4), "{r}");
    assert_eq!(running_image(&name), ids[1]);
    let (r, _) = rollback(&host, &name, "previous");
    ok(&r);
    assert_eq!(
        r["changed"],
        json!(false),
        "asking again changes nothing: {r}"
    );
    let (r, _) = rollback(&host, &name, "4");
    assert_eq!(r["changed"], json!(false), "the current revision: {r}");

    // v1's tag now names another image, in the registry and on this host.
    let moved = build_version(&name, "v1-moved");
    registry.push(&moved, &format!("{name}:v1"));
    let out = kit::docker(&["tag", &moved, &references[0]]);
    assert!(out.status.success(), "{out:?}");
    let moved_id = image_id(&moved);
    leftovers.images.push(moved_id.clone());
    let _ = kit::docker(&["rmi", &moved]);
    assert_ne!(image_id(&references[0]), ids[0]);
    let (r, secs) = rollback(&host, &name, "1");
    ok(&r);
    eprintln!("rollback to v1 after its tag moved ({order}): {secs:.2} s");
    assert_eq!(r["changed"], json!(true), "{r}");
    assert_eq!(running_image(&name), ids[0], "the exact old image runs");
    let (r, _) = rollback(&host, &name, "1");
    assert_eq!(r["changed"], json!(false), "{r}");

    let status = kit::run(
        BIN,
        &[
            "status",
            "--json",
            "--sv-dir",
            &host.sv_dir().to_string_lossy(),
            &name,
        ],
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["revision"], json!(5), "{status}");
    let history = history_json(&host, &name);
    let latest = history["revisions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(latest["rollback_of"], json!(1), "{latest}");
    assert_eq!(latest["image_id"], json!(ids[0]), "{latest}");
    assert_eq!(history["revisions"].as_array().unwrap().len(), 5);

    // A revision that is not kept is refused with the kept ones named; nothing changes.
    let (r, _) = rollback(&host, &name, "9");
    assert_eq!(r["failed"], json!(true), "{r}");
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("revision 9 is not kept"),
        "{r}"
    );
    assert_eq!(running_image(&name), ids[0]);

    let table = kit::run(
        BIN,
        &[
            "history",
            &name,
            "--sv-dir",
            &host.sv_dir().to_string_lossy(),
        ],
    );
    eprintln!("after the rollbacks ({order}):\n{}", kit::stdout(&table));
    let (r, _) = host.call(json!({"state": "absent", "name": name}), false, false);
    ok(&r);
}

#[test]
fn stop_first_updates_are_revisions_and_roll_back_by_image_id() {
    // `update` applies to announced services only; an unannounced one is stop-first.
    update_history_and_rollback("stop-first", None);
}

#[test]
fn start_first_updates_are_revisions_and_roll_back_by_image_id() {
    let etcd = kit::Etcd::start();
    update_history_and_rollback("start-first", Some(&etcd));
}

#[test]
fn rollback_takes_no_service_options_and_needs_a_revision() {
    let host = Host::new();
    let name = unique("rev-bad");
    let (r, _) = host.call(
        json!({"state": "enabled", "name": name, "rollback": "previous", "image": "busybox"}),
        false,
        false,
    );
    assert_eq!(r["failed"], json!(true), "{r}");
    assert!(r["msg"].as_str().unwrap().contains("rollback"), "{r}");
    assert!(r["msg"].as_str().unwrap().contains("image"), "{r}");
    let (r, _) = host.call(
        json!({"state": "enabled", "name": name, "rollback": "last"}),
        false,
        false,
    );
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("`previous` or a revision number"),
        "{r}"
    );
    let (r, _) = host.call(
        json!({"state": "enabled", "name": name, "rollback": "previous"}),
        false,
        false,
    );
    assert!(r["msg"].as_str().unwrap().contains("no revision"), "{r}");
    let (r, _) = host.call(
        json!({"state": "enabled", "name": name, "image": "busybox", "history": 0}),
        false,
        false,
    );
    assert!(r["msg"].as_str().unwrap().contains("history"), "{r}");
}

#[test]
fn a_tree_from_before_revisions_keeps_the_spec_it_replaced_as_revision_1() {
    kit::ensure_test_image();
    let host = Host::new();
    let name = unique("rev-old");
    let _leftovers = Leftovers {
        containers: vec![name.clone()],
        images: Vec::new(),
    };
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let service = |value: &str| {
        json!({"state": "enabled", "name": name, "image": kit::TEST_IMAGE, "pull": "never",
               "command": ["sleep", "3600"], "env": {"RELEASE": value}, "stop_timeout": 1,
               "wait": true, "wait_timeout": 60})
    };
    let env_of = || kit::stdout(&kit::docker(&["inspect", "-f", "{{.Config.Env}}", &name]));
    let (r, _) = host.call(service("one"), false, false);
    ok(&r);
    // As a tree installed by a release without revisions.
    std::fs::remove_file(host.tree(&name).join("revisions.json")).unwrap();
    let (r, _) = host.call(service("two"), false, false);
    ok(&r);
    assert_eq!(r["service"]["revision"], json!(2), "{r}");
    let history = history_json(&host, &name);
    let first = &history["revisions"][0];
    assert_eq!(first["image_id"], Value::Null, "{history}");
    assert_eq!(
        first["spec"]["container"]["env"]["RELEASE"],
        json!("********"),
        "specs are shown masked: {history}"
    );
    assert!(env_of().contains("RELEASE=two"));
    let (r, _) = rollback(&host, &name, "previous");
    ok(&r);
    assert_eq!(r["changed"], json!(true), "{r}");
    assert!(env_of().contains("RELEASE=one"), "{}", env_of());
    let (r, _) = host.call(json!({"state": "absent", "name": name}), false, false);
    ok(&r);
}

/// `playbooks/rollback.yml` on a one-host inventory, the module being this build's
/// binary (a collection dir of its own, so the shared one is left alone).
fn rollback_playbook(host: &Host, name: &str, extra: &[&str]) -> (bool, String) {
    let collections = host.path("collections");
    let modules = collections.join("ansible_collections/rundock/rundock/plugins/modules");
    if !modules.exists() {
        std::fs::create_dir_all(&modules).unwrap();
        std::os::unix::fs::symlink(BIN, modules.join("rundock")).unwrap();
    }
    let inventory = host.path("hosts.yml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  hosts:\n    node-a:\n      rundock_sv_dir: {sv}\n      rundock_service_dir: {service}\n      \
             rundock_log_dir: {log}\n      rundock_install_dir: {install}\n      rundock_services: [{{name: {name}}}]\n  \
             vars:\n    ansible_connection: local\n    ansible_python_interpreter: /usr/bin/python3\n",
            sv = host.sv_dir().display(),
            service = host.service_dir().display(),
            log = host.path("log").display(),
            install = host.path("install").display(),
        ),
    )
    .unwrap();
    let playbook = kit::workspace_root().join("playbooks/rollback.yml");
    let service = format!("rundock_rollback_service={name}");
    let mut args = vec![
        "-i",
        inventory.to_str().unwrap(),
        playbook.to_str().unwrap(),
        "-e",
        &service,
    ];
    args.extend_from_slice(extra);
    let out = std::process::Command::new(kit::ansible_bin_dir().join("ansible-playbook"))
        .args(&args)
        .env("ANSIBLE_COLLECTIONS_PATH", &collections)
        .env("ANSIBLE_NOCOLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = common::output_text(&out);
    (out.status.success(), text)
}

#[test]
fn the_rollback_playbook_puts_the_previous_revision_back_once() {
    kit::ensure_test_image();
    let host = Host::new();
    let name = unique("rev-play");
    let images: Vec<String> = ["v1", "v2"]
        .iter()
        .map(|v| build_version(&name, v))
        .collect();
    let _leftovers = Leftovers {
        containers: vec![name.clone()],
        images: images.clone(),
    };
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let ids: Vec<String> = images.iter().map(|i| image_id(i)).collect();
    for image in &images {
        let mut service = options(&name, image, "stop-first", None);
        service["pull"] = json!("never");
        let (r, _) = host.call(service, false, false);
        ok(&r);
    }
    assert_eq!(running_image(&name), ids[1]);
    let (passed, text) = rollback_playbook(&host, &name, &[]);
    assert!(passed, "{text}");
    assert!(text.contains("changed=1"), "{text}");
    assert_eq!(running_image(&name), ids[0]);
    let (passed, text) = rollback_playbook(&host, &name, &[]);
    assert!(passed, "{text}");
    assert!(text.contains("changed=0"), "again: {text}");
    let (passed, text) = rollback_playbook(&host, &name, &["-e", "rundock_rollback_to=2"]);
    assert!(passed, "{text}");
    assert_eq!(running_image(&name), ids[1]);
    // A name no host lists (a typo) fails before any host is touched; the later -e wins.
    let (passed, text) = rollback_playbook(
        &host,
        &name,
        &["-e", "rundock_rollback_service=nothing-here"],
    );
    assert!(!passed, "{text}");
    assert!(text.contains("is not a service of any host"), "{text}");
    let (r, _) = host.call(json!({"state": "absent", "name": name}), false, false);
    ok(&r);
}
