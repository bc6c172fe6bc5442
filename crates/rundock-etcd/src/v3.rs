//! etcd v3 through the JSON gateway: leases, puts, ranges, deletes.
//!
//! The gateway encodes keys and values as base64 and every int64 (lease IDs, TTLs,
//! revisions) as a JSON string; [`crate::messages`] types both.

use crate::messages::{
    base64, decode, text, unbase64, KeepAliveMessage, KeyValue, LeaseGrantResponse, RangeResponse,
    TimeToLiveResponse,
};
use crate::transport::{Req, Transport};
use crate::{
    normalize_prefix, under, EntryRef, EtcdError, Lease, LeaseTtl, Refreshed, Snapshot, Undecodable,
};
use futures_util::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashMap;

/// How many `lease/timetolive` requests [`list`] keeps in flight.
const TTL_LOOKUPS_IN_FLIGHT: usize = 16;

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

pub(crate) async fn announce(
    t: &Transport,
    key: &str,
    value: &str,
    ttl: u32,
) -> Result<Lease, EtcdError> {
    let grant: LeaseGrantResponse = call(t, "/v3/lease/grant", json!({"TTL": ttl})).await?;
    let id = grant.id.0;
    if id == 0 {
        return Err(EtcdError::Decode(format!(
            "lease grant without ID: {}",
            grant.error
        )));
    }
    let put = json!({"key": base64(key), "value": base64(value), "lease": id.to_string()});
    if let Err(e) = call_unit(t, "/v3/kv/put", put).await {
        // Do not leave a lease behind that nothing will keep alive or revoke.
        let _ = call_unit(t, "/v3/lease/revoke", json!({"ID": id.to_string()})).await;
        return Err(e);
    }
    Ok(Lease { id: Some(id), ttl })
}

pub(crate) async fn refresh(
    t: &Transport,
    lease: &mut Lease,
    key: &str,
    value: &str,
    ttl: u32,
) -> Result<Refreshed, EtcdError> {
    if let Some(id) = lease.id {
        let answer: Result<KeepAliveMessage, _> =
            call(t, "/v3/lease/keepalive", json!({"ID": id.to_string()})).await;
        match answer {
            // An expired or unknown lease answers with no (zero) TTL.
            Ok(KeepAliveMessage {
                result: Some(result),
            }) if result.ttl.0 > 0 => return Ok(Refreshed::KeptAlive),
            Ok(_) => {}
            Err(e) if lease_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    *lease = announce(t, key, value, ttl).await?;
    Ok(Refreshed::Reannounced)
}

pub(crate) async fn withdraw(
    t: &Transport,
    lease: Option<&Lease>,
    key: &str,
) -> Result<(), EtcdError> {
    // The delete first: it is what makes the record disappear, and it works even if
    // the key was put under another lease.
    call_unit(t, "/v3/kv/deleterange", json!({"key": base64(key)})).await?;
    match lease.and_then(|l| l.id) {
        Some(id) => revoke(t, id).await,
        None => Ok(()),
    }
}

pub(crate) async fn revoke(t: &Transport, id: i64) -> Result<(), EtcdError> {
    match call_unit(t, "/v3/lease/revoke", json!({"ID": id.to_string()})).await {
        Ok(()) => Ok(()),
        Err(e) if lease_gone(&e) => Ok(()),
        Err(e) => Err(e),
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

/// Calls `each` for every key at or below `prefix`; returns the revision read at.
pub(crate) async fn list_each(
    t: &Transport,
    prefix: &str,
    each: &mut dyn FnMut(Result<EntryRef<'_>, Undecodable>),
) -> Result<u64, EtcdError> {
    let p = normalize_prefix(prefix);
    let (key, end) = path_range(p);
    let body = json!({"key": base64(&key), "range_end": base64(&end)});
    let bytes = t.call_bytes(&Req::post_json("/v3/kv/range", &body)).await?;
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

pub(crate) async fn list(t: &Transport, prefix: &str) -> Result<Snapshot, EtcdError> {
    let (mut entries, mut undecodable) = (Vec::new(), Vec::new());
    let revision = list_each(t, prefix, &mut |e| match e {
        Ok(e) => entries.push(e.to_entry()),
        Err(u) => undecodable.push(u),
    })
    .await?;
    let mut ids: Vec<i64> = entries.iter().filter_map(|e| e.lease).collect();
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
    entries.retain_mut(|e| match e.lease {
        Some(id) => {
            e.ttl = ttls[&id];
            e.ttl.is_some()
        }
        None => true,
    });
    Ok(Snapshot {
        revision,
        entries,
        undecodable,
    })
}
