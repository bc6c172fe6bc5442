//! File modes and ownership: what the module creates has the same modes whatever the
//! caller's umask, and a service tree, service dir or runner in a path that someone
//! other than root (or the module's user) could write is refused before anything is
//! written, naming the path, its owner and its mode (sshd's `StrictModes`).

use crate::common;

use common::{snapshot, Host, BIN};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tree with every sibling (announcer, watch, hooks), so every kind of file is made.
fn options(host: &Host) -> Value {
    let template = host.path("upstream.conf.j2");
    std::fs::write(&template, "# {{ domain }}\n").unwrap();
    // The module refuses a watch whose destination directory does not exist.
    std::fs::create_dir_all(host.path("conf.d")).unwrap();
    json!({"state": "present", "name": "modes", "image": "rundock-test/busybox:latest",
           "env": {"TOKEN": "s3cret"}, "announce": 8080, "announce_as": "lo",
           "health": ["tcp:8080"], "post_start": ["true"],
           "install_dir": host.path("install/new/deeper").to_string_lossy(),
           "watch": [{"names": ["web"], "template": template.to_string_lossy(),
                      "dest": host.path("conf.d/upstream.conf").to_string_lossy()}]})
}

/// Runs the module with `umask` set for its process, as a shell of the operator's would.
fn call_with_umask(host: &Host, umask: u32, options: Value) -> Value {
    let mut args = host.dirs();
    args.extend(options.as_object().unwrap().clone());
    args.insert("_ansible_check_mode".into(), json!(false));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), Value::Object(args).to_string()).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask:03o} && exec \"$0\" \"$1\""))
        .arg(BIN)
        .arg(file.path())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every path below `root` with its mode, relative to `root`.
fn modes(root: &Path) -> BTreeMap<PathBuf, u32> {
    snapshot(root)
        .into_iter()
        .filter(|(path, ..)| !path.ends_with("upstream.conf.j2"))
        .map(|(path, _, mode, _)| {
            (
                path.strip_prefix(root).unwrap().to_path_buf(),
                mode & 0o7777,
            )
        })
        .collect()
}

#[test]
fn created_files_and_directories_have_the_same_modes_under_every_umask() {
    let reference = {
        let host = Host::new();
        let r = call_with_umask(&host, 0o022, options(&host));
        assert_eq!(r["changed"], json!(true), "{r}");
        modes(host.root.path())
    };
    // The tree, its services, the runner's new directories and the runner itself.
    assert!(reference.len() > 10, "{reference:?}");
    assert_eq!(reference[Path::new("install/new")], 0o755);
    assert_eq!(reference[Path::new("sv/docker-modes/spec.json")], 0o600);
    for (path, mode) in &reference {
        assert_eq!(
            mode & 0o022,
            0,
            "{} is writable by others: {mode:04o}",
            path.display()
        );
    }
    for umask in [0o000, 0o002, 0o077, 0o777] {
        let host = Host::new();
        let r = call_with_umask(&host, umask, options(&host));
        assert_eq!(r["changed"], json!(true), "umask {umask:03o}: {r}");
        assert_eq!(modes(host.root.path()), reference, "umask {umask:03o}");
    }
}

/// What a loose path looks like, and the words its refusal must carry.
struct Loose {
    field: &'static str,
    /// Relative to the host root.
    path: &'static str,
    mode: Option<u32>,
    owner: Option<u32>,
    expect: &'static str,
}

#[test]
fn a_path_others_could_write_is_refused_before_anything_is_written() {
    let table = [
        Loose {
            field: "sv_dir",
            path: "sv",
            mode: Some(0o775),
            owner: None,
            expect: "writable by its group (mode 0775",
        },
        Loose {
            field: "sv_dir",
            path: "sv",
            mode: Some(0o777),
            owner: None,
            expect: "writable by everyone (mode 0777",
        },
        Loose {
            field: "sv_dir",
            path: "sv",
            mode: None,
            owner: Some(1000),
            expect: "owned by uid 1000",
        },
        Loose {
            field: "sv_dir",
            path: "",
            mode: Some(0o757),
            owner: None,
            expect: "writable by everyone (mode 0757",
        },
        Loose {
            field: "service_dir",
            path: "service",
            mode: Some(0o770),
            owner: None,
            expect: "writable by its group (mode 0770",
        },
        Loose {
            field: "install_dir",
            path: "install",
            mode: Some(0o777),
            owner: None,
            expect: "writable by everyone (mode 0777",
        },
        Loose {
            field: "install_dir",
            path: "install",
            mode: None,
            owner: Some(4242),
            expect: "owned by uid 4242",
        },
        // A world-writable directory with the sticky bit is only safe when root owns it.
        Loose {
            field: "install_dir",
            path: "install",
            mode: Some(0o1777),
            owner: Some(1000),
            expect: "owned by uid 1000",
        },
    ];
    for loose in table {
        let host = Host::new();
        let target = match loose.path {
            "" => host.root.path().to_path_buf(),
            path => host.path(path),
        };
        if let Some(mode) = loose.mode {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        if let Some(uid) = loose.owner {
            std::os::unix::fs::chown(&target, Some(uid), None).unwrap();
        }
        let mut opts = options(&host);
        opts["install_dir"] = json!(host.path("install").to_string_lossy());
        let before = snapshot(host.root.path());
        for check in [true, false] {
            let (r, _) = host.call(opts.clone(), check, false);
            assert_eq!(
                r["failed"],
                json!(true),
                "{} {}: {r}",
                loose.field,
                loose.path
            );
            let msg = r["msg"].as_str().unwrap();
            assert!(msg.starts_with(&format!("{}: ", loose.field)), "{msg}");
            assert!(
                msg.contains(&format!("{} ", target.display())),
                "names the path: {msg}"
            );
            assert!(msg.contains(loose.expect), "{msg}");
            assert_eq!(snapshot(host.root.path()), before, "nothing written: {msg}");
        }
    }
}

#[test]
fn a_runner_others_could_replace_is_refused() {
    let host = Host::new();
    let mut opts = options(&host);
    opts["install_dir"] = json!(host.path("install").to_string_lossy());
    let (r, _) = host.call(opts.clone(), false, false);
    assert_eq!(r["changed"], json!(true), "{r}");
    let runner = walk_files(&host.path("install"))
        .into_iter()
        .find(|p| p.ends_with("rundock"))
        .expect("the runner is installed");
    assert_eq!(std::fs::metadata(&runner).unwrap().mode() & 0o7777, 0o755);
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o777)).unwrap();
    opts["env"] = json!({"TOKEN": "changed"});
    let before = snapshot(host.root.path());
    let (r, _) = host.call(opts, false, false);
    let msg = r["msg"].as_str().unwrap_or_default();
    assert_eq!(r["failed"], json!(true), "{r}");
    assert!(msg.starts_with("install_dir: "), "{msg}");
    assert!(msg.contains(&runner.display().to_string()), "{msg}");
    assert!(msg.contains("writable by everyone (mode 0777"), "{msg}");
    assert_eq!(snapshot(host.root.path()), before);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .map(|(p, ..)| p)
        .filter(|p| p.is_file())
        .collect()
}
