//! The one interface of the two wire protocols: every operation [`crate::Client`] offers
//! is a method of [`Backend`], which [`crate::v3::V3`] (the JSON gateway) and
//! [`crate::v2::V2`] (the keys API) implement, and what is the same whatever the
//! protocol (keeping a record alive or putting it again, collecting a list) is written
//! once here, over the trait.
//!
//! Static dispatch: `Client` picks the implementation by its configured
//! [`crate::EtcdApi`] on each call (`dispatch!`), so no call is boxed and a future
//! stays `Send` when its arguments are.

use crate::{Created, Entry, EntryRef, EtcdError, Lease, Refreshed, Snapshot, Undecodable};

/// What [`Backend::list_each`] hands each key to: the entry, or why it is not text.
pub(crate) type Each<'f> = dyn FnMut(Result<EntryRef<'_>, Undecodable>) + 'f;

/// What one etcd protocol does for each operation of [`crate::Client`]. The methods
/// promise what the client's methods of the same names document; only the wire
/// differs.
pub(crate) trait Backend {
    /// Puts `key` = `value`, alive for `ttl` seconds unless extended.
    async fn announce(&self, key: &str, value: &str, ttl: u32) -> Result<Lease, EtcdError>;

    /// Extends a record put by [`Backend::announce`] by `ttl` without rewriting it:
    /// `false` when its lease (v3) or key (v2) is gone, so it must be put again.
    async fn extend(&self, lease: &Lease, key: &str, ttl: u32) -> Result<bool, EtcdError>;

    /// Deletes `key` and lets `lease` go; already gone is success.
    async fn withdraw(&self, lease: Option<&Lease>, key: &str) -> Result<(), EtcdError>;

    /// Lets `lease` go without deleting its keys first; already gone is success.
    async fn revoke(&self, lease: &Lease) -> Result<(), EtcdError>;

    /// Hands every key at or below `prefix` to `each`; returns the revision read at.
    async fn list_each(&self, prefix: &str, each: &mut Each<'_>) -> Result<u64, EtcdError>;

    /// Every key at or below `prefix` with its remaining TTL.
    async fn list(&self, prefix: &str) -> Result<Snapshot, EtcdError>;

    /// Puts `key` only if it does not exist, alive for `ttl` seconds unless kept alive.
    async fn create(&self, key: &str, value: &str, ttl: u32) -> Result<Created, EtcdError>;

    /// Extends a key made by [`Backend::create`]: `false` once it is no longer held.
    async fn keep_alive(&self, lease: &Lease, key: &str, value: &str) -> Result<bool, EtcdError>;

    /// Lets a key made by [`Backend::create`] go; gone (or another's) is success.
    async fn release(&self, lease: &Lease, key: &str, value: &str) -> Result<(), EtcdError>;

    /// Puts `key` = `value` with no lease or TTL.
    async fn put(&self, key: &str, value: &str) -> Result<(), EtcdError>;

    /// The `limit` greatest keys below `prefix/`, greatest first.
    async fn newest(&self, prefix: &str, limit: usize) -> Result<Vec<Entry>, EtcdError>;
}

/// Keeps a record alive, or, when its lease or key is gone (etcd restarted from an old
/// snapshot, the TTL ran out while etcd was unreachable), puts it again and replaces
/// `*lease`.
pub(crate) async fn refresh<B: Backend>(
    backend: &B,
    lease: &mut Lease,
    key: &str,
    value: &str,
    ttl: u32,
) -> Result<Refreshed, EtcdError> {
    if backend.extend(lease, key, ttl).await? {
        return Ok(Refreshed::KeptAlive);
    }
    *lease = backend.announce(key, value, ttl).await?;
    Ok(Refreshed::Reannounced)
}

/// [`Backend::list_each`] collected into a snapshot, TTLs as the entries carry them.
pub(crate) async fn snapshot<B: Backend>(backend: &B, prefix: &str) -> Result<Snapshot, EtcdError> {
    let (mut entries, mut undecodable) = (Vec::new(), Vec::new());
    let revision = backend
        .list_each(prefix, &mut |e| match e {
            Ok(e) => entries.push(e.to_entry()),
            Err(u) => undecodable.push(u),
        })
        .await?;
    Ok(Snapshot {
        revision,
        entries,
        undecodable,
    })
}

/// The entry of exactly `key` (trailing slashes ignored) in `snapshot`.
pub(crate) fn find(snapshot: Snapshot, key: &str) -> Option<Entry> {
    let key = crate::normalize_prefix(key);
    snapshot.entries.into_iter().find(|e| e.key == key)
}
