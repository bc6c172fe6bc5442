//! A full log disk never freezes the workload: the supervisor's output goes into a real
//! svlogd whose log directory sits on a 1 MiB tmpfs, which the test then fills. The
//! container keeps writing and counting, `docker kill` returns at once, the supervisor
//! exits with its container, and the lines it could not hand to svlogd are counted in
//! its output state file.
//!
//! The supervisor runs as a child process (this test binary re-executed with only
//! [`full_disk_child`] selected), its stdout and stderr one pipe into svlogd, as a
//! runit service's `exec 2>&1` makes them.

use rundock_spec::{ContainerSpec, Interfaces, Paths, PullPolicy, Spec, SPEC_FORMAT};
use rundock_supervisor::{OutputState, OUTPUT_STATE_FILE};
use rundock_testkit::{docker, ensure_test_image, wait_for, TEST_IMAGE};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_SPEC: &str = "RUNDOCK_FULL_DISK_TEST_SPEC";

/// Not a test of its own: the supervisor process the test starts.
#[test]
fn full_disk_child() {
    let Some(path) = std::env::var_os(CHILD_SPEC) else {
        return;
    };
    let spec = Spec::load(Path::new(&path)).expect("child spec");
    let code = rundock_supervisor::run(spec).expect("supervisor runtime");
    std::process::exit(code);
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {out:?}");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The container, removed on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}

fn spec(name: &str, dir: &Path, progress: &Path) -> Spec {
    // Numbered 200-byte lines, about a thousand a second, and the count in a file the
    // test reads from the host: the container's own progress.
    let script = "pad=$(printf '%0180d' 0); i=0; while :; do i=$((i+1)); \
                  echo $i >/progress/n; echo \"line $i $pad\"; usleep 1000; done";
    Spec {
        format: SPEC_FORMAT,
        name: name.into(),
        host_label: "testhost".into(),
        container: ContainerSpec {
            pull: PullPolicy::Never,
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            volumes: vec![format!("{}:/progress", progress.display())],
            stop_timeout: 2,
            ..ContainerSpec::new(name, TEST_IMAGE.parse().unwrap())
        },
        announce: None,
        paths: Paths {
            sv_dir: dir.join("sv"),
            service_dir: dir.join("service"),
            log_dir: dir.join("log"),
            runner: "/usr/local/bin/rundock".into(),
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

fn progress(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Fills the file system of `path` with one file until it is full.
fn fill(path: &Path) -> u64 {
    let mut filler = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    let mut written = 0;
    loop {
        match filler.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

#[test]
fn a_full_log_disk_never_freezes_the_container_or_docker() {
    ensure_test_image();
    let name = format!("rdt-fulllog-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let progress_dir = dir.path().join("progress");
    std::fs::create_dir_all(&progress_dir).unwrap();
    let counter = progress_dir.join("n");
    let disk = Tmpfs::mount(&dir.path().join("logdisk"), "1m");
    let log_dir = disk.0.join("container");
    let workdir = dir.path().join("work");
    std::fs::create_dir_all(&workdir).unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec(&name, dir.path(), &progress_dir).to_json()).unwrap();
    let container = Container(name.clone());
    docker(&["rm", "-f", &name]);

    std::fs::create_dir_all(&log_dir).unwrap();
    let svlogd_err = dir.path().join("svlogd.err");
    let mut svlogd = Command::new("svlogd")
        .arg("-tt")
        .arg(&log_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&svlogd_err).unwrap())
        .spawn()
        .expect("svlogd (runit) is installed");
    let pipe: OwnedFd = svlogd.stdin.take().unwrap().into();
    let svlogd = Reaped(svlogd);
    let supervisor = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "full_disk_child", "--nocapture", "-q"])
        .env(CHILD_SPEC, &spec_path)
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(pipe.try_clone().unwrap()))
        .stderr(Stdio::from(pipe))
        .spawn()
        .unwrap();
    let mut supervisor = Reaped(supervisor);

    let started = wait_for(Duration::from_secs(30), || {
        progress(&counter).filter(|n| *n > 100)
    });
    assert!(
        started.is_some(),
        "the container never counted; svlogd: {}; log: {}",
        std::fs::read_to_string(&svlogd_err).unwrap_or_default(),
        std::fs::read_to_string(log_dir.join("current")).unwrap_or_default()
    );

    let filled = fill(&disk.0.join("filler"));
    // svlogd stops reading once its writes fail; let the pipe and the queue behind it
    // fill up (at ~200 KB/s, a second fills both many times over).
    let svlogd_stuck = wait_for(Duration::from_secs(20), || {
        let said = std::fs::read_to_string(&svlogd_err).unwrap_or_default();
        said.contains("pausing").then_some(said)
    });
    let svlogd_said = svlogd_stuck.unwrap_or_else(|| panic!("svlogd never reported the full disk"));
    std::thread::sleep(Duration::from_secs(2));

    // The container's own count keeps advancing, second after second, past the point
    // where everything between it and svlogd is full and lines are being dropped.
    let state_file = workdir.join(OUTPUT_STATE_FILE);
    let dropping = |at_least: u64| {
        rundock_spec::state::read::<OutputState>(&state_file)
            .is_some_and(|s| s.dropped_lines >= at_least)
    };
    let mut last = progress(&counter).unwrap_or(0);
    let mut seconds = 0;
    while seconds < 5 || !dropping(1000) {
        assert!(
            seconds < 60,
            "no lines dropped after a minute of a full disk"
        );
        std::thread::sleep(Duration::from_secs(1));
        seconds += 1;
        let now = wait_for(Duration::from_millis(500), || progress(&counter)).unwrap_or(0);
        assert!(
            now > last,
            "the container stopped counting at {last}, {seconds} s into a full disk"
        );
        last = now;
    }
    // Five more seconds of dropping, still counting.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let now = wait_for(Duration::from_millis(500), || progress(&counter)).unwrap_or(0);
        assert!(
            now > last,
            "the container stopped counting at {last} while dropping"
        );
        last = now;
    }

    let kill_started = Instant::now();
    let killed = docker(&["kill", &name]);
    let kill_took = kill_started.elapsed();
    assert!(killed.status.success(), "{killed:?}");
    assert!(
        kill_took < Duration::from_secs(5),
        "docker kill took {kill_took:?}"
    );
    // The supervisor's own lines still fit into the pipe: it exits with its container.
    let exited = wait_for(Duration::from_secs(15), || supervisor.0.try_wait().unwrap());
    let exited = exited.expect("the supervisor hung after its container was killed");
    assert_eq!(exited.code(), Some(137), "the container's exit code");

    let state: OutputState =
        rundock_spec::state::read(&state_file).expect("the drop count is saved");
    assert!(state.dropped_lines > 0, "{state:?}");
    eprintln!(
        "full log disk: filler {filled} B; {seconds} s full before lines were dropped; \
         container counted to {last}; docker kill took {kill_took:?}; dropped {} lines ({} bytes); svlogd said: {}",
        state.dropped_lines,
        state.dropped_bytes,
        svlogd_said.lines().next().unwrap_or_default()
    );

    // With room again, svlogd writes what the pipe held, the supervisor's last line
    // among it, and exits at the end of its input.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let mut svlogd = svlogd;
    let drained = wait_for(Duration::from_secs(15), || svlogd.0.try_wait().unwrap());
    assert!(
        drained.is_some(),
        "svlogd did not finish once the disk had room"
    );
    let current = std::fs::read_to_string(log_dir.join("current")).unwrap_or_default();
    assert!(
        current.contains("container exited with code 137"),
        "{}",
        &current[current.len().saturating_sub(600)..]
    );
    drop(container);
    drop(disk);
}
