//! Answers from a fixed record set: the behaviours of SkyDNS's and CoreDNS's lookup tests,
//! with our own records and names.

use super::*;
use hickory_proto::op::Query;
use rundock_spec::skydns::{name_to_path, Record as Rec};

const ZONE: &str = "skydns.test.";

fn rec(host: &str, port: u16) -> Rec {
    Rec {
        host: host.into(),
        port,
        ..Rec::default()
    }
}

/// Records keyed by DNS name (as SkyDNS's tests write them), stored at their etcd keys.
fn fixture() -> RecordSet {
    let mut set = RecordSet::new("/skydns");
    let put = |set: &mut RecordSet, name: &str, r: Rec| {
        set.insert(&name_to_path("/skydns", name), r, None);
    };
    put(
        &mut set,
        "a.server1.dev.region1.skydns.test.",
        rec("dev.server1", 8080),
    );
    put(
        &mut set,
        "a.server1.prod.region1.skydns.test.",
        rec("10.0.0.1", 8080),
    );
    put(
        &mut set,
        "b.server1.prod.region1.skydns.test.",
        rec("10.0.0.2", 8080),
    );
    put(
        &mut set,
        "b.server6.prod.region1.skydns.test.",
        rec("::1", 8080),
    );
    // An in-zone CNAME target that does not exist.
    put(
        &mut set,
        "cname.prod.region1.skydns.test.",
        rec("unresolvable.skydns.test", 0),
    );
    let mut prio = rec("priority.server1", 8080);
    prio.priority = 333;
    put(&mut set, "priority.skydns.test.", prio);
    put(
        &mut set,
        "a.sub.region1.skydns.test.",
        rec("sub.server1", 0),
    );
    put(
        &mut set,
        "b.sub.region1.skydns.test.",
        rec("sub.server2", 80),
    );
    put(
        &mut set,
        "c.sub.region1.skydns.test.",
        rec("10.0.0.1", 8080),
    );
    // A CNAME loop.
    put(
        &mut set,
        "a.cname.skydns.test.",
        rec("b.cname.skydns.test", 0),
    );
    put(
        &mut set,
        "b.cname.skydns.test.",
        rec("a.cname.skydns.test", 0),
    );
    // A working chain: alias → www → two addresses.
    put(
        &mut set,
        "alias.chain.skydns.test.",
        rec("www.chain.skydns.test", 0),
    );
    put(&mut set, "x.www.chain.skydns.test.", rec("10.1.0.1", 0));
    put(&mut set, "y.www.chain.skydns.test.", rec("10.1.0.2", 0));
    put(
        &mut set,
        "self.chain.skydns.test.",
        rec("self.chain.skydns.test", 0),
    );
    put(
        &mut set,
        "out.chain.skydns.test.",
        rec("www.example.org", 0),
    );
    // Name servers and apex data.
    put(&mut set, "a.ns.dns.skydns.test.", rec("10.0.0.2", 0));
    put(&mut set, "b.ns.dns.skydns.test.", rec("10.0.0.3", 0));
    put(&mut set, "a.apex.dns.skydns.test.", rec("10.0.0.4", 0));
    // TXT: a record with host and text, and one with text only.
    let mut both = rec("10.2.0.1", 80);
    both.text = "version=1".into();
    put(&mut set, "a.txt.skydns.test.", both);
    let only = Rec {
        text: "hello world".into(),
        ..Rec::default()
    };
    put(&mut set, "b.txt.skydns.test.", only);
    set.revision = 42;
    set
}

fn zones() -> Zones {
    Zones::new(&[ZONE.into(), "other.test".into()], 300).unwrap()
}

fn ask_in(set: &RecordSet, name: &str, qtype: RecordType) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let resp = answer(&query, set, &zones());
    assert_eq!(resp.metadata.id, query.metadata.id);
    // Every answer must survive the wire.
    let wire = resp.to_vec().expect("serialise");
    Message::from_vec(&wire).expect("parse back")
}

fn ask(name: &str, qtype: RecordType) -> Message {
    ask_in(&fixture(), name, qtype)
}

fn show(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    out.sort();
    out
}

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

fn assert_soa_only(m: &Message) {
    assert_eq!(m.authorities.len(), 1, "{m:?}");
    let soa = &m.authorities[0];
    assert_eq!(soa.name.to_ascii(), ZONE);
    assert_eq!(soa.ttl, 30);
    let RData::SOA(soa) = &soa.data else {
        panic!("not an SOA: {soa}")
    };
    assert_eq!(soa.mname.to_ascii(), "ns.dns.skydns.test.");
    assert_eq!(soa.serial, 42);
    assert_eq!(soa.minimum, 30);
}

