//! The deploy lock of an announced service in etcd: one key per service,
//! `/rundock/locks/<domain>/<name>`, created only if absent and alive only while its
//! holder keeps it alive (a v3 lease, or a v2 TTL, of [`LOCK_TTL`] seconds, kept alive
//! every third of it by a thread of the holder). A holder that dies, however it dies,
//! stops keeping it alive, and etcd drops it within the TTL. The value is the holder's
//! record (JSON, written by the caller), which is how a waiter that gives up names it.

use rundock_etcd::{Client, Created, EtcdError, Lease};
use rundock_runtime::current_thread;
use rundock_spec::EtcdSpec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Runtime;

/// Where every service's lock lives, beside (not under) the SkyDNS records, so no DNS
/// reader ever sees one.
pub const LOCK_PREFIX: &str = "/rundock/locks";

/// Seconds a lock outlives its holder. Short, because it is all a dead holder costs the
/// next change; long enough that a keep-alive every third of it survives a slow etcd.
pub const LOCK_TTL: u32 = 15;

/// Seconds a lock held for a whole playbook outlives its last keep-alive: it spans the
/// gaps between the play's module calls (each keeps it alive while it runs), and is
/// what a controller that dies mid-play costs the next rollout.
pub const PLAY_LOCK_TTL: u32 = 60;

/// How often a waiter tries again.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How long an etcd that has not answered once is retried before the call gives up on
/// it. A holder makes a caller wait up to its whole timeout; an etcd that is down must
/// not (the module then keeps the host's lock only, and says so).
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(5);

/// The lock key of service `name` in `domain`.
pub fn lock_key(domain: &str, name: &str) -> String {
    format!("{LOCK_PREFIX}/{}/{name}", domain.trim_end_matches('.'))
}

/// How long a call waited and whose record it saw first.
#[derive(Debug, Clone, PartialEq)]
pub struct Waited {
    /// Seconds from the first try until the lock was had.
    pub seconds: f64,
    /// The lock key's value (the holder's record) when the wait began.
    pub holder: Option<String>,
}

/// Why the lock was not had.
#[derive(Debug, Clone, PartialEq)]
pub enum AcquireError {
    /// Someone held it for all of the timeout; `holder` is the key's value as last read.
    Timeout {
        /// The lock key.
        key: String,
        /// The holder's record; `None` when the key went between the tries and reads.
        holder: Option<String>,
        /// How long the call waited.
        timeout: Duration,
    },
    /// etcd refused or did not answer (until the timeout, for transient errors).
    Etcd {
        /// The lock key.
        key: String,
        /// etcd's error, as [`rundock_etcd::EtcdError`] words it.
        error: String,
    },
}

impl std::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcquireError::Timeout { key, holder, .. } => write!(
                f,
                "etcd key {key} is held by {}",
                holder.as_deref().unwrap_or("(no record)")
            ),
            AcquireError::Etcd { key, error } => {
                write!(f, "cannot take the deploy lock {key} in etcd: {error}")
            }
        }
    }
}

impl std::error::Error for AcquireError {}

/// A held lock. Dropping it lets the key go at once, unless it was
/// [detached](EtcdLock::detach) (a playbook's lock, let go by a later call) or
/// [joined](join) (held by the play, not by this call).
pub struct EtcdLock {
    /// The lock key ([`lock_key`]).
    pub key: String,
    /// Seconds the key outlives its last keep-alive.
    pub ttl: u32,
    /// When this call had the lock (created it, or joined the play's).
    pub acquired_at: SystemTime,
    /// How long the call waited for another holder; `None` when the key was free.
    pub waited: Option<Waited>,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<bool>>,
    keeper: Option<JoinHandle<()>>,
    release_on_drop: bool,
}

impl std::fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLock")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .field("waited", &self.waited)
            .finish()
    }
}

