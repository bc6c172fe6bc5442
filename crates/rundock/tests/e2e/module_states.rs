//! The module through real Ansible on a real runit: present → enabled → (no change) →
//! check and diff → disabled → absent, ad hoc and from a playbook, with the supervisor
//! keeping a real container on the shared dockerd.

use crate::common;

use common::{snapshot, unique, Host};
use rundock_testkit as kit;
use serde_json::json;
use std::time::Duration;

fn container_state(name: &str) -> Option<String> {
    let out = kit::docker(&["inspect", "-f", "{{.State.Status}}", name]);
    out.status
        .success()
        .then(|| kit::stdout(&out).trim().to_string())
}

fn containers_with_label(service: &str) -> String {
    kit::stdout(&kit::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=rundock.service={service}"),
    ]))
}

#[test]
fn ad_hoc_lifecycle_on_runit() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("life");
    let port = kit::free_port();
    let service = format!(
        "name={name} image={} command='httpd -f -p 8080' args=\"-p 127.0.0.1:{port}:8080 -e GREETING='hello world'\" {}",
        kit::TEST_IMAGE,
        host.dirs_kv()
    );

    // present: the tree, not linked.
    let (r, out) = host.adhoc(&format!("state=present {service}"), &[]);
    assert_eq!(r["changed"], json!(true), "{r} {out:?}");
    assert!(host.tree(&name).join("run").exists());
    assert!(!host.link(&name).exists());

    // enabled: linked, picked up by runsvdir, container running.
    let (r, _) = host.adhoc(&format!("state=enabled {service}"), &[]);
    assert_eq!(r["changed"], json!(true), "{r}");
    let running = kit::wait_for(Duration::from_secs(30), || {
        (container_state(&name).as_deref() == Some("running")).then_some(())
    });
    assert!(
        running.is_some(),
        "container not running; sv: {}",
        kit::sv_status(&host.tree(&name))
    );
    assert!(kit::sv_status(&host.tree(&name)).starts_with("run:"));
    let served = kit::wait_for(Duration::from_secs(10), || {
        kit::run(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{port}/"),
            ],
        )
        .status
        .success()
        .then_some(())
    });
    assert!(served.is_some(), "published port does not answer");

    // The same call again: nothing changes, nothing is touched.
    let before = snapshot(&host.tree(&name));
    let (r, _) = host.adhoc(&format!("state=enabled {service}"), &[]);
    assert_eq!(r["changed"], json!(false), "{r}");
    assert_eq!(snapshot(&host.tree(&name)), before);

    // Check mode with a change: reported, not written; diff shows it, value masked.
    let changed = service.replace("hello world", "other secret");
    let (r, out) = host.adhoc(&format!("state=enabled {changed}"), &["--check", "--diff"]);
    assert_eq!(r["changed"], json!(true), "{r}");
    assert_eq!(snapshot(&host.tree(&name)), before, "check mode wrote");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("spec.json") && shown.contains("(changed)"),
        "{shown}"
    );
    assert!(
        !shown.contains("other secret") && !shown.contains("hello world"),
        "{shown}"
    );

    // disabled: stopped and unlinked; the supervisor removed its container.
    let (r, _) = host.adhoc(
        &format!("state=disabled name={name} {}", host.dirs_kv()),
        &[],
    );
    assert_eq!(r["changed"], json!(true), "{r}");
    assert!(!host.link(&name).exists());
    assert!(host.tree(&name).join("spec.json").exists());
    assert_eq!(container_state(&name), None, "container left after disable");
    let (r, _) = host.adhoc(
        &format!("state=disabled name={name} {}", host.dirs_kv()),
        &[],
    );
    assert_eq!(r["changed"], json!(false), "{r}");

    // enabled again, then absent: nothing left anywhere.
    host.adhoc(&format!("state=enabled {service}"), &[]);
    assert!(
        kit::wait_for(Duration::from_secs(30), || (container_state(&name)
            .as_deref()
            == Some("running"))
        .then_some(()))
        .is_some()
    );
    let (r, _) = host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
    assert_eq!(r["changed"], json!(true), "{r}");
    assert!(!host.tree(&name).exists());
    assert!(!host.link(&name).exists());
    assert_eq!(
        containers_with_label(&name).trim(),
        "",
        "containers left after absent"
    );
    let (r, _) = host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
    assert_eq!(r["changed"], json!(false), "{r}");
}