#[test]
fn a_record_of_one_instance() {
    let m = ask("a.server1.prod.region1.skydns.test.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(
        show(&m.answers),
        ["a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1"]
    );
    assert!(m.authorities.is_empty());
}

#[test]
fn aaaa_record() {
    let m = ask("b.server6.prod.region1.skydns.test.", RecordType::AAAA);
    assert_eq!(
        show(&m.answers),
        ["b.server6.prod.region1.skydns.test. 300 IN AAAA ::1"]
    );
    // The v6-only name has no A: NODATA.
    let m = ask("b.server6.prod.region1.skydns.test.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_soa_only(&m);
}

#[test]
fn a_name_above_instances_answers_for_all_of_them() {
    let m = ask("server1.prod.region1.skydns.test.", RecordType::A);
    assert_eq!(
        show(&m.answers),
        [
            "server1.prod.region1.skydns.test. 300 IN A 10.0.0.1",
            "server1.prod.region1.skydns.test. 300 IN A 10.0.0.2"
        ]
    );
}

#[test]
fn names_are_case_insensitive_and_the_owner_keeps_the_query_case() {
    let m = ask("a.SERVer1.dEv.region1.skydns.tEst.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        ["a.SERVer1.dEv.region1.skydns.tEst. 300 IN SRV 10 100 8080 dev.server1."]
    );
    let m = ask("SERVER1.prod.REGION1.skydns.test.", RecordType::A);
    assert_eq!(m.answers.len(), 2);
}

#[test]
fn srv_with_a_host_name_targets_that_name() {
    let m = ask("a.server1.dev.region1.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        ["a.server1.dev.region1.skydns.test. 300 IN SRV 10 100 8080 dev.server1."]
    );
    assert!(m.additionals.is_empty());
}

#[test]
fn srv_with_an_address_targets_the_key_name_with_the_address_as_additional() {
    let m = ask("a.server1.prod.region1.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        ["a.server1.prod.region1.skydns.test. 300 IN SRV 10 100 8080 a.server1.prod.region1.skydns.test."]
    );
    assert_eq!(
        show(&m.additionals),
        ["a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1"]
    );
    let m = ask("b.server6.prod.region1.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.additionals),
        ["b.server6.prod.region1.skydns.test. 300 IN AAAA ::1"]
    );
}

#[test]
fn srv_keeps_the_record_priority() {
    let m = ask("priority.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        ["priority.skydns.test. 300 IN SRV 333 100 8080 priority.server1."]
    );
}

#[test]
fn srv_weights_are_normalised_within_a_priority() {
    let m = ask("sub.region1.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        [
            "sub.region1.skydns.test. 300 IN SRV 10 33 0 sub.server1.",
            "sub.region1.skydns.test. 300 IN SRV 10 33 80 sub.server2.",
            "sub.region1.skydns.test. 300 IN SRV 10 33 8080 c.sub.region1.skydns.test.",
        ]
    );
    assert_eq!(
        show(&m.additionals),
        ["c.sub.region1.skydns.test. 300 IN A 10.0.0.1"]
    );

    let mut set = RecordSet::new("/skydns");
    let mut put = |name: &str, host: &str, priority: u16, weight: u16| {
        let mut r = rec(host, 80);
        r.priority = priority;
        r.weight = weight;
        set.insert(&name_to_path("/skydns", name), r, None);
    };
    put("a.w.skydns.test", "10.0.0.1", 10, 300);
    put("b.w.skydns.test", "10.0.0.2", 10, 100);
    put("c.w.skydns.test", "10.0.0.3", 20, 0);
    put("d.w.skydns.test", "10.0.0.4", 20, 0);
    let m = ask_in(&set, "w.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        [
            "w.skydns.test. 300 IN SRV 10 25 80 b.w.skydns.test.",
            "w.skydns.test. 300 IN SRV 10 75 80 a.w.skydns.test.",
            "w.skydns.test. 300 IN SRV 20 50 80 c.w.skydns.test.",
            "w.skydns.test. 300 IN SRV 20 50 80 d.w.skydns.test.",
        ]
    );
    assert_eq!(m.additionals.len(), 4);
}

