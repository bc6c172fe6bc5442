//! Idle clients cannot stall `rundock metrics`: with 1,100 idle TCP connections held
//! open against it (reopened as it closes them), a real Prometheus scraping every
//! second sees every scrape succeed, curl's scrapes all finish within a few seconds,
//! and the server's descriptors stay bounded. The server is a process of its own (this
//! test binary run again as `serve_metrics_for_bounds_test`) with the usual 1,024
//! descriptors.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rundock_testkit::{free_port, run, wait_for};

const CHILD_ENV: &str = "RUNDOCK_BOUNDS_METRICS";
const FD_LIMIT: u64 = 1024;
const IDLE_CONNECTIONS: usize = 1100;

/// Run by [`spawn_server`] in a process of its own; does nothing when run by `cargo test`.
#[test]
#[ignore = "the server side of another test"]
fn serve_metrics_for_bounds_test() {
    let Ok(setting) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (listen, sv_dir) = setting.split_once('\n').expect("LISTEN\nSV_DIR");
    rundock_status::serve::run(listen.parse().unwrap(), sv_dir.into()).unwrap();
}

/// Killed and reaped on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rundock metrics` on `listen`, limited to [`FD_LIMIT`] descriptors.
fn spawn_server(listen: SocketAddr, sv_dir: &std::path::Path) -> Process {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "serve_metrics_for_bounds_test",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, format!("{listen}\n{}", sv_dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FD_LIMIT,
                rlim_max: FD_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Process(command.spawn().expect("start the child server"))
}

/// A Prometheus scraping `target` every second (1 s timeout) on loopback; its API port.
fn prometheus(target: SocketAddr, dir: &std::path::Path) -> (Process, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: rundock\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus (Debian prometheus)");
    (Process(child), port)
}

/// The value of an instant query's single sample, if there is one.
fn query(port: u16, expr: &str) -> Option<f64> {
    let out = run(
        "curl",
        &[
            "-sf",
            "-m",
            "2",
            "--get",
            "--data-urlencode",
            &format!("query={expr}"),
            &format!("http://127.0.0.1:{port}/api/v1/query"),
        ],
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let result = body["data"]["result"].as_array()?;
    let [sample] = result.as_slice() else {
        return None;
    };
    sample["value"][1].as_str()?.parse().ok()
}

/// One scrape with curl (5 s at most): how long it took, or curl's complaint.
fn scrape(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let out = run(
        "curl",
        &[
            "-sSf",
            "-m",
            "5",
            "-o",
            "/dev/null",
            &format!("http://{addr}/metrics"),
        ],
    );
    if out.status.success() {
        Ok(started.elapsed())
    } else {
        Err(format!(
            "after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Enough descriptors for this test's own 1,100 connections.
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(8192);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= IDLE_CONNECTIONS as u64 + 200,
        "this test needs {} descriptors, the hard limit is {}",
        IDLE_CONNECTIONS + 200,
        limit.rlim_max
    );
}

#[test]
fn idle_connections_never_stall_a_scrape() {
    raise_own_fd_limit();
    let sv_dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = spawn_server(addr, sv_dir.path());
    let pid = server.0.id();
    assert!(
        wait_for(Duration::from_secs(10), || scrape(addr).ok()).is_some(),
        "rundock metrics never answered"
    );
    let prom_dir = tempfile::tempdir().unwrap();
    let (_prometheus, api) = prometheus(addr, prom_dir.path());
    let up = "up{job=\"rundock\"}";
    assert!(
        wait_for(Duration::from_secs(60), || (query(api, up) == Some(1.0))
            .then_some(()))
        .is_some(),
        "prometheus never scraped rundock metrics: {}",
        rundock_testkit::stdout(&run(
            "curl",
            &[
                "-s",
                "-m",
                "2",
                &format!("http://127.0.0.1:{api}/api/v1/targets")
            ]
        ))
    );

    let stop = Arc::new(AtomicBool::new(false));
    let idle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            let mut opened = 0u64;
            while !stop.load(Ordering::Relaxed) {
                open.retain(|stream| match stream.peek(&mut [0u8; 1]) {
                    // Nothing to read yet: still open. Ok(0) or a reset: the server closed it.
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    Ok(n) => n > 0,
                });
                while open.len() < IDLE_CONNECTIONS && !stop.load(Ordering::Relaxed) {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        Ok(stream) => {
                            stream.set_nonblocking(true).unwrap();
                            open.push(stream);
                            opened += 1;
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            opened
        })
    };

    // 12 s of idle connections: curl scrapes one after another, Prometheus every second.
    let flood_started = Instant::now();
    let mut scrapes = Vec::new();
    let mut peak_fds = 0;
    while flood_started.elapsed() < Duration::from_secs(12) {
        scrapes.push(scrape(addr));
        peak_fds = peak_fds.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Prometheus's view of the same 12 s, asked before the idle clients go.
    let window = "[11s]";
    let prometheus_scrapes = query(api, &format!("count_over_time({up}{window})"));
    let prometheus_worst_up = query(api, &format!("min_over_time({up}{window})"));
    let prometheus_slowest = query(
        api,
        &format!("max_over_time(scrape_duration_seconds{{job=\"rundock\"}}{window})"),
    );
    stop.store(true, Ordering::Relaxed);
    let opened = idle.join().unwrap();

    let slowest = scrapes.iter().flatten().max().copied();
    let failed: Vec<&String> = scrapes.iter().filter_map(|s| s.as_ref().err()).collect();
    eprintln!(
        "rundock metrics under {IDLE_CONNECTIONS} idle connections ({opened} opened in all): \
         {} curl scrapes, {} failed, slowest {slowest:?}; Prometheus: {prometheus_scrapes:?} \
         scrapes, worst up {prometheus_worst_up:?}, slowest {prometheus_slowest:?} s; \
         server descriptors at most {peak_fds}",
        scrapes.len(),
        failed.len(),
    );
    assert!(
        failed.is_empty(),
        "curl scrapes failed or took over 5 s: {failed:?}"
    );
    assert!(
        scrapes.len() >= 10,
        "only {} scrapes in 12 s",
        scrapes.len()
    );
    assert!(
        prometheus_scrapes.is_some_and(|n| n >= 8.0),
        "Prometheus scraped {prometheus_scrapes:?} times in 11 s"
    );
    assert_eq!(
        prometheus_worst_up,
        Some(1.0),
        "a Prometheus scrape failed (1 s timeout) under idle connections"
    );
    assert!(
        opened > IDLE_CONNECTIONS as u64,
        "the idle clients were never closed and reopened ({opened} opened)"
    );
    // 64 connections, the listener, stdio and the runtime's own.
    assert!(peak_fds <= 64 + 32, "{peak_fds} descriptors open");
    assert!(
        matches!(server.0.try_wait(), Ok(None)),
        "the server exited under idle connections"
    );
}
