//! A record cannot write configuration: generated hostile keys and values (line breaks,
//! `;`, braces, quotes, template syntax, bytes that are not text, wrong types, sizes;
//! the same generator as the DNS tests) are written to a real etcd beside good records,
//! before `rundock watch` starts and while it runs. Every template field is rendered
//! into the shipped nginx example (checked by a real `nginx -t`), a HAProxy
//! configuration (checked by a real `haproxy -c`) and a plain dump of every field: only
//! the good instances appear, every field in its grammar, and a good record written
//! after the hostile ones still appears.

#[path = "../../rundock-dns/tests/hostile/mod.rs"]
mod hostile;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use rundock_spec::skydns::{check_key, is_host, is_host_name};
use rundock_spec::watch::WatchSpec;
use rundock_testkit as kit;
use serde_json::json;

const DOMAIN: &str = "s.watch.example.com";
const BASE: &str = "/skydns/com/example/watch/s";
const READY: Duration = Duration::from_secs(15);

/// Every field a template can see, one instance a line, `|`-separated.
const FIELDS: &str = "{% for i in instances %}{{ i.service }}|{{ i.instance }}|{{ i.host }}|{{ i.port }}|{{ i.priority }}|{{ i.weight }}|{{ i.address }}|{{ i.target }}|{{ i.key }}\n{% endfor %}";

/// A whole HAProxy configuration with every text field in a place where a line
/// break or a space would change it.
/// (`haproxy -c` binds nothing; a configuration without a listener fails it.)
const HAPROXY: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nfrontend fe\n    bind 127.0.0.1:65000\n    default_backend web\n{% for name, list in names|items %}backend {{ name }}\n{% for i in list %}    # {{ i.key }} {{ i.target }}\n    server {{ i.instance }} {{ i.address }} weight {{ i.weight }}\n{% endfor %}{% endfor %}";

/// `rundock watch` in-process on its own thread; stopped on drop.
struct Watching {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Watching {
    fn start(spec: WatchSpec) -> Watching {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(rundock_watch::watch(spec, async move {
                let _ = stop_rx.await;
            }))
        });
        Watching {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("watch thread");
            if !std::thread::panicking() {
                result.expect("watch ended cleanly");
            }
        }
    }
}

