//! The in-memory copy of the SkyDNS records under one etcd prefix, and the name → records
//! lookup SkyDNS and CoreDNS do: a DNS name maps to a key prefix, and every record at or
//! below that key answers; a `*` or `any` label matches any one key label.
//!
//! The set is filled and kept current by [`crate::sync`]; the answering code only reads it.
//!
//! It also keeps the TTL of every v3 lease its records hang on, counted by the records
//! that use it, so a lease's bookkeeping goes with its last record. A lease's TTL is
//! looked up only once a query finds one of its records (the lookup is requested on the
//! channel given to [`RecordSet::request_lease_ttls`], see [`crate::sync`]); until it
//! is known, answers carry the record's own `ttl`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc::UnboundedSender;

use rundock_spec::skydns::{decode_record, name_to_path, path_to_name, Record};

/// One etcd key's record and the TTL etcd gives it (v3 lease TTL, v2 key TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The decoded record, already checked against the record rule.
    pub record: Record,
    /// A TTL known when the key was read (v2 key TTL); `None` when the key has none
    /// or its TTL is its lease's.
    pub etcd_ttl: Option<u32>,
    /// The v3 lease the key hangs on; its TTL lives in the set's lease table.
    pub lease: Option<i64>,
}

impl Entry {
    /// The TTL an answer from this record carries: the smaller of the etcd TTL and the
    /// record's own `ttl`, whichever is set, else `default` (SkyDNS `calculateTtl`).
    pub fn answer_ttl(&self, default: u32) -> u32 {
        answer_ttl(self.record.ttl, self.etcd_ttl, default)
    }
}

fn answer_ttl(own: u32, etcd: Option<u32>, default: u32) -> u32 {
    let own = (own != 0).then_some(own);
    match (etcd.filter(|t| *t != 0), own) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => default,
    }
}

/// What is known of one lease's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseTtl {
    /// Not looked up yet: answers use the record's own `ttl`.
    Unknown,
    /// The lease's granted TTL, in seconds.
    Known(u32),
    /// etcd no longer has the lease; its keys' deletes are on their way.
    Gone,
}

#[derive(Debug)]
struct LeaseUse {
    ttl: LeaseTtl,
    /// Records hanging on the lease; at 0 the lease is forgotten.
    records: u32,
    /// Its lookup was requested (set by readers, under the read lock).
    requested: AtomicBool,
}

impl LeaseUse {
    fn new(ttl: LeaseTtl) -> LeaseUse {
        LeaseUse {
            ttl,
            records: 0,
            requested: AtomicBool::new(false),
        }
    }
}

impl Clone for LeaseUse {
    fn clone(&self) -> LeaseUse {
        LeaseUse {
            ttl: self.ttl,
            records: self.records,
            requested: AtomicBool::new(self.requested.load(Ordering::Relaxed)),
        }
    }
}

/// A record found by [`RecordSet::lookup`], with the key it lives at.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The (lower-cased) etcd key.
    pub key: &'a str,
    /// What is stored at the key.
    pub entry: &'a Entry,
    /// The entry's etcd TTL, its lease's when it has one and it is known.
    pub etcd_ttl: Option<u32>,
}

impl Found<'_> {
    /// The TTL an answer from this record carries (see [`Entry::answer_ttl`]).
    pub fn answer_ttl(&self, default: u32) -> u32 {
        answer_ttl(self.entry.record.ttl, self.etcd_ttl, default)
    }

    /// The key as a DNS name: `/skydns/com/example/x/node-1` → `node-1.x.example.com.`.
    pub fn key_name(&self, prefix: &str) -> Option<String> {
        path_to_name(prefix, self.key)
    }
}

pub use rundock_spec::skydns::RecordError;

/// Records keyed by their lower-cased etcd key, plus the etcd revision they reflect.
#[derive(Debug, Clone, Default)]
pub struct RecordSet {
    prefix: String,
    entries: BTreeMap<String, Entry>,
    leases: HashMap<i64, LeaseUse>,
    /// Where lookups of unknown lease TTLs are requested.
    lease_requests: Option<UnboundedSender<i64>>,
    /// Keys under the prefix that were skipped (not decodable, or failing the record
    /// rule), with the revision they were skipped at: a key is reported once per
    /// revision, however often it is read again.
    skipped: HashMap<String, u64>,
    /// The etcd revision (v3) or index (v2) the set is current to; the SOA serial.
    pub revision: u64,
}

