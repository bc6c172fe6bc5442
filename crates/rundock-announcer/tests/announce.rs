//! The announcer against a real etcd and the real dockerd, run as a child process (so
//! that SIGKILL, TERM and USR1 are real signals to a real process): the test binary
//! re-executes itself with `RUNDOCK_TEST_ANNOUNCE_SPEC` set, and the `child_announcer`
//! test then runs `rundock_announcer::run` and exits with its code.

use rundock_etcd::{Client, Event};
use rundock_spec::*;
use rundock_testkit::{docker, ensure_test_image, free_port, wait_for, Etcd, TEST_IMAGE};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SPEC_ENV: &str = "RUNDOCK_TEST_ANNOUNCE_SPEC";

/// Not a test of its own: the body of the child process (see the module docs).
#[test]
fn child_announcer() {
    let Some(path) = std::env::var_os(SPEC_ENV) else {
        return;
    };
    let spec = Spec::load(&PathBuf::from(path)).unwrap();
    let code = rundock_announcer::run(spec).unwrap();
    std::process::exit(code);
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A busybox httpd container serving `/www` on a published loopback port; removed on drop.
struct Web {
    name: String,
    port: u16,
}

impl Web {
    fn start(prefix: &str) -> Web {
        let port = free_port();
        Web::publish(prefix, &format!("127.0.0.1:{port}:8080"), port)
    }

    /// Published on a loopback port Docker picks (`port` is 0: ask Docker).
    fn start_auto(prefix: &str) -> Web {
        Web::publish(prefix, "127.0.0.1::8080", 0)
    }

    /// The host port Docker published container port 8080 on, as `docker port` says.
    fn docker_port(&self) -> u16 {
        let out = docker(&["port", &self.name, "8080/tcp"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        first.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    fn publish(prefix: &str, publish: &str, port: u16) -> Web {
        Web::run(
            prefix,
            publish,
            port,
            "mkdir -p /www && echo ok >/www/index.html && exec httpd -f -p 8080 -h /www",
        )
    }

    /// A container running `script`, port 8080 published as `publish`.
    fn run(prefix: &str, publish: &str, port: u16, script: &str) -> Web {
        ensure_test_image();
        let name = unique(prefix);
        let out = docker(&[
            "run", "-d", "--name", &name, "-p", publish, TEST_IMAGE, "sh", "-c", script,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Web { name, port }
    }

    fn exec(&self, cmd: &str) {
        let out = docker(&["exec", &self.name, "sh", "-c", cmd]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
    }
}

fn spec(name: &str, web: &Web, etcd: &Etcd, api: EtcdApi, health: Vec<HealthCheck>) -> Spec {
    Spec {
        format: SPEC_FORMAT,
        name: name.into(),
        host_label: "node-1".into(),
        container: ContainerSpec {
            pull: PullPolicy::Never,
            stop_timeout: 2,
            ..ContainerSpec::new(web.name.clone(), TEST_IMAGE.parse().unwrap())
        },
        announce: Some(AnnounceSpec {
            port: web.port,
            auto_port: false,
            container_port: 8080,
            announce_as: AnnounceAs::Interface("lo".parse().unwrap()),
            domain: "s.test.example".into(),
            etcd: EtcdSpec::new(vec![etcd.endpoint().parse().unwrap()], api),
            ttl: 10,
            dns_ttl: 5,
            interval: 3,
            health,
            priority: None,
            weight: None,
            text: None,
            unhealthy_after: 0,
        }),
        paths: Paths {
            sv_dir: "/nonexistent/sv".into(),
            service_dir: "/nonexistent/service".into(),
            log_dir: "/nonexistent/log".into(),
            runner: "/nonexistent/rundock".into(),
        },
        interfaces: Interfaces {
            private: vec!["lo".parse().unwrap()],
            public: vec!["lo".parse().unwrap()],
        },
        drain: 0,
        watch: None,
        hooks: Default::default(),
        requires: None,
        drain_mode: Default::default(),
        start_first: None,
    }
}

fn http_check(port: u16, path: &str) -> HealthCheck {
    HealthCheck {
        check: CheckKind::Http {
            port,
            path: path.into(),
        },
        interval: 1,
        timeout: 1,
    }
}

/// The announcer child process; SIGKILLed on drop if still running.
struct Announcer {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Announcer {
    fn start(spec: &Spec) -> Announcer {
        let dir = tempfile::tempdir().unwrap();
        let spec_path = dir.path().join("spec.json");
        std::fs::write(&spec_path, spec.to_json()).unwrap();
        let log = dir.path().join("log");
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_announcer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SPEC_ENV, &spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Announcer {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_for(timeout, || self.child.try_wait().unwrap()).map(|s| s.code().unwrap_or(-1))
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key_of(spec: &Spec) -> String {
    rundock_spec::skydns::record_key(spec).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(etcd: &Etcd, api: EtcdApi, key: &str) -> Option<rundock_etcd::Entry> {
    let client = Client::new(&EtcdSpec::new(vec![etcd.endpoint().parse().unwrap()], api)).unwrap();
    rt().block_on(client.get(key)).ok().flatten()
}

fn wait_key(etcd: &Etcd, api: EtcdApi, key: &str, present: bool, timeout: Duration) -> bool {
    wait_for(timeout, || {
        (get(etcd, api, key).is_some() == present).then_some(())
    })
    .is_some()
}

/// Kills the container and returns how long until etcd reported the key deleted
/// (measured with a watch started before the kill) and how long `docker kill` itself
/// took, both from the start of `docker kill`.
fn kill_and_time_withdrawal(etcd: &Etcd, web: &Web, key: &str) -> (Duration, Duration) {
    let client = Client::new(&EtcdSpec::new(
        vec![etcd.endpoint().parse().unwrap()],
        EtcdApi::V3,
    ))
    .unwrap();
    let rt = rt();
    let mut watch = rt.block_on(client.watch(key, 0)).unwrap();
    let start = Instant::now();
    let out = docker(&["kill", &web.name]);
    let cli = start.elapsed();
    assert!(out.status.success());
    let gone = rt.block_on(async {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("the delete within 10 s")
                .unwrap();
            if matches!(event, Event::Delete { .. }) {
                return start.elapsed();
            }
        }
    });
    (gone, cli)
}

#[test]
fn announces_a_running_container_and_withdraws_at_once_when_it_is_killed() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-kill");
    let s = spec(
        "web",
        &web,
        &etcd,
        EtcdApi::V3,
        vec![http_check(web.port, "/")],
    );
    let key = key_of(&s);
    assert_eq!(key, "/skydns/example/test/s/web/node-1");
    let announcer = Announcer::start(&s);
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(10)),
        "announced: {}",
        announcer.log()
    );
    let entry = get(&etcd, EtcdApi::V3, &key).unwrap();
    assert_eq!(
        entry.value,
        format!(r#"{{"host":"127.0.0.1","port":{},"ttl":5}}"#, web.port)
    );
    assert!(matches!(entry.ttl, Some(7..=10)), "{entry:?}");

    let (took, _) = kill_and_time_withdrawal(&etcd, &web, &key);
    eprintln!("container kill -> key gone: {took:?}");
    // The lease lives 10 s here: gone well before that is the event path, not expiry.
    // (How fast is measured by benches/withdraw.sh, not asserted.)
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Started again: announced again once the check passes.
    assert!(docker(&["start", &web.name]).status.success());
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(10)),
        "{}",
        announcer.log()
    );
    let log = announcer.log();
    assert!(
        log.lines().all(|l| l.starts_with("rundock announce web: ")),
        "{log}"
    );
}

#[test]
fn announce_auto_publishes_the_port_docker_chose_and_follows_it_across_restarts() {
    let etcd = Etcd::start();
    let web = Web::start_auto("rdann-auto");
    // The check names the container port: it probes the host port Docker chose.
    let mut s = spec(
        "auto",
        &web,
        &etcd,
        EtcdApi::V3,
        vec![http_check(8080, "/")],
    );
    let announce = s.announce.as_mut().unwrap();
    announce.auto_port = true;
    announce.port = 0;
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    let record = |port: u16| format!(r#"{{"host":"127.0.0.1","port":{port},"ttl":5}}"#);
    let chosen = web.docker_port();
    assert_ne!(chosen, 8080);
    assert!(
        wait_for(Duration::from_secs(10), || {
            (get(&etcd, EtcdApi::V3, &key)?.value == record(chosen)).then_some(())
        })
        .is_some(),
        "the record carries {chosen}: {:?} {}",
        get(&etcd, EtcdApi::V3, &key),
        announcer.log()
    );

    // Restarted, the container may get another port: the record follows what it reports.
    for _ in 0..3 {
        assert!(docker(&["restart", "-t", "0", &web.name]).status.success());
        let chosen = web.docker_port();
        assert!(
            wait_for(Duration::from_secs(10), || {
                (get(&etcd, EtcdApi::V3, &key)?.value == record(chosen)).then_some(())
            })
            .is_some(),
            "after a restart the record carries {chosen}: {:?} {}",
            get(&etcd, EtcdApi::V3, &key),
            announcer.log()
        );
    }
}

#[test]
fn a_failing_http_check_keeps_the_record_out_until_it_passes() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-health");
    let s = spec(
        "gated",
        &web,
        &etcd,
        EtcdApi::V3,
        vec![http_check(web.port, "/ready.html")],
    );
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        get(&etcd, EtcdApi::V3, &key).is_none(),
        "{}",
        announcer.log()
    );
    web.exec("echo ok >/www/ready.html");
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(5)),
        "{}",
        announcer.log()
    );
    // Failing again: withdrawn within an interval plus a timeout.
    web.exec("rm /www/ready.html");
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, false, Duration::from_secs(4)),
        "{}",
        announcer.log()
    );
    // The key is deleted before the lease is revoked; the log line follows the revoke.
    let logged = rundock_testkit::wait_for(Duration::from_secs(2), || {
        let log = announcer.log();
        log.contains("withdrawn").then_some(log)
    });
    let log = logged.unwrap_or_else(|| panic!("no withdrawal logged: {}", announcer.log()));
    assert!(log.contains("health check http :"), "{log}");
}

/// Docker's userland proxy accepts a connection to a published port whether or not the
/// container listens, so a `tcp` check must find the listener in the container itself:
/// nothing listening, or listening only on the container's loopback, is never announced.
#[test]
fn a_tcp_check_announces_only_a_listener_inside_the_container() {
    let etcd = Etcd::start();
    let port = free_port();
    let web = Web::run(
        "rdann-tcp",
        &format!("127.0.0.1:{port}:8080"),
        port,
        "mkdir -p /www && exec sleep 600",
    );
    // What fooled the connect-only check: the proxy accepts for a silent container.
    let proxied = wait_for(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(
        proxied.is_some(),
        "dockerd's userland proxy (its default) should accept on the published port"
    );
    let check = HealthCheck {
        check: CheckKind::Tcp { port },
        interval: 1,
        timeout: 1,
    };
    let s = spec("silent", &web, &etcd, EtcdApi::V3, vec![check]);
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    let mut watched = Duration::ZERO;
    let step = Duration::from_millis(250);
    while watched < Duration::from_secs(5) {
        assert!(
            get(&etcd, EtcdApi::V3, &key).is_none(),
            "announced with nothing listening: {}",
            announcer.log()
        );
        std::thread::sleep(step);
        watched += step;
    }
    let log = announcer.log();
    assert!(
        log.contains("nothing in the container listens on port 8080"),
        "{log}"
    );

    web.exec("httpd -p 127.0.0.1:8080 -h /www");
    let pid: u32 =
        String::from_utf8_lossy(&docker(&["inspect", "-f", "{{.State.Pid}}", &web.name]).stdout)
            .trim()
            .parse()
            .unwrap();
    let loopback = wait_for(Duration::from_secs(5), || {
        let table = rundock_drain::read_table(pid).ok()?;
        (rundock_drain::listener_on(&table, 8080) == rundock_drain::Listener::LoopbackOnly)
            .then_some(())
    });
    assert!(loopback.is_some(), "httpd did not listen on 127.0.0.1:8080");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        get(&etcd, EtcdApi::V3, &key).is_none(),
        "announced with a loopback-only listener: {}",
        announcer.log()
    );

    // The container's init (sleep) reaps nothing: wait out the port, not the pid.
    web.exec("killall httpd; sleep 1; httpd -p 8080 -h /www");
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(5)),
        "{}",
        announcer.log()
    );
}

