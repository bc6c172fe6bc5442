//! The deploy lock: one change of a service at a time on this host.
//!
//! A changing module call holds an exclusive `flock(2)` on `<sv_dir>/.docker-NAME.lock`
//! from its plan through apply and wait, so two playbook runs, a rollout and an ad hoc
//! restart of the same service never interleave. The kernel drops the lock the moment
//! its holder dies, however it dies, so a dead holder never needs to be detected. The
//! file carries the holder's record (JSON) while it is held, which is how a waiter that
//! gives up can say who holds it.
//!
//! An announced service (one with etcd endpoints) is locked in etcd too, fleet-wide:
//! after the file, the call takes `/rundock/locks/<domain>/<name>` through
//! [`crate::Hooks::take_etcd_lock`], with the same holder record as the key's value
//! ([`EtcdHeld`], [`EtcdLockError`]); the binary's `rundock-releases` keeps it alive on
//! a lease, so a holder that dies loses it at the lease's TTL.
//!
//! The file lives beside the tree, not in it: the first call makes the tree, and
//! `state=absent` removes it. An absent call removes the lock file while it still holds
//! the lock; a waiter that then gets the lock on the unlinked file notices that the path
//! no longer names it and starts again on a new one.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lock file's mode: the record names users and hosts, nothing anyone else needs.
pub const LOCK_FILE_MODE: u32 = 0o600;

/// How often a waiter tries again. A holder's change takes seconds, so 50 ms costs a
/// waiter nothing it would notice and keeps the wait free of signals and threads.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Where the lock of service `name` lives.
pub fn lock_path(sv_dir: &Path, name: &str) -> PathBuf {
    sv_dir.join(format!(".docker-{name}.lock"))
}

/// Who holds a lock: written into the lock file by its holder, read by a waiter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The process id of the module run holding the lock, for people to find it.
    pub pid: u32,
    /// The user the module runs as.
    pub user: String,
    /// The user who became it through sudo (Ansible's `become`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// The address the controller connected from (`SSH_CONNECTION`), when known: Ansible
    /// does not tell a module its controller's name, and sudo drops this variable unless
    /// sudoers keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// This host's name.
    pub host: String,
    /// Unix seconds when the lock was taken.
    pub since: u64,
    /// What the holder is doing, e.g. `state=enabled image=registry:5000/app:2`.
    pub action: String,
    /// Set on a playbook's lock (`play_lock: acquire`): the calls of that playbook
    /// present it (`lock_token`) to run under the lock instead of waiting for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A token no other lock has: 128 random bits, hex.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Holder {
    /// The record of this process, doing `action`, from now.
    pub fn current(action: impl Into<String>) -> Holder {
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        Holder {
            pid: std::process::id(),
            user,
            sudo_user: non_empty_env("SUDO_USER"),
            controller: controller_from(
                non_empty_env("SSH_CONNECTION")
                    .or_else(|| non_empty_env("SSH_CLIENT"))
                    .as_deref(),
            ),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            since: unix_now(),
            action: action.into(),
            token: None,
        }
    }

    /// The record as its holder wrote it; `None` for anything else (an empty file of a
    /// lock nobody holds, or one read mid-write).
    pub fn parse(text: &str) -> Option<Holder> {
        serde_json::from_str(text.trim()).ok()
    }

    /// The record as shown to others: a playbook's token is for its own calls.
    pub fn without_token(self) -> Holder {
        Holder {
            token: None,
            ..self
        }
    }

    /// One line for a person: who, from where, since when, doing what.
    pub fn describe(&self, now: u64) -> String {
        let mut who = format!("pid {} (user {}", self.pid, self.user);
        if let Some(sudo) = &self.sudo_user {
            who.push_str(&format!(" via sudo from {sudo}"));
        }
        who.push(')');
        if let Some(controller) = &self.controller {
            who.push_str(&format!(" from controller {controller}"));
        }
        format!(
            "{who} on {}, since {} ({} s ago), doing {}",
            self.host,
            utc_timestamp(self.since),
            now.saturating_sub(self.since),
            self.action
        )
    }
}

/// The client address out of `SSH_CONNECTION`/`SSH_CLIENT` (`CLIENT_IP CLIENT_PORT ...`).
fn controller_from(ssh: Option<&str>) -> Option<String> {
    ssh.and_then(|s| s.split_whitespace().next())
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
}

