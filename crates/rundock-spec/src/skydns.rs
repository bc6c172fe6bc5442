//! SkyDNS layout: where a record lives in etcd and what it holds.
//!
//! `NAME.DOMAIN` with instance `HOST` lives at
//! `/<prefix>/<DOMAIN labels reversed>/<NAME>/<HOST>`, e.g.
//! `node-1.influxdb.s.prod.example.com` ↔ `/skydns/com/example/prod/s/influxdb/node-1`.
//! The same mapping serves the announcer (writing) and the DNS responder (reading).
//!
//! It also owns the one rule for what a reader takes from etcd ([`decode_record`]):
//! anyone who can write under the prefix can write anything, and what a reader takes
//! ends up in DNS answers and, through `rundock watch`, in proxy configuration. So every
//! key label must be a DNS label, `host` an address or a host name, text free of control
//! characters, and the value bounded; a record that fails is skipped whole, never
//! repaired, and the error names the field and the allowed form.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The record value, as SkyDNS and CoreDNS's etcd plugin read it (`msg.Service`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The address or host name answers point to (A/AAAA, or the SRV target); empty when
    /// the record carries none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The port SRV answers carry; 0 (left out of the JSON) when the record has none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u16,
    /// SRV priority (lower is preferred); 0 (left out) when unset: the server applies its
    /// own default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u16,
    /// SRV weight among records of the same priority; 0 (left out) when unset: the server
    /// applies its own default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u16,
    /// TXT data; free of control characters when decoded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// SkyDNS: this record also answers MX queries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mail: bool,
    /// Seconds a resolver may cache answers from this record; 0 (left out) when unset: the
    /// server applies its own default.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// SkyDNS `targetstrip`: how many leading labels to strip from the name to make an SRV target;
    /// 0 (left out) strips none.
    #[serde(default, rename = "targetstrip", skip_serializing_if = "is_zero")]
    pub target_strip: u16,
    /// SkyDNS group: dot-separated labels; when set, only records of the same group answer
    /// together. Empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// The etcd key of one instance of a service.
pub fn instance_key(prefix: &str, domain: &str, service: &str, instance: &str) -> String {
    let mut key = name_to_path(prefix, &format!("{service}.{domain}"));
    key.push('/');
    key.push_str(instance);
    key
}

/// The etcd key of `spec`'s own record: the one its announcer writes, a start-first
/// update waits on and `state=absent` deletes (`None` without an `announce` section).
pub fn record_key(spec: &crate::Spec) -> Option<String> {
    let announce = spec.announce.as_ref()?;
    Some(instance_key(
        &announce.etcd.prefix,
        &announce.domain,
        &spec.name,
        &spec.host_label,
    ))
}

/// `a.b.c` under prefix `/skydns` → `/skydns/c/b/a` (lower-cased, trailing dot ignored).
pub fn name_to_path(prefix: &str, name: &str) -> String {
    let mut path = prefix.trim_end_matches('/').to_string();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    for label in name.rsplit('.').filter(|l| !l.is_empty()) {
        path.push('/');
        path.push_str(label);
    }
    path
}

/// `/skydns/c/b/a` → `a.b.c.`; `None` for keys outside the prefix.
pub fn path_to_name(prefix: &str, key: &str) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let labels: Vec<&str> = rest.split('/').filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        return None;
    }
    let mut name: String = labels.iter().rev().copied().collect::<Vec<_>>().join(".");
    name.push('.');
    Some(name)
}

/// The largest value a reader takes, in bytes: a record is a few hundred; etcd allows
/// 1.5 MB, which answered to every query would be a cheap amplifier.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// The longest DNS name, in its text form without the trailing dot (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// The longest DNS label (RFC 1035 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

const LABEL_FORM: &str = "a DNS label: 1 to 63 of a-z, A-Z, 0-9, '-' and '_'";
const HOST_FORM: &str =
    "an IPv4 or IPv6 address, or a host name of dot-separated DNS labels (a-z, A-Z, 0-9, '-', '_'; at most 253 characters)";
/// The allowed form of a record's `text`, as error messages word it.
pub const TEXT_FORM: &str = "text without control characters";
const GROUP_FORM: &str = "dot-separated DNS labels (a-z, A-Z, 0-9, '-', '_')";

