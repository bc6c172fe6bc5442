//! `rundock supervise` against the real dockerd: each test writes a spec, runs the
//! supervisor as a child process (this test binary re-executed with only
//! [`supervise_child`] selected, so signals, exit codes and stdout/stderr are the real
//! ones), and observes Docker with the CLI.

use rundock_spec::{
    ContainerSpec, Interfaces, Paths, PortMapping, Protocol, PullPolicy, Spec, SPEC_FORMAT,
};
use rundock_testkit::registry::Registry;
use rundock_testkit::{docker, ensure_test_image, free_port, stdout, wait_for, TEST_IMAGE};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in a child: the spec file it supervises.
const CHILD_SPEC: &str = "RUNDOCK_SUPERVISE_TEST_SPEC";
const HOST: &str = "testhost";

/// Not a test of its own: the supervisor process the other tests start. Without
/// [`CHILD_SPEC`] it does nothing.
#[test]
fn supervise_child() {
    let Some(path) = std::env::var_os(CHILD_SPEC) else {
        return;
    };
    let spec = Spec::load(Path::new(&path)).expect("child spec");
    let code = rundock_supervisor::run(spec).expect("supervisor runtime");
    std::process::exit(code);
}

/// One test's service: a unique name, a work dir, and cleanup of its containers.
struct Case {
    name: String,
    dir: tempfile::TempDir,
    runs: std::cell::Cell<u32>,
}

/// A supervisor child process and where its output goes.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

struct Finished {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Case {
    fn new(test: &str) -> Case {
        ensure_test_image();
        let name = format!("rdt-{}-{}", test.replace('_', "-"), std::process::id());
        assert!(name.len() <= 63, "{name} is too long for a DNS label");
        let case = Case {
            name,
            dir: tempfile::tempdir().expect("case dir"),
            runs: std::cell::Cell::new(0),
        };
        case.cleanup();
        case
    }

