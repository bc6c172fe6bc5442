//! Starts and stops the real parts integration tests run against: an etcd on loopback
//! ports of its own, a `runsvdir` on a temp service dir, Ansible from the project's venv,
//! and the busybox test image on the shared dockerd. Everything started is stopped on drop.
//!
//! A missing part is a failed test, never a skipped one: `tests/run` installs them all.

#![warn(missing_docs)]

pub mod load;
pub mod prometheus;
pub mod proxies;
pub mod registry;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Built by [`ensure_test_image`]: `FROM scratch` + Debian's busybox-static.
pub const TEST_IMAGE: &str = "rundock-test/busybox:latest";

/// The repository's root (tests find the examples, roles and playbooks from it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starting a test part in the background: its output is not the test's to read (each
/// part has its own log or none), and a part that cannot start fails the test naming it.
pub trait SpawnQuiet {
    /// Spawns with stdin, stdout and stderr on /dev/null; panics with `what` if it cannot.
    fn spawn_quiet(&mut self, what: &str) -> Child;
}

impl SpawnQuiet for Command {
    fn spawn_quiet(&mut self, what: &str) -> Child {
        self.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// Runs a command to completion; panics with its output if it cannot be started.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (tests/run installs the test parts)"))
}

/// A finished command's stdout as text (lossy).
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `docker ARGS` through the CLI, for observing what rundock did.
pub fn docker(args: &[&str]) -> Output {
    run("docker", args)
}

static IMAGE_BUILD: Mutex<()> = Mutex::new(());

/// Builds [`TEST_IMAGE`] on the local dockerd if it is not there yet.
pub fn ensure_test_image() {
    let _guard = IMAGE_BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if docker(&["image", "inspect", TEST_IMAGE]).status.success() {
        return;
    }
    build_image(TEST_IMAGE);
}

/// Builds a busybox image under `tag` (a distinct tag makes a distinct image id when
/// `marker` differs, which tests of image updates need).
pub fn build_image_with_marker(tag: &str, marker: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("copy /bin/busybox (Debian busybox-static)");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             LABEL rundock.test.marker=\"{marker}\"\nCMD [\"/bin/sh\"]\n"
        ),
    )
    .expect("write Dockerfile");
    let out = docker(&["build", "-q", "-t", tag, &dir.path().to_string_lossy()]);
    assert!(
        out.status.success(),
        "docker build {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_image(tag: &str) {
    build_image_with_marker(tag, "base")
}

