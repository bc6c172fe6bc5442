//! The module's own validation: every bad input fails with a message naming the option,
//! exits non-zero and leaves the host untouched; shell syntax in options is never run.

use crate::common;

use common::{snapshot, Host};
use serde_json::{json, Value};

fn base() -> Value {
    json!({"state": "enabled", "name": "web", "image": "rundock-test/busybox:latest"})
}

fn with(pairs: Value) -> Value {
    let mut v = base();
    for (k, val) in pairs.as_object().unwrap() {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val.clone();
        }
    }
    v
}

/// (options, the option the message must name)
fn bad_cases() -> Vec<(Value, &'static str)> {
    vec![
        (with(json!({"state": null})), "state"),
        (with(json!({"state": "running"})), "state"),
        (with(json!({"name": null})), "name"),
        (with(json!({"name": "../x"})), "name"),
        (with(json!({"name": "a b"})), "name"),
        (with(json!({"name": "Influx"})), "name"),
        (with(json!({"name": "a".repeat(64)})), "name"),
        (with(json!({"name": "-a"})), "name"),
        (with(json!({"name": ""})), "name"),
        (with(json!({"name": ["x"]})), "name"),
        (with(json!({"image": null})), "image"),
        (with(json!({"image": "Bad/Image"})), "image"),
        (with(json!({"image": "a b"})), "image"),
        (with(json!({"image": "x;rm -rf /"})), "image"),
        (with(json!({"image": "busybox:"})), "image"),
        (with(json!({"announce": "abc"})), "announce"),
        (with(json!({"announce": 0})), "announce"),
        (with(json!({"announce": "70000"})), "announce"),
        (with(json!({"announce": 8080, "port": 0})), "port"),
        (with(json!({"port": 8080})), "port"),
        (with(json!({"announce": 8080, "ttl": "x"})), "ttl"),
        (
            with(json!({"announce": 8080, "ttl": 30, "interval": 30})),
            "interval",
        ),
        (with(json!({"announce": 8080, "ttl": 1})), "ttl"),
        (with(json!({"args": "--restart always"})), "args"),
        (with(json!({"args": "-d"})), "args"),
        (with(json!({"args": "-p 99999:80"})), "args"),
        (with(json!({"args": "-e 'unterminated"})), "args"),
        (with(json!({"args": "-e A=1 stray"})), "args"),
        (with(json!({"args": "-e A=1; touch /tmp/x"})), "args"),
        (with(json!({"pull": "sometimes"})), "pull"),
        (with(json!({"stop_timeout": "-1"})), "stop_timeout"),
        (with(json!({"env": [1, 2]})), "env"),
        (with(json!({"env": {"1BAD": "x"}})), "env"),
        (with(json!({"ports": ["abc"]})), "ports"),
        (with(json!({"volumes": ["/a:relative"]})), "volumes"),
        (with(json!({"memory": "lots"})), "memory"),
        (with(json!({"cpus": "0"})), "cpus"),
        (with(json!({"privileged": "maybe"})), "privileged"),
        (
            with(json!({"announce": 8080, "etcd": {"endpoints": ["ftp://x"]}})),
            "etcd.endpoints",
        ),
        (
            with(json!({"announce": 8080, "etcd": {"api": "v4"}})),
            "etcd.api",
        ),
        (
            with(json!({"announce": 8080, "etcd": {"bogus": 1}})),
            "etcd",
        ),
        (
            with(json!({"announce": 8080, "etcd": {"cert_file": "/c.pem"}})),
            "etcd.cert_file",
        ),
        (
            with(json!({"announce": 8080, "health": [{"kind": "smtp", "port": 25}]})),
            "health[0].kind",
        ),
        (
            with(json!({"announce": 8080, "health": [{"kind": "http"}]})),
            "health[0].port",
        ),
        (
            with(
                json!({"announce": 8080, "health": [{"kind": "tcp", "port": 80, "interval": 2, "timeout": 5}]}),
            ),
            "health[0].timeout",
        ),
        (
            with(json!({"announce": 8080, "announce_as": "eth0[x]"})),
            "announce_as",
        ),
        (
            with(json!({"announce": 8080, "announce_as": "10.0.0.0/33"})),
            "announce_as",
        ),
        (
            with(json!({"announce": 8080, "domain": "bad_domain"})),
            "domain",
        ),
        (with(json!({"announce": 8080, "weight": 70000})), "weight"),
        (with(json!({"host_label": "Host_1"})), "host_label"),
        (with(json!({"sv_dir": "relative"})), "sv_dir"),
        (with(json!({"service_dir": "/a/../b"})), "service_dir"),
        (with(json!({"labels": {"rundock.service": "x"}})), "labels"),
        (with(json!({"user": "a b"})), "user"),
        (with(json!({"hostname": "-bad"})), "hostname"),
        (with(json!({"network": "bad net"})), "network"),
        (with(json!({"cap_add": ["net admin"]})), "cap_add"),
        (with(json!({"container_name": "/x"})), "container_name"),
        (with(json!({"command": 5})), "command"),
        (with(json!({"drain": 99999})), "drain"),
    ]
}

