//! A small etcd client for SkyDNS records, shared by the announcer (write side) and the
//! DNS responder (read side).
//!
//! It speaks etcd v3 through the JSON gateway (`/v3/...`, etcd 3.4+) and, as the legacy
//! path, the v2 keys API (`/v2/keys`, etcd ≤ 3.5 with `--enable-v2`). Which one is
//! [`rundock_spec::EtcdSpec::api`]. Endpoints are tried in order with failover, TLS
//! uses the spec's CA and client certificate, and a username/password becomes a v3
//! token (`Authorization` header, renewed when refused) or v2 basic auth.
//!
//! # API
//!
//! ```text
//! Client::new(&EtcdSpec) -> Result<Client, EtcdError>          (cheap to clone)
//! Client::api(&self) -> EtcdApi
//! // write side
//! Client::announce(&self, key, value, ttl) -> Result<Lease, EtcdError>
//! Client::refresh(&self, &mut Lease, key, value, ttl) -> Result<Refreshed, EtcdError>
//! Client::withdraw(&self, Option<&Lease>, key) -> Result<(), EtcdError>
//! Client::revoke(&self, &Lease) -> Result<(), EtcdError>
//! // read side
//! Client::list(&self, prefix) -> Result<Snapshot, EtcdError>
//! Client::list_each(&self, prefix, &mut FnMut(Result<EntryRef, Undecodable>)) -> Result<u64, EtcdError>
//! Client::lease_ttl(&self, id) -> Result<Option<LeaseTtl>, EtcdError>
//! Client::get(&self, key) -> Result<Option<Entry>, EtcdError>
//! Client::watch(&self, prefix, after) -> Result<WatchStream, EtcdError>
//! Client::watch_keys(&self, prefix, after) -> Result<WatchStream, EtcdError>
//! // locks (create-if-absent under a TTL)
//! Client::create(&self, key, value, ttl) -> Result<Created, EtcdError>
//! Client::keep_alive(&self, &Lease, key, value) -> Result<bool, EtcdError>
//! Client::release(&self, &Lease, key, value) -> Result<(), EtcdError>
//! // append-only logs
//! Client::put(&self, key, value) -> Result<(), EtcdError>
//! Client::newest(&self, prefix, limit) -> Result<Vec<Entry>, EtcdError>
//! WatchStream::next(&mut self) -> Result<Event, EtcdError>
//! WatchStream::revision(&self) -> u64
//! ```
//!
//! * **announce**: v3 grants a lease of `ttl` seconds and puts the key with it; v2 puts
//!   with `?ttl=`. The returned [`Lease`] is what refresh and withdraw take.
//! * **refresh**: v3 sends one keep-alive (the value is not rewritten, so watchers are
//!   not woken); v2 puts `ttl` with `refresh=true&prevExist=true` (no watch event
//!   either). If the lease or key is gone (etcd restarted from an old snapshot, the TTL
//!   ran out while etcd was unreachable), it announces again, replaces `*lease` and
//!   returns [`Refreshed::Reannounced`].
//! * **withdraw**: deletes the key, then revokes the lease (v3). A key or lease that is
//!   already gone is success.
//! * **revoke**: revokes a lease only (after a record was put again under a new one,
//!   which replaces the value without a moment of absence).
//! * **list**: every key equal to `prefix` or below it as a path (`prefix/...`; a
//!   sibling like `prefix-x` is not included; a trailing `/` on `prefix` is ignored), with
//!   values, the remaining TTL (v3: one `lease/timetolive` per distinct lease, 16 in
//!   flight; v2: the node's `ttl`) and the store revision (v3 header revision, v2
//!   `X-Etcd-Index`).
//! * **list_each**: the same keys handed to a callback one at a time, borrowed from the
//!   decoded response, without TTL lookups (v3 entries carry their lease ID, v2 their
//!   TTL); returns the revision. For readers of many keys: nothing is kept but what the
//!   callback keeps, and no round trip per lease delays the result.
//! * **Keys that are not text**: etcd keys and values are bytes; an entry whose key or
//!   value is not UTF-8 is an [`Undecodable`] of its own (`list_each` hands it over,
//!   `list` puts it in [`Snapshot::undecodable`], a watch yields
//!   [`Event::Undecodable`] at its revision), never an error of the whole range or
//!   watch message: one such key must not stop a reader from following the others.
//! * **lease_ttl**: one v3 lease's remaining and granted TTL (`None` once it is gone).
//! * **watch**: changes under `prefix` (same path rule) after revision `after` (from a
//!   [`Snapshot`]; 0 = from now). v3 is one streaming `POST /v3/watch`; v2 long-polls
//!   `?wait=true&recursive=true&waitIndex=`. On [`EtcdError::Compacted`] list again; on
//!   [`EtcdError::WatchEnded`] or a transient error, watch again from
//!   [`WatchStream::revision`] (nothing is lost in between). A v3 put under a lease
//!   not seen before costs one `lease/timetolive` (cached per stream, at most
//!   4,096 leases).
//! * **watch_keys**: the same stream without any lease lookup: v3 puts carry `lease`
//!   and no `ttl`, for callers that resolve lease TTLs themselves, off the event path.
//!
//! * **create**: puts `key` only if it does not exist, alive for `ttl` seconds unless
//!   kept alive (v3: a lease and one transaction comparing `create_revision` with 0;
//!   v2: `prevExist=false`); otherwise returns the existing entry. **keep_alive** extends
//!   it and says `false` once it is gone (v2: only while it still holds `value`);
//!   **release** deletes it (v3: revokes the lease; v2: deletes if it holds `value`).
//! * **put** / **newest**: a key without lease; the `limit` greatest keys below
//!   `prefix/`, greatest first (v3: one range, sorted descending, limited, so a long log
//!   costs `limit` keys; v2 reads the whole directory).
//!
//! Every operation above is one method of a crate-private `Backend` trait with two
//! implementations, the v3 gateway (`v3.rs`) and the v2 keys API (`v2.rs`); `Client`
//! picks one by [`Client::api`] on each call, and what both protocols share (put a
//! record again when keeping it alive failed, collect a list into a [`Snapshot`], find
//! one key) is written once over the trait. Watches (`watch.rs`) keep a stream's state
//! between calls and so are their own type.
//!
//! Errors are typed ([`EtcdError`]) so callers can tell "retry later" from "fix the
//! configuration"; see [`EtcdError::is_transient`].