/// Why a key or value under the prefix is not taken as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The key is not below the prefix (or is the prefix itself).
    OutsidePrefix,
    /// A key label (between two `/`) is not a DNS label, or the name is too long.
    Key {
        /// The offending label, or the whole name when it is too long.
        label: String,
        /// What a label (or the name) must be.
        form: &'static str,
    },
    /// The value is longer than [`MAX_VALUE_BYTES`].
    TooLarge(usize),
    /// The value is not a SkyDNS record (not JSON, not an object, a field of the wrong
    /// type or out of range).
    Json(String),
    /// A field holds something outside its grammar.
    Field {
        /// Which record field (`host`, `text`, `group`).
        field: &'static str,
        /// What it held, as read.
        value: String,
        /// The field's allowed form.
        form: &'static str,
    },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::OutsidePrefix => f.write_str("key is outside the prefix"),
            RecordError::Key { label, form } => {
                write!(f, "key label {:?}: expected {form}", shorten(label))
            }
            RecordError::TooLarge(len) => write!(
                f,
                "value is {len} bytes: expected at most {MAX_VALUE_BYTES}"
            ),
            RecordError::Json(e) => write!(f, "value is not a SkyDNS record: {e}"),
            RecordError::Field { field, value, form } => {
                write!(f, "{field} {:?}: expected {form}", shorten(value))
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// At most 64 characters of `text` for an error message (which `{:?}` then escapes, so
/// no key can put a line of its own into a log).
fn shorten(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `label` is a DNS label of the safe grammar: 1 to 63 of `a-z A-Z 0-9 - _`. Nothing
/// else can end a line, a directive, a block, a string or a template expression in
/// the files `rundock watch` renders.
pub fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `name` is dot-separated [`is_label`] labels, at most [`MAX_NAME_LEN`] characters, a
/// trailing dot allowed.
pub fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('.').all(is_label)
}

/// `host` is what a record's `host` may hold: an IP address or [`is_host_name`].
pub fn is_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || is_host_name(host)
}

/// Checks that `key` lies below `prefix` and every label below it is a DNS label, the
/// whole name at most [`MAX_NAME_LEN`] characters.
pub fn check_key(prefix: &str, key: &str) -> Result<(), RecordError> {
    let prefix = prefix.trim_end_matches('/');
    let rest = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(RecordError::OutsidePrefix)?;
    if rest.is_empty() {
        return Err(RecordError::OutsidePrefix);
    }
    for label in rest.split('/') {
        if !is_label(label) {
            return Err(RecordError::Key {
                label: label.to_string(),
                form: LABEL_FORM,
            });
        }
    }
    if rest.len() > MAX_NAME_LEN {
        return Err(RecordError::Key {
            label: rest.to_string(),
            form: "a name of at most 253 characters",
        });
    }
    Ok(())
}

/// The one rule for a key and value read from etcd: the key checked by [`check_key`],
/// the value at most [`MAX_VALUE_BYTES`] of SkyDNS JSON whose fields pass
/// [`Record::check`].
pub fn decode_record(prefix: &str, key: &str, value: &[u8]) -> Result<Record, RecordError> {
    check_key(prefix, key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(RecordError::TooLarge(value.len()));
    }
    // serde takes a JSON array for a struct too, field by field in order: only an
    // object is a record.
    if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(RecordError::Json("expected a JSON object".into()));
    }
    let record: Record =
        serde_json::from_slice(value).map_err(|e| RecordError::Json(e.to_string()))?;
    record.check()?;
    Ok(record)
}

