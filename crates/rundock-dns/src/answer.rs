//! The answering logic: one DNS query + the current [`RecordSet`] → one response, with the
//! semantics of SkyDNS (`server/server.go`) and CoreDNS's etcd plugin. Pure: no I/O, no
//! clock, so every behaviour is unit-tested here.
//!
//! Decisions where SkyDNS and CoreDNS differ or are silent:
//! - A/AAAA: a name's own addresses win; a CNAME is given only when none of its records
//!   holds an address, and then only one (DNS allows one CNAME per owner). Chains are
//!   followed inside our zones up to [`MAX_CNAME_CHAIN`] links; loops and in-zone targets
//!   that resolve to nothing give NODATA (as CoreDNS). A target outside our zones is
//!   answered with the CNAME alone, for the client's resolver to follow.
//! - The chase is bounded by the query, not by the records: each name is looked up at
//!   most once per chase (a visited set, kept across backtracking, so a name that led
//!   nowhere is not tried again by another path), and all the chasing one query does
//!   (CNAMEs and the glue of SRV and MX targets) examines at most [`CHASE_BUDGET`]
//!   records plus [`CHASE_BUDGET_PER_RECORD`] per record of the queried name, so no
//!   record set makes a query cost more than a constant plus a multiple of its answer. Without it, names pointing at each other were chased path by path: 90
//!   such records took ~5 s for one A query, 12 fan-out names more than 30 s, and the
//!   responder answers one query at a time. A chase that runs out gives what it found
//!   so far (NODATA for an address query, SRV answers without their glue).
//! - The zone apex answers SOA and NS; other types are looked up at `apex.dns.ZONE` (as
//!   CoreDNS), so a whole-zone query is never answered with every record by accident.
//! - RFC 2782 names: `_service._proto.NAME` and `_proto.NAME` answer SRV with NAME's
//!   records (as Consul and Kubernetes DNS do; SkyDNS and CoreDNS's etcd plugin treat the
//!   labels as key labels), so HAProxy, Go's `net.LookupSRV` and Envoy find instances
//!   unchanged. Keys that really hold such labels win: the literal name is looked up
//!   first. Other types on such a name are NODATA: the name exists (it has SRV), so
//!   NXDOMAIN would be false, and its addresses are NAME's, which clients get from the
//!   SRV targets and the additional section.
//! - A CNAME whose target is outside our zones ends the answer here; the server then
//!   resolves the target through `--forward` and appends what it answers
//!   ([`outside_cname_target`], as SkyDNS and CoreDNS do).
//! - TXT comes from every record with `text`; records without `host` serve only TXT.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rundock_spec::skydns::path_to_name;

use crate::records::{Found, RecordSet};

/// CNAME links followed before giving up (SkyDNS uses 8 as well).
pub const MAX_CNAME_CHAIN: usize = 8;

/// Records one query may examine while following CNAMEs and looking up glue, lookups
/// counted as one record each: far above any real chain (8 links of a few records),
/// small enough that the worst record set costs a few milliseconds.
pub const CHASE_BUDGET: usize = 1024;
/// Added to [`CHASE_BUDGET`] per record the queried name holds: the glue of a large
/// SRV or MX answer is work in proportion to the answer, and is not cut short.
pub const CHASE_BUDGET_PER_RECORD: usize = 8;

/// The UDP payload size we advertise in EDNS answers (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The zones we answer for and the TTLs of synthesised data.
#[derive(Debug, Clone)]
pub struct Zones {
    /// Lower-cased, fully qualified; longest first so the most specific zone wins.
    zones: Vec<Name>,
    /// TTL of answers from records with neither an etcd TTL nor their own `ttl`.
    pub default_ttl: u32,
    /// TTL of the SOA and of negative answers (the SOA `minimum`).
    pub negative_ttl: u32,
    /// SRV priority of records that set none (SkyDNS's default is 10).
    pub default_priority: u16,
}

/// A `--domain` value that is not a DNS name.
#[derive(Debug)]
pub struct BadDomain(pub String);

impl std::fmt::Display for BadDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a domain name", self.0)
    }
}

impl std::error::Error for BadDomain {}

