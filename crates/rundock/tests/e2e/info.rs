//! The info module (`rundock.rundock.rundock_info`) across three simulated hosts through
//! a real `ansible` ad hoc call on the collection, and `rundock logs` on a running and a
//! dead service: what an operator reads about services, from the controller and on the
//! host.

use crate::common;

use common::{unique, Host, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A service that writes `lines` numbered lines, then serves HTTP (never announced).
fn talker(name: &str, lines: u32) -> Value {
    json!({
        "state": "enabled",
        "name": name,
        "image": kit::TEST_IMAGE,
        "command": ["sh", "-c", format!("for i in $(seq 1 {lines}); do echo {name}-line-$i; done; exec httpd -f -p 8080")],
        "stop_timeout": 2,
        "wait": true,
        "wait_timeout": 60,
    })
}

/// `DIR/ansible_collections/rundock/rundock` with this build as both modules: the
/// module file, and `rundock_info` a link to it, as the collection ships them.
fn collection() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = kit::workspace_root().join("ansible_collections/rundock/rundock");
    let modules = dir
        .path()
        .join("ansible_collections/rundock/rundock/plugins/modules");
    std::fs::create_dir_all(&modules).unwrap();
    for entry in ["galaxy.yml", "meta"] {
        std::os::unix::fs::symlink(
            source.join(entry),
            dir.path()
                .join("ansible_collections/rundock/rundock")
                .join(entry),
        )
        .unwrap();
    }
    for doc in ["rundock.yml", "rundock_info.yml"] {
        std::fs::copy(source.join("plugins/modules").join(doc), modules.join(doc)).unwrap();
    }
    std::fs::copy(BIN, modules.join("rundock")).unwrap();
    std::os::unix::fs::symlink("rundock", modules.join("rundock_info")).unwrap();
    dir
}

/// Every host's result of an ad hoc run with one-line output (`HOST | STATUS => {…}`).
fn results(out: &std::process::Output) -> BTreeMap<String, Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let Some((host, rest)) = line.split_once(" | ") else {
            continue;
        };
        let Some(start) = rest.find('{') else {
            continue;
        };
        let value: Value = serde_json::from_str(&rest[start..])
            .unwrap_or_else(|e| panic!("unparsable result of {host} ({e}): {line}"));
        found.insert(host.to_string(), value);
    }
    assert!(
        !found.is_empty(),
        "no results:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    found
}

fn info(
    collections: &Path,
    inventory: &Path,
    args: &str,
    extra: &[&str],
) -> BTreeMap<String, Value> {
    let mut argv = vec![
        "all",
        "-i",
        inventory.to_str().unwrap(),
        "-m",
        "rundock.rundock.rundock_info",
        "-a",
        args,
        "-o",
    ];
    argv.extend_from_slice(extra);
    let out = Command::new(kit::ansible_bin_dir().join("ansible"))
        .args(&argv)
        .env("ANSIBLE_COLLECTIONS_PATH", collections)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "False")
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    results(&out)
}

