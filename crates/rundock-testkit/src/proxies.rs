//! The proxies the traffic tests put in front of rundock services, started the same way
//! by every test: HAProxy (`haproxy -f CONF -db`, its config checked first) and nginx
//! with everything (pid, logs, temp paths) inside one directory of the test's own.

use crate::SpawnQuiet;
use std::path::Path;
use std::process::{Child, Command};

/// Checks `conf` with `haproxy -c`, then runs HAProxy in the foreground on it.
pub fn spawn_haproxy(conf: &Path) -> Child {
    let check = crate::run("haproxy", &["-c", "-f", &conf.to_string_lossy()]);
    assert!(check.status.success(), "haproxy -c: {check:?}");
    Command::new("haproxy")
        .arg("-f")
        .arg(conf)
        .arg("-db")
        .spawn_quiet("start haproxy (Debian haproxy; tests/setup installs it)")
}

/// `nginx` on the config in `dir` (prefix, error log and config all there), then `extra`
/// (`-t -q` checks, `-s reload` reloads).
pub fn nginx_argv(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "nginx".to_string(),
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
        "-c".into(),
        dir.join("nginx.conf").display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv
}

/// Writes `dir/nginx.conf`: one worker in the foreground, everything kept in `dir`, the
/// upstreams from `dir/upstream.conf` (which `rundock watch` renders), and one server on
/// 127.0.0.1:`port` with `locations`. Then starts nginx on it.
pub fn spawn_nginx(dir: &Path, port: u16, locations: &str) -> Child {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).expect("nginx temp dir");
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log notice;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             \x20 include {d}/upstream.conf;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n{locations}  }}\n}}\n"
        ),
    )
    .expect("write nginx.conf");
    let argv = nginx_argv(dir, &[]);
    Command::new(&argv[0])
        .args(&argv[1..])
        .spawn_quiet("start nginx (Debian nginx-light; tests/setup installs it)")
}
