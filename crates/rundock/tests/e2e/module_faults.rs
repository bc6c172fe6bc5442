//! The module under faults: killed at random points of a changing run it leaves no torn
//! file and the next completed run leaves no temp file; run without the privileges it
//! needs, it says so (permission denied, the path) instead of guessing, in check mode and
//! in real runs alike, and changes nothing.

use crate::common;

use common::{snapshot, Host, BIN};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 60;

/// A small deterministic generator (xorshift), seeded per run so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn args_file(host: &Host, options: Value) -> tempfile::NamedTempFile {
    let mut args = host.dirs();
    for (k, v) in options.as_object().unwrap() {
        args.insert(k.clone(), v.clone());
    }
    args.insert("_ansible_check_mode".into(), json!(false));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), Value::Object(args).to_string()).unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    file
}

/// Even runs also install the runner into a fresh install dir (a large file: a long
/// window to be killed in), odd runs change only the tree.
fn install_dir(host: &Host, i: usize) -> PathBuf {
    host.path(&format!(
        "install-{}",
        if i.is_multiple_of(2) { i } else { 1 }
    ))
}

fn changing_run(host: &Host, i: usize) -> Value {
    json!({
        "state": "present", "name": "web", "image": "rundock-test/busybox:latest",
        "env": {"RUN": i.to_string(), "SECRET": format!("s3cret-{i}")},
        "install_dir": install_dir(host, i),
    })
}

/// Runs the module to the end; returns how long it took.
fn completed_run(host: &Host, i: usize) -> Duration {
    let file = args_file(host, changing_run(host, i));
    let started = Instant::now();
    let out = Command::new(BIN).arg(file.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    started.elapsed()
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .map(|(path, ..)| path)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".rundock-"))
        })
        .collect()
}

#[test]
fn killed_runs_leave_no_torn_file_and_the_next_run_no_temp_file() {
    let host = Host::new();
    // How long each kind of changing run takes here: kills land anywhere from the start
    // to a little past the end.
    let with_install = completed_run(&host, 1000).as_micros() as u64;
    completed_run(&host, 1);
    let tree_only = completed_run(&host, 1001).as_micros() as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let mut killed_mid_run = 0;
    for i in 0..RUNS {
        let file = args_file(&host, changing_run(&host, i));
        let mut child = Command::new(BIN)
            .arg(file.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let full = if i.is_multiple_of(2) {
            with_install
        } else {
            tree_only
        };
        std::thread::sleep(Duration::from_micros(rng.below(full * 5 / 4 + 1)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        // No torn file: every file of the tree is whole (spec.json parses; the runner,
        // where there is one, is the whole binary).
        let spec = std::fs::read_to_string(host.tree("web").join("spec.json")).unwrap();
        rundock_spec::Spec::from_json(&spec)
            .unwrap_or_else(|e| panic!("run {i}: torn spec.json: {e}"));
        for dir in [install_dir(&host, i), install_dir(&host, 1)] {
            let runner = dir.join(env!("CARGO_PKG_VERSION")).join("rundock");
            if runner.exists() {
                assert_eq!(
                    std::fs::metadata(&runner).unwrap().len(),
                    std::fs::metadata(BIN).unwrap().len(),
                    "run {i}: torn runner"
                );
            }
        }
    }
    let left = temp_files(host.root.path());
    eprintln!(
        "{RUNS} runs, {killed_mid_run} killed mid-run, {} temp files left behind before the next completed run",
        left.len()
    );
    assert!(
        killed_mid_run >= RUNS / 2,
        "only {killed_mid_run} of {RUNS} kills landed inside a run"
    );
    // The next completed run (one per install dir used) removes them all.
    for i in (0..RUNS).step_by(2).chain([1]) {
        completed_run(&host, i);
    }
    assert_eq!(temp_files(host.root.path()), Vec::<PathBuf>::new());
}

/// Runs the module as `nobody`, as an unprivileged Ansible user would.
fn call_unprivileged(host: &Host, options: Value, check: bool) -> Value {
    let mut options = options;
    options["_ansible_check_mode"] = json!(check);
    options["_ansible_diff"] = json!(true);
    let file = args_file(host, options);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .arg(file.path())
        .output()
        .expect("setpriv (util-linux)");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn without_privileges_it_says_permission_denied_and_changes_nothing() {
    let host = Host::new();
    // Directories others may traverse, as /etc/sv is; spec.json stays 0600 (secrets).
    std::fs::set_permissions(host.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in ["sv", "service", "log", "install"] {
        std::fs::set_permissions(host.path(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let options = json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest",
                         "env": {"TOKEN": "s3cret"}});
    let (r, code) = host.call(options.clone(), false, false);
    assert_eq!(code, 0, "{r}");
    let before = snapshot(host.root.path());
    let spec_path = host.tree("web").join("spec.json");
    for check in [true, false] {
        let r = call_unprivileged(&host, options.clone(), check);
        assert_eq!(r["failed"], json!(true), "check={check}: {r}");
        let msg = r["msg"].as_str().unwrap();
        assert!(msg.contains("permission denied"), "check={check}: {msg}");
        assert!(
            msg.contains(&spec_path.display().to_string()),
            "check={check}: the message names the path: {msg}"
        );
        assert!(!r.to_string().contains("s3cret"), "no secret in the result");
        assert_eq!(
            snapshot(host.root.path()),
            before,
            "check={check}: nothing changed"
        );
    }
    // A new service where this user may not write: the directory is named.
    let r = call_unprivileged(
        &host,
        json!({"state": "present", "name": "other", "image": "rundock-test/busybox:latest"}),
        false,
    );
    let msg = r["msg"].as_str().unwrap();
    assert!(msg.starts_with("sv_dir: cannot write"), "{msg}");
    assert!(msg.contains("permission denied"), "{msg}");
    assert_eq!(snapshot(host.root.path()), before);
}
