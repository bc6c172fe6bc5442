//! Releases on real Docker, runit, etcd and nginx: `on_failure: rollback` takes a broken
//! update back by itself (both update orders), a rollback through nginx (`rundock
//! watch`) costs no request with start-first, and the deploy lock of an announced
//! service lives in etcd on a lease: a second host waiting for it fails naming the
//! holder, and a SIGKILLed holder loses it within the lease's TTL.

use crate::common;
use crate::revisions::{image_id, running_image};
use crate::start_first::{
    assert_one_announced, http_get, images, options, record_port, serving, update_under_traffic,
    Service, DOMAIN,
};

use common::{Host, NginxFront, BIN};
use rundock_testkit as kit;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn history(host: &Host, name: &str, json: bool) -> String {
    let sv_dir = host.sv_dir().to_string_lossy().into_owned();
    let mut args = vec!["history", name, "--sv-dir", &sv_dir];
    if json {
        args.push("--json");
    }
    let out = kit::run(BIN, &args);
    assert!(out.status.success(), "{out:?}");
    kit::stdout(&out)
}

fn with(mut options: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        options[k.as_str()] = v.clone();
    }
    options
}

/// v1 runs; v2 never passes its health check; with `on_failure: rollback` the call
/// fails naming the check and the revision that runs now, v1 serves and is announced,
/// and the history marks v2 rolled back.
fn a_broken_update_goes_back_by_itself(order: &str) {
    let etcd = kit::Etcd::start();
    let prefix = if order == "start-first" {
        "rlb-sf"
    } else {
        "rlb-so"
    };
    let service = Service::deploy(&etcd, prefix, order);
    let (host, name) = (&service.host, &service.name);
    let [v1, v2, _] = images();
    let broken = with(
        options(name, &etcd, &v2, "v2", false, order),
        json!({"on_failure": "rollback", "wait_timeout": 8, "update_timeout": 5}),
    );
    let started = Instant::now();
    let (r, code) = host.call(broken, false, false);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["failed"], json!(true), "{r}");
    let msg = r["msg"].as_str().unwrap();
    let going_back = r["reverted"]["seconds"]
        .as_f64()
        .map_or("nothing to restart".to_string(), |s| format!("{s:.2} s"));
    eprintln!(
        "broken v2 with on_failure=rollback ({order}): call {secs:.1} s, going back {going_back}: {msg}"
    );
    assert!(
        msg.contains("health check http :8080/ready.html"),
        "names the check: {msg}"
    );
    assert!(
        msg.contains("on_failure=rollback: revision 2 was rolled back"),
        "{msg}"
    );
    assert!(msg.contains("runs now and is ready"), "{msg}");
    assert_eq!(r["reverted"]["failed"], json!(2), "{r}");
    assert_eq!(r["reverted"]["to"], json!(1), "{r}");

    assert_one_announced(&etcd, name);
    let port = record_port(&etcd, name).expect("announced");
    assert_eq!(
        http_get(port, "/", Duration::from_secs(2)).as_deref(),
        Some("v1")
    );
    assert_eq!(running_image(name), image_id(&v1));

    let table = history(host, name, false);
    eprintln!("rundock history {name} after the automatic revert ({order}):\n{table}");
    let listed: Value = serde_json::from_str(&history(host, name, true)).unwrap();
    let revisions = listed["revisions"].as_array().unwrap();
    let failed = revisions.iter().find(|r| r["number"] == json!(2)).unwrap();
    assert_eq!(
        failed["outcome"]["result"],
        json!("rolled back"),
        "{failed}"
    );
    assert!(
        failed["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("ready.html"),
        "{failed}"
    );
    if order == "start-first" {
        // The old container never stopped: the tree is revision 1 again.
        assert_eq!(listed["current"], json!(1), "{listed}");
        assert_eq!(r["reverted"]["revision"], Value::Null, "{r}");
    } else {
        // v1 was started again, pinned by its image id: a new revision.
        assert_eq!(listed["current"], json!(3), "{listed}");
        let current = revisions.iter().find(|r| r["number"] == json!(3)).unwrap();
        assert_eq!(current["rollback_of"], json!(1), "{current}");
        assert_eq!(current["image_id"], json!(image_id(&v1)), "{current}");
        assert_eq!(current["outcome"]["result"], json!("healthy"), "{current}");
    }
    // The service takes the next deploy as usual.
    let (r, _) = host.call(options(name, &etcd, &v1, "v1", true, order), false, false);
    assert!(r.get("failed").is_none(), "{r}");
}