/// The command line of a single-member etcd on loopback with the v2 API on. The scripts
/// spell the same in `tests/lib.sh` (`etcd_args`); a test keeps the two equal.
pub fn etcd_args(name: &str, data: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    [
        "etcd",
        "--name",
        name,
        "--data-dir",
        &data.to_string_lossy(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("{name}={peer}"),
        "--enable-v2=true",
        "--log-level",
        "error",
    ]
    .map(String::from)
    .to_vec()
}

/// The command line of a runsvdir over `service_dir` (`runsvdir_args` in
/// `tests/lib.sh`).
pub fn runsvdir_args(service_dir: &Path) -> Vec<String> {
    vec![
        "runsvdir".into(),
        "-P".into(),
        service_dir.to_string_lossy().into_owned(),
    ]
}

/// An etcd 3.4 server on loopback ports of its own, v2 enabled, stopped on drop.
pub struct Etcd {
    child: Child,
    /// The client port on 127.0.0.1.
    pub client_port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
}

impl Etcd {
    /// Starts a server on free ports and waits until it answers `/health`.
    pub fn start() -> Etcd {
        // free_port only says a port was free a moment ago: when etcd exits at once
        // because another process took one meanwhile, start it again on others.
        for _ in 0..5 {
            let data = tempfile::tempdir().expect("etcd data dir");
            let client_port = free_port();
            let peer_port = free_port();
            let mut etcd = Etcd {
                child: Etcd::spawn(data.path(), client_port, peer_port),
                client_port,
                peer_port,
                data,
            };
            if etcd.ready_or_exited() {
                return etcd;
            }
        }
        panic!("etcd did not start in 5 attempts on fresh ports");
    }

    /// Waits until this etcd answers /health (true), or its process exits or 20 s pass
    /// (false).
    fn ready_or_exited(&mut self) -> bool {
        let url = format!("{}/health", self.endpoint());
        let child = &mut self.child;
        wait_for(Duration::from_secs(20), || {
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            run("curl", &["-sf", "-m", "1", &url])
                .status
                .success()
                .then_some(true)
        })
        .unwrap_or(false)
    }

    fn spawn(data: &Path, client_port: u16, peer_port: u16) -> Child {
        let args = etcd_args("test", data, client_port, peer_port);
        Command::new(&args[0])
            .args(&args[1..])
            .spawn_quiet("start etcd (Debian etcd-server)")
    }

    fn wait_ready(&mut self) {
        let url = format!("{}/health", self.endpoint());
        let ready = wait_for(Duration::from_secs(20), || {
            let out = run("curl", &["-sf", "-m", "1", &url]);
            out.status.success().then_some(())
        });
        assert!(ready.is_some(), "etcd did not become healthy on {url}");
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Stops the server (SIGKILL), keeping its data for [`Etcd::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same ports and data (after [`Etcd::stop`]).
    pub fn restart(&mut self) {
        self.child = Etcd::spawn(self.data.path(), self.client_port, self.peer_port);
        self.wait_ready();
    }

    /// `etcdctl get --prefix KEY` (v3), as `key\nvalue\n...`.
    pub fn get_prefix(&self, key: &str) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "get", "--prefix", key])
            .output()
            .expect("run etcdctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `runsvdir -P` over a temp service dir; on drop every service in it is stopped
/// (`sv force-stop`, which runs the trees' control/t) before runsvdir goes.
pub struct Runsvdir {
    child: Child,
    /// The service dir it scans.
    pub service_dir: PathBuf,
}

impl Runsvdir {
    /// Starts runsvdir over `service_dir`, creating it.
    pub fn start(service_dir: &Path) -> Runsvdir {
        std::fs::create_dir_all(service_dir).expect("service dir");
        let args = runsvdir_args(service_dir);
        let child = Command::new(&args[0])
            .args(&args[1..])
            .spawn_quiet("start runsvdir (Debian runit)");
        Runsvdir {
            child,
            service_dir: service_dir.to_path_buf(),
        }
    }
}

/// Stops every service linked in `service_dir` (`sv force-stop`, which runs a tree's
/// control/t), so that the runsvdir's HUP afterwards finds every runsv with its service
/// down and orphans nothing. No `sv exit` here: runsvdir would start a fresh runsv for a
/// link that is still there, whose service comes up again, and the HUP then leaves that
/// tree's inner runsv processes behind.
pub fn stop_services(service_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(service_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Long enough for drain + docker stop timeouts of the trees tests make.
        let _ = Command::new("sv")
            .args(["-w", "90", "force-stop"])
            .arg(&path)
            .output();
        if let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("docker-"))
        {
            remove_left_containers(name, host_label(&path).as_deref());
        }
    }
}

/// The host label in a tree's spec.json: simulated hosts of one test share service
/// names, and one host's stopped tree must not take another's containers.
fn host_label(tree: &Path) -> Option<String> {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tree.join("spec.json")).ok()?).ok()?;
    spec["host_label"].as_str().map(String::from)
}

/// A stopped tree must leave no container of its service (on its host, when known). One
/// that is still there is said on stderr (a test that looks can find it) and removed, so
/// that a test that failed half-way does not leave it running on the shared dockerd.
fn remove_left_containers(service: &str, host: Option<&str>) {
    let mut filters = vec![format!("label=rundock.service={service}")];
    filters.extend(host.map(|host| format!("label=rundock.host={host}")));
    let mut args = vec!["ps", "-aq"];
    for filter in &filters {
        args.extend(["--filter", filter.as_str()]);
    }
    let ids = stdout(&run("docker", &args));
    for id in ids.split_whitespace() {
        eprintln!("testkit: container {id} of {service} outlived its stopped tree; removing it");
        let _ = run("docker", &["rm", "-f", id]);
    }
}

impl Drop for Runsvdir {
    fn drop(&mut self) {
        stop_services(&self.service_dir);
        let _ = nix_kill(self.child.id(), "HUP");
        let _ = self.child.wait();
    }
}

fn nix_kill(pid: u32, signal: &str) -> Output {
    run("kill", &[&format!("-{signal}"), &pid.to_string()])
}

/// `sv status DIR` output.
pub fn sv_status(dir: &Path) -> String {
    stdout(&run("sv", &["status", &dir.to_string_lossy()]))
}

/// The Ansible venv made by tests/run (override with RUNDOCK_ANSIBLE_BIN).
pub fn ansible_bin_dir() -> PathBuf {
    std::env::var_os("RUNDOCK_ANSIBLE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin"))
}

/// A module library dir holding the freshly built binary and its sidecar docs.
pub fn module_library(binary: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("library dir");
    std::fs::copy(binary, dir.path().join("rundock")).expect("copy the rundock binary");
    std::fs::copy(
        workspace_root().join("ansible/library/rundock.yml"),
        dir.path().join("rundock.yml"),
    )
    .expect("copy ansible/library/rundock.yml");
    dir
}

/// Runs an Ansible command from the venv with a quiet, deterministic configuration;
/// `-o` one-line output is left to the caller.
pub fn ansible(program: &str, args: &[&str]) -> Output {
    let bin = ansible_bin_dir().join(program);
    Command::new(&bin)
        .args(args)
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_LOCALHOST_WARNING", "False")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "False")
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .env("ANSIBLE_STDOUT_CALLBACK", "default")
        .env("ANSIBLE_LOAD_CALLBACK_PLUGINS", "1")
        .env("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (tests/run makes the venv)",
                bin.display()
            )
        })
}

/// `rundock dns` (from the binary at `bin`) on a loopback port of its own, stopped on drop.
pub struct DnsServer {
    child: Child,
    /// The UDP and TCP port on 127.0.0.1.
    pub port: u16,
}

impl DnsServer {
    /// Starts `rundock dns` for `domain` over `etcd`'s records.
    pub fn start(bin: &Path, etcd: &Etcd, domain: &str) -> DnsServer {
        let port = free_port();
        let child = Command::new(bin)
            .args(["dns", "--etcd", &etcd.endpoint(), "--domain", domain])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .spawn_quiet("start rundock dns");
        DnsServer { child, port }
    }

    /// `dig +short NAME KIND` against this server.
    pub fn dig(&self, name: &str, kind: &str) -> String {
        dig_short(self.port, name, kind)
    }
}

/// `dig +short NAME KIND` against a DNS server on 127.0.0.1:`port`, one try of a second.
pub fn dig_short(port: u16, name: &str, kind: &str) -> String {
    let port = port.to_string();
    let args = [
        "+short",
        "+time=1",
        "+tries=1",
        "@127.0.0.1",
        "-p",
        &port,
        name,
        kind,
    ];
    stdout(&run("dig", &args))
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one of `tests/lib.sh`'s functions; its words, one a line.
    fn script_words(function: &str, args: &[&str]) -> Vec<String> {
        let lib = workspace_root().join("tests/lib.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(". \"$0\" && {function} \"$@\""))
            .arg(&lib)
            .args(args)
            .output()
            .expect("run bash");
        assert!(out.status.success(), "{function}: {out:?}");
        stdout(&out).lines().map(String::from).collect()
    }

    #[test]
    fn scripts_start_the_parts_like_the_testkit() {
        let data = Path::new("/var/lib/some etcd");
        assert_eq!(
            script_words("etcd_args", &["demo", "/var/lib/some etcd", "2379", "2380"]),
            etcd_args("demo", data, 2379, 2380)
        );
        assert_eq!(
            script_words("runsvdir_args", &["/etc/service"]),
            runsvdir_args(Path::new("/etc/service"))
        );
    }
}