fn nginx_conf(dir: &Path) {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log notice;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             \x20 include {d}/upstream.conf;\n\
             \x20 server {{\n    listen 127.0.0.1:{};\n    location / {{ proxy_pass http://web; }}\n  }}\n}}\n",
            kit::free_port()
        ),
    )
    .unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn good(ip: &str, port: u16) -> String {
    format!(r#"{{"host":"{ip}","port":{port}}}"#)
}

#[test]
fn hostile_keys_and_values_never_reach_a_rendered_file() {
    let etcd = kit::Etcd::start();
    let endpoint = etcd.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let d: PathBuf = dir.path().to_path_buf();
    nginx_conf(&d);
    let templates = [
        (
            "nginx.j2",
            include_str!("../../../examples/nginx-upstream.conf.j2"),
        ),
        ("haproxy.j2", HAPROXY),
        ("fields.j2", FIELDS),
    ];
    for (name, text) in templates {
        std::fs::write(d.join(name), text).unwrap();
    }
    let nginx_check = kit::proxies::nginx_argv(&d, &["-t", "-q"]);
    let haproxy_cfg = d.join("haproxy.cfg");
    let haproxy_check: Vec<String> = ["haproxy", "-c", "-q", "-f"]
        .iter()
        .map(|s| s.to_string())
        .chain([haproxy_cfg.display().to_string()])
        .collect();
    let spec: WatchSpec = serde_json::from_value(json!({
        "domain": DOMAIN,
        "etcd": {"endpoints": [endpoint], "api": "v3", "prefix": "/skydns"},
        "templates": [
            {"names": ["web", "api"], "template": d.join("nginx.j2"), "dest": d.join("upstream.conf"),
             "check": nginx_check, "reload": ["true"]},
            {"names": ["web", "api"], "template": d.join("haproxy.j2"), "dest": haproxy_cfg,
             "check": haproxy_check, "reload": ["true"]},
            {"names": ["web", "api"], "template": d.join("fields.j2"), "dest": d.join("fields.txt")},
        ],
    }))
    .unwrap();
    spec.validate().unwrap();

    let cases = hostile::cases(0x5afe);
    let (before, during) = cases.split_at(cases.len() / 2);
    let (web, api) = (format!("{BASE}/web"), format!("{BASE}/api"));
    hostile::put_raw(
        &endpoint,
        format!("{web}/node-1").as_bytes(),
        good("10.0.0.1", 8080).as_bytes(),
    );
    hostile::put_raw(
        &endpoint,
        format!("{api}/node-1").as_bytes(),
        good("10.0.1.1", 9090).as_bytes(),
    );
    for case in before {
        hostile::put_raw(&endpoint, &hostile::key(&web, case), &case.value);
        hostile::put_raw(&endpoint, &hostile::key(&api, case), &case.value);
    }
    let _watching = Watching::start(spec);
    let rendered = |want: &[&str]| {
        kit::wait_for(READY, || {
            let fields = read(&d.join("fields.txt"));
            let mut lines: Vec<&str> = fields.lines().collect();
            lines.sort();
            (lines == want).then_some(())
        })
        .is_some()
    };
    let first = [
        "api|node-1|10.0.1.1|9090|10|100|10.0.1.1:9090|node-1.api.s.watch.example.com.|/skydns/com/example/watch/s/api/node-1",
        "web|node-1|10.0.0.1|8080|10|100|10.0.0.1:8080|node-1.web.s.watch.example.com.|/skydns/com/example/watch/s/web/node-1",
    ];
    assert!(rendered(&first), "{}", read(&d.join("fields.txt")));

    for case in during {
        hostile::put_raw(&endpoint, &hostile::key(&web, case), &case.value);
        hostile::put_raw(&endpoint, &hostile::key(&api, case), &case.value);
    }
    hostile::put_raw(
        &endpoint,
        format!("{web}/node-2").as_bytes(),
        good("10.0.0.2", 8080).as_bytes(),
    );
    let second = [
        first[0],
        "web|node-1|10.0.0.1|8080|10|50|10.0.0.1:8080|node-1.web.s.watch.example.com.|/skydns/com/example/watch/s/web/node-1",
        "web|node-2|10.0.0.2|8080|10|50|10.0.0.2:8080|node-2.web.s.watch.example.com.|/skydns/com/example/watch/s/web/node-2",
    ];
    assert!(
        rendered(&second),
        "a good record written after the hostile ones is rendered: {}",
        read(&d.join("fields.txt"))
    );
    // The nginx and HAProxy files follow the same render (each passed its check, or
    // the old one would still be there).
    assert!(
        kit::wait_for(READY, || read(&d.join("upstream.conf"))
            .contains("10.0.0.2:8080")
            .then_some(()))
        .is_some(),
        "{}",
        read(&d.join("upstream.conf"))
    );
    assert!(
        kit::wait_for(READY, || read(&haproxy_cfg_path(&d))
            .contains("10.0.0.2:8080")
            .then_some(()))
        .is_some(),
        "{}",
        read(&haproxy_cfg_path(&d))
    );

    // Every field in its grammar, nothing of the hostile records anywhere.
    for line in read(&d.join("fields.txt")).lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 9, "{line:?}");
        assert!(
            is_host_name(f[1]) && is_host(f[2]) && is_host_name(f[7]),
            "{line:?}"
        );
        assert!(check_key("/skydns", f[8]).is_ok(), "{line:?}");
        for n in [f[3], f[4], f[5]] {
            assert!(n.parse::<u16>().is_ok(), "{line:?}");
        }
    }
    for file in ["upstream.conf", "haproxy.cfg", "fields.txt"] {
        let text = read(&d.join(file));
        for marker in [
            "6.6.6.6",
            "6666",
            "10.0.0.66",
            "{{",
            "{%",
            "{#",
            "\"a\"",
            "\\",
            "\u{fffd}",
        ] {
            assert!(!text.contains(marker), "{file} holds {marker:?}:\n{text}");
        }
    }
    let nginx = kit::run(
        &nginx_check[0],
        &nginx_check[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(nginx.status.success(), "nginx -t: {nginx:?}");
    let haproxy = kit::run(
        "haproxy",
        &[
            "-c",
            "-q",
            "-f",
            &haproxy_cfg_path(&d).display().to_string(),
        ],
    );
    assert!(haproxy.status.success(), "haproxy -c: {haproxy:?}");
}

fn haproxy_cfg_path(dir: &Path) -> PathBuf {
    dir.join("haproxy.cfg")
}