#[test]
fn a_broken_stop_first_update_with_on_failure_rollback_ends_with_v1_announced() {
    a_broken_update_goes_back_by_itself("stop-first");
}

#[test]
fn a_broken_start_first_update_with_on_failure_rollback_ends_with_v1_announced() {
    a_broken_update_goes_back_by_itself("start-first");
}

/// v1 → v2 (`order`), then `rollback: previous` while requests run through nginx,
/// whose upstream `rundock watch` renders from the records. Prints the failed requests
/// and the rollback's wall time.
fn rollback_through_nginx(order: &str) -> usize {
    let etcd = kit::Etcd::start();
    let service = Service::deploy(&etcd, &format!("rln-{}", &order[..4]), order);
    let (host, name) = (&service.host, &service.name);
    let front = NginxFront::start(&etcd, DOMAIN, name, 10);
    assert!(serving(front.port, "v1"), "nginx: {}", front.logs());
    let settled = kit::wait_for(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(front.dir.path().join("error.log")).unwrap_or_default();
        log.contains("exited with code").then_some(())
    });
    assert!(settled.is_some(), "the first nginx worker did not exit");
    let [_, v2, _] = images();
    let (r, _) = host.call(options(name, &etcd, &v2, "v2", true, order), false, false);
    assert!(r.get("failed").is_none(), "{r}");
    assert!(serving(front.port, "v2"), "nginx: {}", front.logs());

    let report = update_under_traffic(
        host,
        front.port,
        json!({"state": "enabled", "name": name, "rollback": "previous",
               "wait": true, "wait_timeout": 60}),
    );
    eprintln!(
        "rollback through nginx ({order}): {} of {} requests failed, {} slow requests completed, rollback {:.2} s: {}",
        report.failed,
        report.total,
        report.slow_ok,
        report.wall.as_secs_f64(),
        report.module["msg"]
    );
    assert!(report.module.get("failed").is_none(), "{}", report.module);
    assert_eq!(report.module["service"]["rollback_to"], json!(1));
    assert!(serving(front.port, "v1"), "nginx: {}", front.logs());
    assert_one_announced(&etcd, name);
    assert!(report.total > 50, "{report:?}");
    report.failed
}

#[test]
fn a_start_first_rollback_through_nginx_loses_no_request() {
    let failed = rollback_through_nginx("start-first");
    assert_eq!(failed, 0, "start-first rollback lost requests");
}

#[test]
fn a_stop_first_rollback_through_nginx_completes_and_prints_its_cost() {
    // Stop-first has a gap by design (one instance); printed for the contrast.
    rollback_through_nginx("stop-first");
}

/// The module on an args file, as a child process (to be killed).
fn spawn_call(host: &Host, options: Value) -> (Child, tempfile::NamedTempFile) {
    let mut args = host.dirs();
    for (k, v) in options.as_object().unwrap() {
        args.insert(k.clone(), v.clone());
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), Value::Object(args).to_string()).unwrap();
    let child = Command::new(BIN)
        .arg(file.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, file)
}

fn lock_key(name: &str) -> String {
    format!("/rundock/locks/{DOMAIN}/{name}")
}