#[test]
fn an_exec_check_gates_the_record() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-exec");
    let check = HealthCheck {
        check: CheckKind::Exec {
            command: vec!["test".into(), "-f".into(), "/www/go".into()],
        },
        interval: 1,
        timeout: 2,
    };
    let s = spec("execd", &web, &etcd, EtcdApi::V3, vec![check]);
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        get(&etcd, EtcdApi::V3, &key).is_none(),
        "{}",
        announcer.log()
    );
    web.exec("touch /www/go");
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(5)),
        "{}",
        announcer.log()
    );
}

#[test]
fn etcd_down_for_20_s_then_back_has_the_key_back_within_2_s() {
    let mut etcd = Etcd::start();
    let web = Web::start("rdann-etcd");
    let mut s = spec("outage", &web, &etcd, EtcdApi::V3, vec![]);
    if let Some(a) = s.announce.as_mut() {
        // Shorter than the outage, so the record must be re-created, not just found.
        a.ttl = 5;
        a.interval = 2;
    }
    let key = key_of(&s);
    let mut announcer = Announcer::start(&s);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(10)
    ));
    etcd.stop();
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(announcer.child.try_wait().unwrap(), None, "still running");
    etcd.restart();
    let back = Instant::now();
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(5)),
        "{}",
        announcer.log()
    );
    eprintln!("etcd restarted -> key present: {:?}", back.elapsed());
    // And kept: past its TTL after the restart.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        get(&etcd, EtcdApi::V3, &key).is_some(),
        "{}",
        announcer.log()
    );
    let log = announcer.log();
    let failing = log
        .lines()
        .filter(|l| l.contains("etcd unreachable"))
        .count();
    assert_eq!(failing, 1, "one line per state change: {log}");
    assert_eq!(log.matches("etcd answers again").count(), 1, "{log}");
    // TERM: withdrawn and exit 0.
    announcer.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(announcer.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(get(&etcd, EtcdApi::V3, &key).is_none());
}