    fn spec(&self, command: &[&str]) -> Spec {
        Spec {
            format: SPEC_FORMAT,
            name: self.name.clone(),
            host_label: HOST.into(),
            container: ContainerSpec {
                pull: PullPolicy::Never,
                command: Some(command.iter().map(|s| s.to_string()).collect()),
                hostname: Some(format!("{HOST}-{}", self.name)),
                stop_timeout: 5,
                ..ContainerSpec::new(self.name.clone(), TEST_IMAGE.parse().unwrap())
            },
            announce: None,
            paths: Paths {
                sv_dir: self.dir.path().join("sv"),
                service_dir: self.dir.path().join("service"),
                log_dir: self.dir.path().join("log"),
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

    /// A fresh working dir (so a fresh back-off state) for the next run.
    fn fresh_dir(&self) -> PathBuf {
        self.runs.set(self.runs.get() + 1);
        let dir = self.dir.path().join(format!("run{}", self.runs.get()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Starts the supervisor in `workdir` (its back-off state lives there).
    fn start_in(&self, spec: &Spec, workdir: &Path, env: &[(&str, &str)]) -> Running {
        self.runs.set(self.runs.get() + 1);
        let n = self.runs.get();
        let spec_path = self.dir.path().join(format!("spec{n}.json"));
        std::fs::write(&spec_path, spec.to_json()).unwrap();
        let out = self.dir.path().join(format!("out{n}"));
        let err = self.dir.path().join(format!("err{n}"));
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "supervise_child",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(CHILD_SPEC, &spec_path)
            .envs(env.iter().copied())
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start the supervisor child");
        Running { child, out, err }
    }

    fn start(&self, spec: &Spec) -> Running {
        let dir = self.fresh_dir();
        self.start_in(spec, &dir, &[])
    }

    /// Runs the supervisor until it exits on its own.
    fn run(&self, spec: &Spec) -> Finished {
        self.start(spec).finish(Duration::from_secs(60))
    }

    fn container_id(&self) -> Option<String> {
        let out = docker(&["inspect", "-f", "{{.Id}}", &self.name]);
        out.status
            .success()
            .then(|| stdout(&out).trim().to_string())
    }

    fn inspect(&self, format: &str) -> String {
        stdout(&docker(&["inspect", "-f", format, &self.name]))
            .trim()
            .to_string()
    }

    fn wait_running(&self) -> String {
        wait_for(Duration::from_secs(30), || {
            (self.inspect("{{.State.Running}}") == "true").then(|| self.container_id().unwrap())
        })
        .unwrap_or_else(|| panic!("container {} never ran", self.name))
    }

    /// Ids of every container labelled as this service.
    fn labelled(&self) -> Vec<String> {
        let filter = format!("label=rundock.service={}", self.name);
        stdout(&docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]))
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    fn cleanup(&self) {
        let mut ids = self.labelled();
        ids.push(self.name.clone());
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl Running {
    fn signal(&self, signal: &str) {
        let out = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "kill -{signal}");
    }

    fn err(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_for(limit, || self.child.try_wait().unwrap())
    }

    fn finish(mut self, limit: Duration) -> Finished {
        let status = self.wait(limit);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "the supervisor did not exit within {limit:?}; stderr:\n{}",
                self.err()
            );
        }
        Finished {
            code: status.unwrap().code(),
            out: std::fs::read_to_string(&self.out).unwrap_or_default(),
            err: self.err(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP request's status line from 127.0.0.1:port.
fn http_status(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(String::from)
}

#[test]
fn creates_the_container_from_the_spec_and_serves_on_its_port() {
    let case = Case::new("creates");
    let port = free_port();
    let mut spec = case.spec(&["httpd", "-f", "-p", "8080", "-h", "/"]);
    spec.container.ports.push(PortMapping {
        host_ip: Some(rundock_spec::HostIp::Address(
            rundock_spec::AnnounceAs::Private,
        )),
        host_port: Some(port),
        host_port_range: None,
        container_port: 8080,
        protocol: Protocol::Tcp,
    });
    spec.container
        .env
        .insert("GREETING".into(), "hello-secret-value".into());
    spec.container
        .env
        .insert("BIND".into(), "$PRIVATE_IP".into());
    spec.container.labels.insert("team".into(), "web".into());
    spec.container.workdir = Some("/bin".into());
    spec.container.memory = Some(64 << 20);
    spec.container.cap_drop = vec!["MKNOD".into()];
    let running = case.start(&spec);
    case.wait_running();

    let labels = case.inspect("{{json .Config.Labels}}");
    let labels: BTreeMap<String, String> = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["rundock.service"], case.name);
    assert_eq!(labels["rundock.host"], HOST);
    assert_eq!(labels["rundock.spec"], spec.container_hash());
    assert_eq!(labels["rundock.addresses"], "private=127.0.0.1");
    assert_eq!(labels["team"], "web");
    let env = case.inspect("{{json .Config.Env}}");
    assert!(env.contains("GREETING=hello-secret-value"), "{env}");
    assert!(env.contains("BIND=127.0.0.1"), "token substituted: {env}");
    assert_eq!(case.inspect("{{.Config.WorkingDir}}"), "/bin");
    assert_eq!(
        case.inspect("{{.HostConfig.Memory}}"),
        (64u64 << 20).to_string()
    );
    assert_eq!(case.inspect("{{.HostConfig.RestartPolicy.Name}}"), "no");
    assert_eq!(case.inspect("{{json .HostConfig.CapDrop}}"), r#"["MKNOD"]"#);
    let bindings = case.inspect("{{json .HostConfig.PortBindings}}");
    assert!(
        bindings.contains(&format!(r#""HostIp":"127.0.0.1","HostPort":"{port}""#)),
        "{bindings}"
    );

    let status = wait_for(Duration::from_secs(10), || http_status(port))
        .expect("an HTTP answer on the published port");
    assert!(status.starts_with("HTTP/1."), "{status}");

    running.signal("TERM");
    let finished = running.finish(Duration::from_secs(20));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.err);
    assert_eq!(case.container_id(), None, "container removed");
    assert!(
        !finished.err.contains("hello-secret-value"),
        "{}",
        finished.err
    );
    for line in finished.err.lines() {
        assert!(
            line.starts_with(&format!("rundock supervise {}: ", case.name)),
            "unprefixed log line: {line}"
        );
    }
}

#[test]
fn exit_code_and_output_pass_through_and_the_container_is_reused_until_the_spec_changes() {
    let case = Case::new("exits");
    let spec = case.spec(&["sh", "-c", "echo out-line; echo err-line >&2; exit 3"]);

    let first = case.run(&spec);
    assert_eq!(first.code, Some(3), "stderr:\n{}", first.err);
    assert!(first.out.contains("out-line\n"), "stdout:\n{}", first.out);
    assert!(!first.out.contains("err-line"), "stdout:\n{}", first.out);
    assert!(first.err.contains("err-line\n"), "stderr:\n{}", first.err);
    assert!(first.err.contains("exited with code 3"), "{}", first.err);
    let id = case.container_id().expect("the exited container is kept");

    let second = case.run(&spec);
    assert_eq!(second.code, Some(3));
    assert!(
        second.out.contains("out-line\n"),
        "output of a reused container"
    );
    assert_eq!(case.container_id().as_ref(), Some(&id), "same hash: reused");

    let mut changed = spec.clone();
    changed.container.env.insert("X".into(), "1".into());
    let third = case.run(&changed);
    assert_eq!(third.code, Some(3));
    let new_id = case.container_id().unwrap();
    assert_ne!(new_id, id, "another hash: replaced");
    assert!(
        third.err.contains("rundock.spec label differs"),
        "{}",
        third.err
    );
    assert_eq!(case.labelled(), vec![new_id]);
}

#[test]
fn stale_containers_by_name_or_labels_are_replaced() {
    let case = Case::new("stale");
    let out = docker(&["create", "--name", &case.name, TEST_IMAGE, "sleep", "600"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unlabelled = stdout(&out).trim().to_string();
    let other = format!("{}-old", case.name);
    let service = format!("rundock.service={}", case.name);
    let host = format!("rundock.host={HOST}");
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &other,
        "--label",
        &service,
        "--label",
        &host,
        "--label",
        "rundock.spec=0000000000000000",
        TEST_IMAGE,
        "sleep",
        "600",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labelled_old = stdout(&out).trim().to_string();

    let spec = case.spec(&["sleep", "600"]);
    let running = case.start(&spec);
    let id = case.wait_running();
    assert_ne!(id, unlabelled);
    assert_eq!(case.labelled(), vec![id], "only the new container is left");
    assert!(!docker(&["inspect", &labelled_old]).status.success());
    let err = running.err();
    assert!(err.contains("not made by rundock"), "{err}");
    assert!(err.contains(&format!("not named {}", case.name)), "{err}");
    running.signal("KILL");
}

#[test]
fn term_stops_and_removes_and_a_second_term_kills() {
    let case = Case::new("term");
    // PID 1 in a container ignores TERM it has no handler for: the stop would take the
    // whole stop_timeout.
    let mut spec = case.spec(&["sleep", "600"]);
    spec.container.stop_timeout = 60;
    let running = case.start(&spec);
    case.wait_running();
    let began = Instant::now();
    running.signal("TERM");
    assert!(
        wait_for(Duration::from_secs(10), || running
            .err()
            .contains("stopping container")
            .then_some(()))
        .is_some(),
        "{}",
        running.err()
    );
    running.signal("TERM");
    let finished = running.finish(Duration::from_secs(20));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.err);
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "killed, not timed out"
    );
    assert!(
        finished.err.contains("second TERM: killing"),
        "{}",
        finished.err
    );
    assert_eq!(case.container_id(), None, "container removed");
}

#[test]
fn a_term_with_a_cooperative_container_exits_zero_quickly() {
    let case = Case::new("int");
    let spec = case.spec(&[
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let running = case.start(&spec);
    case.wait_running();
    let began = Instant::now();
    running.signal("INT");
    let finished = running.finish(Duration::from_secs(20));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.err);
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(case.container_id(), None);
    assert!(case.labelled().is_empty());
}

#[test]
fn pulls_from_a_loopback_registry_with_always_and_missing() {
    let case = Case::new("pull");
    let registry = Registry::start();
    let reference = registry.push(TEST_IMAGE, &format!("{}:v1", case.name));
    // Only the tag goes; the image stays under TEST_IMAGE, so the pull is cheap.
    let out = docker(&["rmi", &reference]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut spec = case.spec(&["true"]);
    spec.container.image = reference.parse().unwrap();
    spec.container.pull = PullPolicy::Missing;
    let missing = case.run(&spec);
    assert_eq!(missing.code, Some(0), "stderr:\n{}", missing.err);
    assert!(
        missing.err.contains(&format!("pulling {reference}")),
        "{}",
        missing.err
    );
    assert!(docker(&["image", "inspect", &reference]).status.success());

    let again = case.run(&spec);
    assert_eq!(again.code, Some(0), "stderr:\n{}", again.err);
    assert!(
        !again.err.contains("pulling"),
        "present: no pull\n{}",
        again.err
    );

    spec.container.pull = PullPolicy::Always;
    let always = case.run(&spec);
    assert_eq!(always.code, Some(0), "stderr:\n{}", always.err);
    assert!(
        always.err.contains(&format!("pulling {reference}")),
        "{}",
        always.err
    );

    drop(case);
    let _ = docker(&["rmi", &reference]);
}

#[test]
fn pull_never_with_a_missing_image_fails_with_one_clear_line() {
    let case = Case::new("never");
    let mut spec = case.spec(&["true"]);
    spec.container.image = format!("127.0.0.1:9/rundock-absent-{}:none", std::process::id())
        .parse()
        .unwrap();
    let finished = case.run(&spec);
    assert_eq!(finished.code, Some(rundock_supervisor::EXIT_FAILURE));
    let lines: Vec<&str> = finished.err.lines().collect();
    assert_eq!(lines.len(), 1, "{}", finished.err);
    assert!(
        lines[0].contains("is not present and pull is never"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("panicked"));
    assert_eq!(case.container_id(), None);
}

#[test]
fn docker_unreachable_fails_with_one_clear_line() {
    let case = Case::new("nodocker");
    let spec = case.spec(&["true"]);
    let dir = case.fresh_dir();
    let finished = case
        .start_in(
            &spec,
            &dir,
            &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        )
        .finish(Duration::from_secs(30));
    assert_eq!(finished.code, Some(rundock_supervisor::EXIT_FAILURE));
    let lines: Vec<&str> = finished.err.lines().collect();
    assert_eq!(lines.len(), 1, "{}", finished.err);
    assert!(
        lines[0].contains("cannot reach Docker at unix:///nonexistent/docker.sock"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_crash_loop_backs_off() {
    let case = Case::new("crashloop");
    let spec = case.spec(&["sh", "-c", "exit 1"]);
    let dir = case.fresh_dir();
    let window = Duration::from_secs(7);
    let began = Instant::now();
    let mut runs = 0;
    let mut errs = String::new();
    while began.elapsed() < window {
        let finished = case
            .start_in(&spec, &dir, &[])
            .finish(Duration::from_secs(60));
        assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.err);
        errs.push_str(&finished.err);
        runs += 1;
    }
    // Without back-off a run takes well under a second; with it the starts are at about
    // 0, 0.5, 2, 4.5 s (delays 0, 1, 2, 4 s).
    assert!(
        (2..=5).contains(&runs),
        "{runs} runs in {window:?}:\n{errs}"
    );
    assert!(errs.contains("waiting 1s before starting it"), "{errs}");
    assert!(errs.contains("waiting 2s before starting it"), "{errs}");
    let state = std::fs::read_to_string(dir.join(rundock_supervisor::STATE_FILE)).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["failures"], runs);
}

#[test]
fn remove_service_containers_takes_only_this_services_containers() {
    let case = Case::new("remove");
    let service = format!("rundock.service={}", case.name);
    let host = format!("rundock.host={HOST}");
    let other_host = "rundock.host=otherhost";
    let extra = format!("{}-x", case.name);
    let foreign = format!("{}-foreign", case.name);
    for (name, host_label) in [(&case.name, &host), (&extra, &host)] {
        let out = docker(&[
            "run", "-d", "--name", name, "--label", &service, "--label", host_label, TEST_IMAGE,
            "sleep", "600",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = docker(&[
        "create", "--name", &foreign, "--label", &service, "--label", other_host, TEST_IMAGE,
        "true",
    ]);
    assert!(out.status.success());

    let removed =
        rundock_supervisor::remove_service_containers(&case.name, HOST, &case.name, 1).unwrap();
    assert_eq!(removed, 2);
    assert_eq!(case.container_id(), None);
    assert!(!docker(&["inspect", &extra]).status.success());
    assert!(
        docker(&["inspect", &foreign]).status.success(),
        "other host's is kept"
    );
    let _ = docker(&["rm", "-f", &foreign]);

    // A same-named container without our labels is not ours to remove.
    let out = docker(&["create", "--name", &case.name, TEST_IMAGE, "true"]);
    assert!(out.status.success());
    let removed =
        rundock_supervisor::remove_service_containers(&case.name, HOST, &case.name, 1).unwrap();
    assert_eq!(removed, 0);
    assert!(case.container_id().is_some());
}

#[test]
fn a_reused_container_that_cannot_start_is_recreated_once_then_the_run_fails() {
    let case = Case::new("nostart");
    let port = free_port();
    let mut spec = case.spec(&["true"]);
    spec.container.ports.push(PortMapping {
        host_ip: Some(rundock_spec::HostIp::Ip("127.0.0.1".parse().unwrap())),
        host_port: Some(port),
        host_port_range: None,
        container_port: 8080,
        protocol: Protocol::Tcp,
    });
    let first = case.run(&spec);
    assert_eq!(first.code, Some(0), "stderr:\n{}", first.err);
    let old = case.container_id().unwrap();

    // The published port is taken now: starting the old container fails, and so does a
    // fresh one; the run ends with one failure code, and runit will try again.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let second = case.run(&spec);
    assert_eq!(
        second.code,
        Some(rundock_supervisor::EXIT_FAILURE),
        "{}",
        second.err
    );
    assert!(second.err.contains("; recreating it"), "{}", second.err);
    assert!(
        second.err.contains("cannot start container"),
        "{}",
        second.err
    );
    assert_ne!(case.container_id(), Some(old));
}

/// The run takes its stop and let-go requests as an argument, so it runs inside another
/// program: a let-go leaves the container running and ends the run with 0; the next run
/// adopts that container, and a stop sent instead of TERM stops and removes it.
#[test]
fn in_process_a_let_go_leaves_the_container_and_a_sent_stop_removes_it() {
    use rundock_supervisor::{supervise_with, Signals};
    let case = Case::new("in-process");
    let spec = case.spec(&[
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let in_thread = |spec: Spec, state: PathBuf, signals: Signals| {
        std::thread::spawn(move || {
            let runtime = rundock_runtime::current_thread().expect("runtime");
            runtime.block_on(supervise_with(&spec, &state, signals))
        })
    };

    let (sender, signals) = Signals::channel();
    let run = in_thread(spec.clone(), case.fresh_dir().join("state.json"), signals);
    let first = case.wait_running();
    sender.let_go();
    assert_eq!(run.join().expect("the run"), 0);
    assert_eq!(
        case.inspect("{{.State.Running}}"),
        "true",
        "let go, not stopped"
    );

    let (sender, signals) = Signals::channel();
    let run = in_thread(spec, case.fresh_dir().join("state.json"), signals);
    assert_eq!(
        case.wait_running(),
        first,
        "the running container is adopted"
    );
    sender.stop("TERM");
    assert_eq!(run.join().expect("the run"), 0);
    assert_eq!(case.container_id(), None, "container removed");
}
