//! Keeps the in-memory [`RecordSet`] equal to etcd: one list, then a watch from the listed
//! revision that applies every change as it comes (so a deleted key stops answering at
//! once, not after a poll). On errors it watches again from the last revision seen, or
//! lists again when etcd has compacted that history, backing off while etcd is away.
//! While etcd is unreachable the last known records keep answering: on a single host a
//! short etcd outage should not take name resolution down with it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rundock_etcd::{Client, EtcdApi, EtcdError, Event, Snapshot};

use crate::records::RecordSet;

/// The records and whether they have been loaded at least once.
#[derive(Debug, Default)]
pub struct State {
    pub records: RecordSet,
    /// False until the first list succeeded: until then queries get SERVFAIL rather
    /// than a false NXDOMAIN.
    pub loaded: bool,
    /// Bumped after every change to `records`, so consumers wake on changes instead of
    /// polling (see [`State::subscribe`]).
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
}

impl State {
    /// A receiver that sees a new generation number after every change applied to
    /// `records`: after each list and after each watch event.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }
}

pub type Shared = Arc<RwLock<State>>;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs forever, keeping `shared` current with the keys under `prefix`.
pub async fn keep_fresh(client: Client, prefix: String, shared: Shared) {
    let mut backoff = Backoff::new();
    loop {
        let snapshot = match client.list(&prefix).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                eprintln!("rundock dns: listing {prefix} failed: {e}; retrying");
                backoff.sleep().await;
                continue;
            }
        };
        let mut after = snapshot.revision;
        replace_all(&shared, &prefix, snapshot);
        backoff.reset();
        // Watch until the history we need is gone; then list again.
        loop {
            match watch_once(&client, &prefix, after, &shared).await {
                WatchEnd::Relist => break,
                WatchEnd::Resume { revision, error } => {
                    after = revision;
                    if let Some(e) = error {
                        eprintln!("rundock dns: watching {prefix} failed: {e}; resuming");
                        backoff.sleep().await;
                    }
                }
            }
        }
    }
}

enum WatchEnd {
    Relist,
    /// Watch again after `revision`; `error` is worth a log line and a pause.
    Resume {
        revision: u64,
        error: Option<EtcdError>,
    },
}

async fn watch_once(client: &Client, prefix: &str, after: u64, shared: &Shared) -> WatchEnd {
    let mut stream = match client.watch(prefix, after).await {
        Ok(stream) => stream,
        Err(EtcdError::Compacted(_)) => return WatchEnd::Relist,
        Err(e) => {
            return WatchEnd::Resume {
                revision: after,
                error: Some(e),
            }
        }
    };
    let v2 = client.api() == EtcdApi::V2;
    loop {
        match stream.next().await {
            Ok(event) => apply(shared, &event, v2),
            Err(EtcdError::Compacted(_)) => return WatchEnd::Relist,
            Err(EtcdError::WatchEnded) => {
                return WatchEnd::Resume {
                    revision: stream.revision().max(after),
                    error: None,
                }
            }
            Err(e) => {
                return WatchEnd::Resume {
                    revision: stream.revision().max(after),
                    error: Some(e),
                }
            }
        }
    }
}

/// Replaces every record with the snapshot's.
pub fn replace_all(shared: &Shared, prefix: &str, snapshot: Snapshot) {
    let mut fresh = RecordSet::new(prefix);
    fresh.revision = snapshot.revision;
    for entry in snapshot.entries {
        if let Err(e) = fresh.insert_json(&entry.key, entry.value.as_bytes(), entry.ttl) {
            eprintln!("rundock dns: ignoring {}: {e}", entry.key);
        }
    }
    let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
    state.records = fresh;
    state.loaded = true;
    state.changed();
}

/// Applies one watch event. A v2 delete may be a whole directory (or its expiry).
pub fn apply(shared: &Shared, event: &Event, v2: bool) {
    let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
    let records = &mut state.records;
    records.revision = records.revision.max(event.revision());
    match event {
        Event::Put(entry) => {
            if let Err(e) = records.insert_json(&entry.key, entry.value.as_bytes(), entry.ttl) {
                eprintln!("rundock dns: ignoring {}: {e}", entry.key);
            }
        }
        Event::Delete { key, .. } if v2 => {
            records.remove_tree(key);
        }
        Event::Delete { key, .. } => {
            records.remove(key);
        }
    }
    state.changed();
}

/// Doubling delay between retries, capped, reset after a success.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(BACKOFF_START)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_START;
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rundock_etcd::Entry as KeyValue;

    fn kv(key: &str, value: &str, ttl: Option<u32>, revision: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            ttl,
            lease: None,
            mod_revision: revision,
        }
    }

    fn shared() -> Shared {
        Arc::new(RwLock::new(State::default()))
    }

    #[test]
    fn a_snapshot_replaces_everything_and_skips_bad_values() {
        let shared = shared();
        shared
            .write()
            .unwrap()
            .records
            .insert("/skydns/x/old", Default::default(), None);
        let snapshot = Snapshot {
            revision: 7,
            entries: vec![
                kv("/skydns/x/a", r#"{"host":"10.0.0.1"}"#, Some(20), 5),
                kv("/skydns/x/bad", "{", None, 6),
            ],
        };
        replace_all(&shared, "/skydns", snapshot);
        let state = shared.read().unwrap();
        assert!(state.loaded);
        assert_eq!(state.records.revision, 7);
        assert_eq!(state.records.len(), 1);
        assert_eq!(state.records.get("/skydns/x/a").unwrap().etcd_ttl, Some(20));
    }

    #[test]
    fn events_put_and_delete_keys_and_v2_deletes_whole_directories() {
        let shared = shared();
        replace_all(&shared, "/skydns", Snapshot::default());
        for key in ["/skydns/x/a", "/skydns/x/a/b", "/skydns/x/c"] {
            apply(
                &shared,
                &Event::Put(kv(key, r#"{"host":"10.0.0.1"}"#, None, 3)),
                false,
            );
        }
        assert_eq!(shared.read().unwrap().records.len(), 3);
        let delete = |key: &str| Event::Delete {
            key: key.into(),
            revision: 9,
        };
        // v3: a key is only itself.
        apply(&shared, &delete("/skydns/x/a"), false);
        assert_eq!(shared.read().unwrap().records.len(), 2);
        // v2: a directory takes its subtree with it.
        apply(&shared, &delete("/skydns/x"), true);
        let state = shared.read().unwrap();
        assert!(state.records.is_empty());
        assert_eq!(state.records.revision, 9);
    }

    #[test]
    fn subscribers_see_a_new_generation_after_each_list_and_event() {
        let shared = shared();
        let mut changes = shared.read().unwrap().subscribe();
        assert!(!changes.has_changed().unwrap());
        replace_all(&shared, "/skydns", Snapshot::default());
        assert!(changes.has_changed().unwrap());
        let first = *changes.borrow_and_update();
        apply(
            &shared,
            &Event::Put(kv("/skydns/x/a", r#"{"host":"10.0.0.1"}"#, None, 3)),
            false,
        );
        assert!(changes.has_changed().unwrap());
        assert!(*changes.borrow_and_update() > first);
    }
}
