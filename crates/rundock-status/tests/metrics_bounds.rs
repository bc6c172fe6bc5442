//! Idle clients cannot stall `rundock metrics`: with 1,100 idle TCP connections held
//! open against it (reopened as it closes them), a real Prometheus scraping every
//! second sees every scrape succeed, curl's scrapes all finish within a few seconds,
//! and the server's descriptors stay bounded. The server is a process of its own (this
//! test binary run again as `serve_metrics_for_bounds_test`) with the usual 1,024
//! descriptors.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rundock_testkit::load;
use rundock_testkit::prometheus::Prometheus;
use rundock_testkit::{free_port, run, wait_for};

const CHILD_ENV: &str = "RUNDOCK_BOUNDS_METRICS";
const IDLE_CONNECTIONS: usize = 1100;

/// Run by [`load::serve_in_child`] in a process of its own; does nothing when run by `cargo test`.
#[test]
#[ignore = "the server side of another test"]
fn serve_metrics_for_bounds_test() {
    let Ok(setting) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (listen, sv_dir) = setting.split_once('\n').expect("LISTEN\nSV_DIR");
    rundock_status::serve::run(listen.parse().unwrap(), sv_dir.into()).unwrap();
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

#[test]
fn idle_connections_never_stall_a_scrape() {
    load::raise_own_fd_limit(IDLE_CONNECTIONS as u64 + 200);
    let sv_dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = load::serve_in_child(
        "serve_metrics_for_bounds_test",
        (CHILD_ENV, format!("{addr}\n{}", sv_dir.path().display())),
    );
    let pid = server.0.id();
    assert!(
        wait_for(Duration::from_secs(10), || scrape(addr).ok()).is_some(),
        "rundock metrics never answered"
    );
    let prometheus = Prometheus::start(&addr.to_string(), Some("1s"));
    let api = prometheus.port;
    let up = "up{job=\"rundock\"}";
    assert!(
        wait_for(Duration::from_secs(60), || (prometheus.query(up)
            == Some(1.0))
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
    let idle = load::hold_idle_connections(addr, IDLE_CONNECTIONS, stop.clone());

    // 12 s of idle connections: curl scrapes one after another, Prometheus every second.
    let flood_started = Instant::now();
    let mut scrapes = Vec::new();
    let mut peak_fds = 0;
    while flood_started.elapsed() < Duration::from_secs(12) {
        scrapes.push(scrape(addr));
        peak_fds = peak_fds.max(load::usage(pid).0);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Prometheus's view of the same 12 s, asked before the idle clients go.
    let window = "[11s]";
    let prometheus_scrapes = prometheus.query(&format!("count_over_time({up}{window})"));
    let prometheus_worst_up = prometheus.query(&format!("min_over_time({up}{window})"));
    let prometheus_slowest = prometheus.query(&format!(
        "max_over_time(scrape_duration_seconds{{job=\"rundock\"}}{window})"
    ));
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
