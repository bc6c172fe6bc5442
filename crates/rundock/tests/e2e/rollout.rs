//! Playbooks across hosts: three hosts on one machine (each an inventory entry with a
//! local connection, its own dirs, runsvdir, host label and port), one dockerd and one
//! etcd. site.yml converges them; rolling_update.yml moves a service to a new image one
//! host at a time while DNS is sampled every 50 ms, and stops at a host whose new
//! container fails its health check.

use crate::common;

use common::BIN;
use rundock_testkit as kit;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const DOMAIN: &str = "s.roll.example.com";
pub(crate) const HOSTS: [&str; 3] = ["host-1", "host-2", "host-3"];

/// A busybox web image; `healthy` ones serve /healthz.
pub(crate) fn web_image(tag: &str, healthy: bool) {
    kit::ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let health = if healthy {
        " && echo ok >/www/healthz"
    } else {
        ""
    };
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN mkdir -p /www && echo {tag} >/www/index.html{health}\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
            kit::TEST_IMAGE
        ),
    )
    .unwrap();
    let out = kit::docker(&["build", "-q", "-t", tag, &dir.path().to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) struct Cluster {
    // One runsvdir per host, started here (the host role only checks it runs:
    // rundock_runsvdir: external); stopped on drop before the dirs go.
    runsvdirs: Vec<kit::Runsvdir>,
    root: tempfile::TempDir,
    // Dropped before etcd, which it reads.
    dns: kit::DnsServer,
    pub(crate) etcd: kit::Etcd,
    tag: String,
    services: usize,
}

impl Cluster {
    pub(crate) fn new(image: &str, services: usize) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let etcd = kit::Etcd::start();
        let dns = kit::DnsServer::start(Path::new(BIN), &etcd, DOMAIN);
        let tag = format!("p{}", std::process::id());
        let runsvdirs = HOSTS
            .iter()
            .map(|host| kit::Runsvdir::start(&root.path().join(host).join("service")))
            .collect();
        let cluster = Cluster {
            runsvdirs,
            root,
            dns,
            etcd,
            tag,
            services,
        };
        cluster.write_inventory(image, services);
        cluster
    }

    pub(crate) fn dir(&self, host: &str, what: &str) -> PathBuf {
        self.root.path().join(host).join(what)
    }

    pub(crate) fn service(&self) -> String {
        format!("web-{}", self.tag)
    }

    /// Service `i` of the cluster: `web-TAG`, then `web1-TAG`, ...
    fn service_named(&self, i: usize) -> String {
        if i == 0 {
            self.service()
        } else {
            format!("web{i}-{}", self.tag)
        }
    }

    /// Each host gets `services` web services, each on a port of its own.
    fn write_inventory(&self, image: &str, services: usize) {
        let mut hosts = String::new();
        for host in HOSTS {
            hosts.push_str(&format!(
                "        {host}:\n          rundock_sv_dir: {sv}\n          rundock_service_dir: {service}\n          \
                 rundock_log_dir: {log}\n          rundock_install_dir: {install}\n          rundock_bin: {bin}\n          rundock_services:\n",
                sv = self.dir(host, "sv").display(),
                service = self.dir(host, "service").display(),
                log = self.dir(host, "log").display(),
                install = self.dir(host, "install").display(),
                bin = self.dir(host, "bin/rundock").display(),
            ));
            for i in 0..services {
                let port = kit::free_port();
                hosts.push_str(&format!(
                    "            - name: {name}\n              image: {image}\n              container_name: {host}-{name}\n              \
                     host_label: {host}\n              ports: [\"127.0.0.1:{port}:8080\"]\n              announce: {port}\n              \
                     port: 8080\n              health: [{{kind: http, port: {port}, path: /healthz, interval: 1, timeout: 1}}]\n",
                    name = self.service_named(i),
                ));
            }
        }
        let inventory = format!(
            "all:\n  children:\n    web:\n      hosts:\n{hosts}  vars:\n    ansible_connection: local\n    \
             ansible_python_interpreter: /usr/bin/python3\n    rundock_install_packages: false\n    rundock_runsvdir: external\n    rundock_binary: {BIN}\n    \
             rundock_service_defaults:\n      domain: {DOMAIN}\n      etcd: {{endpoints: [\"{etcd}\"]}}\n      announce_as: 127.0.0.0/8\n      \
             ttl: 10\n      drain: 1\n      stop_timeout: 2\n",
            etcd = self.etcd.endpoint(),
        );
        std::fs::write(self.root.path().join("hosts.yml"), inventory).unwrap();
    }

    pub(crate) fn playbook(&self, playbook: &str, extra: &[&str]) -> (bool, String) {
        let path = kit::workspace_root().join("playbooks").join(playbook);
        let inventory = self.root.path().join("hosts.yml");
        let mut args = vec!["-i", inventory.to_str().unwrap(), path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(kit::ansible_bin_dir().join("ansible-playbook"))
            .args(&args)
            .env(
                "ANSIBLE_CONFIG",
                kit::workspace_root().join("ansible/ansible.cfg"),
            )
            .env(
                "ANSIBLE_LIBRARY",
                kit::workspace_root().join("ansible/library"),
            )
            .env("ANSIBLE_ROLES_PATH", kit::workspace_root().join("roles"))
            .env("ANSIBLE_NOCOLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = common::output_text(&out);
        (out.status.success(), text)
    }

    /// How many instances answer SRV for the service right now.
    fn instances(&self) -> usize {
        let answer = self.dns.dig(&format!("{}.{DOMAIN}", self.service()), "SRV");
        answer.lines().filter(|l| !l.trim().is_empty()).count()
    }

    pub(crate) fn image_of(&self, host: &str) -> String {
        let name = format!("{host}-{}", self.service());
        let out = kit::docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.Config.Image}}",
            &name,
        ]);
        kit::stdout(&out).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Each Runsvdir stops its services, then itself.
        self.runsvdirs.clear();
        for host in HOSTS {
            for i in 0..self.services {
                let _ = kit::docker(&["rm", "-f", &format!("{host}-{}", self.service_named(i))]);
            }
        }
    }
}

