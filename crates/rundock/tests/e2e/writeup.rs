//! The write-up as a test: the example inventory (`ansible/inventory`) and
//! `playbooks/site.yml`, from nothing, on three simulated hosts (each its own dirs,
//! runsvdir and loopback address, with a local connection), one etcd and the shared
//! dockerd. The test inventory is derived from the example by a script that changes only
//! what a simulated host needs (images built here, dirs, addresses, names unique to this
//! run); the services, their `requires`, the proxied names and each frontend's proxy
//! (nginx on one, HAProxy on the other) are the example's.
//!
//! It checks that the converge succeeds although a frontend host's service `requires`
//! the backend's record with `wait` (met only when the hosts converge side by side),
//! that both frontends answer for grafana and web by name, that a second run changes
//! nothing, and that neither killing one of the two web instances, nor a rolling update
//! of web, nor a start-first update of the single grafana (both `rolling_update.yml`)
//! costs a request through either frontend.

use crate::common;

use common::BIN;
use rundock_testkit as kit;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOSTS: [&str; 3] = ["node-front-1", "node-front-2", "node-back-1"];
const FRONTENDS: [&str; 2] = ["node-front-1", "node-front-2"];

/// Rewrites the example inventory for simulated hosts; prints the result as JSON (which
/// is YAML). argv: the example's directory, the parameters as JSON.
const DERIVE_INVENTORY: &str = r#"
import json, os, sys, yaml

example, p = sys.argv[1], json.loads(sys.argv[2])
tag = p['tag']
inventory = yaml.safe_load(open(os.path.join(example, 'hosts.yml')))
defaults = inventory['all']['vars']['rundock_service_defaults']

def renamed(name):
    return '%s-%s' % (name, tag)

groups = {}
for group, body in inventory['all']['children'].items():
    group_vars = yaml.safe_load(open(os.path.join(example, 'group_vars', group + '.yml'))) or {}
    groups[group] = {'hosts': {}}
    for host, example_vars in body['hosts'].items():
        host_vars = dict(example_vars or {})
        host_vars.pop('ansible_host', None)
        address = p['addresses'][host]
        where = lambda what: os.path.join(p['root'], host, what)
        services = []
        for service in group_vars.get('rundock_services', []):
            service = dict(service)
            base = service['name']
            service['name'] = renamed(base)
            service['image'] = p['images'][base]
            service['container_name'] = '%s-%s' % (host, service['name'])
            if 'requires' in service:
                service['requires'] = [renamed(name) for name in service['requires']]
            # Named volumes of this run only.
            service['volumes'] = [v if v.startswith('/') else renamed(v.split(':', 1)[0]) + ':' + v.split(':', 1)[1]
                                  for v in service.get('volumes', [])]
            service['health'] = [dict(check, interval=1, timeout=1) for check in service.get('health', [])]
            if 'drain' in service:
                service['drain'] = 1
            services.append(service)
        host_vars.update({
            'ansible_connection': 'local',
            'ansible_python_interpreter': '/usr/bin/python3',
            'rundock_sv_dir': where('sv'),
            'rundock_service_dir': where('service'),
            'rundock_log_dir': where('log'),
            'rundock_install_dir': where('install'),
            'rundock_bin': where('bin/rundock'),
            'rundock_services': services,
            'rundock_service_defaults': dict(defaults, etcd={'endpoints': [p['etcd']]},
                                             announce_as=address + '/32', host_label=host,
                                             ttl=10, stop_timeout=2, wait_timeout=60),
        })
        if group_vars.get('rundock_frontend_names'):
            proxy = host_vars.get('rundock_frontend_proxy', group_vars.get('rundock_frontend_proxy', 'nginx'))
            host_vars.update({
                'rundock_frontend_name': renamed(group_vars.get('rundock_frontend_name', 'frontend')),
                'rundock_frontend_names': [renamed(name) for name in group_vars['rundock_frontend_names']],
                'rundock_frontend_listen': '%s:%s' % (address, group_vars.get('rundock_frontend_listen', '80')),
                'rundock_frontend_image': p['proxy_images'][proxy],
                'rundock_frontend_dir': where('frontend'),
                'rundock_frontend_options': {'container_name': '%s-frontend-%s' % (host, tag)},
            })
        groups[group]['hosts'][host] = host_vars
print(json.dumps({'all': {'children': groups, 'vars': {
    'rundock_install_packages': False, 'rundock_runsvdir': 'external', 'rundock_binary': p['bin'],
    'rundock_dns_domains': []}}}, indent=1))
"#;

