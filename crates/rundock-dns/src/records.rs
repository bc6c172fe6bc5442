//! The in-memory copy of the SkyDNS records under one etcd prefix, and the name → records
//! lookup SkyDNS and CoreDNS do: a DNS name maps to a key prefix, and every record at or
//! below that key answers; a `*` or `any` label matches any one key label.
//!
//! The set is filled and kept current by [`crate::sync`]; the answering code only reads it.

use std::collections::BTreeMap;

use rundock_spec::skydns::{name_to_path, path_to_name, Record};

/// One etcd key's record and the TTL etcd gives it (v3 lease TTL, v2 key TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub record: Record,
    /// `None` when the key has no lease / TTL in etcd.
    pub etcd_ttl: Option<u32>,
}

impl Entry {
    /// The TTL an answer from this record carries: the smaller of the etcd TTL and the
    /// record's own `ttl`, whichever is set, else `default` (SkyDNS `calculateTtl`).
    pub fn answer_ttl(&self, default: u32) -> u32 {
        let own = (self.record.ttl != 0).then_some(self.record.ttl);
        match (self.etcd_ttl.filter(|t| *t != 0), own) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => default,
        }
    }
}

/// A record found by [`RecordSet::lookup`], with the key it lives at.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The (lower-cased) etcd key.
    pub key: &'a str,
    pub entry: &'a Entry,
}

impl Found<'_> {
    /// The key as a DNS name: `/skydns/com/example/x/node-1` → `node-1.x.example.com.`.
    pub fn key_name(&self, prefix: &str) -> Option<String> {
        path_to_name(prefix, self.key)
    }
}

/// Why a value was not taken into the set.
#[derive(Debug)]
pub enum RecordError {
    /// The key is not below the prefix (or is the prefix itself).
    OutsidePrefix,
    /// The value is not a SkyDNS service record.
    BadValue(serde_json::Error),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::OutsidePrefix => f.write_str("key is outside the prefix"),
            RecordError::BadValue(e) => write!(f, "value is not a SkyDNS record: {e}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Records keyed by their lower-cased etcd key, plus the etcd revision they reflect.
#[derive(Debug, Clone, Default)]
pub struct RecordSet {
    prefix: String,
    entries: BTreeMap<String, Entry>,
    /// The etcd revision (v3) or index (v2) the set is current to; the SOA serial.
    pub revision: u64,
}

impl RecordSet {
    pub fn new(prefix: &str) -> RecordSet {
        RecordSet {
            prefix: normalise_prefix(prefix),
            entries: BTreeMap::new(),
            revision: 0,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every record (before a fresh list replaces them).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Inserts or replaces the record at `key`.
    pub fn insert(&mut self, key: &str, record: Record, etcd_ttl: Option<u32>) {
        self.entries
            .insert(key.to_ascii_lowercase(), Entry { record, etcd_ttl });
    }

    /// Parses an etcd value and inserts it. On error the key is removed instead, so an
    /// overwrite with garbage does not leave the old answer behind.
    pub fn insert_json(
        &mut self,
        key: &str,
        value: &[u8],
        etcd_ttl: Option<u32>,
    ) -> Result<(), RecordError> {
        let key = key.to_ascii_lowercase();
        if path_to_name(&self.prefix, &key).is_none() {
            return Err(RecordError::OutsidePrefix);
        }
        match parse_record(value) {
            Ok(record) => {
                self.entries.insert(key, Entry { record, etcd_ttl });
                Ok(())
            }
            Err(e) => {
                self.entries.remove(&key);
                Err(RecordError::BadValue(e))
            }
        }
    }

    /// Removes the record at `key`; true if there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(&key.to_ascii_lowercase()).is_some()
    }

    /// Removes every record at or below `key` (an etcd v2 directory delete or expiry).
    pub fn remove_tree(&mut self, key: &str) -> usize {
        let key = key.to_ascii_lowercase();
        let doomed: Vec<String> = self
            .entries
            .range(key.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&key))
            .filter(|k| at_or_below(k, &key))
            .cloned()
            .collect();
        for k in &doomed {
            self.entries.remove(k);
        }
        doomed.len()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(&key.to_ascii_lowercase())
    }

    /// Every record at or below the key `name` maps to, in key order. `name` is a DNS name
    /// (trailing dot optional, any case); `*` and `any` labels match any one key label.
    pub fn lookup(&self, name: &str) -> Vec<Found<'_>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = name.rsplit('.').filter(|l| !l.is_empty()).collect();
        let wildcard = labels.iter().position(|l| is_wildcard(l));
        let Some(first_wild) = wildcard else {
            let path = name_to_path(&self.prefix, &name);
            return self.below(path).collect();
        };
        // Scan below the part before the first wildcard, then match label by label.
        let mut base = self.prefix.clone();
        for label in &labels[..first_wild] {
            base.push('/');
            base.push_str(label);
        }
        let skip = self.prefix.len() + 1;
        self.below(base)
            .filter(|found| {
                let Some(rest) = found.key.get(skip..) else {
                    return false;
                };
                let key_labels: Vec<&str> = rest.split('/').collect();
                key_labels.len() >= labels.len()
                    && labels
                        .iter()
                        .zip(&key_labels)
                        .all(|(want, have)| is_wildcard(want) || want == have)
            })
            .collect()
    }

    /// Records at `path` itself or in its subtree.
    fn below(&self, path: String) -> impl Iterator<Item = Found<'_>> + '_ {
        let len = path.len();
        self.entries
            .range(path.clone()..)
            .take_while(move |(k, _)| k.starts_with(&path))
            .filter(move |(k, _)| k.len() == len || k.as_bytes()[len] == b'/')
            .map(|(key, entry)| Found { key, entry })
    }
}

/// `key` is `path` or lies in its subtree (`/a/b` is below `/a`, `/ab` is not).
fn at_or_below(key: &str, path: &str) -> bool {
    key.len() == path.len() || key.as_bytes().get(path.len()) == Some(&b'/')
}

fn is_wildcard(label: &str) -> bool {
    label == "*" || label == "any"
}

fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_ascii_lowercase()
    } else {
        format!("/{}", trimmed.to_ascii_lowercase())
    }
}