#![warn(missing_docs)]

mod backend;
mod error;
mod messages;
mod transport;
mod v2;
mod v3;
mod watch;

pub use error::EtcdError;
pub use rundock_spec::EtcdApi;
pub use watch::WatchStream;

use backend::Backend;
use rundock_spec::EtcdSpec;
use std::sync::Arc;
use transport::Transport;
use v2::V2;
use v3::V3;

/// Runs `$call` on the back-end of `$client`'s configured API, bound to `$backend`.
macro_rules! dispatch {
    ($client:expr, $backend:ident => $call:expr) => {
        match $client.api() {
            EtcdApi::V3 => {
                let $backend = &V3(&$client.transport);
                $call.await
            }
            EtcdApi::V2 => {
                let $backend = &V2(&$client.transport);
                $call.await
            }
        }
    };
}

/// An etcd client over the endpoints of one [`EtcdSpec`]. Clones share connections.
#[derive(Clone)]
pub struct Client {
    transport: Arc<Transport>,
}

/// What keeps an announced key alive: a v3 lease, or (v2) the key's own TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The v3 lease ID; `None` with v2, where the TTL lives on the key.
    pub id: Option<i64>,
    /// Seconds granted.
    pub ttl: u32,
}

/// What [`Client::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The lease (v3) or key TTL (v2) was extended; the value was not rewritten.
    KeptAlive,
    /// The lease or key was gone: the key was put again with a new lease.
    Reannounced,
}

/// What [`Client::create`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key was made, alive while `Lease` is kept alive ([`Client::keep_alive`]).
    Created(Lease),
    /// The key exists: its holder's entry (`None` when it went between the two reads).
    Exists(Option<Entry>),
}

/// One key as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full key, as etcd stores it (`/skydns/com/example/web/node-1`).
    pub key: String,
    /// The value, UTF-8 text (a SkyDNS record's JSON, a lock holder's record).
    pub value: String,
    /// Seconds left before the key expires; `None` for a key without lease or TTL.
    pub ttl: Option<u32>,
    /// The v3 lease the key is attached to (`None`: no lease, or v2).
    pub lease: Option<i64>,
    /// The revision (v3 `mod_revision`, v2 `modifiedIndex`) of the key's last change.
    pub mod_revision: u64,
}