#[test]
fn a_sigkilled_announcer_leaves_a_record_that_expires_within_its_ttl() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-sigkill");
    let mut s = spec("hard", &web, &etcd, EtcdApi::V3, vec![]);
    if let Some(a) = s.announce.as_mut() {
        a.ttl = 3;
        a.interval = 1;
    }
    let key = key_of(&s);
    let mut announcer = Announcer::start(&s);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        get(&etcd, EtcdApi::V3, &key).is_some(),
        "kept alive past its TTL"
    );
    announcer.signal(nix::sys::signal::Signal::SIGKILL);
    announcer.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        false,
        Duration::from_secs(5)
    ));
    let gone = killed.elapsed();
    eprintln!("announcer SIGKILL -> key expired: {gone:?}");
    assert!(gone <= Duration::from_millis(3800), "{gone:?}");
}

#[test]
fn usr1_withdraws_for_maintenance_and_usr2_brings_it_back() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-maint");
    let s = spec("maint", &web, &etcd, EtcdApi::V3, vec![]);
    let key = key_of(&s);
    let mut announcer = Announcer::start(&s);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(10)
    ));
    use nix::sys::signal::Signal::*;
    announcer.signal(SIGUSR1);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        false,
        Duration::from_secs(2)
    ));
    announcer.signal(SIGUSR2);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(2)
    ));
    announcer.signal(SIGUSR1);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        false,
        Duration::from_secs(2)
    ));
    announcer.signal(SIGUSR1);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(2)
    ));
    let running = docker(&["inspect", "-f", "{{.State.Running}}", &web.name]);
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");
    announcer.signal(SIGINT);
    assert_eq!(announcer.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(get(&etcd, EtcdApi::V3, &key).is_none());
}

