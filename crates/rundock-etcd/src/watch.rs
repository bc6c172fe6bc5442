//! Watching a prefix: one v3 streaming request, or v2 long polls.
//!
//! Both yield [`Event`]s one at a time and track the revision of the last one
//! returned, so a caller whose stream broke can watch again from
//! [`WatchStream::revision`] without losing or repeating a change.

use crate::transport::{error_chain, Req, Transport};
use crate::{normalize_prefix, under, v2, v3, Entry, EtcdApi, EtcdError, Event};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A stream of changes below a prefix; see [`crate::Client::watch`].
pub struct WatchStream {
    t: Arc<Transport>,
    prefix: String,
    revision: u64,
    pending: VecDeque<Event>,
    v3: Option<V3Stream>,
}

struct V3Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Granted TTL per lease, so each new lease costs one `timetolive`, not each put.
    leases: HashMap<i64, Option<u32>>,
}

impl WatchStream {
    pub(crate) async fn start(
        t: Arc<Transport>,
        prefix: &str,
        after: u64,
    ) -> Result<WatchStream, EtcdError> {
        let prefix = normalize_prefix(prefix).to_string();
        let mut stream = WatchStream {
            t: t.clone(),
            prefix,
            revision: after,
            pending: VecDeque::new(),
            v3: None,
        };
        match t.api {
            EtcdApi::V3 => stream.start_v3(after).await?,
            EtcdApi::V2 => {
                if after == 0 {
                    stream.revision = v2::index(&t).await?;
                }
            }
        }
        Ok(stream)
    }

