//! Load from outside a server, for the tests that prove it bounds what clients can make
//! it hold: the server in a child process with the usual 1,024 descriptors (so what it
//! holds is its alone, and a leak hits the limit), idle TCP connections held open
//! against it, and what the child holds at a moment.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The descriptor limit most hosts give a service.
pub const FD_LIMIT: u64 = 1024;

/// A child process, killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the ignored test `test_name` of the current test binary in a child process
/// limited to [`FD_LIMIT`] descriptors, with `env` set (the child serves only when it
/// finds it).
pub fn serve_in_child(test_name: &str, env: (&str, String)) -> Killed {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([test_name, "--exact", "--ignored", "--nocapture"])
        .env(env.0, env.1)
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
    Killed(command.spawn().expect("start the child server"))
}

/// Raises this process's own descriptor limit so it can hold `needed` of them.
pub fn raise_own_fd_limit(needed: u64) {
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
        limit.rlim_cur >= needed,
        "this test needs {needed} descriptors, the hard limit is {}",
        limit.rlim_max
    );
}

/// Open descriptors and resident memory (KiB) of `pid` now.
pub fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Holds `count` idle TCP connections to `server` open until `stop`, opening a new one
/// for each the server closes; returns how many it opened.
pub fn hold_idle_connections(
    server: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut open: Vec<TcpStream> = Vec::new();
        let mut opened = 0u64;
        while !stop.load(Ordering::Relaxed) {
            open.retain(|stream| match stream.peek(&mut [0u8; 1]) {
                // Nothing to read yet: still open. Ok(0) or a reset: the server closed it.
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                Ok(n) => n > 0,
            });
            while open.len() < count && !stop.load(Ordering::Relaxed) {
                match TcpStream::connect_timeout(&server, Duration::from_secs(1)) {
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
}