#[test]
fn v2_records_carry_a_ttl_and_go_when_the_container_stops() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-v2");
    let s = spec(
        "legacy",
        &web,
        &etcd,
        EtcdApi::V2,
        vec![http_check(web.port, "/")],
    );
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    assert!(
        wait_key(&etcd, EtcdApi::V2, &key, true, Duration::from_secs(10)),
        "{}",
        announcer.log()
    );
    let entry = get(&etcd, EtcdApi::V2, &key).unwrap();
    assert!(matches!(entry.ttl, Some(7..=10)), "{entry:?}");
    assert!(docker(&["stop", "-t", "1", &web.name]).status.success());
    assert!(wait_key(
        &etcd,
        EtcdApi::V2,
        &key,
        false,
        Duration::from_secs(1)
    ));
}

#[test]
fn announce_as_container_publishes_the_container_address() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-cip");
    let mut s = spec("cip", &web, &etcd, EtcdApi::V3, vec![http_check(8080, "/")]);
    if let Some(a) = s.announce.as_mut() {
        a.announce_as = AnnounceAs::Container;
        a.port = 8080;
    }
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    assert!(
        wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(10)),
        "{}",
        announcer.log()
    );
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &web.name,
    ]);
    let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
    let entry = get(&etcd, EtcdApi::V3, &key).unwrap();
    assert_eq!(
        entry.value,
        format!(r#"{{"host":"{ip}","port":8080,"ttl":5}}"#)
    );
}