/// One key as [`Client::list_each`] hands it over, borrowed for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The full key, borrowed from the decoded response.
    pub key: &'a str,
    /// The value, UTF-8 text borrowed from the decoded response.
    pub value: &'a str,
    /// The v3 lease the key is attached to.
    pub lease: Option<i64>,
    /// v2 only: seconds left before the key expires (v3 leaves it to [`Client::lease_ttl`]).
    pub ttl: Option<u32>,
    /// The revision (v3 `mod_revision`, v2 `modifiedIndex`) of the key's last change.
    pub mod_revision: u64,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            key: self.key.to_string(),
            value: self.value.to_string(),
            ttl: self.ttl,
            lease: self.lease,
            mod_revision: self.mod_revision,
        }
    }
}

/// An etcd key whose key or value is not UTF-8 text. Readers skip it; it is reported so
/// that they can drop what they held at the key and say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The key, with bytes that are not UTF-8 shown as U+FFFD.
    pub key: String,
    /// The key itself is text, so `key` is exact (and what a reader held there is stale).
    pub key_is_text: bool,
    /// The change was a delete (watch only).
    pub deleted: bool,
    /// The revision of the change (v3 `mod_revision`).
    pub mod_revision: u64,
    /// What is wrong, naming the part: `kv.value: not UTF-8: ...`.
    pub reason: String,
}

/// A v3 lease's TTL, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl {
    /// Left before it expires unless kept alive.
    pub remaining: u32,
    /// Granted (what every keep-alive restores).
    pub granted: u32,
}

/// All keys under a prefix at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The store revision (v3) or index (v2) the snapshot was read at: pass it to
    /// [`Client::watch`] to see every later change.
    pub revision: u64,
    /// The keys that are text, in key order.
    pub entries: Vec<Entry>,
    /// Keys under the prefix whose key or value is not text, left out of `entries`.
    pub undecodable: Vec<Undecodable>,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was created or its value changed. For v3 `ttl` is the lease's granted TTL.
    Put(Entry),
    /// A key was deleted or expired. With v2 the key may be a directory: everything
    /// below it is gone too.
    Delete {
        /// The key (or v2 directory) that went.
        key: String,
        /// The revision of the delete (v3) or the store index of it (v2).
        revision: u64,
    },
    /// A key was put or deleted whose key or value is not text: nothing to take, but
    /// what was held at the key (if it is text) is gone.
    Undecodable(Undecodable),
}

impl Event {
    /// The key the change is about (lossy for an undecodable key).
    pub fn key(&self) -> &str {
        match self {
            Event::Put(entry) => &entry.key,
            Event::Delete { key, .. } => key,
            Event::Undecodable(u) => &u.key,
        }
    }

    /// The revision the change happened at: a watch started after it does not see it.
    pub fn revision(&self) -> u64 {
        match self {
            Event::Put(entry) => entry.mod_revision,
            Event::Delete { revision, .. } => *revision,
            Event::Undecodable(u) => u.mod_revision,
        }
    }
}

impl Client {
    /// A client for `spec`'s endpoints, TLS files and credentials. Reads the TLS files
    /// now; does not contact etcd.
    pub fn new(spec: &EtcdSpec) -> Result<Client, EtcdError> {
        Ok(Client {
            transport: Arc::new(Transport::new(spec)?),
        })
    }

    /// The protocol every call of this client speaks (the spec's `api`).
    pub fn api(&self) -> EtcdApi {
        self.transport.api
    }

    /// The endpoint requests currently go to (for log lines).
    pub fn current_endpoint(&self) -> &str {
        self.transport.current_endpoint()
    }

    /// Puts `key` = `value`, expiring after `ttl` seconds unless refreshed.
    pub async fn announce(&self, key: &str, value: &str, ttl: u32) -> Result<Lease, EtcdError> {
        dispatch!(self, b => b.announce(key, value, ttl))
    }