/// Unknown options are answered as Ansible answers them for a Python module, before any
/// other check (unknown names are in `unknown_options_are_answered_as_ansible_does`).
#[test]
fn every_bad_argument_names_its_option_and_touches_nothing() {
    let host = Host::new();
    let before = snapshot(host.root.path());
    let cases = bad_cases();
    assert!(cases.len() >= 40);
    for (options, field) in cases {
        let (result, code) = host.call(options.clone(), false, false);
        assert_eq!(result["failed"], json!(true), "{options} → {result}");
        assert_ne!(code, 0, "{options}: exit code");
        let msg = result["msg"].as_str().expect("msg");
        assert!(
            msg.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with([':', '[', '.', ' '])),
            "message for {options} should name {field}: {msg}"
        );
        assert_eq!(
            snapshot(host.root.path()),
            before,
            "{options} changed the disk"
        );
    }
}

#[test]
fn internal_keys_are_accepted_and_ad_hoc_strings_coerced() {
    let host = Host::new();
    let (result, code) = host.call(
        json!({
            "state": "present", "name": "web", "image": "rundock-test/busybox:latest",
            "announce": "8080", "ttl": "30", "privileged": "no", "env": "A=1, B='two words'",
            "ports": "127.0.0.1:9999:81,82", "health": "http:8080/ping,tcp:8080",
            "etcd": "http://127.0.0.1:1,http://127.0.0.1:2",
            "_ansible_selinux_special_fs": ["fuse"], "_ansible_some_future_key": {"x": 1}
        }),
        true,
        false,
    );
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["changed"], json!(true));
}

#[test]
fn shell_syntax_in_options_is_text_never_run() {
    let host = Host::new();
    let marker = std::env::temp_dir().join(format!("rundock-pwned-{}", std::process::id()));
    let m = marker.display();
    let hostile = format!(
        "-e \"A=$(touch {m})\" -e \"B=`touch {m}`\" -e 'C=x; touch {m}' -l \"d=$(touch {m})\""
    );
    let (result, code) = host.call(
        json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest",
               "args": hostile, "command": format!("sh -c 'echo $(touch {m})'")}),
        false,
        false,
    );
    assert_eq!(code, 0, "{result}");
    // The words are kept literally in the spec, never in a script.
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(host.tree("web").join("spec.json")).unwrap())
            .unwrap();
    assert_eq!(
        spec["container"]["env"]["A"],
        json!(format!("$(touch {m})"))
    );
    assert_eq!(
        spec["container"]["env"]["C"],
        json!(format!("x; touch {m}"))
    );
    for script in [
        "run",
        "control/t",
        "services/container/run",
        "services/container/log/run",
    ] {
        let text = std::fs::read_to_string(host.tree("web").join(script)).unwrap();
        assert!(!text.contains("touch"), "{script} holds user text: {text}");
    }
    // Shell syntax where only flags belong is refused.
    for bad in [
        format!("; touch {m}"),
        format!("-e A=1 && touch {m}"),
        format!("| touch {m}"),
    ] {
        let (result, _) = host.call(
            json!({"state": "present", "name": "web2", "image": "busybox", "args": bad}),
            false,
            false,
        );
        assert_eq!(result["failed"], json!(true));
    }
    assert!(!marker.exists(), "something ran the user's shell text");
}

#[test]
fn spec_holding_secrets_is_private_and_masked_in_diffs() {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::new();
    let options = json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest",
                         "env": {"PASSWORD": "hunter2-secret"}});
    let (result, _) = host.call(options.clone(), false, true);
    assert!(!result.to_string().contains("hunter2-secret"), "{result}");
    let mode = std::fs::metadata(host.tree("web").join("spec.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let changed = json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest",
                         "env": {"PASSWORD": "hunter3-secret"}});
    let (result, _) = host.call(changed, true, true);
    let text = result.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(
        text.contains("(changed)"),
        "a changed secret is marked: {text}"
    );
}

