//! Shared set-up of the end-to-end tests: a host laid out in a temp dir (sv, service,
//! log and install dirs), the module called directly or through Ansible, and the parsing
//! of what Ansible prints.

use rundock_testkit as kit;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

pub const BIN: &str = env!("CARGO_BIN_EXE_rundock");

/// One simulated host: its own dirs under a temp root.
pub struct Host {
    pub root: tempfile::TempDir,
    pub library: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Host {
        let root = tempfile::tempdir().expect("temp root");
        for dir in ["sv", "service", "log", "install"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        Host {
            root,
            library: kit::module_library(Path::new(BIN)),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn sv_dir(&self) -> PathBuf {
        self.path("sv")
    }

    pub fn service_dir(&self) -> PathBuf {
        self.path("service")
    }

    pub fn tree(&self, name: &str) -> PathBuf {
        self.sv_dir().join(format!("docker-{name}"))
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.service_dir().join(format!("docker-{name}"))
    }

    /// The path options that keep a call inside this host's temp dirs.
    pub fn dirs(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (key, dir) in [
            ("sv_dir", "sv"),
            ("service_dir", "service"),
            ("log_dir", "log"),
            ("install_dir", "install"),
        ] {
            map.insert(key.into(), json!(self.path(dir)));
        }
        map
    }

    /// `k=v` form of [`Host::dirs`], for ad hoc `-a`.
    pub fn dirs_kv(&self) -> String {
        self.dirs()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Calls the module binary as Ansible does, on an args file with `options` plus the
    /// host's dirs and the given internal keys.
    pub fn call(&self, options: Value, check: bool, diff: bool) -> (Value, i32) {
        let mut args = self.dirs();
        for (k, v) in options.as_object().expect("options are an object") {
            args.insert(k.clone(), v.clone());
        }
        args.insert("_ansible_check_mode".into(), json!(check));
        args.insert("_ansible_diff".into(), json!(diff));
        args.insert("_ansible_no_log".into(), json!(false));
        args.insert("_ansible_verbosity".into(), json!(0));
        args.insert("_ansible_version".into(), json!("2.19.0"));
        args.insert("_ansible_module_name".into(), json!("rundock"));
        args.insert("_ansible_tmpdir".into(), Value::Null);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), Value::Object(args).to_string()).unwrap();
        let out = kit::run(BIN, &[&file.path().to_string_lossy()]);
        let text = String::from_utf8(out.stdout).expect("module output is UTF-8");
        let value: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("module printed no single JSON object ({e}): {text}"));
        (value, out.status.code().unwrap_or(-1))
    }

    /// `ansible localhost -c local -m rundock -a ARGS [extra...]`.
    pub fn adhoc(&self, args: &str, extra: &[&str]) -> (Value, Output) {
        let library = self.library.path().to_string_lossy().into_owned();
        let mut argv = vec![
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-M",
            &library,
            "-m",
            "rundock",
            "-a",
            args,
        ];
        argv.extend_from_slice(extra);
        let out = kit::ansible("ansible", &argv);
        (parse_adhoc(&out), out)
    }
}

/// The result object of an ad hoc run: the JSON after `localhost | STATUS => `.
pub fn parse_adhoc(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find("localhost | ")
        .and_then(|i| text[i..].find("=> {").map(|j| i + j + 3))
        .unwrap_or_else(|| {
            panic!(
                "no result in ansible output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    stream
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("unparsable ansible result:\n{text}"))
}

/// Every file below `dir` with its bytes, mode and mtime: a fingerprint to prove that
/// nothing was touched.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if path.file_name().is_some_and(|n| n == "supervise") {
                continue; // runsv's own state
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let bytes = if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            out.push((
                path,
                bytes,
                meta.permissions().mode(),
                meta.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// A service name unique to this test process (container names are shared on dockerd).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// nginx on loopback proxying to upstream `backend`, rendered by `rundock watch` from
/// the records of `name` in `domain`; both stopped on drop.
pub struct NginxFront {
    nginx: std::process::Child,
    watch: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl NginxFront {
    /// `read_timeout`: seconds nginx waits for a backend's answer.
    pub fn start(etcd: &kit::Etcd, domain: &str, name: &str, read_timeout: u32) -> NginxFront {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let port = kit::free_port();
        let base = |extra: &[&str]| kit::proxies::nginx_argv(dir.path(), extra);
        std::fs::write(
            dir.path().join("upstream.conf"),
            "upstream backend { server 127.0.0.1:9 down; }\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("upstream.conf.j2"),
            "upstream backend {\n{% for i in instances %}    server {{ i.host }}:{{ i.port }};\n{% else %}    server 127.0.0.1:9 down;\n{% endfor %}}\n",
        )
        .unwrap();
        let nginx = kit::proxies::spawn_nginx(
            dir.path(),
            port,
            &format!("    location / {{ proxy_pass http://backend; proxy_next_upstream off; proxy_connect_timeout 1s; proxy_read_timeout {read_timeout}s; }}\n"),
        );
        let spec = dir.path().join("watch.json");
        std::fs::write(
            &spec,
            json!({
                "domain": domain,
                "etcd": {"endpoints": [etcd.endpoint()], "api": "v3", "prefix": "/skydns"},
                "templates": [{"names": [name], "template": dir.path().join("upstream.conf.j2"),
                               "dest": dir.path().join("upstream.conf"),
                               "check": base(&["-t", "-q"]), "reload": base(&["-s", "reload"])}],
            })
            .to_string(),
        )
        .unwrap();
        let watch = Command::new(BIN)
            .arg("watch")
            .arg(&spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("watch.log")).unwrap())
            .spawn()
            .expect("start rundock watch");
        NginxFront {
            nginx,
            watch,
            port,
            dir,
        }
    }

    /// nginx's error log and the watch's log, for a failure message.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "nginx error.log:\n{}\nwatch log:\n{}",
            read("error.log"),
            read("watch.log")
        )
    }
}

impl Drop for NginxFront {
    fn drop(&mut self) {
        let _ = self.watch.kill();
        let _ = self.watch.wait();
        let _ = kit::run("kill", &["-TERM", &self.nginx.id().to_string()]);
        let _ = self.nginx.wait();
    }
}

/// What a finished command printed, stdout then stderr (Ansible's results and its
/// warnings, for assertions and failure messages).
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        kit::stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}