#[test]
fn srv_to_an_in_zone_name_carries_its_addresses() {
    let mut set = fixture();
    set.insert(
        &name_to_path("/skydns", "web.skydns.test"),
        rec("www.chain.skydns.test", 443),
        None,
    );
    let m = ask_in(&set, "web.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        ["web.skydns.test. 300 IN SRV 10 100 443 www.chain.skydns.test."]
    );
    assert_eq!(
        show(&m.additionals),
        [
            "www.chain.skydns.test. 300 IN A 10.1.0.1",
            "www.chain.skydns.test. 300 IN A 10.1.0.2"
        ]
    );
}

#[test]
fn srv_target_strip_drops_leading_labels() {
    let mut set = RecordSet::new("/skydns");
    let mut r = rec("10.0.0.1", 80);
    r.target_strip = 1;
    set.insert("/skydns/test/skydns/svc/inst-1", r, None);
    let m = ask_in(&set, "svc.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        ["svc.skydns.test. 300 IN SRV 10 100 80 svc.skydns.test."]
    );
    assert_eq!(show(&m.additionals), ["svc.skydns.test. 300 IN A 10.0.0.1"]);
}

#[test]
fn wildcards_star_and_any() {
    let m = ask("*.region1.skydns.test.", RecordType::SRV);
    assert_eq!(m.answers.len(), 8, "{:#?}", show(&m.answers));
    // 8 records of priority 10: 100/800*100 = 12.5 → 12.
    assert!(m
        .answers
        .iter()
        .all(|r| r.to_string().contains(" SRV 10 12 ")));
    assert_eq!(
        show(&m.additionals),
        [
            "a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1",
            "b.server1.prod.region1.skydns.test. 300 IN A 10.0.0.2",
            "b.server6.prod.region1.skydns.test. 300 IN AAAA ::1",
            "c.sub.region1.skydns.test. 300 IN A 10.0.0.1",
        ]
    );
    for name in ["prod.*.skydns.test.", "prod.any.skydns.test."] {
        let m = ask(name, RecordType::SRV);
        assert_eq!(m.answers.len(), 4, "{name}: {:#?}", show(&m.answers));
        assert!(m
            .answers
            .iter()
            .all(|r| r.to_string().contains(" SRV 10 25 ")));
    }
    let m = ask("server1.*.region1.skydns.test.", RecordType::A);
    assert_eq!(m.answers.len(), 2);
}

#[test]
fn cname_chain_is_followed_within_the_zone() {
    let m = ask("alias.chain.skydns.test.", RecordType::A);
    assert_eq!(
        m.answers.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        [
            "alias.chain.skydns.test. 300 IN CNAME www.chain.skydns.test.",
            "www.chain.skydns.test. 300 IN A 10.1.0.1",
            "www.chain.skydns.test. 300 IN A 10.1.0.2",
        ]
    );
    let m = ask("alias.chain.skydns.test.", RecordType::CNAME);
    assert_eq!(
        show(&m.answers),
        ["alias.chain.skydns.test. 300 IN CNAME www.chain.skydns.test."]
    );
}

#[test]
fn cname_to_an_outside_name_is_given_alone() {
    let m = ask("out.chain.skydns.test.", RecordType::A);
    assert_eq!(
        show(&m.answers),
        ["out.chain.skydns.test. 300 IN CNAME www.example.org."]
    );
}

#[test]
fn cname_loops_and_dead_ends_give_nodata() {
    for name in [
        "a.cname.skydns.test.",
        "self.chain.skydns.test.",
        "cname.prod.region1.skydns.test.",
    ] {
        let m = ask(name, RecordType::A);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty(), "{name}: {:?}", show(&m.answers));
        assert_soa_only(&m);
    }
}

#[test]
fn cname_chains_are_bounded() {
    let mut set = RecordSet::new("/skydns");
    for i in 0..20 {
        set.insert(
            &name_to_path("/skydns", &format!("n{i}.long.skydns.test")),
            rec(&format!("n{}.long.skydns.test", i + 1), 0),
            None,
        );
    }
    set.insert(
        &name_to_path("/skydns", "n20.long.skydns.test"),
        rec("10.0.0.1", 0),
        None,
    );
    // 20 links is too long: NODATA.
    assert!(ask_in(&set, "n0.long.skydns.test.", RecordType::A)
        .answers
        .is_empty());
    // 5 links is fine.
    let m = ask_in(&set, "n15.long.skydns.test.", RecordType::A);
    assert_eq!(m.answers.len(), 6, "{:?}", show(&m.answers));
}