/// `ip addr add ADDRESS/32 dev lo`, deleted on drop: a host's own address, which its
/// `announce_as` finds on an interface as it would on a real host.
struct LoopbackAddress(String);

impl LoopbackAddress {
    fn add(address: &str) -> LoopbackAddress {
        let cidr = format!("{address}/32");
        let _ = kit::run("ip", &["addr", "del", &cidr, "dev", "lo"]);
        let out = kit::run("ip", &["addr", "add", &cidr, "dev", "lo"]);
        assert!(out.status.success(), "ip addr add {cidr}: {out:?}");
        LoopbackAddress(cidr)
    }
}

impl Drop for LoopbackAddress {
    fn drop(&mut self) {
        let _ = kit::run("ip", &["addr", "del", &self.0, "dev", "lo"]);
    }
}

/// `docker build` of `dir` as `tag`.
fn build(dir: &Path, tag: &str) {
    let out = kit::docker(&["build", "-q", "-t", tag, &dir.to_string_lossy()]);
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A busybox httpd image answering `body` at / and `ok` at `health` on `port`.
fn backend_image(tag: &str, body: &str, port: u16, health: &str) {
    backend_image_marked(tag, body, port, health, "v1")
}

/// [`backend_image`] with a `marker` file, so that a new version is a new image.
fn backend_image_marked(tag: &str, body: &str, port: u16, health: &str, marker: &str) {
    kit::ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let health_dir = Path::new(health).parent().unwrap().to_string_lossy();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN mkdir -p /www{health_dir} && echo {body} >/www/index.html && echo ok >/www{health} && echo {marker} >/version\n\
             CMD [\"httpd\", \"-f\", \"-p\", \"{port}\", \"-h\", \"/www\"]\n",
            kit::TEST_IMAGE
        ),
    )
    .unwrap();
    build(dir.path(), tag);
}

/// An image `FROM scratch` holding this machine's `binary` (nginx or haproxy), the
/// libraries `ldd` names and busybox-static, with the users and directories the proxy
/// needs: the official images' stand-in, with no registry.
fn proxy_image(tag: &str, binary: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let put = |from: &Path, to: &str| {
        let dest = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    put(Path::new(binary), binary);
    put(Path::new("/bin/busybox"), "/bin/busybox");
    let ldd = kit::stdout(&kit::run("ldd", &[binary]));
    for word in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        put(Path::new(word), word);
    }
    for d in ["tmp", "run", "var/lib/nginx", "var/log/nginx", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY rootfs/ /\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN chmod 1777 /tmp\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"{binary}\"]\n"
        ),
    )
    .unwrap();
    build(dir.path(), tag);
}

/// One plain HTTP/1.0 GET for `host` at `address`: (status, body), `None` on any error.
fn get(address: &str, host: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.trim().to_string();
    Some((status, body))
}

struct Site {
    // Stopped first (their services, then themselves), then the addresses and dirs go.
    runsvdirs: Vec<kit::Runsvdir>,
    _addresses: Vec<LoopbackAddress>,
    root: tempfile::TempDir,
    _etcd: kit::Etcd,
    tag: String,
    /// Host → its own address.
    addresses: Vec<(&'static str, String)>,
}

impl Site {
    fn new(tag: &str, images: serde_json::Value, proxy_images: serde_json::Value) -> Site {
        let root = tempfile::tempdir().unwrap();
        let etcd = kit::Etcd::start();
        let net = std::process::id() % 200 + 20;
        let addresses: Vec<(&str, String)> = HOSTS
            .iter()
            .zip([11, 12, 21])
            .map(|(host, last)| (*host, format!("127.77.{net}.{last}")))
            .collect();
        let guards = addresses
            .iter()
            .map(|(_, a)| LoopbackAddress::add(a))
            .collect();
        let runsvdirs = HOSTS
            .iter()
            .map(|host| kit::Runsvdir::start(&root.path().join(host).join("service")))
            .collect();
        // A copy: the host role copies it, and a second run must find it unchanged even
        // when the build tree's binary is rebuilt meanwhile.
        let binary = root.path().join("rundock");
        std::fs::copy(BIN, &binary).unwrap();
        let params = serde_json::json!({
            "tag": tag,
            "root": root.path(),
            "etcd": etcd.endpoint(),
            "bin": binary,
            "addresses": addresses
                .iter()
                .map(|(host, address)| (host.to_string(), serde_json::json!(address)))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "images": images,
            "proxy_images": proxy_images,
        });
        let out = Command::new(kit::ansible_bin_dir().join("python3"))
            .args(["-c", DERIVE_INVENTORY])
            .arg(kit::workspace_root().join("ansible/inventory"))
            .arg(params.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deriving the inventory: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(root.path().join("hosts.yml"), &out.stdout).unwrap();
        Site {
            runsvdirs,
            _addresses: guards,
            root,
            _etcd: etcd,
            tag: tag.to_string(),
            addresses,
        }
    }

    fn address(&self, host: &str) -> &str {
        &self.addresses.iter().find(|(h, _)| *h == host).unwrap().1
    }

    fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.tag)
    }