#[test]
fn the_etcd_lock_names_its_holder_to_another_host_and_a_sigkilled_holder_loses_it_within_its_ttl() {
    let etcd = kit::Etcd::start();
    let service = Service::deploy(&etcd, "rlk", "stop-first");
    let (host, name) = (&service.host, &service.name);
    let [v1, v2, _] = images();
    // A change that holds the lock: its new container never passes its check, and it
    // waits for that up to 120 s.
    let (mut holder, _args) = spawn_call(
        host,
        with(
            options(name, &etcd, &v2, "v2", false, "stop-first"),
            json!({"wait_timeout": 120}),
        ),
    );
    let key = lock_key(name);
    let record = kit::wait_for(Duration::from_secs(30), || {
        let text = etcd.get_prefix(&key);
        text.lines().nth(1).map(str::to_string)
    })
    .expect("the holder took the lock in etcd");
    eprintln!("etcd lock {key} = {record}");
    let parsed: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(parsed["pid"], json!(holder.id()), "{record}");
    assert!(parsed["since"].as_u64().is_some(), "{record}");
    assert!(parsed["action"].as_str().unwrap().contains(&v2), "{record}");

    // Another host (its own sv_dir, so its own lock file) changing the same service
    // waits for the etcd lock and gives up naming the holder.
    let other = Host::new();
    let (r, _) = other.call(
        with(
            options(name, &etcd, &v1, "v1", true, "stop-first"),
            json!({"lock_timeout": 2}),
        ),
        false,
        false,
    );
    assert_eq!(r["failed"], json!(true), "{r}");
    let msg = r["msg"].as_str().unwrap();
    eprintln!("second host: {msg}");
    assert!(
        msg.contains(&format!("holds its deploy lock in etcd ({key})")),
        "{msg}"
    );
    assert!(msg.contains(&format!("pid {}", holder.id())), "{msg}");
    assert!(
        !other.tree(name).exists(),
        "nothing was written on the second host"
    );

    // The holder dies without letting go: etcd drops the key at the lease's TTL.
    let killed_at = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let gone = kit::wait_for(Duration::from_secs(30), || {
        etcd.get_prefix(&key).trim().is_empty().then_some(())
    });
    let after = killed_at.elapsed().as_secs_f64();
    eprintln!("the SIGKILLed holder's etcd lock was gone {after:.1} s after the kill (TTL 15 s)");
    assert!(gone.is_some(), "the lock outlived its holder by 30 s");

    // And the next change goes through.
    let (r, _) = host.call(
        options(name, &etcd, &v1, "v1", true, "stop-first"),
        false,
        false,
    );
    assert!(r.get("failed").is_none(), "{r}");
    assert_eq!(r["lock"]["etcd"]["key"], json!(key), "{r}");
    assert!(
        etcd.get_prefix(&key).trim().is_empty(),
        "released at the end"
    );
}

/// The container starts of `name` on the cluster's hosts since `since` (unix seconds),
/// in Docker's order: `(host, image)`, repeats of a restart folded.
fn start_order(cluster: &crate::rollout::Cluster, since: u64) -> Vec<(String, String)> {
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = kit::docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until,
        "--filter",
        "event=start",
        "--filter",
        &format!("label=rundock.service={}", cluster.service()),
        "--format",
        "{{.TimeNano}} {{.Actor.Attributes.name}} {{.Actor.Attributes.image}}",
    ]);
    let mut order: Vec<(String, String)> = Vec::new();
    for line in kit::stdout(&out).lines() {
        let mut words = line.split_whitespace().skip(1);
        let (Some(container), Some(image)) = (words.next(), words.next()) else {
            continue;
        };
        let host = container.split('-').take(2).collect::<Vec<_>>().join("-");
        let entry = (host, image.to_string());
        if order.last() != Some(&entry) {
            order.push(entry);
        }
    }
    order
}

