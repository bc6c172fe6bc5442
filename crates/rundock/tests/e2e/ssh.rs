//! Real SSH: Debian's OpenSSH server on a loopback port (started here, not as a system
//! service), a non-root user with key login and passwordless sudo, and Ansible with
//! `--become` running the collection's roles (host, service, dns) and an ad hoc module
//! call against it. A second run changes nothing; without become the call fails and
//! says why. Every rundock dir of the "remote" host is a temp dir with its own runsvdir.

use crate::common;

use common::BIN;
use rundock_testkit as kit;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The login user; created once on this machine, with passwordless sudo.
const USER: &str = "rundock-ssh";
const DOMAIN: &str = "s.ssh.example.com";

/// Creates [`USER`] (home, shell, no password but not locked, so key login works) and its
/// sudoers entry, if missing.
fn ensure_user() {
    if !kit::run("id", &["-u", USER]).status.success() {
        let out = kit::run("useradd", &["-m", "-s", "/bin/bash", USER]);
        assert!(out.status.success(), "useradd: {out:?}");
    }
    // `!` (useradd's default) is a locked account, which sshd refuses without PAM.
    let out = kit::run("usermod", &["-p", "*", USER]);
    assert!(out.status.success(), "usermod: {out:?}");
    let sudoers = Path::new("/etc/sudoers.d/rundock-ssh-test");
    let rule = format!("{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n");
    if std::fs::read_to_string(sudoers).ok().as_deref() != Some(rule.as_str()) {
        std::fs::write(sudoers, &rule).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sudoers, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
}

/// `/usr/sbin/sshd -D` on a free loopback port with a host key, config and authorized
/// key of its own; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "client_key"] {
            let out = kit::run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    path(key).to_str().unwrap(),
                ],
            );
            assert!(out.status.success(), "ssh-keygen: {out:?}");
        }
        std::fs::create_dir(path("authorized_keys")).unwrap();
        std::fs::copy(path("client_key.pub"), path("authorized_keys").join(USER)).unwrap();
        let port = kit::free_port();
        // StrictModes would refuse the key file because /tmp is world-writable.
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}/%u\nAllowUsers {USER}\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n",
            host_key = path("host_key").display(),
            pid = path("sshd.pid").display(),
            keys = path("authorized_keys").display(),
        );
        std::fs::write(path("sshd_config"), config).unwrap();
        // The privilege separation directory sshd insists on.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(path("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(path("sshd_config"))
            .args(["-D", "-e"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd (Debian openssh-server, tests/setup installs it)");
        let up = kit::wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "sshd did not listen: {}",
            std::fs::read_to_string(path("sshd.log")).unwrap_or_default()
        );
        Sshd { child, port, dir }
    }

    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The "remote" host: its dirs, runsvdir, inventory, and a collections path holding the
/// collection from this checkout with the freshly built binary as its module.
struct Remote {
    // Dropped first: stops the services (the container, rundock dns) before the rest goes.
    _runsvdir: kit::Runsvdir,
    root: tempfile::TempDir,
    collections: tempfile::TempDir,
    sshd: Sshd,
    etcd: kit::Etcd,
    service: String,
    dns_port: u16,
    web_port: u16,
}