#[test]
fn the_info_module_shows_each_hosts_services_across_three_hosts() {
    kit::ensure_test_image();
    let hosts = [Host::new(), Host::new(), Host::new()];
    let _runsvdir = kit::Runsvdir::start(&hosts[0].service_dir());
    let name = unique("info-web");
    // node-1 runs it, node-2 has it installed but not enabled, node-3 has nothing.
    let (result, code) = hosts[0].call(talker(&name, 3), false, false);
    assert_eq!(code, 0, "{result}");
    let mut present = talker(&name, 3);
    present["state"] = json!("present");
    present["wait"] = json!(false);
    let (result, code) = hosts[1].call(present, false, false);
    assert_eq!(code, 0, "{result}");
    // The container's lines reach svlogd's file a moment after it runs.
    let log = hosts[0].path("log").join(&name).join("container/current");
    kit::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains(&format!("{name}-line-3")))
    })
    .unwrap_or_else(|| panic!("{name}'s output never reached {}", log.display()));

    let inventory = hosts[0].path("hosts.ini");
    let mut text = String::new();
    for (i, host) in hosts.iter().enumerate() {
        text.push_str(&format!(
            "node-{} ansible_connection=local info_sv_dir={}\n",
            i + 1,
            host.sv_dir().display()
        ));
    }
    std::fs::write(&inventory, text).unwrap();
    let collections = collection();
    let before: Vec<_> = hosts
        .iter()
        .map(|h| common::snapshot(h.root.path()))
        .collect();

    let all = info(
        collections.path(),
        &inventory,
        "sv_dir={{ info_sv_dir }} lines=2",
        &[],
    );
    println!("rundock_info of node-1: {:#}", all["node-1"]);
    assert_eq!(all.len(), 3, "{all:#?}");
    let node1 = &all["node-1"];
    assert_eq!(node1["changed"], false, "{node1:#}");
    let services = node1["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{node1:#}");
    let web = &services[0];
    assert_eq!(web["name"], name.as_str());
    assert_eq!(web["state"], "up", "{web:#}");
    assert_eq!(web["revision"], 1, "{web:#}");
    assert!(
        web["container"]["image_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:")),
        "{web:#}"
    );
    assert_eq!(web["container"]["failure"], Value::Null, "{web:#}");
    assert_eq!(web["record"], Value::Null, "never announced: {web:#}");
    let output: Vec<&str> = web["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(output.len(), 2, "{web:#}");
    assert!(
        output.iter().all(|l| l.starts_with("20")),
        "svlogd's timestamps first: {output:?}"
    );
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(
        written.contains(&format!("{}\n{}\n", output[0], output[1])),
        "{output:?} are not lines of {} in order:\n{written}",
        log.display()
    );
    let node2 = &all["node-2"]["services"][0];
    assert_eq!(node2["name"], name.as_str(), "{:#}", all["node-2"]);
    assert_eq!(node2["state"], "disabled", "{node2:#}");
    assert_eq!(node2["enabled"], false, "{node2:#}");
    assert_eq!(all["node-3"]["services"], json!([]), "{:#}", all["node-3"]);

    // By name, in check mode: node-3 says it has none; nothing on any host changed.
    let named = info(
        collections.path(),
        &inventory,
        &format!("sv_dir={{{{ info_sv_dir }}}} name={name},nosuch lines=0"),
        &["--check"],
    );
    assert_eq!(named["node-1"]["missing"], json!(["nosuch"]), "{named:#?}");
    assert_eq!(named["node-1"]["services"][0]["output"], json!([]));
    assert_eq!(named["node-3"]["missing"], json!([name, "nosuch"]));
    assert_eq!(named["node-3"]["services"], json!([]));
    // node-1's tree is written by its running processes too: its spec is compared there.
    for (host, before) in hosts.iter().zip(&before).skip(1) {
        assert_eq!(
            &common::snapshot(host.root.path()),
            before,
            "the info module changed a file"
        );
    }
    let spec_file = hosts[0].tree(&name).join("spec.json");
    assert!(before[0]
        .iter()
        .any(|f| f.0 == spec_file && common::snapshot(&hosts[0].tree(&name)).contains(f)));
    // A misspelt option is answered as Ansible answers for its own modules.
    let wrong = info(
        collections.path(),
        &inventory,
        "line=3",
        &["--limit", "node-3"],
    );
    assert_eq!(
        wrong["node-3"]["msg"],
        "Unsupported parameters for (rundock.rundock.rundock_info) module: line (did you mean lines?). \
         Supported parameters include: lines, name, sv_dir."
    );
}

fn logs(host: &Host, args: &[&str]) -> (Vec<String>, std::process::Output) {
    let sv_dir = host.sv_dir();
    let mut argv = vec!["logs", "--sv-dir", sv_dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = kit::run(BIN, &argv);
    let lines = kit::stdout(&out).lines().map(String::from).collect();
    (lines, out)
}

#[test]
fn rundock_logs_reads_a_running_and_a_dead_service() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("logs-web");
    let (result, code) = host.call(talker(&name, 30), false, false);
    assert_eq!(code, 0, "{result}");
    let last = format!("{name}-line-30");
    let all = kit::wait_for(Duration::from_secs(20), || {
        let (lines, out) = logs(&host, &[&name, "-n", "1000"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        lines.iter().any(|l| l.ends_with(&last)).then_some(lines)
    })
    .unwrap_or_else(|| panic!("rundock logs never showed {last}"));
    for i in 1..=30 {
        let line = format!("{name}-line-{i}");
        assert!(
            all.iter().any(|l| l.ends_with(&line)),
            "{line} missing: {all:?}"
        );
    }
    assert!(all.iter().all(|l| l.starts_with("20")), "{all:?}");

    // -n N: the last N of them; the default is 10.
    let (five, _) = logs(&host, &[&name, "-n", "5"]);
    assert_eq!(five, all[all.len() - 5..], "{all:?}");
    let (ten, _) = logs(&host, &[&name]);
    assert_eq!(ten.len(), 10.min(all.len()));

    // -f: what the container writes from now on.
    let mut follow = Command::new(BIN)
        .args([
            "logs",
            "--sv-dir",
            host.sv_dir().to_str().unwrap(),
            &name,
            "-f",
            "-n",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let later = format!("{name}-written-later");
    let exec = kit::docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("echo {later} >/proc/1/fd/1"),
    ]);
    assert!(exec.status.success(), "{exec:?}");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let seen = rx.recv_timeout(Duration::from_secs(20));
    follow.kill().unwrap();
    follow.wait().unwrap();
    let seen = seen.expect("rundock logs -f printed nothing new");
    assert!(
        seen.ends_with(&later),
        "-n 0 -f printed an old line first: {seen}"
    );

    // Dead: the service stopped, its log is still read.
    let mut down = talker(&name, 30);
    down["state"] = json!("disabled");
    down["wait"] = json!(false);
    let (result, code) = host.call(down, false, false);
    assert_eq!(code, 0, "{result}");
    let (lines, out) = logs(&host, &[&name, "-n", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(lines.iter().any(|l| l.ends_with(&later)), "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with(&last)), "{lines:?}");

    // The announcer's stream of a service without one: nothing, not an error.
    let (lines, out) = logs(&host, &[&name, "--stream", "announce"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(lines.is_empty(), "{lines:?}");

    // No such service: 1 and the reason; a bad stream or count: 2, clap's usage error.
    let (_, out) = logs(&host, &["nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rundock logs: no rundock service nosuch"),
        "{err}"
    );
    for bad in [["--stream", "stdout"], ["-n", "10001"]] {
        let (_, out) = logs(&host, &[&name, bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
}