#[test]
fn two_rollouts_of_a_service_started_together_never_interleave_and_the_second_names_the_holder() {
    use crate::rollout::{web_image, Cluster, HOSTS};
    let pid = std::process::id();
    let (v1, va, vb) = (
        format!("rundock-test/web:v1-lk{pid}"),
        format!("rundock-test/web:a-lk{pid}"),
        format!("rundock-test/web:b-lk{pid}"),
    );
    for image in [&v1, &va, &vb] {
        web_image(image, true);
    }
    let cluster = Cluster::new(&v1, 1);
    let (ok, text) = cluster.playbook("site.yml", &[]);
    assert!(ok, "{text}");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let service = format!("rundock_rollout_service={}", cluster.service());
    let rollout = |image: &str| {
        cluster.playbook(
            "rolling_update.yml",
            &[
                "-e",
                &service,
                "-e",
                &format!("rundock_rollout_image={image}"),
            ],
        )
    };
    let ((ok_a, text_a), (ok_b, text_b)) = std::thread::scope(|s| {
        let a = s.spawn(|| rollout(&va));
        let b = s.spawn(|| rollout(&vb));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(ok_a, "{text_a}");
    assert!(ok_b, "{text_b}");

    // The converge may end in the same second the rollouts begin: its starts are v1's.
    let order: Vec<(String, String)> = start_order(&cluster, since)
        .into_iter()
        .filter(|(_, image)| image != &v1)
        .collect();
    eprintln!("order of container starts (host, image):");
    for (host, image) in &order {
        eprintln!("  {host} {image}");
    }
    let images: Vec<&str> = order.iter().map(|(_, image)| image.as_str()).collect();
    let first = images[0];
    let second = if first == va {
        vb.as_str()
    } else {
        va.as_str()
    };
    let expected: Vec<&str> = [first; 3].into_iter().chain([second; 3]).collect();
    assert_eq!(images, expected, "the rollouts interleaved: {order:?}");
    let hosts: Vec<&str> = order.iter().map(|(host, _)| host.as_str()).collect();
    let in_order: Vec<&str> = HOSTS.iter().chain(HOSTS.iter()).copied().collect();
    assert_eq!(hosts, in_order, "{order:?}");

    // The one that went second waited for the first one's lock and says whose it was.
    let waited = if first == va { &text_b } else { &text_a };
    let line = waited
        .lines()
        .find(|l| l.contains("s for the deploy lock"))
        .unwrap_or_else(|| panic!("the second rollout does not name the holder:\n{waited}"));
    eprintln!("second rollout: {}", line.trim());
    assert!(
        line.contains(&format!("/rundock/locks/{}/", crate::rollout::DOMAIN)),
        "{line}"
    );
    assert!(line.contains("play_lock=acquire"), "{line}");
    for host in HOSTS {
        assert_eq!(cluster.image_of(host), format!("true {second}"), "{host}");
    }
    assert!(
        cluster.etcd.get_prefix("/rundock/locks/").trim().is_empty(),
        "the rollouts let their lock go"
    );
}

/// One service on three hosts (each its own dirs, runsvdir, label and container name),
/// one etcd: the module options for `label`.
fn on_host(
    name: &str,
    etcd: &kit::Etcd,
    label: &str,
    image: &str,
    version: &str,
    ready: bool,
) -> Value {
    with(
        options(name, etcd, image, version, ready, "stop-first"),
        json!({"host_label": label, "container_name": format!("{label}-{name}")}),
    )
}

fn trail(host: &Host, name: &str, extra: &[&str]) -> String {
    let sv_dir = host.sv_dir().to_string_lossy().into_owned();
    let mut args = vec!["history", name, "--all-hosts", "--sv-dir", &sv_dir];
    args.extend_from_slice(extra);
    let out = kit::run(BIN, &args);
    assert!(out.status.success(), "{out:?}");
    kit::stdout(&out)
}

#[test]
fn the_trail_shows_every_hosts_changes_and_keeps_what_etcd_missed_until_it_is_back() {
    let mut etcd = kit::Etcd::start();
    let name = common::unique("rlt");
    let labels = ["node-a", "node-b", "node-c"];
    let hosts: Vec<Host> = labels.iter().map(|_| Host::new()).collect();
    let _runsvdirs: Vec<kit::Runsvdir> = hosts
        .iter()
        .map(|h| kit::Runsvdir::start(&h.service_dir()))
        .collect();
    let _containers = Containers(labels.iter().map(|l| format!("{l}-{name}")).collect());
    let [v1, v2, v3] = images();
    let call = |i: usize, options: Value| hosts[i].call(options, false, false).0;
    for (i, label) in labels.iter().enumerate() {
        let r = call(i, on_host(&name, &etcd, label, &v1, "v1", true));
        assert!(r.get("failed").is_none(), "{r}");
    }
    for i in [0, 1] {
        let r = call(i, on_host(&name, &etcd, labels[i], &v2, "v2", true));
        assert!(r.get("failed").is_none(), "{r}");
    }
    let r = call(
        0,
        json!({"state": "enabled", "name": name, "rollback": "previous", "wait": true}),
    );
    assert!(r.get("failed").is_none(), "{r}");
    let r = call(
        2,
        with(
            on_host(&name, &etcd, labels[2], &v2, "v2", false),
            json!({"on_failure": "rollback", "wait_timeout": 6}),
        ),
    );
    assert_eq!(r["failed"], json!(true), "{r}");

    let table = trail(&hosts[0], &name, &[]);
    eprintln!("rundock history {name} --all-hosts:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 3 + 2 + 3, "{table}");
    assert!(lines[0].starts_with("WHEN (UTC)"), "{table}");
    // Newest first: node-c's revert, its failed revision, node-a's rollback, ...
    assert!(
        lines[1].contains("node-c") && lines[1].contains("(rollback to 1)"),
        "{table}"
    );
    assert!(
        lines[2].contains("node-c") && lines[2].contains("rolled back: health check"),
        "{table}"
    );
    assert!(
        lines[3].contains("node-a") && lines[3].contains("3 (rollback to 1)"),
        "{table}"
    );
    assert!(lines[3].contains(&format!("{v2} (")), "from v2: {table}");
    for label in labels {
        assert!(table.contains(label), "{table}");
    }
    let limited = trail(&hosts[1], &name, &["--limit", "2"]);
    assert_eq!(limited.lines().count(), 3, "{limited}");
    let entries: Value = serde_json::from_str(&trail(&hosts[1], &name, &["--json"])).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 8, "{entries}");
    assert_eq!(entries[0]["host_label"], json!("node-c"));
    assert_eq!(entries[0]["outcome"], json!("healthy"));
    assert!(entries[0]["user"].as_str().is_some_and(|u| !u.is_empty()));

    // etcd goes away while a change waits: its entry stays in the tree...
    let (mut slow, _args) = spawn_call(
        &hosts[1],
        with(
            on_host(&name, &etcd, labels[1], &v3, "v3", false),
            json!({"wait_timeout": 8}),
        ),
    );
    let key = lock_key(&name);
    let locked = kit::wait_for(Duration::from_secs(30), || {
        (!etcd.get_prefix(&key).trim().is_empty()).then_some(())
    });
    assert!(locked.is_some(), "the change did not take the lock");
    etcd.stop();
    assert!(!slow.wait().unwrap().success());
    let pending = hosts[1].tree(&name).join("trail-pending.json");
    let kept = std::fs::read_to_string(&pending).expect("the entry is kept in the tree");
    assert!(kept.contains(&v3), "{kept}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&pending).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // ... and goes with the service's next call once etcd is back.
    etcd.restart();
    let r = call(1, on_host(&name, &etcd, labels[1], &v2, "v2", true));
    assert!(r.get("failed").is_none(), "{r}");
    assert!(!pending.exists(), "sent: {r}");
    let table = trail(&hosts[2], &name, &[]);
    eprintln!("after etcd came back:\n{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("node-b") && l.contains(&v3) && l.contains("failed")),
        "{table}"
    );
    for (i, host) in hosts.iter().enumerate() {
        let r = host
            .call(json!({"state": "absent", "name": name}), false, false)
            .0;
        assert!(r.get("failed").is_none(), "{} {r}", labels[i]);
    }
}

/// Containers removed on drop (the runsvdirs, dropped first, stop the trees).
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = kit::docker(&["rm", "-f", name]);
        }
    }
}
