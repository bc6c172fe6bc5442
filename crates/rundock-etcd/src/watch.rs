//! Watching a prefix: one v3 streaming request, or v2 long polls.
//!
//! Both yield [`Event`]s one at a time and track the revision of the last one
//! returned, so a caller whose stream broke can watch again from
//! [`WatchStream::revision`] without losing or repeating a change.

use crate::messages::{base64, decode, EventKind, Header, V2Response, WatchMessage, WatchResult};
use crate::transport::{error_chain, Req, Transport};
use crate::{normalize_prefix, under, v2, v3, EtcdApi, EtcdError, Event};
use reqwest::Method;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// At most this many leases' TTLs are cached per stream; past it the cache starts
/// over, so a stream that sees leases come and go for months stays small.
pub(crate) const LEASE_CACHE: usize = 4096;

/// A stream of changes below a prefix; see [`crate::Client::watch`].
pub struct WatchStream {
    t: Arc<Transport>,
    prefix: String,
    revision: u64,
    pending: VecDeque<Event>,
    v3: Option<V3Stream>,
    /// Look up the TTL of each new lease (v3 puts then carry `ttl`).
    lease_ttls: bool,
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
        lease_ttls: bool,
    ) -> Result<WatchStream, EtcdError> {
        let prefix = normalize_prefix(prefix).to_string();
        let mut stream = WatchStream {
            t: t.clone(),
            prefix,
            revision: after,
            pending: VecDeque::new(),
            v3: None,
            lease_ttls,
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

    /// Every event already received, without waiting for more: lets a caller apply a
    /// burst of changes under one lock.
    pub fn try_next(&mut self) -> Option<Event> {
        let event = self.pending.pop_front()?;
        self.revision = self.revision.max(event.revision());
        Some(event)
    }

    async fn start_v3(&mut self, after: u64) -> Result<(), EtcdError> {
        let (key, end) = v3::path_range(&self.prefix);
        let mut create = json!({"key": base64(&key), "range_end": base64(&end)});
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
            return Err(EtcdError::Status {
                endpoint,
                code: status,
                message: crate::messages::ErrorBody::message(&bytes),
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
            self.revision = result.header.revision.revision();
        }
        let puts = self.queue_v3(result)?;
        self.add_lease_ttls(puts).await
    }

    async fn next_line(&mut self) -> Result<Vec<u8>, EtcdError> {
        let stream = self.v3.as_mut().expect("a v3 watch");
        loop {
            if let Some(pos) = stream.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = stream.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(line);
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
        let puts = self.queue_v3(result)?;
        self.add_lease_ttls(puts).await
    }

    /// Queues the events of one message; returns the positions of leased puts. A key or
    /// value that is not text is queued as [`Event::Undecodable`] at its revision, so
    /// the stream moves past it like any other change.
    fn queue_v3(&mut self, result: WatchResult<'_>) -> Result<Vec<usize>, EtcdError> {
        let (mut key_buf, mut value_buf) = (Vec::new(), Vec::new());
        let mut leased = Vec::new();
        for event in &result.events {
            let deleted = event.kind == EventKind::Delete;
            let entry = match v3::entry_ref(&event.kv, deleted, &mut key_buf, &mut value_buf) {
                Ok(entry) => entry,
                Err(undecodable) => {
                    if under(&self.prefix, &undecodable.key) {
                        self.pending.push_back(Event::Undecodable(undecodable));
                    }
                    continue;
                }
            };
            if !under(&self.prefix, entry.key) {
                continue;
            }
            if deleted {
                self.pending.push_back(Event::Delete {
                    key: entry.key.to_string(),
                    revision: entry.mod_revision,
                });
                continue;
            }
            if entry.lease.is_some() {
                leased.push(self.pending.len());
            }
            self.pending.push_back(Event::Put(entry.to_entry()));
        }
        Ok(leased)
    }

    /// Fills in the granted TTL of the queued puts at `positions` (with `watch`).
    async fn add_lease_ttls(&mut self, positions: Vec<usize>) -> Result<(), EtcdError> {
        if !self.lease_ttls {
            return Ok(());
        }
        for at in positions {
            let Some(Event::Put(entry)) = self.pending.get(at) else {
                continue;
            };
            let Some(id) = entry.lease else { continue };
            let leases = &mut self.v3.as_mut().expect("a v3 watch").leases;
            let ttl = match leases.get(&id) {
                Some(ttl) => *ttl,
                None => {
                    let ttl = v3::lease_ttl(&self.t, id).await?.map(|l| l.granted);
                    let leases = &mut self.v3.as_mut().expect("a v3 watch").leases;
                    if leases.len() >= LEASE_CACHE {
                        leases.clear();
                    }
                    leases.insert(id, ttl);
                    ttl
                }
            };
            if let Some(Event::Put(entry)) = self.pending.get_mut(at) {
                entry.ttl = ttl;
            }
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
        // A long poll: no request timeout.
        let req = Req {
            timeout: None,
            ..v2::request(Method::GET, &path, None, &query)
        };
        let answer = self.t.call_any(&req).await?;
        if answer.status >= 300 {
            let error = v2::error_body(&answer.body);
            if error.error_code == Some(v2::EVENT_INDEX_CLEARED) {
                return Err(EtcdError::Compacted(error.index.unwrap_or(self.revision)));
            }
            return Err(answer.into_status_error());
        }
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            // An empty answer (a proxy's or the server's long-poll timeout): poll again.
            return Ok(());
        }
        let body: V2Response = decode(&path, &answer.body)?;
        let Some(node) = &body.node else {
            return Ok(());
        };
        let revision = if node.modified_index > 0 {
            node.modified_index
        } else {
            self.revision
        };
        let key = node.key.clone().unwrap_or_default();
        match body.action.as_str() {
            "delete" | "expire" | "compareAndDelete" => {
                self.pending.push_back(Event::Delete { key, revision })
            }
            _ if node.dir => {}
            _ => self
                .pending
                .push_back(Event::Put(v2::entry_ref(node).to_entry())),
        }
        // Skipped events (directories) still move the wait index on.
        self.revision = self.revision.max(revision);
        Ok(())
    }
}

/// The `result` of one watch message, or the error it reports.
fn check_result(line: &[u8]) -> Result<WatchResult<'_>, EtcdError> {
    let message: WatchMessage<'_> = decode("watch", line)?;
    if let Some(error) = message.error {
        return Err(EtcdError::Status {
            endpoint: String::new(),
            code: if error.http_code == 0 {
                500
            } else {
                error.http_code
            },
            message: error.message,
        });
    }
    let result = message.result.unwrap_or(WatchResult {
        header: Header::default(),
        canceled: false,
        compact_revision: Default::default(),
        events: Vec::new(),
    });
    let compacted = result.compact_revision.0;
    if compacted > 0 {
        return Err(EtcdError::Compacted(compacted as u64));
    }
    if result.canceled {
        return Err(EtcdError::WatchEnded);
    }
    Ok(result)
}
