//! etcd v3 through the JSON gateway: leases, puts, ranges, deletes.
//!
//! The gateway encodes keys and values as base64 and every int64 (lease IDs, TTLs,
//! revisions) as a JSON string; [`int`] reads both forms.

use crate::transport::{Req, Transport};
use crate::{normalize_prefix, under, Entry, EtcdError, Lease, Refreshed, Snapshot};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(crate) fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

pub(crate) fn unb64(v: &Value) -> Result<String, EtcdError> {
    let Some(text) = v.as_str() else {
        return Ok(String::new());
    };
    let bytes = B64
        .decode(text)
        .map_err(|e| EtcdError::Decode(format!("base64: {e}")))?;
    String::from_utf8(bytes).map_err(|e| EtcdError::Decode(format!("not UTF-8: {e}")))
}

/// An int64 the gateway sent as a string (or, defensively, as a number); absent = 0,
/// as protobuf omits zero values.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The range end that makes `[key, end)` hold `key` and everything below `key/`:
/// `key` + `0` (the byte after `/`). Siblings such as `key-x` fall in too and are
/// filtered out by [`under`].
pub(crate) fn path_range(prefix: &str) -> (String, String) {
    let p = normalize_prefix(prefix);
    (p.to_string(), format!("{p}0"))
}

async fn call(t: &Transport, path: &str, body: Value) -> Result<Value, EtcdError> {
    t.call(&Req::post_json(path, &body)).await
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
    let grant = call(t, "/v3/lease/grant", json!({"TTL": ttl})).await?;
    let id = int(&grant["ID"]);
    if id == 0 {
        return Err(EtcdError::Decode(format!(
            "lease grant without ID: {grant}"
        )));
    }
    let put = json!({"key": b64(key), "value": b64(value), "lease": id.to_string()});
    if let Err(e) = call(t, "/v3/kv/put", put).await {
        // Do not leave a lease behind that nothing will keep alive or revoke.
        let _ = call(t, "/v3/lease/revoke", json!({"ID": id.to_string()})).await;
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
        match call(t, "/v3/lease/keepalive", json!({"ID": id.to_string()})).await {
            // An expired or unknown lease answers with no (zero) TTL.
            Ok(answer) if int(&answer["result"]["TTL"]) > 0 => return Ok(Refreshed::KeptAlive),
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
    call(t, "/v3/kv/deleterange", json!({"key": b64(key)})).await?;
    match lease.and_then(|l| l.id) {
        Some(id) => revoke(t, id).await,
        None => Ok(()),
    }
}

pub(crate) async fn revoke(t: &Transport, id: i64) -> Result<(), EtcdError> {
    match call(t, "/v3/lease/revoke", json!({"ID": id.to_string()})).await {
        Ok(_) => Ok(()),
        Err(e) if lease_gone(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Parses one gateway `kv` object (no TTL yet).
pub(crate) fn entry(kv: &Value) -> Result<Entry, EtcdError> {
    let lease = int(&kv["lease"]);
    Ok(Entry {
        key: unb64(&kv["key"])?,
        value: unb64(&kv["value"])?,
        ttl: None,
        lease: (lease != 0).then_some(lease),
        mod_revision: int(&kv["mod_revision"]) as u64,
    })
}

/// `(remaining, granted)` seconds of a lease; `None` if it has expired or is unknown.
pub(crate) async fn time_to_live(t: &Transport, id: i64) -> Result<Option<(u32, u32)>, EtcdError> {
    match call(t, "/v3/lease/timetolive", json!({"ID": id.to_string()})).await {
        Ok(answer) => {
            let remaining = int(&answer["TTL"]);
            let granted = int(&answer["grantedTTL"]);
            Ok((remaining >= 0 && granted > 0).then_some((remaining as u32, granted as u32)))
        }
        Err(e) if lease_gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) async fn list(t: &Transport, prefix: &str) -> Result<Snapshot, EtcdError> {
    let p = normalize_prefix(prefix);
    let (key, end) = path_range(p);
    let answer = call(
        t,
        "/v3/kv/range",
        json!({"key": b64(&key), "range_end": b64(&end)}),
    )
    .await?;
    let revision = int(&answer["header"]["revision"]) as u64;
    let mut entries = Vec::new();
    for kv in answer["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let e = entry(kv)?;
        if under(p, &e.key) {
            entries.push(e);
        }
    }
    let mut ttls: HashMap<i64, Option<u32>> = HashMap::new();
    for e in &entries {
        if let Some(id) = e.lease {
            if let std::collections::hash_map::Entry::Vacant(slot) = ttls.entry(id) {
                slot.insert(time_to_live(t, id).await?.map(|(remaining, _)| remaining));
            }
        }
    }
    // A key whose lease expired between the range and the timetolive is as good as
    // gone: etcd deletes it in a moment.
    entries.retain_mut(|e| match e.lease {
        Some(id) => {
            e.ttl = ttls[&id];
            e.ttl.is_some()
        }
        None => true,
    });
    Ok(Snapshot { revision, entries })
}