impl Zones {
    /// The zones for `domains` (each a DNS name); `default_ttl` answers records that
    /// carry no `ttl` of their own.
    pub fn new(domains: &[String], default_ttl: u32) -> Result<Zones, BadDomain> {
        let mut zones = domains
            .iter()
            .map(|d| {
                let mut name = Name::from_ascii(d.trim())
                    .map_err(|_| BadDomain(d.clone()))?
                    .to_lowercase();
                name.set_fqdn(true);
                if name.is_root() {
                    return Err(BadDomain(d.clone()));
                }
                Ok(name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        zones.sort_by_key(|z| std::cmp::Reverse(z.num_labels()));
        zones.dedup();
        Ok(Zones {
            zones,
            default_ttl,
            negative_ttl: 30,
            default_priority: 10,
        })
    }

    /// The most specific zone `name` is in, if any.
    pub fn find(&self, name: &Name) -> Option<&Name> {
        self.zones.iter().find(|z| z.zone_of(name))
    }

    fn contains(&self, name: &Name) -> bool {
        self.find(name).is_some()
    }

    /// The zones served, most specific first.
    pub fn zones(&self) -> &[Name] {
        &self.zones
    }
}

/// Answers `query` from `records`. Queries outside every zone get REFUSED (the server
/// forwards them before calling this when a forwarder is configured).
pub fn answer(query: &Message, records: &RecordSet, zones: &Zones) -> Message {
    let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    resp.metadata.checking_disabled = query.metadata.checking_disabled;
    resp.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        resp.edns = Some(edns);
    }
    if query.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp;
    }
    let [q] = query.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    let Some(zone) = zones.find(q.name()) else {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    };
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    }
    resp.metadata.authoritative = true;

    let mut lookup = Lookup {
        records,
        zones,
        zone,
        budget: Cell::new(CHASE_BUDGET),
    };
    let qname = q.name().clone();
    let owner_key = lower(&qname);
    let apex = zone == &qname.to_lowercase();

    let (answers, additionals) = match q.query_type() {
        RecordType::SOA if apex => (vec![lookup.soa()], vec![]),
        RecordType::NS if apex => lookup.ns_records(&qname),
        _ => {
            // The apex always exists; its data other than SOA/NS lives at apex.dns.ZONE.
            let key_name = if apex {
                format!("apex.dns.{}", zone.to_ascii())
            } else {
                owner_key.clone()
            };
            let mut key_name = key_name;
            let mut found = group(records.lookup(&key_name));
            let mut service_name = false;
            if found.is_empty() && !apex {
                if let Some(name) = rfc2782_target(&owner_key, zone) {
                    found = group(records.lookup(&name));
                    key_name = name;
                    service_name = true;
                }
            }
            if found.is_empty() && !apex {
                resp.metadata.response_code = ResponseCode::NXDomain;
                resp.authorities.push(lookup.soa());
                return resp;
            }
            lookup
                .budget
                .set(CHASE_BUDGET + CHASE_BUDGET_PER_RECORD * found.len());
            if service_name && q.query_type() != RecordType::SRV {
                (vec![], vec![])
            } else {
                lookup.typed(&qname, &key_name, q.query_type(), &found)
            }
        }
    };
    let mut answers = dedup(answers);
    // One TTL per answer: the smallest, as SkyDNS does, so the RRset is consistent.
    if let Some(min) = answers.iter().map(|r| r.ttl).min() {
        answers.iter_mut().for_each(|r| r.ttl = min);
    }
    resp.additionals = dedup(additionals);
    if answers.is_empty() {
        resp.authorities.push(lookup.soa());
    }
    resp.answers = answers;
    resp
}

/// The NAME of an RFC 2782 name (`_service._proto.NAME` or `_proto.NAME`, lower-cased,
/// fully qualified) inside `zone`, if `owner` is one and NAME is not the apex.
fn rfc2782_target(owner: &str, zone: &Name) -> Option<String> {
    let mut rest = owner.strip_prefix('_')?.split_once('.')?.1;
    if let Some(after_proto) = rest.strip_prefix('_') {
        rest = after_proto.split_once('.')?.1;
    }
    let name = Name::from_ascii(rest).ok()?;
    (zone.zone_of(&name) && name.num_labels() > zone.num_labels()).then(|| rest.to_string())
}

/// The target of the CNAME that ends an A or AAAA answer, if it lies outside our zones:
/// what the server resolves through its forwarder and appends ([`append_upstream`]).
pub fn outside_cname_target(query: &Message, resp: &Message, zones: &Zones) -> Option<Name> {
    let [q] = query.queries.as_slice() else {
        return None;
    };
    if !matches!(q.query_type(), RecordType::A | RecordType::AAAA) {
        return None;
    }
    match &resp.answers.last()?.data {
        RData::CNAME(CNAME(target)) if !zones.contains(target) => Some(target.clone()),
        _ => None,
    }
}

