//! Keeps the in-memory [`RecordSet`] equal to etcd: one list, then a watch from the listed
//! revision that applies every change as it comes (so a deleted key stops answering at
//! once, not after a poll). On errors it watches again from the last revision seen, or
//! lists again when etcd has compacted that history, backing off while etcd is away.
//! While etcd is unreachable the last known records keep answering: on a single host a
//! short etcd outage should not take name resolution down with it.
//!
//! A key that cannot be taken (its key or value is not text, not SkyDNS JSON, or fails
//! the record rule of [`rundock_spec::skydns::decode_record`]) is skipped: whatever was
//! held at it goes, it is logged once per key and revision (a relist does not log it
//! again), and the list or watch goes on with the next key. One such key once made
//! the whole range fail, so a fresh start answered SERVFAIL for the whole zone, and
//! made the watch resume from the same revision forever.
//!
//! Records answer from the moment the list (or their watch event) arrives. The TTL of a
//! v3 lease they hang on is looked up only when a query first finds one of its records,
//! beside the answer, [`LEASE_LOOKUPS_IN_FLIGHT`] at a time, never in the way of the
//! list or the watch. etcd has no call that returns many leases' TTLs, and looking up
//! all 50,000 after a start kept etcd busy for half a minute and cost a third of the
//! queries per second; asked on demand, the work follows the names clients use. Until
//! a lease's TTL is known an answer carries the record's own `ttl` (the announcer always
//! writes one, equal to or below the lease's), which is what bounds it anyway.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rundock_etcd::{Client, EtcdApi, EtcdError, Event, Undecodable};
use rundock_runtime::Backoff;
use tokio::sync::{mpsc, watch};

use crate::records::{LeaseTtl, RecordSet};

/// The records, whether they have been loaded at least once, and the change signal.
#[derive(Debug)]
pub struct State {
    /// The records as of the last list or watch event.
    pub records: RecordSet,
    /// False until the first list succeeded: until then queries get SERVFAIL rather
    /// than a false NXDOMAIN.
    pub loaded: bool,
    generation: watch::Sender<u64>,
}

impl Default for State {
    fn default() -> State {
        State::new(RecordSet::default())
    }
}

impl State {
    /// Not loaded yet, holding `records`.
    pub fn new(records: RecordSet) -> State {
        State {
            records,
            loaded: false,
            generation: watch::channel(0).0,
        }
    }

    /// A receiver that sees a new generation number after every change applied to
    /// `records`: after each (re)list and after each batch of watch events. Lease TTLs
    /// learnt later do not count as changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Announces a change to subscribers (there may be none).
    fn changed(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }
}

/// The state shared by the etcd follower (writer) and the responders (readers).
pub type Shared = Arc<RwLock<State>>;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Lease TTL lookups in flight at once: enough to learn 50,000 leases in seconds
/// without crowding out etcd's other clients.
pub const LEASE_LOOKUPS_IN_FLIGHT: usize = 16;
/// A lease lookup that fails is tried this often in all, a second apart; after that the
/// lease's records keep answering with their own `ttl`.
const LEASE_LOOKUP_ATTEMPTS: u32 = 3;

/// Where queries request lease TTL lookups.
type LeaseQueue = mpsc::UnboundedSender<i64>;

/// Runs forever, keeping `shared` current with the keys under `prefix`.
pub async fn keep_fresh(client: Client, prefix: String, shared: Shared) {
    let (queue, lookups) = mpsc::unbounded_channel();
    tokio::join!(
        follow(&client, &prefix, &shared, queue),
        look_up_leases(&client, &shared, lookups)
    );
}