#[test]
fn second_run_changes_nothing_and_check_mode_writes_nothing() {
    let host = Host::new();
    let options = json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest",
                         "args": "-p 127.0.0.1:18080:8080 -e A=1", "announce": 18080, "port": 8080});
    let (checked, _) = host.call(options.clone(), true, true);
    assert_eq!(checked["changed"], json!(true));
    assert!(!host.tree("web").exists(), "check mode wrote the tree");
    assert!(checked["diff"].as_array().is_some_and(|d| !d.is_empty()));

    let (first, code) = host.call(options.clone(), false, false);
    assert_eq!(
        (first["changed"].clone(), code),
        (json!(true), 0),
        "{first}"
    );
    let after_first = snapshot(host.root.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (second, _) = host.call(options.clone(), false, true);
    assert_eq!(second["changed"], json!(false), "{second}");
    assert_eq!(second["diff"], json!([]));
    assert_eq!(
        snapshot(host.root.path()),
        after_first,
        "the no-op run touched files"
    );
    let key = second["service"]["record_key"]
        .as_str()
        .expect("record_key");
    let instance = key
        .strip_prefix("/skydns/com/example/prod/s/web/")
        .expect("key layout");
    assert!(!instance.is_empty() && !instance.contains('/'), "{key}");
}

/// Bad values generated per class (endpoints, interfaces, image references, paths):
/// `(option, value, runtime's refusal)`; the runtime's refusal is the error of the type
/// the supervisor, announcer or etcd client parse the stored spec with, `None` for the
/// classes only the module reads (paths).
fn generated_bad_values() -> Vec<(&'static str, Value, Option<String>)> {
    use rundock_spec::{AnnounceAs, EtcdEndpoint, ImageRef};
    let mut cases = Vec::new();
    let hosts = ["127.0.0.1", "[::1]", "etcd.example.com"];
    let bad_ports = ["99999", "65536", "0", "-1", "x", "1e3", ""];
    let mut endpoints: Vec<String> = Vec::new();
    for host in hosts {
        for port in bad_ports {
            endpoints.push(format!("http://{host}:{port}"));
        }
        for tail in ["/v3", "/?x=1", "/#frag", " "] {
            endpoints.push(format!("https://{host}:2379{tail}"));
        }
        endpoints.push(format!("http://user:secret@{host}:2379"));
        endpoints.push(format!("ftp://{host}:2379"));
        endpoints.push(format!("{host}:2379"));
    }
    endpoints.extend(
        [
            "http://[::1:2379",
            "http://::1]:2379",
            "http://[::g]:2379",
            "http://:2379",
            "http://",
        ]
        .map(String::from),
    );
    for value in endpoints {
        let runtime = value.parse::<EtcdEndpoint>().err().map(|e| e.to_string());
        assert!(
            runtime.is_some(),
            "{value} should be refused by the runtime too"
        );
        cases.push(("etcd.endpoints", json!({"endpoints": [value]}), runtime));
    }
    let mut interfaces: Vec<String> = Vec::new();
    for name in ["eth0", "wg0", "br-lan"] {
        for suffix in [
            ":inet4",
            ":",
            "[",
            "[]",
            "[x]",
            "[-1]",
            "[256]",
            "[1][2]",
            ":inet6:inet",
            "]",
            "/",
        ] {
            interfaces.push(format!("{name}{suffix}"));
        }
    }
    interfaces.extend(
        [
            "abcdefghijklmnop",
            "eth 0",
            "eth0\t",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "x/8",
            "",
        ]
        .map(String::from),
    );
    for value in interfaces {
        let runtime = value.parse::<AnnounceAs>().err().map(|e| e.to_string());
        assert!(
            runtime.is_some(),
            "{value:?} should be refused by the runtime too"
        );
        cases.push(("announce_as", json!(value), runtime));
    }
    let mut images: Vec<String> = Vec::new();
    for base in ["busybox", "registry:5000/team/app", "localhost/x"] {
        for bad in [
            "{b}:",
            "{b}:-x",
            "{b}:a b",
            "{b}@sha256:short",
            "{b}@:00",
            "{b}/",
            "{b}//y",
            "{b}:t:t",
        ] {
            images.push(bad.replace("{b}", base));
        }
        images.push(base.to_ascii_uppercase());
    }
    images.extend(["r:99999/x", "r:0/x", "-x", ":tag", "x;rm -rf /", "$(id)"].map(String::from));
    for value in images {
        let runtime = value.parse::<ImageRef>().err().map(|e| e.to_string());
        assert!(
            runtime.is_some(),
            "{value:?} should be refused by the runtime too"
        );
        cases.push(("image", json!(value), runtime));
    }
    let long = format!("/{}", "a".repeat(1100));
    let long_component = format!("/srv/{}", "b".repeat(300));
    for option in ["sv_dir", "install_dir", "log_dir", "service_dir"] {
        for value in [
            "relative",
            "/a/../b",
            "/a/./b",
            "/a\nb",
            long.as_str(),
            long_component.as_str(),
        ] {
            cases.push((option, json!(value), None));
        }
    }
    cases
}