/// Samples the number of announced instances every 50 ms until stopped.
fn sample(cluster: &Cluster, stop: &AtomicBool) -> Vec<usize> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        samples.push(cluster.instances());
        std::thread::sleep(Duration::from_millis(50));
    }
    samples
}

#[test]
fn site_converges_then_rolls_an_image_with_an_instance_always_announced() {
    let v1 = format!("rundock-test/web:v1-{}", std::process::id());
    let v2 = format!("rundock-test/web:v2-{}", std::process::id());
    let bad = format!("rundock-test/web:bad-{}", std::process::id());
    web_image(&v1, true);
    web_image(&v2, true);
    web_image(&bad, false);
    let cluster = Cluster::new(&v1, 1);

    let (ok, text) = cluster.playbook("site.yml", &[]);
    assert!(ok, "{text}");
    for host in HOSTS {
        assert!(
            text.contains(&format!("{host}                     : ok=")),
            "{text}"
        );
    }
    let all = kit::wait_for(Duration::from_secs(30), || {
        (cluster.instances() == 3).then_some(())
    });
    assert!(all.is_some(), "not all three instances announced");
    let (ok, text) = cluster.playbook("site.yml", &[]);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches("changed=0").count(),
        3,
        "second converge changed something:\n{text}"
    );

    // Roll to v2 while sampling DNS.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, text, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample(&cluster, &stop));
        let (ok, text) = cluster.playbook(
            "rolling_update.yml",
            &[
                "-e",
                &format!("rundock_rollout_service={}", cluster.service()),
                "-e",
                &format!("rundock_rollout_image={v2}"),
            ],
        );
        stop.store(true, Ordering::Relaxed);
        (ok, text, sampler.join().unwrap())
    });
    assert!(ok, "{text}");
    let min = samples.iter().copied().min().unwrap_or(0);
    eprintln!(
        "rolling update: {} samples, minimum {min} announced instances",
        samples.len()
    );
    assert!(samples.len() > 20, "too few samples: {}", samples.len());
    assert!(min >= 1, "a moment with no instance announced: {samples:?}");
    assert!(
        samples.contains(&2),
        "no host was ever withdrawn: {samples:?}"
    );
    for host in HOSTS {
        assert_eq!(cluster.image_of(host), format!("true {v2}"), "{host}");
    }

    // A bad image: the first host fails its health check and the rollout stops there.
    let (ok, text) = cluster.playbook(
        "rolling_update.yml",
        &[
            "-e",
            &format!("rundock_rollout_service={}", cluster.service()),
            "-e",
            &format!("rundock_rollout_image={bad}"),
            "-e",
            "rundock_rollout_timeout=10",
        ],
    );
    assert!(!ok, "the rollout of a failing image succeeded:\n{text}");
    assert!(text.contains("not announced"), "{text}");
    assert_eq!(cluster.image_of("host-1"), format!("true {bad}"));
    for host in ["host-2", "host-3"] {
        assert_eq!(
            cluster.image_of(host),
            format!("true {v2}"),
            "{host} was touched after the failure"
        );
    }
    assert_eq!(
        cluster.instances(),
        2,
        "the failed host must not be announced"
    );

    // A service no host runs (a typo) fails the rollout before any host is touched,
    // instead of skipping every host and succeeding.
    let (ok, text) = cluster.playbook(
        "rolling_update.yml",
        &[
            "-e",
            &format!("rundock_rollout_service={}-typo", cluster.service()),
            "-e",
            &format!("rundock_rollout_image={v1}"),
        ],
    );
    assert!(!ok, "a rollout of an unknown service succeeded:\n{text}");
    assert!(
        text.contains("is not a service of any host in this play"),
        "{text}"
    );
    assert_eq!(cluster.image_of("host-2"), format!("true {v2}"));
}

/// Converge time for 3 hosts × 5 services from nothing and for the no-change run. A
/// measurement, not a test: `cargo nextest run --run-ignored only -E 'test(converge_time)'`.
#[test]
#[ignore = "benchmark: prints numbers"]
fn converge_time_of_three_hosts_with_five_services() {
    let image = format!("rundock-test/web:v1-{}", std::process::id());
    web_image(&image, true);
    let cluster = Cluster::new(&image, 5);
    let started = std::time::Instant::now();
    let (ok, text) = cluster.playbook("site.yml", &[]);
    let cold = started.elapsed();
    assert!(ok, "{text}");
    let started = std::time::Instant::now();
    let (ok, text) = cluster.playbook("site.yml", &[]);
    let warm = started.elapsed();
    assert!(ok && text.matches("changed=0").count() == 3, "{text}");
    eprintln!("converge 3 hosts x 5 services: from nothing {cold:?}, no-change run {warm:?}");
}