impl EtcdLock {
    /// The key expired under the holder (etcd unreachable for a whole TTL): another
    /// change may have taken it since.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl EtcdLock {
    /// Stops keeping the key alive without letting it go: it lives on for its TTL
    /// after the last keep-alive, for the play's next call to [`join`].
    pub fn detach(mut self) {
        self.release_on_drop = false;
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(self.release_on_drop);
        }
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// A client of `etcd` and a runtime to call it on, for the lock `key`.
fn connect(etcd: &EtcdSpec, key: &str) -> Result<(Client, Runtime), AcquireError> {
    let client = Client::new(etcd).map_err(|e| etcd_error(key, e))?;
    let rt = current_thread().map_err(|e| AcquireError::Etcd {
        key: key.to_string(),
        error: e.to_string(),
    })?;
    Ok((client, rt))
}

/// `error` about the lock `key`.
fn etcd_error(key: &str, error: EtcdError) -> AcquireError {
    AcquireError::Etcd {
        key: key.to_string(),
        error: error.to_string(),
    }
}

/// Takes the lock `key` with `record` as its value, waiting up to `timeout` for a
/// holder to let it go (a `timeout` of 0 tries once).
pub fn acquire(
    etcd: &EtcdSpec,
    key: &str,
    record: &str,
    timeout: Duration,
) -> Result<EtcdLock, AcquireError> {
    acquire_with_ttl(etcd, key, record, timeout, LOCK_TTL)
}

/// [`acquire`] with another TTL (tests).
pub fn acquire_with_ttl(
    etcd: &EtcdSpec,
    key: &str,
    record: &str,
    timeout: Duration,
    ttl: u32,
) -> Result<EtcdLock, AcquireError> {
    let (client, rt) = connect(etcd, key)?;
    let started = Instant::now();
    let mut waited: Option<Waited> = None;
    let mut last_holder: Option<String> = None;
    let mut answered = false;
    loop {
        let attempt = rt.block_on(client.create(key, record, ttl));
        answered |= attempt.is_ok();
        let patience = if answered {
            timeout
        } else {
            timeout.min(UNREACHABLE_AFTER)
        };
        match attempt {
            Ok(Created::Created(lease)) => {
                if let Some(w) = waited.as_mut() {
                    w.seconds = started.elapsed().as_secs_f64();
                }
                drop(rt);
                return Ok(keep(client, key, record, lease, waited, true));
            }
            Ok(Created::Exists(entry)) => {
                last_holder = entry.map(|e| e.value).or(last_holder);
                waited.get_or_insert_with(|| Waited {
                    seconds: 0.0,
                    holder: last_holder.clone(),
                });
            }
            Err(e) if e.is_transient() && started.elapsed() < patience => {}
            Err(e) => return Err(etcd_error(key, e)),
        }
        if started.elapsed() >= timeout {
            return Err(AcquireError::Timeout {
                key: key.to_string(),
                holder: last_holder,
                timeout,
            });
        }
        std::thread::sleep(RETRY_EVERY.min(timeout.saturating_sub(started.elapsed())));
    }
}

/// Starts the thread that keeps the key alive until the lock is dropped, then lets it
/// go.
fn keep(
    client: Client,
    key: &str,
    record: &str,
    lease: Lease,
    waited: Option<Waited>,
    release_on_drop: bool,
) -> EtcdLock {
    let lost = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = mpsc::channel::<bool>();
    let every = Duration::from_secs(u64::from(lease.ttl.max(3)) / 3);
    let (key_owned, record_owned, lost_flag) = (key.to_string(), record.to_string(), lost.clone());
    let ttl = lease.ttl;
    let keeper = std::thread::spawn(move || {
        let Ok(rt) = current_thread() else {
            lost_flag.store(true, Ordering::Relaxed);
            return;
        };
        let beat = || match rt.block_on(client.keep_alive(&lease, &key_owned, &record_owned)) {
            Ok(true) => {}
            Ok(false) => lost_flag.store(true, Ordering::Relaxed),
            // Retried at the next beat; the TTL covers two misses.
            Err(EtcdError::Unreachable { .. }) | Err(_) => {}
        };
        let release = loop {
            match stopped.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => beat(),
                Ok(release) => break release,
                Err(mpsc::RecvTimeoutError::Disconnected) => break true,
            }
        };
        if release {
            let _ = rt.block_on(client.release(&lease, &key_owned, &record_owned));
        } else {
            // Left for a later call: its TTL counts from now, not from the last beat.
            beat();
        }
    });
    EtcdLock {
        key: key.to_string(),
        ttl,
        acquired_at: SystemTime::now(),
        waited,
        lost,
        stop: Some(stop),
        keeper: Some(keeper),
        release_on_drop,
    }
}

/// The `token` field of a holder's record (a playbook's lock carries one).
fn token_of(record: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(record)
        .ok()?
        .get("token")?
        .as_str()
        .map(str::to_string)
}

/// What [`join`] found.
#[derive(Debug)]
pub enum Joined {
    /// The key holds `token`: kept alive while the returned lock lives, not let go.
    Held(EtcdLock),
    /// The key is gone (the play's lock expired or was let go).
    Gone,
    /// Another holder's record.
    Other(String),
}

/// For a call of a play that holds `key` with `token`: keeps the play's key alive while
/// the call runs (and renews its TTL as the call ends) without letting it go.
pub fn join(etcd: &EtcdSpec, key: &str, token: &str, ttl: u32) -> Result<Joined, AcquireError> {
    let (client, rt) = connect(etcd, key)?;
    let entry = rt
        .block_on(client.get(key))
        .map_err(|e| etcd_error(key, e))?;
    drop(rt);
    let Some(entry) = entry else {
        return Ok(Joined::Gone);
    };
    if token_of(&entry.value).as_deref() != Some(token) {
        return Ok(Joined::Other(entry.value));
    }
    let lease = Lease {
        id: entry.lease,
        ttl,
    };
    Ok(Joined::Held(keep(
        client,
        key,
        &entry.value,
        lease,
        None,
        false,
    )))
}

/// Lets the play's `key` go if it still holds `token`: `true` when it did.
pub fn release(etcd: &EtcdSpec, key: &str, token: &str) -> Result<bool, AcquireError> {
    let (client, rt) = connect(etcd, key)?;
    rt.block_on(async {
        let Some(entry) = client.get(key).await? else {
            return Ok(false);
        };
        if token_of(&entry.value).as_deref() != Some(token) {
            return Ok(false);
        }
        let lease = Lease {
            id: entry.lease,
            ttl: 0,
        };
        client.release(&lease, key, &entry.value).await?;
        Ok(true)
    })
    .map_err(|e: EtcdError| etcd_error(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_domain_and_service_under_the_lock_prefix() {
        assert_eq!(
            lock_key("s.example.com.", "web"),
            "/rundock/locks/s.example.com/web"
        );
    }
}