#[test]
fn txt_from_text_and_text_only_records() {
    let m = ask("txt.skydns.test.", RecordType::TXT);
    assert_eq!(
        show(&m.answers),
        [
            "txt.skydns.test. 300 IN TXT hello world",
            "txt.skydns.test. 300 IN TXT version=1"
        ]
    );
    // The text-only record gives no address; the other one does.
    let m = ask("txt.skydns.test.", RecordType::A);
    assert_eq!(show(&m.answers), ["txt.skydns.test. 300 IN A 10.2.0.1"]);
    let m = ask("b.txt.skydns.test.", RecordType::A);
    assert!(m.answers.is_empty());
    assert_soa_only(&m);
    let m = ask("b.txt.skydns.test.", RecordType::SRV);
    assert!(m.answers.is_empty());
}

#[test]
fn long_text_is_split_into_255_byte_strings() {
    let mut set = RecordSet::new("/skydns");
    let r = Rec {
        text: "é".repeat(200),
        ..Rec::default()
    };
    set.insert("/skydns/test/skydns/long", r, None);
    let m = ask_in(&set, "long.skydns.test.", RecordType::TXT);
    let RData::TXT(txt) = &m.answers[0].data else {
        panic!()
    };
    let parts: Vec<usize> = txt.txt_data.iter().map(|p| p.len()).collect();
    assert_eq!(parts, [254, 146]);
}

#[test]
fn missing_names_are_nxdomain_with_soa() {
    for (name, qtype) in [
        ("doesnotexist.skydns.test.", RecordType::A),
        (
            "a.server1.nonexistent.region1.skydns.test.",
            RecordType::HINFO,
        ),
        ("c.server1.prod.region1.skydns.test.", RecordType::SRV),
        ("a.skydns.test.", RecordType::NS),
    ] {
        let m = ask(name, qtype);
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty());
        assert_soa_only(&m);
    }
}

#[test]
fn existing_names_without_the_type_are_nodata() {
    for (name, qtype) in [
        ("a.server1.dev.region1.skydns.test.", RecordType::TXT),
        ("a.server1.dev.region1.skydns.test.", RecordType::HINFO),
        ("a.server1.prod.region1.skydns.test.", RecordType::AAAA),
        ("a.server1.prod.region1.skydns.test.", RecordType::CNAME),
        ("a.server1.prod.region1.skydns.test.", RecordType::MX),
        // An empty non-terminal exists too.
        ("prod.region1.skydns.test.", RecordType::TXT),
    ] {
        let m = ask(name, qtype);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{name} {qtype}");
        assert!(m.answers.is_empty(), "{name} {qtype}");
        assert_soa_only(&m);
    }
}