#[test]
fn generated_bad_values_are_refused_alike_by_module_and_runtime() {
    let host = Host::new();
    let before = snapshot(host.root.path());
    let cases = generated_bad_values();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    for (option, value, runtime) in cases {
        let mut options = base();
        options["announce"] = json!(8080);
        match option.split_once('.') {
            Some((parent, _)) => options[parent] = value.clone(),
            None => options[option] = value.clone(),
        }
        let (result, code) = host.call(options, false, false);
        assert_eq!(result["failed"], json!(true), "{option}={value} → {result}");
        assert_ne!(code, 0);
        let msg = result["msg"].as_str().expect("msg");
        assert!(
            msg.starts_with(&format!("{option}: ")),
            "{option}={value}: the message should name {option}: {msg}"
        );
        if let Some(runtime) = runtime {
            assert!(
                msg.ends_with(&runtime),
                "{option}={value}: module and runtime must refuse alike:\n module: {msg}\nruntime: {runtime}"
            );
        }
        assert_eq!(
            snapshot(host.root.path()),
            before,
            "{option}={value} changed the disk"
        );
    }
}

#[test]
fn host_facts_are_checked_before_anything_is_written() {
    let host = Host::new();
    let before = snapshot(host.root.path());
    // An interface this host does not have: a typo must not loop under runsv.
    let (result, _) = host.call(
        json!({"state": "enabled", "name": "web", "image": "rundock-test/busybox:latest",
               "announce": 8080, "announce_as": "bogus"}),
        false,
        false,
    );
    let msg = result["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("announce_as: interface bogus does not exist"),
        "{msg}"
    );
    // state=enabled with a service dir that does not exist.
    let mut options =
        json!({"state": "enabled", "name": "web", "image": "rundock-test/busybox:latest"});
    options["service_dir"] = json!(host.path("no-such-service-dir"));
    let (result, _) = host.call(options, false, false);
    let msg = result["msg"].as_str().unwrap();
    assert!(msg.starts_with("service_dir: "), "{msg}");
    // A directory option below a file.
    std::fs::write(host.path("file"), "x").unwrap();
    let before_file = snapshot(host.root.path());
    let mut options =
        json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest"});
    options["install_dir"] = json!(host.path("file/lib"));
    let (result, _) = host.call(options, false, false);
    let msg = result["msg"].as_str().unwrap();
    assert!(msg.starts_with("install_dir: "), "{msg}");
    assert_eq!(snapshot(host.root.path()), before_file, "nothing written");
    std::fs::remove_file(host.path("file")).unwrap();
    assert_eq!(snapshot(host.root.path()), before);
    // An interface that exists but has no address yet is a warning, not a failure.
    let (result, code) = host.call(
        json!({"state": "present", "name": "web", "image": "rundock-test/busybox:latest",
               "announce": 8080, "announce_as": "lo:inet[5]"}),
        true,
        false,
    );
    assert_eq!(code, 0, "{result}");
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains("announce_as: no lo:inet[5] address"),
        "{result}"
    );
}

/// "Unsupported parameters for (NAME) module: ... Supported parameters include: ..." as
/// `AnsibleModule` says it, every option of the table listed, a near miss given its
/// option, and nothing else checked first: `imgae` without `image` is unsupported, not
/// "image is required".
#[test]
fn unknown_options_are_answered_as_ansible_does() {
    let host = Host::new();
    let before = snapshot(host.root.path());
    let mut supported: Vec<&str> = rundock_module::options::OPTIONS
        .iter()
        .map(|o| o.name)
        .collect();
    supported.sort_unstable();
    let supported = format!(". Supported parameters include: {}.", supported.join(", "));
    let no_image = json!({"state": "enabled", "name": "web", "imgae": "rundock-test/busybox"});
    for (options, unsupported) in [
        (
            with(json!({"anounce": 8080})),
            "anounce (did you mean announce?)",
        ),
        (no_image, "imgae (did you mean image?)"),
        (with(json!({"imagee": "x"})), "imagee (did you mean image?)"),
        (
            with(json!({"foo": "bar", "colour": "red", "anounce": "auto"})),
            "anounce (did you mean announce?), colour, foo",
        ),
    ] {
        let (result, code) = host.call(options.clone(), false, false);
        assert_eq!(result["failed"], json!(true), "{options} → {result}");
        assert_ne!(code, 0, "{options}: exit code");
        let msg = result["msg"].as_str().expect("msg");
        assert_eq!(
            msg,
            format!("Unsupported parameters for (rundock) module: {unsupported}{supported}"),
            "{options}"
        );
    }
    assert_eq!(
        snapshot(host.root.path()),
        before,
        "an unknown option changed the disk"
    );

    // Through Ansible, which names the module as the task called it.
    let (result, out) = host.adhoc("state=enabled name=web imgae=busybox", &["--check"]);
    assert!(!out.status.success(), "{result}");
    let msg = result["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Unsupported parameters for (rundock) module: imgae (did you mean image?). Supported parameters include: ")
            && msg.contains(", image, "),
        "{result}"
    );
}
