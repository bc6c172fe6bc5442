//! glibc's stub resolver against `rundock dns`: in a network namespace of its own whose
//! resolv.conf names rundock dns on 127.0.0.1:53, `getent hosts` and `curl` find a
//! service by name, including through a CNAME to a name outside the zone (answered by a
//! second responder, the `--forward` target). etcd, the responders and the web server
//! all live inside the namespace, on its own loopback.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rundock_dns::DnsOptions;
use rundock_testkit::{run, stdout, wait_for};

const DOMAIN: &str = "s.prod.example.com";
const BASE: &str = "/skydns/com/example/prod/s";
const ETCD: &str = "http://127.0.0.1:2379";

/// A network namespace with its loopback up and its own resolv.conf; removed on drop
/// with everything started in it.
struct Namespace {
    name: String,
    children: Vec<Child>,
    temp: tempfile::TempDir,
}

impl Namespace {
    fn create(resolv_conf: &str) -> Namespace {
        let name = format!("rundock-dns-{}", std::process::id());
        let _ = run("ip", &["netns", "del", &name]);
        let out = run("ip", &["netns", "add", &name]);
        assert!(out.status.success(), "ip netns add: {out:?}");
        let etc = PathBuf::from("/etc/netns").join(&name);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), resolv_conf).unwrap();
        let ns = Namespace {
            name,
            children: Vec::new(),
            temp: tempfile::tempdir().unwrap(),
        };
        let out = ns.exec(&["ip", "link", "set", "lo", "up"]);
        assert!(out.status.success(), "lo up: {out:?}");
        ns
    }

    /// Runs a command inside (with the namespace's resolv.conf over /etc/resolv.conf).
    fn exec(&self, argv: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(argv);
        run("ip", &all)
    }

    /// Starts a long-running command inside; killed on drop.
    fn spawn(&mut self, argv: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in the namespace");
        self.children.push(child);
    }

    fn etcdctl(&self, args: &[&str]) {
        let mut argv = vec!["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", ETCD];
        argv.extend_from_slice(args);
        let out = self.exec(&argv);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}

/// A responder serving from a thread that entered the namespace (network namespaces
/// are per thread), so its sockets and its etcd connection are inside.
struct Responder;

impl Responder {
    fn start(ns: &Namespace, mut opts: DnsOptions) -> common::InProcess {
        opts.etcd = vec![ETCD.parse().unwrap()];
        let netns = File::open(PathBuf::from("/var/run/netns").join(&ns.name)).unwrap();
        common::InProcess::start(opts, move || {
            // SAFETY: setns on an open namespace file affects only this thread.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                anyhow::bail!("setns: {}", std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn glibc_finds_services_and_follows_a_cname_out_of_the_zone() {
    let mut ns = Namespace::create("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n");
    let data = ns.temp.path().join("etcd");
    let www = ns.temp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the namespace\n").unwrap();
    ns.spawn(&[
        "etcd",
        "--name",
        "resolver",
        "--data-dir",
        &data.to_string_lossy(),
        "--listen-client-urls",
        ETCD,
        "--advertise-client-urls",
        ETCD,
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "resolver=http://127.0.0.1:2380",
        "--log-level",
        "error",
    ]);
    ns.spawn(&[
        "busybox",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:8080",
        "-h",
        &www.to_string_lossy(),
    ]);
    let etcd_up = wait_for(Duration::from_secs(20), || {
        ns.exec(&["curl", "-sf", &format!("{ETCD}/health")])
            .status
            .success()
            .then_some(())
    });
    assert!(etcd_up.is_some(), "etcd did not start in the namespace");

    ns.etcdctl(&[
        "put",
        &format!("{BASE}/web/node-1"),
        r#"{"host":"127.0.0.1","port":8080,"ttl":5}"#,
    ]);
    ns.etcdctl(&[
        "put",
        &format!("{BASE}/alias/a1"),
        r#"{"host":"www.other.test","ttl":5}"#,
    ]);
    ns.etcdctl(&[
        "put",
        "/skydns/test/other/www/x",
        r#"{"host":"127.0.0.1","ttl":5}"#,
    ]);

    let mut other = DnsOptions::new(vec!["other.test".into()]);
    other.listen = "127.0.0.1:5354".parse().unwrap();
    let _other = Responder::start(&ns, other);
    let mut front = DnsOptions::new(vec![DOMAIN.into()]);
    front.listen = "127.0.0.1:53".parse().unwrap();
    front.forward = Some("127.0.0.1:5354".parse().unwrap());
    let _front = Responder::start(&ns, front);

    let getent = |name: &str| {
        let out = ns.exec(&["getent", "hosts", name]);
        out.status.success().then(|| stdout(&out))
    };
    let web = wait_for(Duration::from_secs(10), || getent("web.s.prod.example.com"));
    let web = web.expect("getent hosts web.s.prod.example.com");
    assert_eq!(
        web.split_whitespace().collect::<Vec<_>>(),
        ["127.0.0.1", "web.s.prod.example.com"]
    );
    let page = ns.exec(&["curl", "-sf", "http://web.s.prod.example.com:8080/"]);
    assert!(page.status.success(), "curl by name: {page:?}");
    assert_eq!(stdout(&page), "hello from the namespace\n");

    // The CNAME leads out of the zone; the forwarder's answer comes along, so glibc
    // gets the address in one answer and gives the target as the canonical name.
    let alias = getent("alias.s.prod.example.com").expect("getent hosts through the CNAME");
    assert_eq!(
        alias.split_whitespace().collect::<Vec<_>>(),
        ["127.0.0.1", "www.other.test", "alias.s.prod.example.com"]
    );
    let page = ns.exec(&["curl", "-sf", "http://alias.s.prod.example.com:8080/"]);
    assert!(page.status.success(), "curl through the CNAME: {page:?}");

    // A name that is not there fails as a name that is not there.
    assert!(getent("nothere.s.prod.example.com").is_none());
}