async fn follow(client: &Client, prefix: &str, shared: &Shared, queue: LeaseQueue) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    loop {
        let mut fresh = RecordSet::new(prefix);
        // What was reported before this list, so a relist does not report it again.
        let reported: HashMap<String, u64> = shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .skipped()
            .clone();
        let listed = client
            .list_each(prefix, &mut |entry| match entry {
                Ok(entry) => {
                    if let Err(e) = fresh.insert_json_leased(
                        entry.key,
                        entry.value.as_bytes(),
                        entry.ttl,
                        entry.lease,
                    ) {
                        skipped(&mut fresh, &reported, entry.key, entry.mod_revision, &e);
                    }
                }
                Err(undecodable) => {
                    let Undecodable {
                        key,
                        mod_revision,
                        reason,
                        ..
                    } = &undecodable;
                    skipped(&mut fresh, &reported, key, *mod_revision, reason);
                }
            })
            .await;
        let revision = match listed {
            Ok(revision) => revision,
            Err(e) => {
                eprintln!("rundock dns: listing {prefix} failed: {e}; retrying");
                backoff.sleep().await;
                continue;
            }
        };
        fresh.revision = revision;
        let mut after = revision;
        replace_all(shared, fresh, &queue);
        backoff.reset();
        // Watch until the history we need is gone; then list again.
        loop {
            match watch_once(client, prefix, after, shared).await {
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
    let mut stream = match client.watch_keys(prefix, after).await {
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
            Ok(event) => {
                // Everything that arrived with it goes in under the same lock.
                let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
                apply(&mut state, &event, v2);
                while let Some(event) = stream.try_next() {
                    apply(&mut state, &event, v2);
                }
                state.changed();
            }
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

/// Replaces every record with `fresh`'s, keeping the lease TTLs already known; the
/// others are requested on `queue` as queries find them.
pub fn replace_all(shared: &Shared, mut fresh: RecordSet, queue: &LeaseQueue) {
    let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
    fresh.request_lease_ttls(queue.clone());
    fresh.adopt_lease_ttls(&state.records);
    state.records = fresh;
    state.loaded = true;
    state.changed();
}

/// Applies one watch event. A v2 delete may be a whole directory (or its expiry).
pub fn apply(state: &mut State, event: &Event, v2: bool) {
    let records = &mut state.records;
    records.revision = records.revision.max(event.revision());
    match event {
        Event::Put(entry) => {
            if let Err(e) = records.insert_json_leased(
                &entry.key,
                entry.value.as_bytes(),
                entry.ttl,
                entry.lease,
            ) {
                skipped(records, &HashMap::new(), &entry.key, entry.mod_revision, &e);
            }
        }
        Event::Delete { key, .. } if v2 => {
            records.remove_tree(key);
        }
        Event::Delete { key, .. } => {
            records.remove(key);
        }
        Event::Undecodable(u) if u.deleted => records.forget_skipped(&u.key),
        Event::Undecodable(u) => {
            if u.key_is_text {
                records.remove(&u.key);
            }
            skipped(records, &HashMap::new(), &u.key, u.mod_revision, &u.reason);
        }
    }
}

/// Notes that `key` was skipped at `revision` and logs why, unless it was reported
/// at that revision already (in `records`, or in `reported` before a relist).
fn skipped(
    records: &mut RecordSet,
    reported: &HashMap<String, u64>,
    key: &str,
    revision: u64,
    why: &dyn std::fmt::Display,
) {
    let new = records.note_skipped(key, revision);
    if new && reported.get(&key.to_ascii_lowercase()) != Some(&revision) {
        // {:?}: a key may hold a newline, and must not forge a log line of its own; and
        // a key may be as long as etcd allows.
        let shown: String = key.chars().take(200).collect();
        eprintln!("rundock dns: skipping {shown:?} (revision {revision}): {why}");
    }
}

/// Looks up the TTLs of queued leases, a bounded number at a time, and records them.
async fn look_up_leases(client: &Client, shared: &Shared, mut queue: mpsc::UnboundedReceiver<i64>) {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            id = queue.recv(), if open && in_flight.len() < LEASE_LOOKUPS_IN_FLIGHT => match id {
                // A lease whose records went while it waited needs no lookup.
                Some(id) if in_use(shared, id) => in_flight.push(look_up(client.clone(), id)),
                Some(_) => {}
                None => open = false,
            },
            Some((id, ttl)) = in_flight.next(), if !in_flight.is_empty() => {
                let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
                state.records.set_lease_ttl(id, ttl);
            }
            else => return,
        }
    }
}

fn in_use(shared: &Shared, id: i64) -> bool {
    let state = shared.read().unwrap_or_else(|e| e.into_inner());
    state.records.lease_ttl(id).is_some()
}

async fn look_up(client: Client, id: i64) -> (i64, LeaseTtl) {
    let mut attempt = 1;
    loop {
        match client.lease_ttl(id).await {
            Ok(Some(ttl)) => return (id, LeaseTtl::Known(ttl.granted)),
            Ok(None) => return (id, LeaseTtl::Gone),
            Err(e) if attempt < LEASE_LOOKUP_ATTEMPTS => {
                eprintln!("rundock dns: looking up lease {id:x}: {e}; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                eprintln!("rundock dns: looking up lease {id:x}: {e}; its records answer with their own ttl");
                return (id, LeaseTtl::Unknown);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rundock_etcd::Entry as KeyValue;

    fn kv(key: &str, value: &str, lease: Option<i64>, revision: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            ttl: None,
            lease,
            mod_revision: revision,
        }
    }

    fn shared() -> Shared {
        Arc::new(RwLock::new(State::default()))
    }

    fn queued(rx: &mut mpsc::UnboundedReceiver<i64>) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
        }
        ids.sort();
        ids
    }

    #[test]
    fn a_list_replaces_everything_keeps_known_lease_ttls_and_signals() {
        let shared = shared();
        let mut changes = shared.read().unwrap().subscribe();
        let (queue, mut rx) = mpsc::unbounded_channel();
        let value = r#"{"host":"10.0.0.1"}"#;
        let mut first = RecordSet::new("/skydns");
        first
            .insert_json_leased("/skydns/x/old", value.as_bytes(), None, Some(1))
            .unwrap();
        first
            .insert_json_leased("/skydns/x/a", value.as_bytes(), None, Some(1))
            .unwrap();
        replace_all(&shared, first, &queue);
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 1);
        assert_eq!(queued(&mut rx), Vec::<i64>::new(), "no query, no lookup");
        assert_eq!(shared.read().unwrap().records.lookup("a.x").len(), 1);
        assert_eq!(queued(&mut rx), [1], "a query asks for its lease");
        shared
            .write()
            .unwrap()
            .records
            .set_lease_ttl(1, LeaseTtl::Known(20));

        let mut fresh = RecordSet::new("/skydns");
        fresh.revision = 7;
        fresh
            .insert_json_leased("/skydns/x/a", value.as_bytes(), None, Some(1))
            .unwrap();
        fresh
            .insert_json_leased("/skydns/x/b", value.as_bytes(), None, Some(2))
            .unwrap();
        replace_all(&shared, fresh, &queue);
        assert_eq!(*changes.borrow_and_update(), 2);
        let state = shared.read().unwrap();
        assert_eq!(state.records.lookup("x").len(), 2);
        assert_eq!(
            queued(&mut rx),
            [2],
            "only the lease not known yet is looked up"
        );
        assert!(state.loaded);
        assert_eq!(state.records.revision, 7);
        assert_eq!(state.records.len(), 2);
        assert_eq!(state.records.lease_ttl(1), Some(LeaseTtl::Known(20)));
        assert!(state.records.get("/skydns/x/old").is_none());
    }

    #[test]
    fn events_put_and_delete_keys_and_v2_deletes_whole_directories() {
        let shared = shared();
        let mut state = shared.write().unwrap();
        for (key, lease) in [
            ("/skydns/x/a", Some(5)),
            ("/skydns/x/a/b", Some(5)),
            ("/skydns/x/c", None),
        ] {
            apply(
                &mut state,
                &Event::Put(kv(key, r#"{"host":"10.0.0.1"}"#, lease, 3)),
                false,
            );
        }
        assert_eq!(state.records.lease_count(), 1);
        apply(
            &mut state,
            &Event::Put(kv("/skydns/x/bad", "{", None, 4)),
            false,
        );
        assert_eq!(state.records.len(), 3);
        // A value that is not text takes the record at its key away and is noted once.
        let undecodable = |key: &str, deleted| {
            Event::Undecodable(Undecodable {
                key: key.into(),
                key_is_text: true,
                deleted,
                mod_revision: 5,
                reason: "kv.value: not UTF-8".into(),
            })
        };
        apply(&mut state, &undecodable("/skydns/x/c", false), false);
        assert_eq!(state.records.len(), 2);
        assert!(state.records.get("/skydns/x/c").is_none());
        assert_eq!(state.records.skipped().get("/skydns/x/c"), Some(&5));
        assert!(!state.records.note_skipped("/skydns/x/c", 5));
        apply(&mut state, &undecodable("/skydns/x/c", true), false);
        assert!(state.records.skipped().get("/skydns/x/c").is_none());
        apply(
            &mut state,
            &Event::Put(kv("/skydns/x/c", r#"{"host":"10.0.0.1"}"#, None, 6)),
            false,
        );
        assert_eq!(state.records.len(), 3);
        let delete = |key: &str| Event::Delete {
            key: key.into(),
            revision: 9,
        };
        // v3: a key is only itself.
        apply(&mut state, &delete("/skydns/x/a"), false);
        assert_eq!(state.records.len(), 2);
        // v2: a directory takes its subtree with it, and the lease goes with its records.
        apply(&mut state, &delete("/skydns/x"), true);
        assert!(state.records.is_empty());
        assert_eq!(state.records.lease_count(), 0);
        assert_eq!(state.records.revision, 9);
    }
}
