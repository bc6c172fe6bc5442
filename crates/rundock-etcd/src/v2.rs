//! etcd v2 keys API (`/v2/keys`): the legacy path, for SkyDNS installations that read
//! v2 (it exists only up to etcd 3.5, with `--enable-v2`). TTLs live on the keys, so a
//! [`Lease`] here is only the TTL; a lock compares the value (`prevValue`), so a holder
//! whose key expired never refreshes or deletes the next holder's.

use crate::backend::{self, Backend, Each};
use crate::messages::{decode, ErrorBody, V2Node, V2Response};
use crate::transport::{Req, Transport, REQUEST_TIMEOUT};
use crate::{normalize_prefix, Created, Entry, EntryRef, EtcdError, Lease, Snapshot};
use reqwest::Method;

/// v2's "Key not found" error code.
const KEY_NOT_FOUND: i64 = 100;
/// v2's "The event in requested index is outdated and cleared".
pub(crate) const EVENT_INDEX_CLEARED: i64 = 401;

/// The v2 keys API over one transport.
pub(crate) struct V2<'t>(pub(crate) &'t Transport);

pub(crate) fn keys_path(key: &str) -> String {
    let key = normalize_prefix(key);
    if key.starts_with('/') {
        format!("/v2/keys{key}")
    } else {
        format!("/v2/keys/{key}")
    }
}

/// A unary request to the keys API at `path` (a watch clears `timeout`).
pub(crate) fn request<'a>(
    method: Method,
    path: &'a str,
    form: Option<&'a [(&'a str, String)]>,
    query: &'a [(&'a str, String)],
) -> Req<'a> {
    Req {
        method,
        path,
        json: None,
        form,
        query,
        timeout: Some(REQUEST_TIMEOUT),
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

/// v2's answers to a compare that failed: the key exists (105), its value differs
/// (101) or it is gone (100).
fn compare_failed(e: &EtcdError) -> bool {
    matches!(
        e,
        EtcdError::Status {
            code: 412 | 404,
            ..
        }
    )
}

impl V2<'_> {
    async fn put_form(&self, key: &str, form: &[(&str, String)]) -> Result<(), EtcdError> {
        let path = keys_path(key);
        let req = request(Method::PUT, &path, Some(form), &[]);
        self.0.call_bytes(&req).await.map(drop)
    }

    async fn delete(&self, key: &str, query: &[(&str, String)]) -> Result<(), EtcdError> {
        let path = keys_path(key);
        let req = request(Method::DELETE, &path, None, query);
        self.0.call_bytes(&req).await.map(drop)
    }
}

impl Backend for V2<'_> {
    async fn announce(&self, key: &str, value: &str, ttl: u32) -> Result<Lease, EtcdError> {
        let form = [("value", value.to_string()), ("ttl", ttl.to_string())];
        self.put_form(key, &form).await?;
        Ok(Lease { id: None, ttl })
    }

    async fn extend(&self, _lease: &Lease, key: &str, ttl: u32) -> Result<bool, EtcdError> {
        // refresh=true extends the TTL without a watch event; prevExist=true makes a
        // vanished key an error instead of an empty key.
        let form = [
            ("ttl", ttl.to_string()),
            ("refresh", "true".to_string()),
            ("prevExist", "true".to_string()),
        ];
        match self.put_form(key, &form).await {
            Ok(()) => Ok(true),
            Err(e) if error_code(&e) == Some(KEY_NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn withdraw(&self, _lease: Option<&Lease>, key: &str) -> Result<(), EtcdError> {
        match self.delete(key, &[]).await {
            Ok(()) => Ok(()),
            Err(e) if error_code(&e) == Some(KEY_NOT_FOUND) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// v2 has no leases: the TTL lives on the key.
    async fn revoke(&self, _lease: &Lease) -> Result<(), EtcdError> {
        Ok(())
    }

    /// v2 keys and values are JSON strings, always text (etcd writes invalid UTF-8 as
    /// U+FFFD), so `each` never gets an [`crate::Undecodable`].
    async fn list_each(&self, prefix: &str, each: &mut Each<'_>) -> Result<u64, EtcdError> {
        let path = keys_path(prefix);
        let query = [
            ("recursive", "true".to_string()),
            ("sorted", "true".to_string()),
        ];
        let answer = self
            .0
            .call_any(&request(Method::GET, &path, None, &query))
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

    async fn list(&self, prefix: &str) -> Result<Snapshot, EtcdError> {
        backend::snapshot(self, prefix).await
    }

    async fn create(&self, key: &str, value: &str, ttl: u32) -> Result<Created, EtcdError> {
        let form = [
            ("value", value.to_string()),
            ("ttl", ttl.to_string()),
            ("prevExist", "false".to_string()),
        ];
        match self.put_form(key, &form).await {
            Ok(()) => Ok(Created::Created(Lease { id: None, ttl })),
            Err(e) if compare_failed(&e) => {
                Ok(Created::Exists(backend::find(self.list(key).await?, key)))
            }
            Err(e) => Err(e),
        }
    }

    /// Extends the key's TTL if it still holds `value`: `false` when it does not.
    async fn keep_alive(&self, lease: &Lease, key: &str, value: &str) -> Result<bool, EtcdError> {
        let form = [
            ("ttl", lease.ttl.to_string()),
            ("refresh", "true".to_string()),
            ("prevExist", "true".to_string()),
            ("prevValue", value.to_string()),
        ];
        match self.put_form(key, &form).await {
            Ok(()) => Ok(true),
            Err(e) if compare_failed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the key if it still holds `value`.
    async fn release(&self, _lease: &Lease, key: &str, value: &str) -> Result<(), EtcdError> {
        match self.delete(key, &[("prevValue", value.to_string())]).await {
            Ok(()) => Ok(()),
            Err(e) if compare_failed(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, key: &str, value: &str) -> Result<(), EtcdError> {
        self.put_form(key, &[("value", value.to_string())]).await
    }

    /// v2 cannot bound a read: it reads the directory and keeps the newest.
    async fn newest(&self, prefix: &str, limit: usize) -> Result<Vec<Entry>, EtcdError> {
        let mut entries = self.list(prefix).await?.entries;
        entries.sort_by(|a, b| b.key.cmp(&a.key));
        entries.truncate(limit);
        Ok(entries)
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

fn flatten(node: &V2Node, each: &mut Each<'_>) {
    if node.dir {
        for child in &node.nodes {
            flatten(child, each);
        }
    } else if node.key.is_some() {
        each(Ok(entry_ref(node)));
    }
}

pub(crate) fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// The store's current index (`X-Etcd-Index` of a read of the root).
pub(crate) async fn index(t: &Transport) -> Result<u64, EtcdError> {
    let answer = t
        .call_any(&request(Method::GET, "/v2/keys/", None, &[]))
        .await?;
    Ok(answer.index.unwrap_or(0))
}