impl Remote {
    fn new() -> Remote {
        ensure_user();
        kit::ensure_test_image();
        let root = tempfile::tempdir().unwrap();
        let runsvdir = kit::Runsvdir::start(&root.path().join("service"));
        let collections = collection_with_binary(Path::new(BIN));
        let remote = Remote {
            _runsvdir: runsvdir,
            root,
            collections,
            sshd: Sshd::start(),
            etcd: kit::Etcd::start(),
            service: format!("ssh-web-{}", std::process::id()),
            dns_port: kit::free_port(),
            web_port: kit::free_port(),
        };
        remote.write_inventory();
        remote
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn write_inventory(&self) {
        let inventory = format!(
            "all:\n  hosts:\n    ssh-host:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n      \
             ansible_user: {USER}\n      ansible_ssh_private_key_file: {key}\n      \
             ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n      \
             ansible_python_interpreter: /usr/bin/python3\n      \
             rundock_sv_dir: {sv}\n      rundock_service_dir: {service_dir}\n      rundock_log_dir: {log}\n      \
             rundock_install_dir: {install}\n      rundock_bin: {bin}\n      \
             rundock_install_packages: false\n      rundock_runsvdir: external\n      \
             rundock_services:\n        - name: {name}\n          image: {image}\n          \
             command: [httpd, -f, -p, \"8080\", -h, /]\n          container_name: {name}\n          \
             ports: [\"127.0.0.1:{web}:8080\"]\n          announce: {web}\n          port: 8080\n          \
             announce_as: 127.0.0.0/8\n          host_label: ssh-host\n          domain: {DOMAIN}\n          \
             etcd: {{endpoints: [\"{etcd}\"]}}\n          ttl: 10\n          stop_timeout: 2\n          \
             health: [{{kind: tcp, port: {web}, interval: 1, timeout: 1}}]\n      \
             rundock_dns_domains: [{DOMAIN}]\n      rundock_dns_listen: 127.0.0.1:{dns}\n      \
             rundock_dns_etcd: {{endpoints: [\"{etcd}\"]}}\n",
            port = self.sshd.port,
            key = self.sshd.client_key().display(),
            sv = self.dir("sv").display(),
            service_dir = self.dir("service").display(),
            log = self.dir("log").display(),
            install = self.dir("install").display(),
            bin = self.dir("bin/rundock").display(),
            name = self.service,
            image = kit::TEST_IMAGE,
            web = self.web_port,
            dns = self.dns_port,
            etcd = self.etcd.endpoint(),
        );
        std::fs::write(self.dir("hosts.yml"), inventory).unwrap();
    }

    /// Runs an Ansible program against this host's inventory and the test collection.
    fn ansible(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(kit::ansible_bin_dir().join(program))
            .arg("-i")
            .arg(self.dir("hosts.yml"))
            .args(args)
            .env("ANSIBLE_COLLECTIONS_PATH", self.collections.path())
            .env("ANSIBLE_INJECT_FACTS_AS_VARS", "False")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_DEPRECATION_WARNINGS", "False")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    }

    fn site(&self, extra: &[&str]) -> (bool, String) {
        let playbook = kit::workspace_root().join("playbooks/site.yml");
        let mut args = vec![playbook.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.ansible("ansible-playbook", &args)
    }

    /// The module ad hoc, with this host's dirs.
    fn adhoc(&self, options: &str, extra: &[&str]) -> (bool, String) {
        let options = format!(
            "{options} sv_dir={} service_dir={} log_dir={} install_dir={}",
            self.dir("sv").display(),
            self.dir("service").display(),
            self.dir("log").display(),
            self.dir("install").display()
        );
        let mut args = vec!["ssh-host", "-m", "rundock.rundock.rundock", "-a", &options];
        args.extend_from_slice(extra);
        self.ansible("ansible", &args)
    }

    /// `dig +short NAME A` against the rundock dns the dns role runs.
    fn dig(&self, name: &str) -> String {
        kit::dig_short(self.dns_port, name, "A").trim().to_string()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        kit::stop_services(&self.dir("service"));
        let _ = kit::docker(&["rm", "-f", &self.service]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        kit::stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `DIR/ansible_collections/rundock/rundock`: this checkout's collection (links to its
/// files) with `binary` as the module.
fn collection_with_binary(binary: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = kit::workspace_root().join("ansible_collections/rundock/rundock");
    let target = dir.path().join("ansible_collections/rundock/rundock");
    std::fs::create_dir_all(target.join("plugins/modules")).unwrap();
    for entry in ["galaxy.yml", "meta", "roles", "plugins/modules/rundock.yml"] {
        std::os::unix::fs::symlink(source.join(entry), target.join(entry)).unwrap();
    }
    std::fs::copy(binary, target.join("plugins/modules/rundock")).unwrap();
    dir
}

fn recap_changed(text: &str) -> Option<u32> {
    let line = text
        .lines()
        .find(|l| l.starts_with("ssh-host") && l.contains("ok="))?;
    let field = line
        .split_whitespace()
        .find(|w| w.starts_with("changed="))?;
    field["changed=".len()..].parse().ok()
}

#[test]
fn roles_and_adhoc_over_ssh_with_become() {
    let remote = Remote::new();
    let name = format!("{}.{DOMAIN}", remote.service);

    // Without become the non-root user cannot write the service tree: a clear failure.
    let (ok, out) = remote.adhoc(
        &format!(
            "state=enabled name={} image={}",
            remote.service,
            kit::TEST_IMAGE
        ),
        &[],
    );
    assert!(!ok, "the module succeeded as a non-root user:\n{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        out.to_lowercase().contains("permission denied")
            && out.contains(&remote.dir("").display().to_string()),
        "the failure does not say which path it could not write:\n{out}"
    );
    assert!(
        !remote
            .dir("sv")
            .join(format!("docker-{}", remote.service))
            .exists(),
        "a failed call left a tree behind"
    );

    let (ok, out) = remote.site(&["--become"]);
    assert!(ok, "site.yml over SSH failed:\n{out}");
    assert!(recap_changed(&out).unwrap_or(0) > 0, "{out}");
    // The host role puts the completions and man pages in the binary's prefix.
    for file in [
        "share/bash-completion/completions/rundock",
        "share/zsh/site-functions/_rundock",
        "share/fish/vendor_completions.d/rundock.fish",
        "share/man/man1/rundock.1",
        "share/man/man1/rundock-logs.1",
    ] {
        assert!(
            remote.dir(file).is_file(),
            "the host role did not install {file}"
        );
    }
    let answered = kit::wait_for(Duration::from_secs(30), || {
        (remote.dig(&name) == "127.0.0.1").then_some(())
    });
    assert!(
        answered.is_some(),
        "rundock dns (the dns role's runit service) does not answer {name}: {:?}\n{}",
        remote.dig(&name),
        kit::sv_status(&remote.dir("service").join("rundock-dns"))
    );
    let page = kit::run(
        "curl",
        &[
            "-sf",
            &format!("http://127.0.0.1:{}/etc/hostname", remote.web_port),
        ],
    );
    assert!(page.status.success(), "the service does not answer HTTP");

    let (ok, out) = remote.site(&["--become"]);
    assert!(ok, "second run failed:\n{out}");
    assert_eq!(
        recap_changed(&out),
        Some(0),
        "second run changed something:\n{out}"
    );

    let (ok, out) = remote.site(&["--become", "--check", "--diff"]);
    assert!(ok, "check mode failed:\n{out}");
    assert_eq!(
        recap_changed(&out),
        Some(0),
        "check mode predicts a change:\n{out}"
    );

    // Ad hoc with become: disable (record withdrawn, link gone), then again (no change).
    let (ok, out) = remote.adhoc(
        &format!("state=disabled name={}", remote.service),
        &["--become"],
    );
    assert!(ok && out.contains("ssh-host | CHANGED"), "{out}");
    assert!(
        !remote
            .dir("service")
            .join(format!("docker-{}", remote.service))
            .exists(),
        "still linked after state=disabled"
    );
    let gone = kit::wait_for(Duration::from_secs(15), || {
        remote.dig(&name).is_empty().then_some(())
    });
    assert!(gone.is_some(), "record still answers after state=disabled");
    let (ok, out) = remote.adhoc(
        &format!("state=disabled name={}", remote.service),
        &["--become"],
    );
    assert!(ok && out.contains("ssh-host | SUCCESS"), "{out}");

    // The dns role takes its service away again.
    let (ok, out) = remote.site(&["--become", "-e", "rundock_dns_state=absent"]);
    assert!(ok, "{out}");
    assert!(
        !remote.dir("service/rundock-dns").exists(),
        "rundock-dns still linked"
    );
    assert!(
        !remote.dir("sv/rundock-dns").exists(),
        "rundock-dns tree left behind"
    );
    let silent = kit::wait_for(Duration::from_secs(10), || {
        let port = remote.dns_port.to_string();
        let out = kit::run(
            "dig",
            &["+time=1", "+tries=1", "@127.0.0.1", "-p", &port, &name],
        );
        (!out.status.success()).then_some(())
    });
    assert!(
        silent.is_some(),
        "rundock dns still answers after rundock_dns_state=absent"
    );
}