    /// Extends `lease` by its TTL; re-announces (replacing `*lease`) if it is gone.
    pub async fn refresh(
        &self,
        lease: &mut Lease,
        key: &str,
        value: &str,
        ttl: u32,
    ) -> Result<Refreshed, EtcdError> {
        dispatch!(self, b => backend::refresh(b, lease, key, value, ttl))
    }

    /// Deletes `key` and revokes `lease` (v3). Already gone is success.
    pub async fn withdraw(&self, lease: Option<&Lease>, key: &str) -> Result<(), EtcdError> {
        dispatch!(self, b => b.withdraw(lease, key))
    }

    /// Revokes `lease` (v3; a no-op for v2) without deleting its keys first: for
    /// replacing a record, where the key was just put again under a new lease. Keys
    /// still attached to the lease go with it. Already gone is success.
    pub async fn revoke(&self, lease: &Lease) -> Result<(), EtcdError> {
        dispatch!(self, b => b.revoke(lease))
    }

    /// Every key at or below `prefix` (as a path), with values and remaining TTLs.
    pub async fn list(&self, prefix: &str) -> Result<Snapshot, EtcdError> {
        dispatch!(self, b => b.list(prefix))
    }

    /// Calls `each` for every key at or below `prefix`, without TTL lookups; returns
    /// the revision to watch from. Keys whose key or value is not text come as `Err`.
    pub async fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(Result<EntryRef<'_>, Undecodable>),
    ) -> Result<u64, EtcdError> {
        dispatch!(self, b => b.list_each(prefix, each))
    }

    /// The TTL of v3 lease `id`; `None` if it has expired or never existed. Leases are
    /// v3's alone (a v2 entry carries its TTL itself), so this is not a back-end
    /// operation: it always asks the v3 gateway.
    pub async fn lease_ttl(&self, id: i64) -> Result<Option<LeaseTtl>, EtcdError> {
        v3::lease_ttl(&self.transport, id).await
    }

    /// One key, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, EtcdError> {
        Ok(backend::find(self.list(key).await?, key))
    }

    /// Changes at or below `prefix` after revision `after` (0: from now on).
    pub async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream, EtcdError> {
        WatchStream::start(self.transport.clone(), prefix, after, true).await
    }

    /// Like [`Client::watch`], but v3 puts carry only their lease ID (`ttl` is `None`):
    /// no event waits for a lease lookup.
    pub async fn watch_keys(&self, prefix: &str, after: u64) -> Result<WatchStream, EtcdError> {
        WatchStream::start(self.transport.clone(), prefix, after, false).await
    }

    /// Puts `key` = `value` for `ttl` seconds if `key` does not exist; else its entry.
    pub async fn create(&self, key: &str, value: &str, ttl: u32) -> Result<Created, EtcdError> {
        dispatch!(self, b => b.create(key, value, ttl))
    }

    /// Extends a key made by [`Client::create`] by `lease.ttl`; `false` once it is gone
    /// (or, v2, no longer holds `value`).
    pub async fn keep_alive(
        &self,
        lease: &Lease,
        key: &str,
        value: &str,
    ) -> Result<bool, EtcdError> {
        dispatch!(self, b => b.keep_alive(lease, key, value))
    }

    /// Lets a key made by [`Client::create`] go (already gone is success; v2 deletes it
    /// only while it holds `value`).
    pub async fn release(&self, lease: &Lease, key: &str, value: &str) -> Result<(), EtcdError> {
        dispatch!(self, b => b.release(lease, key, value))
    }

    /// Puts `key` = `value` with no lease or TTL.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), EtcdError> {
        dispatch!(self, b => b.put(key, value))
    }

    /// The `limit` greatest keys below `prefix/`, greatest first.
    pub async fn newest(&self, prefix: &str, limit: usize) -> Result<Vec<Entry>, EtcdError> {
        dispatch!(self, b => b.newest(prefix, limit))
    }
}

/// `prefix` without trailing slashes; keys "at or below" it are `p` and `p/...`.
pub(crate) fn normalize_prefix(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

pub(crate) fn under(prefix: &str, key: &str) -> bool {
    key == prefix
        || (key.len() > prefix.len()
            && key.starts_with(prefix)
            && key.as_bytes()[prefix.len()] == b'/')
}