    /// The revision of the last event returned (or the one the watch started after).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The next change. Errors end the stream: on [`EtcdError::Compacted`] list
    /// again; otherwise watch again from [`WatchStream::revision`].
    pub async fn next(&mut self) -> Result<Event, EtcdError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.revision = self.revision.max(event.revision());
                return Ok(event);
            }
            match self.t.api {
                EtcdApi::V3 => self.read_v3().await?,
                EtcdApi::V2 => self.poll_v2().await?,
            }
        }
    }

    async fn start_v3(&mut self, after: u64) -> Result<(), EtcdError> {
        let (key, end) = v3::path_range(&self.prefix);
        let mut create = json!({"key": v3::b64(&key), "range_end": v3::b64(&end)});
        if after > 0 {
            create["start_revision"] = json!((after + 1).to_string());
        }
        let body = json!({ "create_request": create });
        let req = Req {
            method: Method::POST,
            path: "/v3/watch",
            json: Some(&body),
            form: None,
            query: &[],
            timeout: None,
        };
        let resp = self.t.send(&req).await?;
        let status = resp.status().as_u16();
        if status >= 300 {
            let endpoint = resp.url().origin().ascii_serialization();
            let bytes = resp.bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(EtcdError::Status {
                endpoint,
                code: status,
                message: crate::transport::error_message(&body, &bytes),
            });
        }
        self.v3 = Some(V3Stream {
            resp,
            buf: Vec::new(),
            leases: HashMap::new(),
        });
        // Wait for "created", so that a change made after watch() returns is seen
        // even when watching "from now on".
        let line = self.next_line().await?;
        let result = check_result(&line)?;
        if after == 0 {
            self.revision = v3::int(&result["header"]["revision"]) as u64;
        }
        self.queue_v3(&result).await
    }

    async fn next_line(&mut self) -> Result<Value, EtcdError> {
        let stream = self.v3.as_mut().expect("a v3 watch");
        loop {
            if let Some(pos) = stream.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = stream.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).map_err(|e| {
                    EtcdError::Decode(format!("watch: {e}: {}", String::from_utf8_lossy(&line)))
                });
            }
            match stream.resp.chunk().await {
                Ok(Some(bytes)) => stream.buf.extend_from_slice(&bytes),
                Ok(None) => return Err(EtcdError::WatchEnded),
                Err(e) => {
                    return Err(EtcdError::Unreachable {
                        endpoints: self.t.current_endpoint().to_string(),
                        reason: error_chain(&e),
                    })
                }
            }
        }
    }

    async fn read_v3(&mut self) -> Result<(), EtcdError> {
        let line = self.next_line().await?;
        let result = check_result(&line)?;
        self.queue_v3(&result).await
    }

    async fn queue_v3(&mut self, result: &Value) -> Result<(), EtcdError> {
        let events = result["events"].as_array().cloned().unwrap_or_default();
        for ev in events {
            let kv = &ev["kv"];
            let mut entry: Entry = v3::entry(kv)?;
            if !under(&self.prefix, &entry.key) {
                continue;
            }
            if ev["type"].as_str() == Some("DELETE") {
                self.pending.push_back(Event::Delete {
                    key: entry.key,
                    revision: entry.mod_revision,
                });
                continue;
            }
            if let Some(id) = entry.lease {
                let leases = &mut self.v3.as_mut().expect("a v3 watch").leases;
                let ttl = match leases.get(&id) {
                    Some(ttl) => *ttl,
                    None => {
                        let ttl = v3::time_to_live(&self.t, id)
                            .await?
                            .map(|(_, granted)| granted);
                        self.v3.as_mut().expect("a v3 watch").leases.insert(id, ttl);
                        ttl
                    }
                };
                entry.ttl = ttl;
            }
            self.pending.push_back(Event::Put(entry));
        }
        Ok(())
    }

    async fn poll_v2(&mut self) -> Result<(), EtcdError> {
        let path = v2::keys_path(&self.prefix);
        let query = [
            ("wait", "true".to_string()),
            ("recursive", "true".to_string()),
            ("waitIndex", (self.revision + 1).to_string()),
        ];
        let answer = self
            .t
            .call_any(&Req {
                method: Method::GET,
                path: &path,
                json: None,
                form: None,
                query: &query,
                timeout: None,
            })
            .await?;
        if answer.status >= 300 {
            if answer.body["errorCode"].as_i64() == Some(v2::EVENT_INDEX_CLEARED) {
                return Err(EtcdError::Compacted(
                    answer.body["index"].as_u64().unwrap_or(self.revision),
                ));
            }
            return Err(EtcdError::Status {
                endpoint: answer.endpoint,
                code: answer.status,
                message: answer.message,
            });
        }
        let node = &answer.body["node"];
        if node.is_null() {
            // An empty answer (a proxy's or the server's long-poll timeout): poll again.
            return Ok(());
        }
        let revision = node["modifiedIndex"].as_u64().unwrap_or(self.revision);
        let key = node["key"].as_str().unwrap_or_default().to_string();
        match answer.body["action"].as_str().unwrap_or_default() {
            "delete" | "expire" | "compareAndDelete" => {
                self.pending.push_back(Event::Delete { key, revision })
            }
            _ if node["dir"].as_bool() == Some(true) => {}
            _ => self.pending.push_back(Event::Put(v2::entry(node))),
        }
        // Skipped events (directories) still move the wait index on.
        self.revision = self.revision.max(revision);
        Ok(())
    }
}

/// The `result` of one watch message, or the error it reports.
fn check_result(line: &Value) -> Result<Value, EtcdError> {
    if let Some(error) = line.get("error") {
        return Err(EtcdError::Status {
            endpoint: String::new(),
            code: error["http_code"].as_u64().unwrap_or(500) as u16,
            message: error["message"].as_str().unwrap_or_default().to_string(),
        });
    }
    let result = line["result"].clone();
    let compacted = v3::int(&result["compact_revision"]);
    if compacted > 0 {
        return Err(EtcdError::Compacted(compacted as u64));
    }
    if result["canceled"].as_bool() == Some(true) {
        return Err(EtcdError::WatchEnded);
    }
    Ok(result)
}