    fn site_yml(&self) -> (bool, String) {
        self.playbook("site.yml", &[])
    }

    fn playbook(&self, playbook: &str, extra: &[&str]) -> (bool, String) {
        let out = Command::new(kit::ansible_bin_dir().join("ansible-playbook"))
            .arg("-i")
            .arg(self.root.path().join("hosts.yml"))
            .arg(kit::workspace_root().join("playbooks").join(playbook))
            .args(extra)
            .env(
                "ANSIBLE_CONFIG",
                kit::workspace_root().join("ansible/ansible.cfg"),
            )
            .env("ANSIBLE_NOCOLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = common::output_text(&out);
        (out.status.success(), text)
    }

    /// Asks both frontends for `name` in a loop while `action` runs (and a second after):
    /// (requests, failed ones). Each instance answers with the name.
    fn asking_while(&self, name: &str, action: impl FnOnce()) -> (u32, Vec<String>) {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let asker = s.spawn(|| {
                let (mut asked, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    for host in FRONTENDS {
                        asked += 1;
                        let answer = self.ask(host, name);
                        if answer.as_ref().map(|(s, b)| (*s, b.as_str())) != Some((200, name)) {
                            failed.push(format!("{host}: {answer:?}"));
                        }
                    }
                }
                (asked, failed)
            });
            std::thread::sleep(Duration::from_millis(500));
            action();
            std::thread::sleep(Duration::from_secs(1));
            stop.store(true, Ordering::Relaxed);
            asker.join().unwrap()
        })
    }

    /// What the frontend of `host` answers for `name` (a base name of the example).
    fn ask(&self, host: &str, name: &str) -> Option<(u16, String)> {
        get(&format!("{}:80", self.address(host)), &self.name(name))
    }

    /// The logs of every sibling of every tree, for a failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for host in HOSTS {
            let log = self.root.path().join(host).join("log");
            for entry in walk(&log) {
                if entry.ends_with("current") {
                    let body = std::fs::read_to_string(&entry).unwrap_or_default();
                    let tail: Vec<&str> = body.lines().rev().take(15).collect();
                    text.push_str(&format!("== {}\n", entry.display()));
                    for line in tail.iter().rev() {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
        }
        text
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

impl Drop for Site {
    fn drop(&mut self) {
        // Each Runsvdir stops its services (containers included), then itself.
        self.runsvdirs.clear();
        for volume in ["influxdb-data", "grafana-data"] {
            let _ = kit::docker(&["volume", "rm", "-f", &self.name(volume)]);
        }
    }
}

#[test]
fn the_writeup_converges_from_nothing_and_both_frontends_serve_by_name() {
    let tag = format!("w{}", std::process::id());
    let image = |what: &str| format!("rundock-test/writeup-{what}:{tag}");
    backend_image(&image("influxdb"), "influxdb", 8086, "/ping");
    backend_image(&image("grafana"), "grafana", 3000, "/api/health");
    backend_image(&image("web"), "web", 8080, "/healthz");
    proxy_image(&image("nginx"), "/usr/sbin/nginx");
    proxy_image(&image("haproxy"), "/usr/sbin/haproxy");
    let site = Site::new(
        &tag,
        serde_json::json!({
            "influxdb": image("influxdb"), "grafana": image("grafana"), "web": image("web"),
        }),
        serde_json::json!({"nginx": image("nginx"), "haproxy": image("haproxy")}),
    );

    // From nothing. web on the frontends requires influxdb on the backend, with wait:
    // had the hosts converged one after another (frontends first), web's wait would
    // have run out before influxdb was deployed.
    let started = Instant::now();
    let (ok, text) = site.site_yml();
    let converge = started.elapsed();
    assert!(ok, "{text}\n{}", site.logs());
    eprintln!("the write-up converged from nothing in {converge:.1?}");

    for host in FRONTENDS {
        for name in ["grafana", "web"] {
            let answer = kit::wait_for(Duration::from_secs(15), || {
                site.ask(host, name).filter(|(status, _)| *status == 200)
            });
            assert_eq!(
                answer.map(|(_, body)| body).as_deref(),
                Some(name),
                "the frontend of {host} for {name}\n{}",
                site.logs()
            );
        }
        // Any other name is not proxied.
        let other = site.ask(host, "influxdb").map(|(status, _)| status);
        assert!(matches!(other, Some(404 | 503)), "{host}: {other:?}");
    }

    // Each proxy started once, on the upstreams its watch had rendered (no seed file):
    // its container never exited.
    for host in FRONTENDS {
        let tree = site
            .root
            .path()
            .join(host)
            .join("sv")
            .join(format!("docker-{}", site.name("frontend")));
        let state = std::fs::read_to_string(
            tree.join("services/container")
                .join(rundock_spec::state::SUPERVISOR_STATE_FILE),
        )
        .unwrap_or_default();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        assert_eq!(
            state["exits"],
            serde_json::json!(0),
            "{host}: {state}\n{}",
            site.logs()
        );
        let log = site
            .root
            .path()
            .join(host)
            .join("log")
            .join(site.name("frontend"))
            .join("container/current");
        for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
            if line.contains("first render") || line.contains("first files") {
                eprintln!("{host}: {line}");
            }
        }
    }

    let (ok, text) = site.site_yml();
    assert!(ok, "{text}");
    assert_eq!(
        text.matches("changed=0").count(),
        3,
        "the second run changed something:\n{text}"
    );

    // One of the two web instances is killed while both frontends are asked for web:
    // the proxies send what meets the dead instance to the other.
    let (asked, failed) = site.asking_while("web", || {
        let killed = format!("node-front-1-{}", site.name("web"));
        let out = kit::docker(&["kill", &killed]);
        assert!(out.status.success(), "docker kill: {out:?}");
        // Until runsv has started it again and it answers.
        let back = kit::wait_for(Duration::from_secs(30), || {
            get(&format!("{}:8080", site.address("node-front-1")), "web")
                .filter(|(status, _)| *status == 200)
        });
        assert!(
            back.is_some(),
            "the killed web did not come back\n{}",
            site.logs()
        );
    });
    eprintln!(
        "docker kill of one of two web instances: {} of {asked} requests through both frontends failed",
        failed.len()
    );
    assert!(asked > 20, "too few requests: {asked}");
    assert!(failed.is_empty(), "{failed:?}\n{}", site.logs());

    // A rolling update of web (rolling_update.yml: withdraw, drain, replace, one host at
    // a time) while both frontends are asked for web.
    let v2 = image("web-v2");
    backend_image_marked(&v2, "web", 8080, "/healthz", "v2");
    let (asked, failed) = site.asking_while("web", || {
        let (ok, text) = site.playbook(
            "rolling_update.yml",
            &[
                "-e",
                &format!("rundock_rollout_service={}", site.name("web")),
                "-e",
                &format!("rundock_rollout_image={v2}"),
            ],
        );
        assert!(ok, "{text}\n{}", site.logs());
    });
    eprintln!(
        "rolling update of web (two instances): {} of {asked} requests through both frontends failed",
        failed.len()
    );
    for host in FRONTENDS {
        let out = kit::docker(&[
            "inspect",
            "-f",
            "{{.Config.Image}}",
            &format!("{host}-{}", site.name("web")),
        ]);
        assert_eq!(kit::stdout(&out).trim(), v2, "{host}");
    }
    assert!(asked > 20, "too few requests: {asked}");
    assert!(failed.is_empty(), "{failed:?}\n{}", site.logs());

    // The single grafana (update: start-first) moved to a new image while both
    // frontends are asked for it: the new container takes the record before the old
    // one drains.
    let v2 = image("grafana-v2");
    backend_image_marked(&v2, "grafana", 3000, "/api/health", "v2");
    let (asked, failed) = site.asking_while("grafana", || {
        let (ok, text) = site.playbook(
            "rolling_update.yml",
            &[
                "-e",
                &format!("rundock_rollout_service={}", site.name("grafana")),
                "-e",
                &format!("rundock_rollout_image={v2}"),
            ],
        );
        assert!(ok, "{text}\n{}", site.logs());
    });
    eprintln!(
        "start-first update of the single grafana: {} of {asked} requests through both frontends failed",
        failed.len()
    );
    let out = kit::docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &format!("node-back-1-{}", site.name("grafana")),
    ]);
    assert_eq!(kit::stdout(&out).trim(), v2);
    assert!(asked > 20, "too few requests: {asked}");
    assert!(failed.is_empty(), "{failed:?}\n{}", site.logs());
}
