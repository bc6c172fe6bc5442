//! The JSON messages etcd answers with, as typed structs: the v3 gateway's (ranges,
//! leases, watch lines, authentication) and the v2 keys API's.
//!
//! A field that is missing takes its zero value (protobuf's JSON mapping omits zeros);
//! a field that is present but malformed is a decode error, never a silent 0. Keys and
//! values of the v3 range and watch messages borrow from the response body, so a
//! 50,000-key range costs one body buffer and one flat vector, not a tree of values.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::EtcdError;

/// An int64 as the gateway writes it: a JSON string of digits (numbers are taken too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Int64, D::Error> {
        struct Int64Visitor;
        impl Visitor<'_> for Int64Visitor {
            type Value = Int64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an int64 as a string of digits or a number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Int64, E> {
                s.parse()
                    .map(Int64)
                    .map_err(|_| E::custom(format!("{s:?} is not an int64")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int64, E> {
                Ok(Int64(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int64, E> {
                i64::try_from(n)
                    .map(Int64)
                    .map_err(|_| E::custom(format!("{n} is out of the int64 range")))
            }
        }
        d.deserialize_any(Int64Visitor)
    }
}

impl Int64 {
    /// A revision or index: never negative.
    pub(crate) fn revision(self) -> u64 {
        self.0.max(0) as u64
    }
}

/// Decodes a whole message, naming what was expected in the error.
pub(crate) fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, EtcdError> {
    serde_json::from_slice(bytes).map_err(|e| {
        EtcdError::Decode(format!(
            "{what}: {e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })
}

/// Decodes one base64 field of the v3 gateway into `buf` (reused between keys). etcd
/// keys and values are bytes: whether they are text is the caller's question
/// ([`text`]), asked per key, so one key that is not cannot fail a whole message.
pub(crate) fn unbase64<'b>(
    field: &str,
    text: &str,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], String> {
    buf.clear();
    B64.decode_vec(text, buf)
        .map_err(|e| format!("{field}: base64: {e}"))?;
    Ok(buf)
}

/// `bytes` as UTF-8 text, or why not, naming `field`.
pub(crate) fn text<'b>(field: &str, bytes: &'b [u8]) -> Result<&'b str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("{field}: not UTF-8: {e}"))
}

pub(crate) fn base64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Header {
    #[serde(default)]
    pub revision: Int64,
}

/// One `mvccpb.KeyValue`; key and value still base64.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyValue<'a> {
    #[serde(borrow, default)]
    pub key: Cow<'a, str>,
    #[serde(borrow, default)]
    pub value: Cow<'a, str>,
    #[serde(default)]
    pub lease: Int64,
    #[serde(default)]
    pub mod_revision: Int64,
}

/// `/v3/kv/range`.
#[derive(Debug, Deserialize)]
pub(crate) struct RangeResponse<'a> {
    #[serde(default)]
    pub header: Header,
    #[serde(borrow, default)]
    pub kvs: Vec<KeyValue<'a>>,
}

/// `/v3/kv/txn`: whether the compare held, and the failure branch's range.
#[derive(Debug, Deserialize)]
pub(crate) struct TxnResponse<'a> {
    #[serde(default)]
    pub succeeded: bool,
    #[serde(borrow, default)]
    pub responses: Vec<TxnOpResponse<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TxnOpResponse<'a> {
    #[serde(borrow, default)]
    pub response_range: Option<RangeResponse<'a>>,
}

/// `/v3/lease/grant`.
#[derive(Debug, Deserialize)]
pub(crate) struct LeaseGrantResponse {
    #[serde(rename = "ID", default)]
    pub id: Int64,
    #[serde(default)]
    pub error: String,
}

/// `/v3/lease/keepalive` (a server stream: one message per request).
#[derive(Debug, Deserialize)]
pub(crate) struct KeepAliveMessage {
    #[serde(default)]
    pub result: Option<KeepAliveResult>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KeepAliveResult {
    /// 0 when the lease is unknown or expired.
    #[serde(rename = "TTL", default)]
    pub ttl: Int64,
}

/// `/v3/lease/timetolive`.
#[derive(Debug, Deserialize)]
pub(crate) struct TimeToLiveResponse {
    /// Seconds left; -1 when the lease is unknown or expired.
    #[serde(rename = "TTL", default)]
    pub ttl: Int64,
    #[serde(rename = "grantedTTL", default)]
    pub granted_ttl: Int64,
}

/// `/v3/auth/authenticate`.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthenticateResponse {
    #[serde(default)]
    pub token: String,
}

/// One line of the `/v3/watch` stream.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchMessage<'a> {
    #[serde(borrow, default)]
    pub result: Option<WatchResult<'a>>,
    #[serde(default)]
    pub error: Option<StreamError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WatchResult<'a> {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default)]
    pub compact_revision: Int64,
    #[serde(borrow, default)]
    pub events: Vec<WatchEvent<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent<'a> {
    /// Absent for PUT (the enum's zero value).
    #[serde(rename = "type", default)]
    pub kind: EventKind,
    #[serde(borrow)]
    pub kv: KeyValue<'a>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) enum EventKind {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

/// The error a gateway stream reports in place of a result.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamError {
    #[serde(default)]
    pub http_code: u16,
    #[serde(default)]
    pub message: String,
}