#[test]
fn withdraw_record_deletes_whatever_is_there() {
    let etcd = Etcd::start();
    let web = Web::start("rdann-absent");
    let s = spec("absent", &web, &etcd, EtcdApi::V3, vec![]);
    let key = key_of(&s);
    let mut announcer = Announcer::start(&s);
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(10)
    ));
    announcer.signal(nix::sys::signal::Signal::SIGKILL);
    announcer.wait_exit(Duration::from_secs(5));
    assert!(
        get(&etcd, EtcdApi::V3, &key).is_some(),
        "left behind by SIGKILL"
    );
    rundock_announcer::withdraw_record(&s).unwrap();
    assert!(get(&etcd, EtcdApi::V3, &key).is_none());
}

/// Measures death → key gone over 50 kills, the announcer's RSS and etcd requests per
/// minute at rest. `benches/withdraw.sh` runs it (release build).
#[test]
#[ignore]
fn bench_withdraw() {
    let kills: usize = std::env::var("RUNDOCK_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let etcd = Etcd::start();
    let web = Web::start("rdann-bench");
    let mut s = spec(
        "bench",
        &web,
        &etcd,
        EtcdApi::V3,
        vec![http_check(web.port, "/")],
    );
    if let Some(a) = s.announce.as_mut() {
        a.ttl = 60;
        a.interval = 45;
    }
    let key = key_of(&s);
    let announcer = Announcer::start(&s);
    let mut times = Vec::new();
    let mut clis = Vec::new();
    for _ in 0..kills {
        assert!(
            wait_key(&etcd, EtcdApi::V3, &key, true, Duration::from_secs(10)),
            "{}",
            announcer.log()
        );
        let (gone, cli) = kill_and_time_withdrawal(&etcd, &web, &key);
        times.push(gone);
        clis.push(cli);
        assert!(docker(&["start", &web.name]).status.success());
    }
    times.sort();
    clis.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let p99 = times[((times.len() * 99).div_ceil(100)).saturating_sub(1)];
    println!(
        "withdraw after docker kill over {kills}: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(median),
        ms(p99),
        ms(times[times.len() - 1])
    );
    println!(
        "  (from the start of `docker kill`; the CLI itself took median {:.1} ms)",
        ms(clis[clis.len() / 2])
    );
    assert!(wait_key(
        &etcd,
        EtcdApi::V3,
        &key,
        true,
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_secs(3));
    println!("announcer RSS at rest: {} KiB", announcer.rss_kib());
    // Requests at rest: etcd's own gRPC counters (the gateway calls through them).
    let count = || -> f64 {
        let out = Command::new("curl")
            .args(["-s", &format!("{}/metrics", etcd.endpoint())])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("grpc_server_started_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let window = Duration::from_secs(
        std::env::var("RUNDOCK_BENCH_REST_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(90),
    );
    let before = count();
    std::thread::sleep(window);
    // Our own two metric reads are HTTP, not gRPC, so they do not count.
    let requests = count() - before;
    println!(
        "etcd requests at rest (ttl 60 s, interval 45 s): {requests} in {} s = {:.2}/min",
        window.as_secs(),
        requests * 60.0 / window.as_secs_f64()
    );
}