fn non_empty_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// Unix seconds with their fraction, for a result a reader orders by.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

use rundock_spec::state::{unix_now, utc_timestamp};

/// Why the lock was not had.
#[derive(Debug)]
pub enum LockError {
    /// Someone else held it for all of `timeout`.
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long the call waited (`lock_timeout`).
        timeout: Duration,
        /// Their record as last read; `None` when it could not be read.
        holder: Option<Box<Holder>>,
    },
    /// The lock file could not be opened, locked or written.
    Io {
        /// What was being done (`open`, `lock`, `write`, `chmod`, ...): the message reads
        /// `cannot ACTION PATH`.
        action: &'static str,
        /// The lock file.
        path: PathBuf,
        /// The error the system gave.
        source: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Timeout {
                path,
                timeout,
                holder,
            } => {
                let who = holder.as_ref().map_or_else(
                    || "a holder whose record could not be read".to_string(),
                    |h| h.describe(unix_now()),
                );
                write!(
                    f,
                    "another change of this service holds its lock {}: {who}; waited lock_timeout={} s (nothing was changed)",
                    path.display(),
                    timeout.as_secs()
                )
            }
            LockError::Io {
                action,
                path,
                source,
            } => write!(
                f,
                "{}",
                crate::fsutil::io_error(action, path, clone_io(source))
            ),
        }
    }
}

impl std::error::Error for LockError {}

fn clone_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// How a call takes the etcd side of the deploy lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdLockMode<'a> {
    /// For this call: let go when it ends.
    Call,
    /// For a whole playbook (`play_lock: acquire`): left held when the call ends, alive
    /// for the playbook lock's TTL after each call that presents its token.
    Play,
    /// Under a playbook's lock, whose record carries this token: kept alive while the
    /// call runs, not let go.
    Join(&'a str),
}

/// The etcd side of the deploy lock, held until dropped (`guard` lets it go).
pub struct EtcdHeld {
    /// The lock's etcd key (`/rundock/locks/DOMAIN/NAME`).
    pub key: String,
    /// Seconds the key outlives a holder that dies.
    pub ttl: u32,
    /// Seconds waited and the holder's record (the key's value) as the wait began.
    pub waited: Option<(f64, Option<String>)>,
    /// Keeps the lock for as long as it lives: when the call holds it, dropping this lets the key
    /// go; under a playbook's lock it holds nothing and the key stays.
    pub guard: Box<dyn std::any::Any>,
}

impl std::fmt::Debug for EtcdHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHeld").field("key", &self.key).finish()
    }
}

/// Why the etcd side of the lock was not had.
#[derive(Debug, Clone, PartialEq)]
pub enum EtcdLockError {
    /// Held by another change for all of `lock_timeout`; `holder` is the key's value.
    Timeout {
        /// The lock's etcd key.
        key: String,
        /// The key's value (the holder's record) as last read; `None` when it could not be read.
        holder: Option<String>,
        /// How long the call waited (`lock_timeout`).
        timeout: Duration,
    },
    /// etcd refused or could not be reached.
    Etcd(String),
    /// `lock_token` was given but the playbook's lock is gone (expired or let go) or is
    /// another's (`holder`: its record).
    NotJoined {
        /// The playbook lock's etcd key.
        key: String,
        /// The record of whoever holds the key now; `None` when nobody does.
        holder: Option<String>,
    },
}

impl std::fmt::Display for EtcdLockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdLockError::Timeout {
                key,
                holder,
                timeout,
            } => {
                let who = match holder.as_deref().map(|h| (h, Holder::parse(h))) {
                    Some((_, Some(holder))) => holder.describe(unix_now()),
                    Some((raw, None)) => format!("a holder whose record is not rundock's: {raw:?}"),
                    None => "a holder whose record could not be read".to_string(),
                };
                write!(
                    f,
                    "another change of this service holds its deploy lock in etcd ({key}): {who}; waited lock_timeout={} s (nothing was changed)",
                    timeout.as_secs()
                )
            }
            EtcdLockError::Etcd(e) => write!(f, "{e} (nothing was changed)"),
            EtcdLockError::NotJoined { key, holder: None } => write!(
                f,
                "the playbook's deploy lock {key} (lock_token) is gone: it was let go, or no call kept it alive for its TTL; another change may have run since (nothing was changed)"
            ),
            EtcdLockError::NotJoined {
                key,
                holder: Some(holder),
            } => {
                let who = Holder::parse(holder)
                    .map_or_else(|| format!("{holder:?}"), |h| h.describe(unix_now()));
                write!(
                    f,
                    "the playbook's deploy lock {key} (lock_token) is held by another change now: {who} (nothing was changed)"
                )
            }
        }
    }
}

