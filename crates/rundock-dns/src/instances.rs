//! The instances of a service name as data, for consumers other than DNS clients (such as
//! `rundock watch`). They are read from the very SRV answer `dig NAME SRV` gets from
//! [`answer()`], so a rendered proxy config and DNS can never disagree on which instances
//! exist, their ports, priorities and (normalised) weights.

use std::net::IpAddr;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use rundock_spec::skydns::{name_to_path, path_to_name};

use crate::answer::{answer, Zones};
use crate::records::RecordSet;

/// One SRV answer of a name, with the address and etcd key behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The address from the answer's additional section, or the target name (without
    /// the trailing dot) when DNS gives no address for it (a host outside the zones).
    pub host: String,
    /// The SRV port.
    pub port: u16,
    /// The SRV priority (lower is preferred).
    pub priority: u16,
    /// Normalised as DNS answers it: the weights of one priority sum to about 100.
    pub weight: u16,
    /// The SRV target, fully qualified, lower case.
    pub target: String,
    /// The labels the record's key adds below the queried name (`node-1` for the
    /// announcer's records); empty for a record stored at the name itself.
    pub instance: String,
    /// The etcd key of the record; empty if it cannot be told (a host-name record
    /// deduplicated with another).
    pub key: String,
}

/// Why a name has no instance list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// `name` is not a valid DNS name.
    BadName(String),
    /// The name lies outside every zone.
    OutsideZones(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::BadName(name) => write!(f, "{name:?} is not a DNS name"),
            LookupError::OutsideZones(name) => write!(f, "{name} is outside the DNS domains"),
        }
    }
}

impl std::error::Error for LookupError {}

/// The instances `dig FQDN SRV` answers, in answer order. An unknown name has none.
pub fn instances(
    records: &RecordSet,
    zones: &Zones,
    fqdn: &str,
) -> Result<Vec<Instance>, LookupError> {
    let mut qname = Name::from_ascii(fqdn).map_err(|_| LookupError::BadName(fqdn.into()))?;
    qname.set_fqdn(true);
    if zones.find(&qname).is_none() {
        return Err(LookupError::OutsideZones(fqdn.into()));
    }
    let mut query = Message::query();
    query.add_query(Query::query(qname.clone(), RecordType::SRV));
    let response = answer(&query, records, zones);
    let lower_name = qname.to_lowercase().to_ascii();
    let name_path = name_to_path(records.prefix(), &lower_name);
    let address_of = |target: &Name| {
        response.additionals.iter().find_map(|r| {
            if r.name.to_lowercase() != target.to_lowercase() {
                return None;
            }
            match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            }
        })
    };
    let found = records.lookup(&lower_name);
    let mut out = Vec::new();
    for record in &response.answers {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        let target = srv.target.to_lowercase();
        let target_text = target.to_ascii();
        let address = address_of(&target);
        // A record whose host is an address has its own key as target; one whose host is
        // a name has that name: find the key that holds it.
        let own_key = name_to_path(records.prefix(), &target_text);
        let key = if records
            .get(&own_key)
            .is_some_and(|e| e.record.host.parse::<IpAddr>().is_ok())
        {
            own_key
        } else {
            found
                .iter()
                .find(|f| {
                    let host = f
                        .entry
                        .record
                        .host
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    host == target_text.trim_end_matches('.') && f.entry.record.port == srv.port
                })
                .map(|f| f.key.to_string())
                .unwrap_or_default()
        };
        out.push(Instance {
            host: match address {
                Some(ip) => ip.to_string(),
                None => target_text.trim_end_matches('.').to_string(),
            },
            port: srv.port,
            priority: srv.priority,
            weight: srv.weight,
            instance: instance_labels(records.prefix(), &name_path, &key),
            target: target_text,
            key,
        });
    }
    Ok(out)
}

/// `node-1` for key `…/web/node-1` below `…/web`; deeper keys give `a.b` in DNS order.
fn instance_labels(prefix: &str, name_path: &str, key: &str) -> String {
    let Some(rest) = key.strip_prefix(name_path) else {
        return String::new();
    };
    if rest.is_empty() || !rest.starts_with('/') {
        return String::new();
    }
    let Some(full) = path_to_name(prefix, key) else {
        return String::new();
    };
    let depth = rest.matches('/').count();
    full.trim_end_matches('.')
        .split('.')
        .take(depth)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rundock_spec::skydns::Record;

    fn set() -> RecordSet {
        let mut set = RecordSet::new("/skydns");
        let rec = |host: &str, port: u16, weight: u16| Record {
            host: host.into(),
            port,
            weight,
            ..Record::default()
        };
        set.insert("/skydns/test/s/web/node-2", rec("10.0.0.2", 8002, 0), None);
        set.insert("/skydns/test/s/web/node-1", rec("10.0.0.1", 8001, 0), None);
        set.insert(
            "/skydns/test/s/web/edge",
            rec("edge.example.org", 443, 0),
            None,
        );
        set.insert("/skydns/test/s/db/node-1", rec("10.0.0.9", 5432, 0), None);
        set
    }

    fn zones() -> Zones {
        Zones::new(&["s.test".into()], 300).unwrap()
    }

    #[test]
    fn a_names_instances_are_its_srv_answer_with_addresses_and_keys() {
        let found = instances(&set(), &zones(), "web.s.test").unwrap();
        let shown: Vec<(String, u16, u16, u16, String, String)> = found
            .iter()
            .map(|i| {
                (
                    i.host.clone(),
                    i.port,
                    i.priority,
                    i.weight,
                    i.instance.clone(),
                    i.key.clone(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "edge.example.org".into(),
                    443,
                    10,
                    33,
                    "edge".into(),
                    "/skydns/test/s/web/edge".into()
                ),
                (
                    "10.0.0.1".into(),
                    8001,
                    10,
                    33,
                    "node-1".into(),
                    "/skydns/test/s/web/node-1".into()
                ),
                (
                    "10.0.0.2".into(),
                    8002,
                    10,
                    33,
                    "node-2".into(),
                    "/skydns/test/s/web/node-2".into()
                ),
            ]
        );
        assert_eq!(found[1].target, "node-1.web.s.test.");
        assert_eq!(found[0].target, "edge.example.org.");
    }

    #[test]
    fn one_instance_unknown_names_and_names_outside_the_zone() {
        let one = instances(&set(), &zones(), "node-1.web.s.test.").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].instance, "");
        assert!(instances(&set(), &zones(), "nothing.s.test")
            .unwrap()
            .is_empty());
        assert_eq!(
            instances(&set(), &zones(), "web.elsewhere"),
            Err(LookupError::OutsideZones("web.elsewhere".into()))
        );
    }
}