/// Any error body: the v3 gateway's `{"error","message","code"}` or v2's
/// `{"errorCode","message","cause","index"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub index: Option<u64>,
}

impl ErrorBody {
    /// The body's own message, else the start of the raw text.
    pub(crate) fn message(bytes: &[u8]) -> String {
        let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_default();
        let mut parts: Vec<&str> = Vec::new();
        for s in [&body.message, &body.error, &body.cause]
            .into_iter()
            .flatten()
        {
            if !s.is_empty() && !parts.contains(&s.as_str()) {
                parts.push(s);
            }
        }
        if parts.is_empty() {
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
        } else {
            parts.join(": ")
        }
    }
}

/// A v2 keys API answer (`GET`, `PUT`, `DELETE`, watch).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct V2Response {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub node: Option<V2Node>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2Node {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub dir: bool,
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub modified_index: u64,
    #[serde(default)]
    pub nodes: Vec<V2Node>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_reads_strings_and_numbers_and_rejects_garbage() {
        let h: Header = serde_json::from_str(r#"{"revision":"42"}"#).unwrap();
        assert_eq!(h.revision, Int64(42));
        let h: Header = serde_json::from_str(r#"{"revision":7}"#).unwrap();
        assert_eq!(h.revision, Int64(7));
        let h: Header = serde_json::from_str("{}").unwrap();
        assert_eq!(h.revision, Int64(0));
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x1"}"#).is_err());
        assert!(serde_json::from_str::<Header>(r#"{"revision":true}"#).is_err());
    }

    #[test]
    fn a_range_borrows_its_keys_and_decodes() {
        let body = br#"{"header":{"revision":"9"},"kvs":[
            {"key":"L2EvYg==","value":"eyJob3N0IjoiMTAuMC4wLjEifQ==","lease":"1234","mod_revision":"8"},
            {"key":"L2EvYw==","mod_revision":"9"}],"count":"2"}"#;
        let range: RangeResponse<'_> = decode("range", body).unwrap();
        assert_eq!(range.header.revision.revision(), 9);
        assert!(matches!(range.kvs[0].key, Cow::Borrowed(_)));
        let mut buf = Vec::new();
        assert_eq!(
            unbase64("key", &range.kvs[0].key, &mut buf).unwrap(),
            b"/a/b"
        );
        assert_eq!(range.kvs[0].lease, Int64(1234));
        assert_eq!(range.kvs[1].lease, Int64(0));
        assert_eq!(
            unbase64("value", &range.kvs[1].value, &mut buf).unwrap(),
            b""
        );
        assert!(unbase64("key", "@@", &mut buf).is_err());
        // Bytes that are not text decode; whether they are text is a question of its own.
        assert_eq!(unbase64("value", "/w==", &mut buf).unwrap(), [0xff]);
        let err = text("kv.value", &[b'{', 0xff]).unwrap_err();
        assert!(err.starts_with("kv.value: not UTF-8"), "{err}");
        assert!(decode::<RangeResponse<'_>>("range", br#"{"kvs":[{"lease":"x"}]}"#).is_err());
    }

    #[test]
    fn watch_lines_and_error_bodies() {
        let line = br#"{"result":{"header":{"revision":"5"},"events":[{"kv":{"key":"L2E=","mod_revision":"5"}},{"type":"DELETE","kv":{"key":"L2I=","mod_revision":"5"}}]}}"#;
        let m: WatchMessage<'_> = decode("watch", line).unwrap();
        let r = m.result.unwrap();
        assert_eq!(r.events[0].kind, EventKind::Put);
        assert_eq!(r.events[1].kind, EventKind::Delete);
        let m: WatchMessage<'_> = decode(
            "watch",
            br#"{"error":{"http_code":503,"message":"no leader"}}"#,
        )
        .unwrap();
        assert_eq!(m.error.unwrap().http_code, 503);
        assert_eq!(
            ErrorBody::message(
                br#"{"error":"lease not found","message":"lease not found","code":5}"#
            ),
            "lease not found"
        );
        assert_eq!(
            ErrorBody::message(br#"{"errorCode":100,"message":"Key not found","cause":"/x"}"#),
            "Key not found: /x"
        );
        assert_eq!(ErrorBody::message(b"plain"), "plain");
    }
}
