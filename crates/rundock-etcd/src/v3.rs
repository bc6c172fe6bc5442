//! etcd v3 through the JSON gateway: leases, puts, ranges, deletes, and the
//! create-if-absent transaction a lock is made of.
//!
//! The gateway encodes keys and values as base64 and every int64 (lease IDs, TTLs,
//! revisions) as a JSON string; [`crate::messages`] types both.

use crate::backend::{self, Backend, Each};
use crate::messages::{
    base64, decode, text, unbase64, KeepAliveMessage, KeyValue, LeaseGrantResponse, RangeResponse,
    TimeToLiveResponse, TxnResponse,
};
use crate::transport::{Req, Transport};
use crate::{
    normalize_prefix, under, Created, Entry, EntryRef, EtcdError, Lease, LeaseTtl, Snapshot,
    Undecodable,
};
use futures_util::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashMap;

/// How many `lease/timetolive` requests a list keeps in flight.
const TTL_LOOKUPS_IN_FLIGHT: usize = 16;

/// The v3 JSON gateway over one transport.
pub(crate) struct V3<'t>(pub(crate) &'t Transport);

/// The range end that makes `[key, end)` hold `key` and everything below `key/`:
/// `key` + `0` (the byte after `/`). Siblings such as `key-x` fall in too and are
/// filtered out by [`under`].
pub(crate) fn path_range(prefix: &str) -> (String, String) {
    let p = normalize_prefix(prefix);
    (p.to_string(), format!("{p}0"))
}

async fn call<T: DeserializeOwned>(t: &Transport, path: &str, body: Value) -> Result<T, EtcdError> {
    t.call(&Req::post_json(path, &body)).await
}

/// A call whose answer carries nothing we need.
async fn call_unit(t: &Transport, path: &str, body: Value) -> Result<(), EtcdError> {
    t.call_bytes(&Req::post_json(path, &body)).await.map(drop)
}

fn lease_gone(e: &EtcdError) -> bool {
    matches!(e, EtcdError::Status { message, .. } if message.contains("lease not found"))
}

/// Grants a lease of `ttl` seconds; its ID.
async fn grant(t: &Transport, ttl: u32) -> Result<i64, EtcdError> {
    let grant: LeaseGrantResponse = call(t, "/v3/lease/grant", json!({"TTL": ttl})).await?;
    match grant.id.0 {
        0 => Err(EtcdError::Decode(format!(
            "lease grant without ID: {}",
            grant.error
        ))),
        id => Ok(id),
    }
}