#[test]
fn apex_soa_ns_and_apex_records() {
    let m = ask("skydns.test.", RecordType::SOA);
    assert_eq!(
        show(&m.answers),
        ["skydns.test. 30 IN SOA ns.dns.skydns.test. hostmaster.skydns.test. 42 7200 1800 86400 30"]
    );
    let m = ask("skydns.test.", RecordType::NS);
    assert_eq!(
        show(&m.answers),
        [
            "skydns.test. 300 IN NS a.ns.dns.skydns.test.",
            "skydns.test. 300 IN NS b.ns.dns.skydns.test."
        ]
    );
    assert_eq!(
        show(&m.additionals),
        [
            "a.ns.dns.skydns.test. 300 IN A 10.0.0.2",
            "b.ns.dns.skydns.test. 300 IN A 10.0.0.3"
        ]
    );
    let m = ask("ns.dns.skydns.test.", RecordType::A);
    assert_eq!(m.answers.len(), 2);
    let m = ask("skydns.test.", RecordType::A);
    assert_eq!(show(&m.answers), ["skydns.test. 300 IN A 10.0.0.4"]);
    // A zone with no data: SOA and a synthesised NS; NODATA for the rest.
    let m = ask("other.test.", RecordType::NS);
    assert_eq!(
        show(&m.answers),
        ["other.test. 300 IN NS ns.dns.other.test."]
    );
    let m = ask("other.test.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
}

#[test]
fn outside_the_zones_is_refused() {
    let m = ask("www.example.org.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    // A suffix match on a label boundary only.
    let m = ask("notskydns.test.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::Refused);
}

#[test]
fn identical_records_are_deduplicated() {
    let mut set = RecordSet::new("/skydns");
    set.insert("/skydns/test/skydns/dup/a", rec("10.0.0.1", 80), None);
    set.insert("/skydns/test/skydns/dup/b", rec("10.0.0.1", 80), None);
    set.insert("/skydns/test/skydns/dup/c", rec("10.0.0.2", 80), None);
    let m = ask_in(&set, "dup.skydns.test.", RecordType::A);
    assert_eq!(
        show(&m.answers),
        [
            "dup.skydns.test. 300 IN A 10.0.0.1",
            "dup.skydns.test. 300 IN A 10.0.0.2"
        ]
    );
    // SRV targets differ (each key is its own target), so nothing collapses there.
    assert_eq!(
        ask_in(&set, "dup.skydns.test.", RecordType::SRV)
            .answers
            .len(),
        3
    );
}

#[test]
fn answer_ttl_is_the_minimum_of_etcd_and_record_ttl() {
    let mut set = RecordSet::new("/skydns");
    let mut r = rec("10.0.0.1", 80);
    r.ttl = 60;
    set.insert("/skydns/test/skydns/t/lease", r.clone(), Some(20));
    let mut r2 = rec("10.0.0.2", 80);
    r2.ttl = 45;
    set.insert("/skydns/test/skydns/t/own", r2, None);
    set.insert("/skydns/test/skydns/t/none", rec("10.0.0.3", 80), None);
    let one = |name: &str| ask_in(&set, name, RecordType::A).answers[0].ttl;
    assert_eq!(one("lease.t.skydns.test."), 20);
    assert_eq!(one("own.t.skydns.test."), 45);
    assert_eq!(one("none.t.skydns.test."), 300);
    // An RRset carries one TTL: the smallest.
    let m = ask_in(&set, "t.skydns.test.", RecordType::A);
    assert_eq!(m.answers.len(), 3);
    assert!(m.answers.iter().all(|r| r.ttl == 20));
    // Additional data keeps each record's own TTL.
    let m = ask_in(&set, "t.skydns.test.", RecordType::SRV);
    let mut ttls: Vec<u32> = m.additionals.iter().map(|r| r.ttl).collect();
    ttls.sort();
    assert_eq!(ttls, [20, 45, 300]);
}

#[test]
fn groups_restrict_the_answer_as_coredns_does() {
    let mut set = RecordSet::new("/skydns");
    let mut g = |key: &str, host: &str, group: &str| {
        let mut r = rec(host, 80);
        r.group = group.into();
        set.insert(key, r, None);
    };
    g("/skydns/test/skydns/g/a", "10.0.0.1", "g1");
    g("/skydns/test/skydns/g/b", "10.0.0.2", "");
    g("/skydns/test/skydns/g/sub/c", "10.0.0.3", "g2");
    g("/skydns/test/skydns/g/sub/d", "10.0.0.4", "g1");
    let m = ask_in(&set, "g.skydns.test.", RecordType::A);
    assert_eq!(
        show(&m.answers),
        [
            "g.skydns.test. 300 IN A 10.0.0.1",
            "g.skydns.test. 300 IN A 10.0.0.2",
            "g.skydns.test. 300 IN A 10.0.0.4"
        ]
    );
}

#[test]
fn mx_from_mail_records() {
    let mut set = RecordSet::new("/skydns");
    let mut r = rec("10.0.0.9", 0);
    r.mail = true;
    r.priority = 5;
    set.insert("/skydns/test/skydns/mail/mx1", r, None);
    let m = ask_in(&set, "mail.skydns.test.", RecordType::MX);
    assert_eq!(
        show(&m.answers),
        ["mail.skydns.test. 300 IN MX 5 mx1.mail.skydns.test."]
    );
    assert_eq!(
        show(&m.additionals),
        ["mx1.mail.skydns.test. 300 IN A 10.0.0.9"]
    );
}

#[test]
fn malformed_queries() {
    let set = fixture();
    let mut query = Message::query();
    let resp = answer(&query, &set, &zones());
    assert_eq!(resp.metadata.response_code, ResponseCode::FormErr);
    query.metadata.op_code = OpCode::Update;
    query.add_query(Query::query(
        Name::from_ascii("skydns.test.").unwrap(),
        RecordType::SOA,
    ));
    let resp = answer(&query, &set, &zones());
    assert_eq!(resp.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn edns_queries_get_edns_answers() {
    let mut query = Message::query();
    query.add_query(Query::query(
        Name::from_ascii("a.server1.prod.region1.skydns.test.").unwrap(),
        RecordType::A,
    ));
    query.edns = Some(Edns::new());
    let resp = answer(&query, &fixture(), &zones());
    assert_eq!(
        resp.edns.as_ref().map(|e| e.max_payload()),
        Some(EDNS_PAYLOAD)
    );
    assert_eq!(resp.answers.len(), 1);
}

#[test]
fn zones_are_matched_most_specific_first() {
    let zones = Zones::new(&["example.com".into(), "s.prod.example.com.".into()], 300).unwrap();
    let name = Name::from_ascii("x.S.prod.example.com.").unwrap();
    assert_eq!(zones.find(&name).unwrap().to_ascii(), "s.prod.example.com.");
    assert!(Zones::new(&[".".into()], 300).is_err());
}

#[test]
fn rfc2782_names_answer_srv_with_the_names_records() {
    let m = ask(
        "_http._tcp.server1.prod.region1.skydns.test.",
        RecordType::SRV,
    );
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert_eq!(
        show(&m.answers),
        [
            "_http._tcp.server1.prod.region1.skydns.test. 300 IN SRV 10 50 8080 a.server1.prod.region1.skydns.test.",
            "_http._tcp.server1.prod.region1.skydns.test. 300 IN SRV 10 50 8080 b.server1.prod.region1.skydns.test."
        ]
    );
    assert_eq!(
        show(&m.additionals),
        [
            "a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1",
            "b.server1.prod.region1.skydns.test. 300 IN A 10.0.0.2"
        ]
    );
    // `_proto.NAME` alone, any case, and with a wildcard in NAME.
    let m = ask("_TCP.a.server1.prod.region1.skydns.test.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);
    let m = ask("_http._tcp.server1.*.region1.skydns.test.", RecordType::SRV);
    assert_eq!(m.answers.len(), 3);
}

#[test]
fn rfc2782_names_are_nodata_for_other_types_and_nxdomain_when_name_is_missing() {
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
        let m = ask("_http._tcp.server1.prod.region1.skydns.test.", qtype);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{qtype}");
        assert!(m.answers.is_empty(), "{qtype}: {:?}", show(&m.answers));
        assert_soa_only(&m);
    }
    for name in [
        "_http._tcp.missing.skydns.test.",
        "_http._tcp.skydns.test.",
        "_tcp.skydns.test.",
        "_http.skydns.test.",
    ] {
        assert_eq!(
            rcode(&ask(name, RecordType::SRV)),
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // Not underscore labels: an ordinary miss.
    assert_eq!(
        rcode(&ask(
            "http.tcp.server1.prod.region1.skydns.test.",
            RecordType::SRV
        )),
        ResponseCode::NXDomain
    );
}

#[test]
fn a_key_that_really_has_underscore_labels_wins() {
    let mut set = fixture();
    set.insert(
        &name_to_path("/skydns", "_http._tcp.web.skydns.test."),
        rec("10.9.9.9", 81),
        None,
    );
    set.insert(
        &name_to_path("/skydns", "x.web.skydns.test."),
        rec("10.9.9.1", 80),
        None,
    );
    let m = ask_in(&set, "_http._tcp.web.skydns.test.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);
    assert!(
        show(&m.answers)[0].ends_with("81 _http._tcp.web.skydns.test."),
        "{:?}",
        show(&m.answers)
    );
    // The literal name answers A too, as any key.
    let m = ask_in(&set, "_http._tcp.web.skydns.test.", RecordType::A);
    assert_eq!(
        show(&m.answers),
        ["_http._tcp.web.skydns.test. 300 IN A 10.9.9.9"]
    );
}

#[test]
fn an_outside_cname_target_is_named_for_the_forwarder_and_its_answer_appended() {
    let mut query = Message::query();
    query.add_query(Query::query(
        Name::from_ascii("out.chain.skydns.test.").unwrap(),
        RecordType::A,
    ));
    let mut resp = answer(&query, &fixture(), &zones());
    let target = outside_cname_target(&query, &resp, &zones()).unwrap();
    assert_eq!(target.to_ascii(), "www.example.org.");

    let mut upstream = Message::response(7, OpCode::Query);
    upstream.answers.push(Record::from_rdata(
        target.clone(),
        42,
        RData::A(A::new(192, 0, 2, 7)),
    ));
    append_upstream(&mut resp, &upstream);
    assert_eq!(
        show(&resp.answers),
        [
            "out.chain.skydns.test. 300 IN CNAME www.example.org.",
            "www.example.org. 42 IN A 192.0.2.7"
        ]
    );
    // A failed upstream answer adds nothing.
    let mut refused = upstream.clone();
    refused.metadata.response_code = ResponseCode::Refused;
    let before = resp.answers.len();
    append_upstream(&mut resp, &refused);
    assert_eq!(resp.answers.len(), before);

    // Only A/AAAA chains ending outside are completed; in-zone answers and a CNAME
    // query are left alone.
    let mut cname_query = Message::query();
    cname_query.add_query(Query::query(
        Name::from_ascii("out.chain.skydns.test.").unwrap(),
        RecordType::CNAME,
    ));
    let r = answer(&cname_query, &fixture(), &zones());
    assert!(outside_cname_target(&cname_query, &r, &zones()).is_none());
    let mut in_zone = Message::query();
    in_zone.add_query(Query::query(
        Name::from_ascii("a.server1.prod.region1.skydns.test.").unwrap(),
        RecordType::A,
    ));
    let r = answer(&in_zone, &fixture(), &zones());
    assert!(outside_cname_target(&in_zone, &r, &zones()).is_none());
}

#[test]
fn srv_weights_count_only_the_records_served() {
    let mut set = RecordSet::new("/skydns");
    set.insert("/skydns/test/skydns/w/a", rec("10.0.0.1", 80), None);
    // Records that give no SRV: a host that is no name, a key that is no name (both
    // refused by the record rule when read from etcd, taken as they are here), and the
    // same host name and port twice (one SRV).
    let bad_host = format!("{}.example.org", "x".repeat(64));
    set.insert("/skydns/test/skydns/w/b", rec(&bad_host, 80), None);
    let bad_key = format!("/skydns/test/skydns/w/{}", "k".repeat(64));
    set.insert(&bad_key, rec("10.0.0.3", 80), None);
    set.insert(
        "/skydns/test/skydns/w/c",
        rec("edge.example.org", 443),
        None,
    );
    set.insert(
        "/skydns/test/skydns/w/d",
        rec("edge.example.org", 443),
        None,
    );
    let m = ask_in(&set, "w.skydns.test.", RecordType::SRV);
    assert_eq!(
        show(&m.answers),
        [
            "w.skydns.test. 300 IN SRV 10 50 443 edge.example.org.",
            "w.skydns.test. 300 IN SRV 10 50 80 a.w.skydns.test.",
        ]
    );
}

/// A small deterministic generator (xorshift64*), so a failing graph can be rebuilt.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// A graph of names `n<i>.<graph>.skydns.test`: `edges[i]` are the names `i` points
/// at (one record each, stored below it), `addresses` the names that hold an address.
fn graph_set(graph: &str, edges: &[Vec<usize>], addresses: &[usize]) -> RecordSet {
    let mut set = RecordSet::new("/skydns");
    let name = |i: usize| format!("n{i}.{graph}.skydns.test");
    for (from, targets) in edges.iter().enumerate() {
        for (j, to) in targets.iter().enumerate() {
            let mut r = rec(&name(*to), 80);
            r.mail = j % 2 == 0;
            set.insert(
                &name_to_path("/skydns", &format!("r{j}.{}", name(from))),
                r,
                None,
            );
        }
    }
    for &i in addresses {
        set.insert(
            &name_to_path("/skydns", &format!("addr.{}", name(i))),
            rec(&format!("10.0.{}.{}", i / 250, i % 250 + 1), 80),
            None,
        );
    }
    set
}

/// Asks every name of `set`'s graph every type, checks each answer is a well-formed
/// chain of existing CNAMEs, and returns the slowest answer.
fn ask_every_name(set: &RecordSet, graph: &str, names: usize) -> std::time::Duration {
    let mut slowest = std::time::Duration::ZERO;
    for i in 0..names {
        let qname = format!("n{i}.{graph}.skydns.test.");
        for qtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::MX,
            RecordType::CNAME,
        ] {
            let mut query = Message::query();
            query.add_query(Query::query(Name::from_ascii(&qname).unwrap(), qtype));
            let started = std::time::Instant::now();
            let resp = answer(&query, set, &zones());
            let took = started.elapsed();
            slowest = slowest.max(took);
            assert!(
                took < std::time::Duration::from_secs(1),
                "{qname} {qtype}: {took:?}"
            );
            let exists = !set.lookup(&qname).is_empty();
            let rcode_wanted = if exists {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            assert_eq!(rcode(&resp), rcode_wanted, "{qname} {qtype}");
            let mut owner = Name::from_ascii(&qname).unwrap().to_lowercase();
            let cnames = resp
                .answers
                .iter()
                .filter(|r| r.record_type() == RecordType::CNAME)
                .count();
            assert!(cnames <= MAX_CNAME_CHAIN, "{qname} {qtype}: {cnames} links");
            if qtype == RecordType::A {
                for r in &resp.answers {
                    assert_eq!(r.name.to_lowercase(), owner, "{qname}: a broken chain");
                    if let RData::CNAME(CNAME(target)) = &r.data {
                        // The link exists: a record at or below the owner names it.
                        let key = lower(&owner);
                        assert!(
                            set.lookup(&key)
                                .iter()
                                .any(|f| f.entry.record.host
                                    == target.to_ascii().trim_end_matches('.')),
                            "{qname}: {owner} has no record naming {target}"
                        );
                        owner = target.to_lowercase();
                    }
                }
            }
        }
    }
    slowest
}

#[test]
fn cname_graphs_cost_bounded_work_per_answer() {
    let mut slowest = Vec::new();
    // Complete: 90 names, each pointing at all the others, none with an address.
    let n = 90;
    let complete: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..n).filter(|j| *j != i).collect())
        .collect();
    let set = graph_set("complete", &complete, &[]);
    slowest.push(("complete 90", ask_every_name(&set, "complete", n)));
    // The same with one address at the end: each answer finds it or gives up bounded.
    let set = graph_set("complete", &complete, &[n - 1]);
    slowest.push(("complete 90 + address", ask_every_name(&set, "complete", n)));
    // Within the budget, an address in such a graph is found.
    let small: Vec<Vec<usize>> = (0..10)
        .map(|i| (0..10).filter(|j| *j != i).collect())
        .collect();
    let set = graph_set("complete", &small, &[9]);
    let m = ask_in(&set, "n0.complete.skydns.test.", RecordType::A);
    assert!(
        m.answers.iter().any(|r| r.record_type() == RecordType::A),
        "a reachable address is found: {:?}",
        show(&m.answers)
    );
    // Fan-out: 12 layers of 12 names, each pointing at every name of the next layer
    // (12^8 paths within the chain limit), with a dead end at the bottom.
    let (width, layers) = (12, 12);
    let fan: Vec<Vec<usize>> = (0..width * layers)
        .map(|i| {
            let next = (i / width + 1) * width;
            if next >= width * layers {
                vec![]
            } else {
                (next..next + width).collect()
            }
        })
        .collect();
    let set = graph_set("fan", &fan, &[]);
    slowest.push(("fan-out 12x12", ask_every_name(&set, "fan", width * layers)));
    // Cycles longer than one, with and without an address inside the chain limit.
    for (len, address) in [(2, None), (7, None), (50, None), (5, Some(3))] {
        let cycle: Vec<Vec<usize>> = (0..len).map(|i| vec![(i + 1) % len]).collect();
        let addresses: Vec<usize> = address.into_iter().collect();
        let set = graph_set("cycle", &cycle, &addresses);
        slowest.push(("cycle", ask_every_name(&set, "cycle", len)));
        if let Some(at) = address {
            let m = ask_in(&set, "n0.cycle.skydns.test.", RecordType::A);
            assert_eq!(m.answers.len(), at + 1, "{:?}", show(&m.answers));
        }
    }
    // Random graphs: 20 of 60 names, 0 to 15 edges each, a few addresses.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..20 {
        let names = 60;
        let edges: Vec<Vec<usize>> = (0..names)
            .map(|_| (0..rng.below(16)).map(|_| rng.below(names)).collect())
            .collect();
        let addresses: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(names)).collect();
        let set = graph_set("random", &edges, &addresses);
        slowest.push(("random", ask_every_name(&set, "random", names)));
    }
    for (graph, took) in &slowest[..4] {
        eprintln!("slowest answer, {graph}: {took:?}");
    }
    let worst = slowest.iter().max_by_key(|(_, t)| *t).unwrap();
    eprintln!(
        "slowest answer on a CNAME graph: {:?} ({})",
        worst.1, worst.0
    );
}