/// How long a call waited for the lock and for whom.
#[derive(Debug, Clone, PartialEq)]
pub struct Waited {
    /// Seconds the call waited before it had the lock.
    pub seconds: f64,
    /// The record that was in the lock file when the wait began.
    pub holder: Option<Holder>,
}

/// A held lock; dropping it clears the record and releases the lock.
#[derive(Debug)]
pub struct DeployLock {
    file: Flock<File>,
    path: PathBuf,
    /// When the lock was had.
    pub acquired_at: SystemTime,
    /// `Some` when another call held the lock first.
    pub waited: Option<Waited>,
}

impl DeployLock {
    /// The lock file this lock holds (`SV_DIR/.docker-NAME.lock`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lock file while still holding it (after `state=absent` removed the
    /// tree, so none is left behind). A waiter holding the old file notices and retries.
    pub fn remove_file(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        // A waiter reads the record only while the lock is held; an empty file keeps a
        // finished holder from being named by one that reads just before the next
        // holder writes its own.
        let _ = self.file.set_len(0);
    }
}

/// Takes the lock of service `name`, waiting up to `timeout` for another holder, and
/// writes `holder` into it.
pub fn acquire(
    sv_dir: &Path,
    name: &str,
    timeout: Duration,
    holder: &Holder,
) -> Result<DeployLock, LockError> {
    let path = lock_path(sv_dir, name);
    let started = Instant::now();
    let mut waited: Option<Waited> = None;
    let mut last_seen: Option<Holder> = None;
    loop {
        let file = open_lock_file(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                if !still_named_by(&locked, &path)? {
                    continue; // removed by an absent call while we waited
                }
                write_record(&mut locked, holder).map_err(|source| LockError::Io {
                    action: "write",
                    path: path.clone(),
                    source,
                })?;
                if let Some(w) = waited.as_mut() {
                    w.seconds = started.elapsed().as_secs_f64();
                }
                return Ok(DeployLock {
                    file: locked,
                    path,
                    acquired_at: SystemTime::now(),
                    waited,
                });
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                if let Some(seen) = read_record(&mut file) {
                    last_seen = Some(seen);
                }
                if waited.is_none() {
                    waited = Some(Waited {
                        seconds: 0.0,
                        holder: last_seen.clone(),
                    });
                } else if let Some(w) = waited.as_mut().filter(|w| w.holder.is_none()) {
                    w.holder = last_seen.clone();
                }
                let elapsed = started.elapsed();
                if elapsed >= timeout {
                    return Err(LockError::Timeout {
                        path,
                        timeout,
                        holder: last_seen.map(Box::new),
                    });
                }
                std::thread::sleep(RETRY_EVERY.min(timeout - elapsed));
            }
            Err((_, errno)) => {
                return Err(LockError::Io {
                    action: "lock",
                    path,
                    source: std::io::Error::from(errno),
                })
            }
        }
    }
}

/// Opens (creating, 0600 whatever the umask) the lock file; never follows a link.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let io = |action, source| LockError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    // The first call of a host makes sv_dir; the lock is taken before the tree is
    // written, so it makes the directory itself (the mode every rundock dir has).
    if let Some(dir) = path.parent() {
        rundock_spec::files::create_dirs(dir, rundock_spec::files::DIR_MODE)
            .map_err(|e| io("create the directory of", e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io("open", e))?;
    let meta = file.metadata().map_err(|e| io("inspect", e))?;
    if meta.permissions().mode() & 0o7777 != LOCK_FILE_MODE {
        file.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE))
            .map_err(|e| io("chmod", e))?;
    }
    Ok(file)
}