/// Whether `text` may be a record's TXT text: no control characters (a tab or newline
/// would reach the configuration files rendered from records). The module refuses such a
/// `text` for the same reason readers skip a record holding one.
pub fn is_record_text(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

impl Record {
    /// Checks the fields with a grammar of their own (the numbers are typed): `host`
    /// empty or [`is_host`], `text` without control characters, `group` labels.
    pub fn check(&self) -> Result<(), RecordError> {
        if !self.host.is_empty() && !is_host(&self.host) {
            return Err(RecordError::Field {
                field: "host",
                value: self.host.clone(),
                form: HOST_FORM,
            });
        }
        if !is_record_text(&self.text) {
            return Err(RecordError::Field {
                field: "text",
                value: self.text.clone(),
                form: TEXT_FORM,
            });
        }
        if !self.group.is_empty() && !is_host_name(&self.group) {
            return Err(RecordError::Field {
                field: "group",
                value: self.group.clone(),
                form: GROUP_FORM,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        assert_eq!(
            instance_key("/skydns", "s.prod.example.com", "influxdb", "node-back-1"),
            "/skydns/com/example/prod/s/influxdb/node-back-1"
        );
        assert_eq!(
            name_to_path("/skydns/", "InfluxDB.s.prod.example.com."),
            "/skydns/com/example/prod/s/influxdb"
        );
        assert_eq!(
            path_to_name("/skydns", "/skydns/com/example/prod/s/influxdb/node-back-1").as_deref(),
            Some("node-back-1.influxdb.s.prod.example.com.")
        );
        assert_eq!(path_to_name("/skydns", "/other/x"), None);
    }

    #[test]
    fn record_json_has_explicit_ttl_and_skips_unset_fields() {
        let record = Record {
            host: "10.0.0.5".into(),
            port: 8086,
            ttl: 60,
            ..Record::default()
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"host":"10.0.0.5","port":8086,"ttl":60}"#
        );
        let parsed: Record =
            serde_json::from_str(r#"{"host":"a","port":1,"targetstrip":1,"extra":true}"#).unwrap();
        assert_eq!(parsed.target_strip, 1);
    }

    #[test]
    fn keys_are_dns_labels_below_the_prefix() {
        assert!(check_key("/skydns", "/skydns/com/example/s/web/node-1").is_ok());
        assert!(check_key("/skydns/", "/skydns/com/Ex_a/x").is_ok());
        assert_eq!(
            check_key("/skydns", "/skydns"),
            Err(RecordError::OutsidePrefix)
        );
        assert_eq!(
            check_key("/skydns", "/skydnsx/a"),
            Err(RecordError::OutsidePrefix)
        );
        assert_eq!(
            check_key("/skydns", "/other/a"),
            Err(RecordError::OutsidePrefix)
        );
        for bad in [
            "/skydns/com/x/a\nserver 6.6.6.6",
            "/skydns/com/x/a;b",
            "/skydns/com/x/{a}",
            "/skydns/com/x/a b",
            "/skydns/com/x/\"a\"",
            "/skydns/com/x/{{a}}",
            "/skydns/com/x/{%a%}",
            "/skydns/com/x/a.b",
            "/skydns/com/x//a",
            "/skydns/com/x/a/",
            "/skydns/com/x/*",
            "/skydns/com/x/\u{fffd}",
        ] {
            let key = bad.to_string();
            let err = check_key("/skydns", &key).unwrap_err();
            assert!(matches!(err, RecordError::Key { .. }), "{key:?}: {err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        let long = format!("/skydns/{}", vec!["a".repeat(60); 5].join("/"));
        assert!(check_key("/skydns", &long).is_err());
        let label64 = format!("/skydns/{}", "a".repeat(64));
        assert!(check_key("/skydns", &label64).is_err());
    }

    #[test]
    fn values_are_bounded_typed_and_every_field_in_its_grammar() {
        let key = "/skydns/test/x/a";
        let ok = |value: &str| decode_record("/skydns", key, value.as_bytes());
        assert_eq!(ok(r#"{"host":"10.0.0.1","port":80}"#).unwrap().port, 80);
        assert!(ok(r#"{"host":"fd00::1"}"#).is_ok());
        assert!(ok(r#"{"host":"edge.example.org."}"#).is_ok());
        assert!(ok(r#"{"text":"v=spf1 \"quoted\" ; {x}"}"#).is_ok());
        for (value, field) in [
            (r#"{"host":"a b"}"#, "host"),
            (r#"{"host":"a;b"}"#, "host"),
            (r#"{"host":"a\nb"}"#, "host"),
            (r#"{"host":"{{x}}"}"#, "host"),
            (r#"{"host":"fe80::1%eth0"}"#, "host"),
            (r#"{"host":"a..b"}"#, "host"),
            (r#"{"text":"a\nb"}"#, "text"),
            (r#"{"group":"g;1"}"#, "group"),
        ] {
            let err = ok(value).unwrap_err();
            assert!(
                matches!(&err, RecordError::Field { field: f, .. } if *f == field),
                "{value}: {err}"
            );
        }
        for value in [
            "",
            "{",
            "[]",
            r#"["10.0.0.1", 80]"#,
            "null",
            r#"{"host":5}"#,
            r#"{"port":"80"}"#,
            r#"{"port":70000}"#,
            r#"{"port":-1}"#,
            r#"{"ttl":1.5}"#,
            r#"{"mail":"yes"}"#,
        ] {
            assert!(
                matches!(ok(value), Err(RecordError::Json(_))),
                "{value}: {:?}",
                ok(value)
            );
        }
        let big = format!(
            r#"{{"host":"10.0.0.1","text":"{}"}}"#,
            "x".repeat(MAX_VALUE_BYTES)
        );
        assert_eq!(ok(&big), Err(RecordError::TooLarge(big.len())));
        let long_host = format!(r#"{{"host":"{}"}}"#, vec!["a".repeat(60); 5].join("."));
        assert!(ok(&long_host).is_err());
    }
}