/// Parses a SkyDNS value (`msg.Service` JSON; unknown fields are ignored).
pub fn parse_record(value: &[u8]) -> Result<Record, serde_json::Error> {
    serde_json::from_slice(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(host: &str) -> Record {
        Record {
            host: host.into(),
            ..Record::default()
        }
    }

    fn set() -> RecordSet {
        let mut s = RecordSet::new("/skydns/");
        s.insert(
            "/skydns/test/skydns/region1/prod/server1/a",
            rec("10.0.0.1"),
            None,
        );
        s.insert(
            "/skydns/test/skydns/region1/prod/server1/b",
            rec("10.0.0.2"),
            None,
        );
        s.insert(
            "/skydns/test/skydns/region1/prod/server10/a",
            rec("10.0.0.9"),
            None,
        );
        s.insert(
            "/skydns/test/skydns/region1/dev/server1/a",
            rec("dev.server1"),
            None,
        );
        s.insert("/skydns/test/skydns/region1/sub/c", rec("10.0.0.3"), None);
        s
    }

    fn keys(found: &[Found<'_>]) -> Vec<String> {
        found.iter().map(|f| f.key.to_string()).collect()
    }

    #[test]
    fn a_name_answers_for_its_whole_subtree_and_nothing_beside_it() {
        let s = set();
        assert_eq!(
            keys(&s.lookup("server1.prod.region1.skydns.test.")),
            [
                "/skydns/test/skydns/region1/prod/server1/a",
                "/skydns/test/skydns/region1/prod/server1/b"
            ]
        );
        assert_eq!(
            keys(&s.lookup("a.server1.prod.region1.skydns.test")).len(),
            1
        );
        assert_eq!(s.lookup("region1.skydns.test.").len(), 5);
        assert!(s.lookup("c.server1.prod.region1.skydns.test.").is_empty());
    }

    #[test]
    fn lookup_is_case_insensitive_both_ways() {
        let mut s = set();
        s.insert("/skydns/test/skydns/UPPER/X", rec("10.1.1.1"), None);
        assert_eq!(s.lookup("A.Server1.PROD.region1.skydns.TEST.").len(), 1);
        assert_eq!(s.lookup("x.upper.skydns.test.").len(), 1);
    }

    #[test]
    fn star_and_any_labels_are_wildcards() {
        let s = set();
        assert_eq!(s.lookup("*.region1.skydns.test.").len(), 5);
        assert_eq!(
            keys(&s.lookup("server1.*.region1.skydns.test.")),
            [
                "/skydns/test/skydns/region1/dev/server1/a",
                "/skydns/test/skydns/region1/prod/server1/a",
                "/skydns/test/skydns/region1/prod/server1/b"
            ]
        );
        assert_eq!(s.lookup("a.server1.any.region1.skydns.test.").len(), 2);
        assert_eq!(s.lookup("prod.any.skydns.test.").len(), 3);
        // Keys shorter than the pattern never match.
        assert!(s.lookup("x.*.sub.region1.skydns.test.").is_empty());
    }

    #[test]
    fn remove_and_remove_tree() {
        let mut s = set();
        assert!(s.remove("/skydns/test/skydns/region1/sub/c"));
        assert!(!s.remove("/skydns/test/skydns/region1/sub/c"));
        assert_eq!(s.remove_tree("/skydns/test/skydns/region1/prod/server1"), 2);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn json_values_are_parsed_and_garbage_removes_the_old_record() {
        let mut s = RecordSet::new("/skydns");
        let key = "/skydns/com/example/x/a";
        s.insert_json(
            key,
            br#"{"host":"10.0.0.1","port":80,"mail":true}"#,
            Some(30),
        )
        .unwrap();
        assert_eq!(s.get(key).unwrap().record.port, 80);
        assert!(s.insert_json(key, b"not json", None).is_err());
        assert!(s.get(key).is_none());
        assert!(matches!(
            s.insert_json("/other/a", b"{}", None),
            Err(RecordError::OutsidePrefix)
        ));
    }

    #[test]
    fn ttl_is_the_smaller_of_etcd_and_record() {
        let entry = |etcd, own| Entry {
            record: Record {
                ttl: own,
                ..Record::default()
            },
            etcd_ttl: etcd,
        };
        assert_eq!(entry(Some(30), 60).answer_ttl(300), 30);
        assert_eq!(entry(Some(90), 60).answer_ttl(300), 60);
        assert_eq!(entry(None, 60).answer_ttl(300), 60);
        assert_eq!(entry(Some(45), 0).answer_ttl(300), 45);
        assert_eq!(entry(None, 0).answer_ttl(300), 300);
    }
}