fn still_named_by(file: &File, path: &Path) -> Result<bool, LockError> {
    let held = file.metadata().map_err(|source| LockError::Io {
        action: "inspect",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match std::fs::symlink_metadata(path) {
        Ok(named) => named.dev() == held.dev() && named.ino() == held.ino(),
        Err(_) => false,
    })
}

fn write_record(file: &mut File, holder: &Holder) -> std::io::Result<()> {
    let mut text = serde_json::to_string(holder).map_err(std::io::Error::other)?;
    text.push('\n');
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())
}

fn read_record(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    Holder::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Holder {
        Holder {
            pid: 4242,
            user: "root".into(),
            sudo_user: Some("alice".into()),
            controller: Some("10.0.0.5".into()),
            host: "web1".into(),
            since: 1_796_622_124,
            action: "state=enabled image=app:2".into(),
            token: None,
        }
    }

    #[test]
    fn the_record_round_trips_through_its_json() {
        let holder = sample();
        let text = serde_json::to_string(&holder).unwrap();
        assert_eq!(Holder::parse(&text), Some(holder));
    }

    #[test]
    fn unknown_parts_are_left_out_of_the_record() {
        let holder = Holder {
            sudo_user: None,
            controller: None,
            ..sample()
        };
        let value: serde_json::Value = serde_json::to_value(&holder).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["action", "host", "pid", "since", "user"]);
        assert_eq!(Holder::parse(&value.to_string()), Some(holder));
    }

    #[test]
    fn an_empty_or_torn_record_is_no_holder() {
        assert_eq!(Holder::parse(""), None);
        let text = serde_json::to_string(&sample()).unwrap();
        assert_eq!(Holder::parse(&text[..text.len() / 2]), None);
    }

    #[test]
    fn the_description_names_pid_user_controller_host_and_since() {
        let line = sample().describe(1_796_622_124 + 7);
        assert_eq!(
            line,
            "pid 4242 (user root via sudo from alice) from controller 10.0.0.5 on web1, \
             since 2026-12-07T05:42:04Z (7 s ago), doing state=enabled image=app:2"
        );
    }

    #[test]
    fn the_controller_is_the_ssh_client_address() {
        assert_eq!(
            controller_from(Some("10.1.2.3 52144 10.1.2.9 22")),
            Some("10.1.2.3".into())
        );
        assert_eq!(
            controller_from(Some("fe80::1 52144 fe80::2 22")),
            Some("fe80::1".into())
        );
        assert_eq!(controller_from(Some("garbage")), None);
        assert_eq!(controller_from(None), None);
    }

    #[test]
    fn a_second_taker_times_out_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "app", Duration::ZERO, &sample()).unwrap();
        assert!(first.waited.is_none());
        let err = acquire(
            dir.path(),
            "app",
            Duration::from_millis(200),
            &Holder::current("x"),
        )
        .unwrap_err();
        match &err {
            LockError::Timeout { holder, .. } => {
                assert_eq!(holder.as_deref(), Some(&sample()))
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("pid 4242 (user root"), "{err}");
        drop(first);
        let second = acquire(dir.path(), "app", Duration::ZERO, &Holder::current("y")).unwrap();
        assert!(second.waited.is_none());
    }

    #[test]
    fn the_lock_file_is_made_0600_whatever_it_was() {
        // The umask case is covered where the module runs in a process of its own; here a
        // file left with another mode shows that the mode is set, not inherited.
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "app");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let lock = acquire(dir.path(), "app", Duration::ZERO, &sample()).unwrap();
        let mode = std::fs::metadata(lock.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, LOCK_FILE_MODE);
    }

    #[test]
    fn a_released_lock_leaves_no_record_and_a_removed_one_is_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "app");
        let lock = acquire(dir.path(), "app", Duration::ZERO, &sample()).unwrap();
        assert_eq!(
            Holder::parse(&std::fs::read_to_string(&path).unwrap()),
            Some(sample())
        );
        drop(lock);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");

        let held = acquire(dir.path(), "app", Duration::ZERO, &sample()).unwrap();
        let waiter = std::thread::spawn({
            let dir = dir.path().to_path_buf();
            move || acquire(&dir, "app", Duration::from_secs(10), &Holder::current("w"))
        });
        std::thread::sleep(Duration::from_millis(200));
        held.remove_file().unwrap();
        drop(held);
        let next = waiter.join().unwrap().unwrap();
        assert!(next.waited.is_some());
        assert!(path.exists(), "the waiter made a new lock file");
        assert!(still_named_by(&next.file, &path).unwrap());
    }
}