/// Appends the forwarder's answer for the out-of-zone CNAME target to `resp`. A failed
/// or empty upstream answer leaves the CNAME alone, as before.
pub fn append_upstream(resp: &mut Message, upstream: &Message) {
    if upstream.metadata.response_code == ResponseCode::NoError {
        resp.answers.extend(upstream.answers.iter().cloned());
    }
}

struct Lookup<'a> {
    records: &'a RecordSet,
    zones: &'a Zones,
    zone: &'a Name,
    /// What is left of the chase budget for this query.
    budget: Cell<usize>,
}

impl Lookup<'_> {
    /// Takes `cost` from the chase budget; false (and nothing taken) when it is short.
    fn spend(&self, cost: usize) -> bool {
        match self.budget.get().checked_sub(cost) {
            Some(left) => {
                self.budget.set(left);
                true
            }
            None => {
                self.budget.set(0);
                false
            }
        }
    }

    /// The records of in-zone `key` for a chase, if the budget covers the lookup.
    fn chase_lookup(&self, key: &str) -> Option<Vec<Found<'_>>> {
        if !self.spend(1) {
            return None;
        }
        let found = group(self.records.lookup(key));
        self.spend(found.len()).then_some(found)
    }

    fn ttl(&self, found: &Found<'_>) -> u32 {
        found.answer_ttl(self.zones.default_ttl)
    }

    fn soa(&self) -> Record {
        let zone = self.zone.clone();
        let mname = prepend(&zone, "ns.dns");
        let rname = prepend(&zone, "hostmaster");
        // The etcd revision changes whenever the data does: a natural serial.
        let serial = (self.records.revision & 0xffff_ffff) as u32;
        let soa = SOA::new(
            mname,
            rname,
            serial,
            7200,
            1800,
            86400,
            self.zones.negative_ttl,
        );
        Record::from_rdata(zone, self.zones.negative_ttl, RData::SOA(soa))
    }

    /// NS for the apex: the records under `ns.dns.ZONE` whose host is an address (as
    /// SkyDNS and CoreDNS), each named by its key, with its address as glue. With none,
    /// the SOA's `ns.dns.ZONE` stands alone so the apex still has an NS set.
    fn ns_records(&self, qname: &Name) -> (Vec<Record>, Vec<Record>) {
        let ns_name = prepend(self.zone, "ns.dns");
        let mut answers = Vec::new();
        let mut extra = Vec::new();
        for found in group(self.records.lookup(&ns_name.to_ascii())) {
            let Ok(ip) = found.entry.record.host.parse::<IpAddr>() else {
                continue;
            };
            let Some(target) = self.key_name(&found, 0) else {
                continue;
            };
            let ttl = self.ttl(&found);
            answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::NS(NS(target.clone())),
            ));
            extra.push(address(target, ttl, ip));
        }
        if answers.is_empty() {
            answers.push(Record::from_rdata(
                qname.clone(),
                self.zones.default_ttl,
                RData::NS(NS(ns_name)),
            ));
        }
        (answers, extra)
    }

    /// Answers for an existing name (`found` non-empty unless it is the apex).
    fn typed(
        &mut self,
        qname: &Name,
        key_name: &str,
        qtype: RecordType,
        found: &[Found<'_>],
    ) -> (Vec<Record>, Vec<Record>) {
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut chase = Chase::new(key_name);
                (
                    self.addresses(qname, key_name, found, qtype, &mut chase),
                    vec![],
                )
            }
            RecordType::SRV => self.srv(qname, found),
            RecordType::TXT => (self.txt(qname, found), vec![]),
            RecordType::CNAME => (self.cname(qname, found), vec![]),
            RecordType::MX => self.mx(qname, found),
            _ => (vec![], vec![]),
        }
    }

    /// A or AAAA records for `owner` from `found`, following one CNAME if no record holds
    /// an address. `chase` holds the names already visited and the current depth.
    fn addresses(
        &self,
        owner: &Name,
        key_name: &str,
        found: &[Found<'_>],
        qtype: RecordType,
        chase: &mut Chase,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        let mut has_address = false;
        for f in found {
            if let Ok(ip) = f.entry.record.host.parse::<IpAddr>() {
                has_address = true;
                let wanted = match ip {
                    IpAddr::V4(_) => qtype == RecordType::A,
                    IpAddr::V6(_) => qtype == RecordType::AAAA,
                };
                if wanted {
                    out.push(address(owner.clone(), self.ttl(f), ip));
                }
            }
        }
        if has_address || chase.depth >= MAX_CNAME_CHAIN {
            return out;
        }
        for f in found {
            let Some(target) = host_name(&f.entry.record.host) else {
                continue;
            };
            let target_key = lower(&target);
            if target_key == key_name || chase.visited.contains(&target_key) {
                continue;
            }
            let cname = Record::from_rdata(
                owner.clone(),
                self.ttl(f),
                RData::CNAME(CNAME(target.clone())),
            );
            if !self.zones.contains(&target) {
                return vec![cname];
            }
            chase.visited.insert(target_key.clone());
            let Some(next_found) = self.chase_lookup(&target_key) else {
                return Vec::new();
            };
            chase.depth += 1;
            let rest = self.addresses(&target, &target_key, &next_found, qtype, chase);
            chase.depth -= 1;
            if !rest.is_empty() {
                let mut out = vec![cname];
                out.extend(rest);
                return out;
            }
        }
        Vec::new()
    }

    fn cname(&self, qname: &Name, found: &[Found<'_>]) -> Vec<Record> {
        if found
            .iter()
            .any(|f| f.entry.record.host.parse::<IpAddr>().is_ok())
        {
            return vec![];
        }
        found
            .iter()
            .find_map(|f| {
                let target = host_name(&f.entry.record.host)?;
                Some(Record::from_rdata(
                    qname.clone(),
                    self.ttl(f),
                    RData::CNAME(CNAME(target)),
                ))
            })
            .into_iter()
            .collect()
    }

    fn txt(&self, qname: &Name, found: &[Found<'_>]) -> Vec<Record> {
        found
            .iter()
            .filter(|f| !f.entry.record.text.is_empty())
            .map(|f| {
                Record::from_rdata(
                    qname.clone(),
                    self.ttl(f),
                    RData::TXT(TXT::new(split255(&f.entry.record.text))),
                )
            })
            .collect()
    }

    /// SRV as SkyDNS: weights are normalised so the records of one priority sum to ~100;
    /// a record whose host is an address gets its own key as target and the address as
    /// additional data; an in-zone host name gets its addresses looked up. Only records
    /// that are served count towards a priority's total: one without a usable target, or
    /// the same SRV again, adds no weight that no answer carries.
    fn srv(&self, qname: &Name, found: &[Found<'_>]) -> (Vec<Record>, Vec<Record>) {
        struct Served<'f, 'r> {
            found: &'f Found<'r>,
            priority: u16,
            weight: u64,
            target: Name,
            ip: Option<IpAddr>,
        }
        let mut served = Vec::new();
        let mut seen = HashSet::new();
        for f in found {
            let record = &f.entry.record;
            if record.host.is_empty() {
                continue;
            }
            let (target, ip) = match record.host.parse::<IpAddr>() {
                Ok(ip) => match self.key_name(f, record.target_strip) {
                    Some(target) => (target, Some(ip)),
                    None => continue,
                },
                Err(_) => match host_name(&record.host) {
                    Some(target) => (strip_labels(target, record.target_strip), None),
                    None => continue,
                },
            };
            let priority = match record.priority {
                0 => self.zones.default_priority,
                p => p,
            };
            let weight = match record.weight {
                0 => 100u64,
                w => u64::from(w),
            };
            if !seen.insert((priority, weight, record.port, lower(&target))) {
                continue;
            }
            served.push(Served {
                found: f,
                priority,
                weight,
                target,
                ip,
            });
        }
        let mut totals: BTreeMap<u16, u64> = BTreeMap::new();
        for s in &served {
            *totals.entry(s.priority).or_default() += s.weight;
        }
        let mut answers = Vec::new();
        let mut extra = Vec::new();
        let mut looked_up: HashSet<String> = HashSet::new();
        for s in served {
            let total = totals[&s.priority] as f64;
            let normalised = ((100.0 / total) * s.weight as f64).floor() as u16;
            let ttl = self.ttl(s.found);
            let port = s.found.entry.record.port;
            match s.ip {
                Some(ip) => extra.push(address(s.target.clone(), ttl, ip)),
                None => extra.extend(self.glue(&s.target, &mut looked_up)),
            }
            answers.push(srv(qname, ttl, s.priority, normalised, port, s.target));
        }
        (answers, extra)
    }

    /// MX from records with `mail` set, priority as preference; targets as for SRV.
    fn mx(&self, qname: &Name, found: &[Found<'_>]) -> (Vec<Record>, Vec<Record>) {
        let mut answers = Vec::new();
        let mut extra = Vec::new();
        let mut looked_up = HashSet::new();
        for f in found {
            let record = &f.entry.record;
            if !record.mail || record.host.is_empty() {
                continue;
            }
            let ttl = self.ttl(f);
            let target = match record.host.parse::<IpAddr>() {
                Ok(ip) => {
                    let Some(target) = self.key_name(f, record.target_strip) else {
                        continue;
                    };
                    extra.push(address(target.clone(), ttl, ip));
                    target
                }
                Err(_) => {
                    let Some(target) = host_name(&record.host) else {
                        continue;
                    };
                    let target = strip_labels(target, record.target_strip);
                    extra.extend(self.glue(&target, &mut looked_up));
                    target
                }
            };
            answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::MX(MX::new(record.priority, target)),
            ));
        }
        (answers, extra)
    }

    /// A and AAAA of an in-zone target, once per target, within the chase budget.
    fn glue(&self, target: &Name, looked_up: &mut HashSet<String>) -> Vec<Record> {
        let key = lower(target);
        if !self.zones.contains(target) || !looked_up.insert(key.clone()) {
            return vec![];
        }
        let Some(found) = self.chase_lookup(&key) else {
            return vec![];
        };
        let mut out = Vec::new();
        for qtype in [RecordType::A, RecordType::AAAA] {
            let mut chase = Chase::new(&key);
            out.extend(
                self.addresses(target, &key, &found, qtype, &mut chase)
                    .into_iter()
                    .filter(|r| r.record_type() != RecordType::CNAME),
            );
        }
        out
    }

    /// The record's key as a DNS name, less `strip` leading labels.
    fn key_name(&self, found: &Found<'_>, strip: u16) -> Option<Name> {
        let name = path_to_name(self.records.prefix(), found.key)?;
        let name = Name::from_ascii(name).ok()?;
        Some(strip_labels(name, strip))
    }
}

/// One CNAME chase: the names looked up so far (never again, whichever path leads
/// there) and the links followed to the current one.
struct Chase {
    visited: HashSet<String>,
    depth: usize,
}

impl Chase {
    fn new(start: &str) -> Chase {
        Chase {
            visited: HashSet::from([start.to_string()]),
            depth: 0,
        }
    }
}

/// CoreDNS's `msg.Group`: the shortest keys carrying a `group` pick it, and only records of
/// that group (or none) answer; disagreement on that level disables grouping.
fn group(found: Vec<Found<'_>>) -> Vec<Found<'_>> {
    let Some(first) = found.first() else {
        return found;
    };
    let depth = |f: &Found<'_>| f.key.matches('/').count();
    let mut group = first.entry.record.group.as_str();
    let mut slashes = depth(first);
    for f in &found {
        let d = depth(f);
        if d < slashes {
            if f.entry.record.group.is_empty() {
                break;
            }
            slashes = d;
            group = f.entry.record.group.as_str();
        }
    }
    if group.is_empty() {
        return found;
    }
    let group = group.to_string();
    let mut kept = Vec::with_capacity(found.len());
    for f in &found {
        let g = &f.entry.record.group;
        if g.is_empty() || *g == group {
            kept.push(*f);
        } else if depth(f) == slashes {
            return found;
        }
    }
    kept
}

/// Drops records identical in owner (any case), type and data, keeping the first.
fn dedup(records: Vec<Record>) -> Vec<Record> {
    let mut seen = HashSet::with_capacity(records.len());
    records
        .into_iter()
        .filter(|r| seen.insert((r.name.to_lowercase(), r.data.clone())))
        .collect()
}

fn address(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

fn srv(owner: &Name, ttl: u32, priority: u16, weight: u16, port: u16, target: Name) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::SRV(SRV::new(priority, weight, port, target)),
    )
}

/// A record's `host` as a fully qualified name, unless it is empty or an address.
fn host_name(host: &str) -> Option<Name> {
    if host.is_empty() || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let mut name = Name::from_ascii(host).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn strip_labels(name: Name, strip: u16) -> Name {
    let labels = usize::from(name.num_labels());
    let strip = usize::from(strip);
    if strip == 0 || strip >= labels {
        // Overshooting keeps the whole name, as CoreDNS's targetStrip does.
        return name;
    }
    name.trim_to(labels - strip)
}

fn prepend(zone: &Name, labels: &str) -> Name {
    Name::from_ascii(labels)
        .and_then(|n| n.append_domain(zone))
        .unwrap_or_else(|_| zone.clone())
}

fn lower(name: &Name) -> String {
    name.to_lowercase().to_ascii()
}

/// TXT strings are at most 255 bytes; longer text is split on character boundaries.
fn split255(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    out.push(current);
    out
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
