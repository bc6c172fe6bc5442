//! SkyDNS layout: where a record lives in etcd and what it holds.
//!
//! `NAME.DOMAIN` with instance `HOST` lives at
//! `/<prefix>/<DOMAIN labels reversed>/<NAME>/<HOST>`, e.g.
//! `node-1.influxdb.s.prod.example.com` ↔ `/skydns/com/example/prod/s/influxdb/node-1`.
//! The same mapping serves the announcer (writing) and the DNS responder (reading).

use serde::{Deserialize, Serialize};

/// The record value, as SkyDNS and CoreDNS's etcd plugin read it (`msg.Service`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u16,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// SkyDNS: this record also answers MX queries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mail: bool,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[serde(default, rename = "targetstrip", skip_serializing_if = "is_zero")]
    pub target_strip: u16,
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
}