#[test]
fn restarted_replaces_the_process_and_a_spec_change_restarts() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("rst");
    let base = format!(
        "name={name} image={} command='httpd -f -p 8080' {}",
        kit::TEST_IMAGE,
        host.dirs_kv()
    );
    host.adhoc(&format!("state=enabled {base}"), &[]);
    let id = || {
        let out = kit::docker(&["inspect", "-f", "{{.State.Running}} {{.Id}}", &name]);
        kit::stdout(&out)
            .strip_prefix("true ")
            .map(|id| id.trim().to_string())
    };
    let first = kit::wait_for(Duration::from_secs(30), id).expect("running");
    // A changed spec on a running service restarts it onto a new container.
    let (r, _) = host.adhoc(&format!("state=enabled {base} env='MODE=two'"), &[]);
    assert_eq!(r["changed"], json!(true), "{r}");
    let second =
        kit::wait_for(Duration::from_secs(30), || id().filter(|i| *i != first)).expect("replaced");
    let env = kit::stdout(&kit::docker(&[
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        &name,
    ]));
    assert!(env.contains("MODE=two"), "{env}");
    // restarted: always changed, and the service comes back up.
    let (r, _) = host.adhoc(&format!("state=restarted {base} env='MODE=two'"), &[]);
    assert_eq!(r["changed"], json!(true), "{r}");
    assert!(kit::sv_status(&host.tree(&name)).starts_with("run:"));
    // The ordered stop removed the old container; a new one runs.
    let third = kit::wait_for(Duration::from_secs(30), || id().filter(|i| *i != second));
    assert!(third.is_some(), "restarted left the old container running");
    host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
    assert_eq!(containers_with_label(&name).trim(), "");
}

#[test]
fn playbook_converges_and_second_run_reports_no_change() {
    kit::ensure_test_image();
    let host = Host::new();
    let _runsvdir = kit::Runsvdir::start(&host.service_dir());
    let name = unique("play");
    let dirs = host.dirs();
    let playbook = format!(
        r#"- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    dirs: {dirs}
  tasks:
    - name: web is enabled
      rundock:
        state: enabled
        name: {name}
        image: {image}
        command: [httpd, -f, -p, "8080"]
        env: {{GREETING: hello}}
        ports: ["127.0.0.1::8080"]
        sv_dir: "{{{{ dirs.sv_dir }}}}"
        service_dir: "{{{{ dirs.service_dir }}}}"
        log_dir: "{{{{ dirs.log_dir }}}}"
        install_dir: "{{{{ dirs.install_dir }}}}"
      register: web
    - name: the result names the service
      assert:
        that:
          - web.service.container_name == "{name}"
"#,
        dirs = serde_json::Value::Object(dirs.clone()),
        image = kit::TEST_IMAGE
    );
    let file = host.path("site.yml");
    std::fs::write(&file, playbook).unwrap();
    let library = host.library.path().to_string_lossy().into_owned();
    let run = || {
        let out = kit::ansible(
            "ansible-playbook",
            &["-i", "localhost,", "-M", &library, &file.to_string_lossy()],
        );
        let text = kit::stdout(&out);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = run();
    assert!(first.contains("changed=1"), "{first}");
    let second = run();
    assert!(
        second.contains("changed=0") && second.contains("failed=0"),
        "{second}"
    );
    host.adhoc(&format!("state=absent name={name} {}", host.dirs_kv()), &[]);
}

#[test]
fn ansible_doc_shows_options_examples_and_return_values() {
    let host = Host::new();
    let library = host.library.path().to_string_lossy().into_owned();
    let out = kit::ansible("ansible-doc", &["-M", &library, "rundock"]);
    let text = kit::stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "state",
        "announce_as",
        "EXAMPLES",
        "RETURN",
        "record_key",
        "health",
    ] {
        assert!(text.contains(needle), "ansible-doc lacks {needle}:\n{text}");
    }
}

#[test]
fn a_bad_argument_fails_the_ansible_task_with_the_option_named() {
    let host = Host::new();
    let (r, out) = host.adhoc(
        &format!(
            "state=enabled name=Bad_Name image=busybox {}",
            host.dirs_kv()
        ),
        &[],
    );
    assert!(!out.status.success());
    assert!(kit::stdout(&out).contains("localhost | FAILED!"), "{out:?}");
    assert!(r["msg"].as_str().unwrap().starts_with("name:"), "{r}");
    assert!(std::fs::read_dir(host.sv_dir()).unwrap().next().is_none());
}