/// One keep-alive of lease `id`: `false` once it is gone.
async fn keep_lease_alive(t: &Transport, id: i64) -> Result<bool, EtcdError> {
    let answer: Result<KeepAliveMessage, _> =
        call(t, "/v3/lease/keepalive", json!({"ID": id.to_string()})).await;
    match answer {
        // An expired or unknown lease answers with no (zero) TTL.
        Ok(KeepAliveMessage {
            result: Some(result),
        }) => Ok(result.ttl.0 > 0),
        Ok(_) => Ok(false),
        Err(e) if lease_gone(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn revoke_lease(t: &Transport, id: i64) -> Result<(), EtcdError> {
    match call_unit(t, "/v3/lease/revoke", json!({"ID": id.to_string()})).await {
        Ok(()) => Ok(()),
        Err(e) if lease_gone(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One `/v3/kv/range` answer's entries that are text and at or below `prefix`, owned.
fn entries_under(range: &RangeResponse<'_>, prefix: &str) -> Vec<Entry> {
    let (mut key_buf, mut value_buf) = (Vec::new(), Vec::new());
    range
        .kvs
        .iter()
        .filter_map(|kv| {
            entry_ref(kv, false, &mut key_buf, &mut value_buf)
                .ok()
                .filter(|e| under(prefix, e.key))
                .map(|e| e.to_entry())
        })
        .collect()
}

impl Backend for V3<'_> {
    async fn announce(&self, key: &str, value: &str, ttl: u32) -> Result<Lease, EtcdError> {
        let t = self.0;
        let id = grant(t, ttl).await?;
        let put = json!({"key": base64(key), "value": base64(value), "lease": id.to_string()});
        if let Err(e) = call_unit(t, "/v3/kv/put", put).await {
            // Do not leave a lease behind that nothing will keep alive or revoke.
            let _ = revoke_lease(t, id).await;
            return Err(e);
        }
        Ok(Lease { id: Some(id), ttl })
    }

    /// One keep-alive of the lease (the value is not rewritten, so watchers are not
    /// woken); a key without one has nothing to extend.
    async fn extend(&self, lease: &Lease, _key: &str, _ttl: u32) -> Result<bool, EtcdError> {
        match lease.id {
            Some(id) => keep_lease_alive(self.0, id).await,
            None => Ok(false),
        }
    }

    async fn withdraw(&self, lease: Option<&Lease>, key: &str) -> Result<(), EtcdError> {
        // The delete first: it is what makes the record disappear, and it works even if
        // the key was put under another lease.
        call_unit(self.0, "/v3/kv/deleterange", json!({"key": base64(key)})).await?;
        match lease {
            Some(lease) => Backend::revoke(self, lease).await,
            None => Ok(()),
        }
    }

    async fn revoke(&self, lease: &Lease) -> Result<(), EtcdError> {
        match lease.id {
            Some(id) => revoke_lease(self.0, id).await,
            None => Ok(()),
        }
    }

    async fn list_each(&self, prefix: &str, each: &mut Each<'_>) -> Result<u64, EtcdError> {
        let p = normalize_prefix(prefix);
        let (key, end) = path_range(p);
        let body = json!({"key": base64(&key), "range_end": base64(&end)});
        let bytes = self
            .0
            .call_bytes(&Req::post_json("/v3/kv/range", &body))
            .await?;
        let range: RangeResponse<'_> = decode("/v3/kv/range", &bytes)?;
        let (mut key_buf, mut value_buf) = (Vec::new(), Vec::new());
        for kv in &range.kvs {
            match entry_ref(kv, false, &mut key_buf, &mut value_buf) {
                Ok(entry) if under(p, entry.key) => each(Ok(entry)),
                Ok(_) => {}
                Err(undecodable) if under(p, &undecodable.key) => each(Err(undecodable)),
                Err(_) => {}
            }
        }
        Ok(range.header.revision.revision())
    }

    /// The keys, then one `lease/timetolive` per distinct lease, bounded in flight.
    async fn list(&self, prefix: &str) -> Result<Snapshot, EtcdError> {
        let t = self.0;
        let mut snapshot = backend::snapshot(self, prefix).await?;
        let mut ids: Vec<i64> = snapshot.entries.iter().filter_map(|e| e.lease).collect();
        ids.sort_unstable();
        ids.dedup();
        // Concurrently, bounded: one round trip after another made a list of 50,000
        // leased keys take 15 s.
        let ttls: HashMap<i64, Option<u32>> = stream::iter(ids)
            .map(|id| async move {
                lease_ttl(t, id)
                    .await
                    .map(|ttl| (id, ttl.map(|l| l.remaining)))
            })
            .buffer_unordered(TTL_LOOKUPS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        // A key whose lease expired between the range and the timetolive is as good as
        // gone: etcd deletes it in a moment.
        snapshot.entries.retain_mut(|e| match e.lease {
            Some(id) => {
                e.ttl = ttls[&id];
                e.ttl.is_some()
            }
            None => true,
        });
        Ok(snapshot)
    }

    /// A lease, then one transaction that puts the key under it if its
    /// `create_revision` is 0 (it does not exist) and reads it otherwise; a lost race
    /// revokes the lease at once.
    async fn create(&self, key: &str, value: &str, ttl: u32) -> Result<Created, EtcdError> {
        let t = self.0;
        let id = grant(t, ttl).await?;
        let k = base64(key);
        let txn = json!({
            "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": base64(value), "lease": id.to_string()}}],
            "failure": [{"request_range": {"key": k}}],
        });
        let bytes = match t.call_bytes(&Req::post_json("/v3/kv/txn", &txn)).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = revoke_lease(t, id).await;
                return Err(e);
            }
        };
        let txn: TxnResponse<'_> = decode("/v3/kv/txn", &bytes)?;
        if txn.succeeded {
            return Ok(Created::Created(Lease { id: Some(id), ttl }));
        }
        // Not ours: the lease must not linger until its TTL.
        revoke_lease(t, id).await?;
        let (mut key_buf, mut value_buf) = (Vec::new(), Vec::new());
        let holder = txn
            .responses
            .iter()
            .filter_map(|r| r.response_range.as_ref())
            .flat_map(|r| r.kvs.iter())
            .find_map(|kv| {
                entry_ref(kv, false, &mut key_buf, &mut value_buf)
                    .ok()
                    .map(|e| e.to_entry())
            });
        Ok(Created::Exists(holder))
    }

    /// The lease holds the key (a key without one is not held): what keeps a record
    /// alive keeps a lock alive.
    async fn keep_alive(&self, lease: &Lease, key: &str, _value: &str) -> Result<bool, EtcdError> {
        self.extend(lease, key, lease.ttl).await
    }

    /// Revokes the key's lease, which deletes the key.
    async fn release(&self, lease: &Lease, _key: &str, _value: &str) -> Result<(), EtcdError> {
        Backend::revoke(self, lease).await
    }

    async fn put(&self, key: &str, value: &str) -> Result<(), EtcdError> {
        call_unit(
            self.0,
            "/v3/kv/put",
            json!({"key": base64(key), "value": base64(value)}),
        )
        .await
    }

    /// One range, sorted by key descending and limited, so a long log costs `limit`
    /// keys.
    async fn newest(&self, prefix: &str, limit: usize) -> Result<Vec<Entry>, EtcdError> {
        let (key, end) = path_range(prefix);
        let body = json!({
            "key": base64(&format!("{key}/")), "range_end": base64(&end),
            "limit": limit.to_string(), "sort_order": "DESCEND", "sort_target": "KEY",
        });
        let bytes = self
            .0
            .call_bytes(&Req::post_json("/v3/kv/range", &body))
            .await?;
        let range: RangeResponse<'_> = decode("/v3/kv/range", &bytes)?;
        let mut entries = entries_under(&range, normalize_prefix(prefix));
        entries.truncate(limit);
        Ok(entries)
    }
}

/// Decodes one gateway `kv` into `key_buf` / `value_buf` (reused between keys); a key
/// or value that is not text is an [`Undecodable`] of its own, never an error of the
/// whole message.
pub(crate) fn entry_ref<'b>(
    kv: &KeyValue<'_>,
    deleted: bool,
    key_buf: &'b mut Vec<u8>,
    value_buf: &'b mut Vec<u8>,
) -> Result<EntryRef<'b>, Undecodable> {
    let lease = kv.lease.0;
    let mod_revision = kv.mod_revision.revision();
    let undecodable = |key: String, key_is_text: bool, reason: String| Undecodable {
        key,
        key_is_text,
        deleted,
        mod_revision,
        reason,
    };
    let key_bytes = match unbase64("kv.key", &kv.key, key_buf) {
        Ok(bytes) => bytes,
        Err(reason) => return Err(undecodable(String::new(), false, reason)),
    };
    let key = match text("kv.key", key_bytes) {
        Ok(key) => key,
        Err(reason) => {
            let lossy = String::from_utf8_lossy(key_bytes).into_owned();
            return Err(undecodable(lossy, false, reason));
        }
    };
    let value = unbase64("kv.value", &kv.value, value_buf)
        .and_then(|bytes| text("kv.value", bytes))
        .map_err(|reason| undecodable(key.to_string(), true, reason))?;
    Ok(EntryRef {
        key,
        value,
        lease: (lease != 0).then_some(lease),
        ttl: None,
        mod_revision,
    })
}

/// The TTL of lease `id`; `None` if it has expired or is unknown.
pub(crate) async fn lease_ttl(t: &Transport, id: i64) -> Result<Option<LeaseTtl>, EtcdError> {
    let answer: Result<TimeToLiveResponse, _> =
        call(t, "/v3/lease/timetolive", json!({"ID": id.to_string()})).await;
    match answer {
        Ok(answer) => {
            let (remaining, granted) = (answer.ttl.0, answer.granted_ttl.0);
            Ok((remaining >= 0 && granted > 0).then(|| LeaseTtl {
                remaining: remaining.min(u32::MAX as i64) as u32,
                granted: granted.min(u32::MAX as i64) as u32,
            }))
        }
        Err(e) if lease_gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