impl RecordSet {
    /// An empty set of the records under the etcd key `prefix` (e.g. `/skydns`).
    pub fn new(prefix: &str) -> RecordSet {
        RecordSet {
            prefix: normalise_prefix(prefix),
            entries: BTreeMap::new(),
            leases: HashMap::new(),
            lease_requests: None,
            skipped: HashMap::new(),
            revision: 0,
        }
    }

    /// The etcd key prefix, normalised to end without a slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many records the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Leases in use.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Drops every record (before a fresh list replaces them).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.leases.clear();
        self.skipped.clear();
    }

    /// Notes that `key` was skipped at `revision`; true the first time for this key
    /// and revision, i.e. when it is worth a log line.
    pub fn note_skipped(&mut self, key: &str, revision: u64) -> bool {
        self.skipped.insert(key.to_ascii_lowercase(), revision) != Some(revision)
    }

    /// The skipped keys and their revisions (see [`RecordSet::note_skipped`]).
    pub fn skipped(&self) -> &HashMap<String, u64> {
        &self.skipped
    }

    /// Forgets that `key` was skipped (it was deleted).
    pub fn forget_skipped(&mut self, key: &str) {
        self.skipped.remove(&key.to_ascii_lowercase());
    }

    /// Inserts or replaces the record at `key`, taken as it is: for records built in
    /// code. Whatever comes from etcd goes through [`RecordSet::insert_json_leased`].
    pub fn insert(&mut self, key: &str, record: Record, etcd_ttl: Option<u32>) {
        self.put(
            key.to_ascii_lowercase(),
            Entry {
                record,
                etcd_ttl,
                lease: None,
            },
        );
    }

    /// Parses an etcd value and inserts it. On error the key is removed instead, so an
    /// overwrite with garbage does not leave the old answer behind.
    pub fn insert_json(
        &mut self,
        key: &str,
        value: &[u8],
        etcd_ttl: Option<u32>,
    ) -> Result<(), RecordError> {
        self.insert_json_leased(key, value, etcd_ttl, None)
            .map(drop)
    }

    /// [`RecordSet::insert_json`] for a key on v3 lease `lease`. Returns true when the
    /// lease is new to the set, i.e. its TTL wants looking up. The key and value must
    /// pass [`decode_record`], the one rule for what is taken from etcd; one that does
    /// not removes what was at the key before.
    pub fn insert_json_leased(
        &mut self,
        key: &str,
        value: &[u8],
        etcd_ttl: Option<u32>,
        lease: Option<i64>,
    ) -> Result<bool, RecordError> {
        let key = key.to_ascii_lowercase();
        match decode_record(&self.prefix, &key, value) {
            Ok(record) => {
                self.skipped.remove(&key);
                Ok(self.put(
                    key,
                    Entry {
                        record,
                        etcd_ttl,
                        lease,
                    },
                ))
            }
            Err(e) => {
                self.take(&key);
                Err(e)
            }
        }
    }

    /// Stores `entry`, counting its lease; true if the lease is new.
    fn put(&mut self, key: String, entry: Entry) -> bool {
        let mut new_lease = false;
        if let Some(id) = entry.lease {
            let used = self.leases.entry(id).or_insert_with(|| {
                new_lease = true;
                LeaseUse::new(LeaseTtl::Unknown)
            });
            used.records += 1;
        }
        if let Some(old) = self.entries.insert(key, entry) {
            self.release(old.lease);
        }
        new_lease
    }

    /// Removes the (lower-cased) `key`, releasing its lease.
    fn take(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(old) => {
                self.release(old.lease);
                true
            }
            None => false,
        }
    }

    fn release(&mut self, lease: Option<i64>) {
        let Some(id) = lease else { return };
        if let std::collections::hash_map::Entry::Occupied(mut used) = self.leases.entry(id) {
            used.get_mut().records -= 1;
            if used.get().records == 0 {
                used.remove();
            }
        }
    }

    /// Records what is known of lease `id`'s TTL; ignored once no record uses it.
    /// `Unknown` (a lookup that failed) lets the next query request it again.
    pub fn set_lease_ttl(&mut self, id: i64, ttl: LeaseTtl) {
        if let Some(used) = self.leases.get_mut(&id) {
            used.ttl = ttl;
            if ttl == LeaseTtl::Unknown {
                *used.requested.get_mut() = false;
            }
        }
    }

    /// What is known of lease `id`'s TTL (`None`: no record uses it).
    pub fn lease_ttl(&self, id: i64) -> Option<LeaseTtl> {
        self.leases.get(&id).map(|used| used.ttl)
    }

    /// Takes over what `older` knew of the TTLs of leases this set uses too, and where
    /// it requested lookups (after a relist, so that only new leases are looked up).
    pub fn adopt_lease_ttls(&mut self, older: &RecordSet) {
        for (id, used) in &mut self.leases {
            if let Some(old) = older.leases.get(id) {
                used.ttl = old.ttl;
                used.requested = AtomicBool::new(old.requested.load(Ordering::Relaxed));
            }
        }
        if self.lease_requests.is_none() {
            self.lease_requests = older.lease_requests.clone();
        }
    }

    /// From now on, a lookup that finds a record whose lease TTL is unknown sends the
    /// lease ID to `requests`, once per lease.
    pub fn request_lease_ttls(&mut self, requests: UnboundedSender<i64>) {
        self.lease_requests = Some(requests);
    }

    /// Leases whose TTL is still unknown (what the tests check the lookups against).
    #[cfg(test)]
    pub fn unknown_leases(&self) -> impl Iterator<Item = i64> + '_ {
        self.leases
            .iter()
            .filter(|(_, used)| used.ttl == LeaseTtl::Unknown)
            .map(|(id, _)| *id)
    }

    /// Removes the record at `key`; true if there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.skipped.remove(&key);
        self.take(&key)
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
            self.take(k);
        }
        self.skipped
            .retain(|k, _| !at_or_below(k, &key) || !k.starts_with(&key));
        doomed.len()
    }

    /// The record at the etcd key `key` (compared case-insensitively, as DNS names are).
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

    /// Records at `path` itself or in its subtree. Two exact ranges (`path`, then
    /// `path/` up to `path0`, `0` being the byte after `/`), so siblings that merely
    /// start with the same text (`n1` against `n10`...`n19999`) are never scanned.
    fn below(&self, path: String) -> impl Iterator<Item = Found<'_>> + '_ {
        let exact = self.entries.get_key_value(path.as_str());
        let subtree = self.entries.range(format!("{path}/")..format!("{path}0"));
        exact.into_iter().chain(subtree).map(|(key, entry)| Found {
            key,
            entry,
            etcd_ttl: self.etcd_ttl(entry),
        })
    }

    /// An entry's etcd TTL: its lease's when known, else what was read with it. The
    /// first time an unknown lease is met, its lookup is requested.
    fn etcd_ttl(&self, entry: &Entry) -> Option<u32> {
        let Some((id, used)) = entry.lease.and_then(|id| Some((id, self.leases.get(&id)?))) else {
            return entry.etcd_ttl;
        };
        match used.ttl {
            LeaseTtl::Known(ttl) => Some(ttl),
            LeaseTtl::Unknown => {
                if let Some(requests) = &self.lease_requests {
                    if !used.requested.swap(true, Ordering::Relaxed) {
                        let _ = requests.send(id);
                    }
                }
                entry.etcd_ttl
            }
            LeaseTtl::Gone => entry.etcd_ttl,
        }
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
        s.insert_json(key, br#"{"host":"10.0.0.1"}"#, None).unwrap();
        assert!(matches!(
            s.insert_json(key, br#"{"host":"a;b"}"#, None),
            Err(RecordError::Field { field: "host", .. })
        ));
        assert!(
            s.get(key).is_none(),
            "a value failing the rule removes the old record"
        );
        assert!(matches!(
            s.insert_json(
                "/skydns/com/example/x/a\nb",
                br#"{"host":"10.0.0.1"}"#,
                None
            ),
            Err(RecordError::Key { .. })
        ));
        assert!(s.is_empty());
        assert!(matches!(
            s.insert_json("/other/a", b"{}", None),
            Err(RecordError::OutsidePrefix)
        ));
    }

    #[test]
    fn leases_are_counted_by_their_records_and_forgotten_with_the_last() {
        let mut s = RecordSet::new("/skydns");
        let value = br#"{"host":"10.0.0.1","ttl":60}"#;
        let (a, b) = ("/skydns/x/a", "/skydns/x/b");
        assert!(s.insert_json_leased(a, value, None, Some(7)).unwrap());
        assert!(!s.insert_json_leased(b, value, None, Some(7)).unwrap());
        assert_eq!(s.unknown_leases().collect::<Vec<_>>(), [7]);
        // Unknown: the record's own ttl; known: the smaller.
        assert_eq!(s.lookup("a.x")[0].answer_ttl(300), 60);
        s.set_lease_ttl(7, LeaseTtl::Known(20));
        assert_eq!(s.lookup("a.x")[0].answer_ttl(300), 20);
        assert_eq!(s.unknown_leases().count(), 0);
        // A put under another lease moves the record; the old lease keeps b.
        assert!(s.insert_json_leased(a, value, None, Some(8)).unwrap());
        assert_eq!(s.lease_count(), 2);
        assert!(s.remove(b));
        assert_eq!(s.lease_ttl(7), None, "the last record took lease 7 with it");
        // Garbage over a leased record removes it and its lease.
        assert!(s.insert_json_leased(a, b"{", None, Some(8)).is_err());
        assert_eq!(s.lease_count(), 0);
        s.set_lease_ttl(8, LeaseTtl::Known(5));
        assert_eq!(
            s.lease_count(),
            0,
            "a late answer for a lease in no use is ignored"
        );
        // remove_tree and a relist's adoption.
        s.insert_json_leased(a, value, None, Some(9)).unwrap();
        s.set_lease_ttl(9, LeaseTtl::Known(30));
        let mut fresh = RecordSet::new("/skydns");
        fresh.insert_json_leased(a, value, None, Some(9)).unwrap();
        fresh.insert_json_leased(b, value, None, Some(10)).unwrap();
        fresh.adopt_lease_ttls(&s);
        assert_eq!(fresh.unknown_leases().collect::<Vec<_>>(), [10]);
        assert_eq!(fresh.remove_tree("/skydns/x"), 2);
        assert_eq!(fresh.lease_count(), 0);
    }

    #[test]
    fn a_lookup_requests_an_unknown_lease_once() {
        let mut s = RecordSet::new("/skydns");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.request_lease_ttls(tx);
        let value = br#"{"host":"10.0.0.1","ttl":60}"#;
        s.insert_json_leased("/skydns/x/a", value, None, Some(7))
            .unwrap();
        s.insert_json_leased("/skydns/x/b", value, None, Some(8))
            .unwrap();
        assert!(
            rx.try_recv().is_err(),
            "nothing is looked up before a query"
        );
        assert_eq!(s.lookup("a.x").len(), 1);
        assert_eq!(s.lookup("a.x").len(), 1);
        assert_eq!(rx.try_recv().unwrap(), 7);
        assert!(rx.try_recv().is_err(), "requested once");
        // A relist keeps what was requested; the other lease is asked for on its query.
        let mut fresh = RecordSet::new("/skydns");
        fresh
            .insert_json_leased("/skydns/x/a", value, None, Some(7))
            .unwrap();
        fresh
            .insert_json_leased("/skydns/x/b", value, None, Some(8))
            .unwrap();
        fresh.adopt_lease_ttls(&s);
        assert_eq!(fresh.lookup("x").len(), 2);
        assert_eq!(rx.try_recv().unwrap(), 8);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_skipped_key_is_reported_once_per_revision_and_forgotten_with_the_key() {
        let mut s = RecordSet::new("/skydns");
        assert!(s.note_skipped("/skydns/x/A", 5));
        assert!(!s.note_skipped("/skydns/x/a", 5), "same key, same revision");
        assert!(s.note_skipped("/skydns/x/a", 6), "a new revision is new");
        s.insert_json("/skydns/x/a", br#"{"host":"10.0.0.1"}"#, None)
            .unwrap();
        assert!(s.skipped().is_empty(), "a good value clears it");
        s.note_skipped("/skydns/x/b", 7);
        s.note_skipped("/skydns/y/c", 7);
        assert!(!s.remove("/skydns/x/b"));
        assert_eq!(s.skipped().len(), 1);
        s.note_skipped("/skydns/x/b/c", 8);
        s.remove_tree("/skydns/x");
        assert_eq!(s.skipped().keys().collect::<Vec<_>>(), ["/skydns/y/c"]);
    }

    #[test]
    fn ttl_is_the_smaller_of_etcd_and_record() {
        let entry = |etcd, own| Entry {
            record: Record {
                ttl: own,
                ..Record::default()
            },
            etcd_ttl: etcd,
            lease: None,
        };
        assert_eq!(entry(Some(30), 60).answer_ttl(300), 30);
        assert_eq!(entry(Some(90), 60).answer_ttl(300), 60);
        assert_eq!(entry(None, 60).answer_ttl(300), 60);
        assert_eq!(entry(Some(45), 0).answer_ttl(300), 45);
        assert_eq!(entry(None, 0).answer_ttl(300), 300);
    }
}
