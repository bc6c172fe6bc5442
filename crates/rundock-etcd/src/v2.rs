//! etcd v2 keys API (`/v2/keys`): the legacy path, for SkyDNS installations that read
//! v2 (it exists only up to etcd 3.5, with `--enable-v2`). TTLs live on the keys.

use crate::messages::{decode, ErrorBody, V2Node, V2Response};
use crate::transport::{Req, Transport, REQUEST_TIMEOUT};
use crate::{normalize_prefix, EntryRef, EtcdError, Lease, Refreshed, Snapshot, Undecodable};
use reqwest::Method;

/// v2's "Key not found" error code.
const KEY_NOT_FOUND: i64 = 100;
/// v2's "The event in requested index is outdated and cleared".
pub(crate) const EVENT_INDEX_CLEARED: i64 = 401;

pub(crate) fn keys_path(key: &str) -> String {
    let key = normalize_prefix(key);
    if key.starts_with('/') {
        format!("/v2/keys{key}")
    } else {
        format!("/v2/keys/{key}")
    }
}

fn error_code(e: &EtcdError) -> Option<i64> {
    // The transport folds the body into the message; v2 bodies carry errorCode, which
    // the 404 status and the message "Key not found" identify just as well.
    match e {
        EtcdError::Status {
            code: 404, message, ..
        } if message.contains("Key not found") => Some(KEY_NOT_FOUND),
        EtcdError::Status { message, .. } if message.contains("outdated and cleared") => {
            Some(EVENT_INDEX_CLEARED)
        }
        _ => None,
    }
}

async fn put(t: &Transport, key: &str, form: &[(&str, String)]) -> Result<(), EtcdError> {
    let path = keys_path(key);
    t.call_bytes(&Req {
        method: Method::PUT,
        path: &path,
        json: None,
        form: Some(form),
        query: &[],
        timeout: Some(REQUEST_TIMEOUT),
    })
    .await
    .map(drop)
}

pub(crate) async fn announce(
    t: &Transport,
    key: &str,
    value: &str,
    ttl: u32,
) -> Result<Lease, EtcdError> {
    put(
        t,
        key,
        &[("value", value.to_string()), ("ttl", ttl.to_string())],
    )
    .await?;
    Ok(Lease { id: None, ttl })
}

pub(crate) async fn refresh(
    t: &Transport,
    lease: &mut Lease,
    key: &str,
    value: &str,
    ttl: u32,
) -> Result<Refreshed, EtcdError> {
    // refresh=true extends the TTL without a watch event; prevExist=true makes a
    // vanished key an error instead of an empty key.
    let form = [
        ("ttl", ttl.to_string()),
        ("refresh", "true".to_string()),
        ("prevExist", "true".to_string()),
    ];
    match put(t, key, &form).await {
        Ok(_) => Ok(Refreshed::KeptAlive),
        Err(e) if error_code(&e) == Some(KEY_NOT_FOUND) => {
            *lease = announce(t, key, value, ttl).await?;
            Ok(Refreshed::Reannounced)
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn withdraw(t: &Transport, key: &str) -> Result<(), EtcdError> {
    let path = keys_path(key);
    let result = t
        .call_bytes(&Req {
            method: Method::DELETE,
            path: &path,
            json: None,
            form: None,
            query: &[],
            timeout: Some(REQUEST_TIMEOUT),
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some(KEY_NOT_FOUND) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One v2 node (not a directory) as an entry.
pub(crate) fn entry_ref(node: &V2Node) -> EntryRef<'_> {
    EntryRef {
        key: node.key.as_deref().unwrap_or_default(),
        value: &node.value,
        lease: None,
        ttl: node.ttl.map(|t| t.clamp(0, u32::MAX as i64) as u32),
        mod_revision: node.modified_index,
    }
}

fn flatten(node: &V2Node, each: &mut dyn FnMut(Result<EntryRef<'_>, Undecodable>)) {
    if node.dir {
        for child in &node.nodes {
            flatten(child, each);
        }
    } else if node.key.is_some() {
        each(Ok(entry_ref(node)));
    }
}

/// Calls `each` for every key at or below `prefix`; returns the store index. v2 keys
/// and values are JSON strings, always text (etcd writes invalid UTF-8 as U+FFFD).
pub(crate) async fn list_each(
    t: &Transport,
    prefix: &str,
    each: &mut dyn FnMut(Result<EntryRef<'_>, Undecodable>),
) -> Result<u64, EtcdError> {
    let path = keys_path(prefix);
    let query = [
        ("recursive", "true".to_string()),
        ("sorted", "true".to_string()),
    ];
    let answer = t
        .call_any(&Req {
            method: Method::GET,
            path: &path,
            json: None,
            form: None,
            query: &query,
            timeout: Some(REQUEST_TIMEOUT),
        })
        .await?;
    // Nothing there yet is an empty snapshot; the 404 still carries the store index a
    // later watch starts from.
    let revision = answer.index.unwrap_or(0);
    if answer.status == 404 && error_body(&answer.body).error_code == Some(KEY_NOT_FOUND) {
        return Ok(revision);
    }
    if answer.status >= 300 {
        return Err(answer.into_status_error());
    }
    let body: V2Response = decode(&path, &answer.body)?;
    if let Some(node) = &body.node {
        flatten(node, each);
    }
    Ok(revision)
}

pub(crate) async fn list(t: &Transport, prefix: &str) -> Result<Snapshot, EtcdError> {
    let mut entries = Vec::new();
    let revision = list_each(t, prefix, &mut |e| {
        if let Ok(e) = e {
            entries.push(e.to_entry())
        }
    })
    .await?;
    Ok(Snapshot {
        revision,
        entries,
        undecodable: Vec::new(),
    })
}

pub(crate) fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// The store's current index (`X-Etcd-Index` of a read of the root).
pub(crate) async fn index(t: &Transport) -> Result<u64, EtcdError> {
    let answer = t
        .call_any(&Req {
            method: Method::GET,
            path: "/v2/keys/",
            json: None,
            form: None,
            query: &[],
            timeout: Some(REQUEST_TIMEOUT),
        })
        .await?;
    Ok(answer.index.unwrap_or(0))
}
