//! etcd v2 keys API (`/v2/keys`): the legacy path, for SkyDNS installations that read
//! v2 (it exists only up to etcd 3.5, with `--enable-v2`). TTLs live on the keys.

use crate::transport::{Req, Transport, REQUEST_TIMEOUT};
use crate::{normalize_prefix, Entry, EtcdError, Lease, Refreshed, Snapshot};
use reqwest::Method;
use serde_json::Value;

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

async fn put(t: &Transport, key: &str, form: &[(&str, String)]) -> Result<Value, EtcdError> {
    let path = keys_path(key);
    t.call(&Req {
        method: Method::PUT,
        path: &path,
        json: None,
        form: Some(form),
        query: &[],
        timeout: Some(REQUEST_TIMEOUT),
    })
    .await
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
        .call(&Req {
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
pub(crate) fn entry(node: &Value) -> Entry {
    Entry {
        key: node["key"].as_str().unwrap_or_default().to_string(),
        value: node["value"].as_str().unwrap_or_default().to_string(),
        ttl: node["ttl"].as_i64().map(|t| t.max(0) as u32),
        lease: None,
        mod_revision: node["modifiedIndex"].as_u64().unwrap_or(0),
    }
}

fn flatten(node: &Value, out: &mut Vec<Entry>) {
    if node["dir"].as_bool() == Some(true) {
        for child in node["nodes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            flatten(child, out);
        }
    } else if node.get("key").is_some() {
        out.push(entry(node));
    }
}

pub(crate) async fn list(t: &Transport, prefix: &str) -> Result<Snapshot, EtcdError> {
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
    let revision = answer.body["x-etcd-index"].as_u64().unwrap_or(0);
    if answer.status == 404 && answer.body["errorCode"].as_i64() == Some(KEY_NOT_FOUND) {
        return Ok(Snapshot {
            revision,
            entries: Vec::new(),
        });
    }
    if answer.status >= 300 {
        return Err(EtcdError::Status {
            endpoint: answer.endpoint,
            code: answer.status,
            message: answer.message,
        });
    }
    let mut entries = Vec::new();
    flatten(&answer.body["node"], &mut entries);
    Ok(Snapshot { revision, entries })
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
    Ok(answer.body["x-etcd-index"].as_u64().unwrap_or(0))
}
