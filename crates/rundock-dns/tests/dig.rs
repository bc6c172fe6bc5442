//! `rundock dns` against a real etcd, queried with a real `dig`: records put with
//! `etcdctl` (v3) or the v2 keys API answer as A, AAAA, SRV, TXT; missing names are
//! NXDOMAIN; deleted records stop answering within a second; the watch survives an etcd
//! restart.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use rundock_dns::DnsOptions;
use rundock_testkit::{run, stdout, wait_for, Etcd};

const DOMAIN: &str = "s.prod.example.com";
const BASE: &str = "/skydns/com/example/prod/s";

/// The responder on an ephemeral port, in a thread of its own; stopped on drop.
struct Responder {
    addr: SocketAddr,
    _serving: common::InProcess,
}

impl Responder {
    fn start(etcd: &Etcd, api: &str) -> Responder {
        let mut opts = DnsOptions::new(vec![DOMAIN.into()]);
        opts.etcd = vec![etcd.endpoint().parse().unwrap()];
        opts.etcd_api = api.into();
        Responder::start_with(opts)
    }

    fn start_with(mut opts: DnsOptions) -> Responder {
        opts.listen = "127.0.0.1:0".parse().unwrap();
        let serving = common::InProcess::start(opts, || Ok(()));
        Responder {
            addr: serving.addr,
            _serving: serving,
        }
    }

    /// `dig +short NAME TYPE` lines, sorted.
    fn short(&self, name: &str, qtype: &str) -> Vec<String> {
        let out = self.dig(&["+short", name, qtype]);
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    fn dig(&self, args: &[&str]) -> String {
        let port = self.addr.port().to_string();
        let server = format!("@{}", self.addr.ip());
        let mut all = vec![server.as_str(), "-p", &port, "+time=2", "+tries=1"];
        all.extend_from_slice(args);
        // dig aligns with tabs; one space between fields keeps assertions readable.
        stdout(&run("dig", &all))
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `dig +short` gives `want` (sorted), up to `timeout`.
    fn await_answer(&self, name: &str, qtype: &str, want: &[&str], timeout: Duration) -> bool {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        wait_for(timeout, || (self.short(name, qtype) == want).then_some(())).is_some()
    }
}

fn etcdctl(etcd: &Etcd, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(etcd.endpoint())
        .args(args)
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn put(etcd: &Etcd, key: &str, value: &str) {
    etcdctl(etcd, &["put", key, value]);
}

/// Grants a lease and returns its hex id.
fn lease(etcd: &Etcd, ttl: u32) -> String {
    let out = etcdctl(etcd, &["lease", "grant", &ttl.to_string()]);
    // "lease 694d7b3c8a1e0a0b granted with TTL(20s)"
    out.split_whitespace().nth(1).expect("lease id").to_string()
}

fn status(dig_output: &str) -> String {
    dig_output
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string()
}

const READY: Duration = Duration::from_secs(10);

#[test]
fn v3_answers_instances_types_and_misses() {
    let etcd = Etcd::start();
    put(
        &etcd,
        &format!("{BASE}/influxdb/node-back-1"),
        r#"{"host":"10.0.0.5","port":8086,"ttl":60}"#,
    );
    put(
        &etcd,
        &format!("{BASE}/influxdb/node-back-2"),
        r#"{"host":"10.0.0.6","port":8086,"ttl":60}"#,
    );
    put(
        &etcd,
        &format!("{BASE}/influxdb6/node-1"),
        r#"{"host":"fd00::5","port":8086}"#,
    );
    put(
        &etcd,
        &format!("{BASE}/notes/n1"),
        r#"{"text":"hello rundock"}"#,
    );
    put(
        &etcd,
        &format!("{BASE}/web/w1"),
        r#"{"host":"influxdb.s.prod.example.com"}"#,
    );
    let dns = Responder::start(&etcd, "v3");

    let all = "influxdb.s.prod.example.com";
    assert!(
        dns.await_answer(all, "A", &["10.0.0.5", "10.0.0.6"], READY),
        "all instances: {:?}",
        dns.short(all, "A")
    );
    assert_eq!(
        dns.short("node-back-1.influxdb.s.prod.example.com", "A"),
        ["10.0.0.5"]
    );
    assert_eq!(
        dns.short("NODE-BACK-2.InfluxDB.s.prod.example.com", "A"),
        ["10.0.0.6"]
    );
    assert_eq!(dns.short("*.influxdb.s.prod.example.com", "A").len(), 2);
    assert_eq!(
        dns.short("influxdb6.s.prod.example.com", "AAAA"),
        ["fd00::5"]
    );
    assert_eq!(
        dns.short(all, "SRV"),
        [
            "10 50 8086 node-back-1.influxdb.s.prod.example.com.",
            "10 50 8086 node-back-2.influxdb.s.prod.example.com."
        ]
    );
    // The SRV targets come with their addresses.
    let srv = dns.dig(&["+noall", "+additional", all, "SRV"]);
    assert!(
        srv.contains("node-back-1.influxdb.s.prod.example.com. 60 IN A 10.0.0.5"),
        "{srv}"
    );
    assert_eq!(
        dns.short("notes.s.prod.example.com", "TXT"),
        ["\"hello rundock\""]
    );
    assert_eq!(
        dns.short("web.s.prod.example.com", "A"),
        ["10.0.0.5", "10.0.0.6", "influxdb.s.prod.example.com."]
    );

    // TCP answers the same.
    let tcp = dns.dig(&[
        "+tcp",
        "+short",
        "node-back-1.influxdb.s.prod.example.com",
        "A",
    ]);
    assert_eq!(tcp.trim(), "10.0.0.5");

    let missing = dns.dig(&["nothere.s.prod.example.com", "A"]);
    assert_eq!(status(&missing), "NXDOMAIN", "{missing}");
    assert!(missing.contains("AUTHORITY: 1"), "{missing}");
    let nodata = dns.dig(&["notes.s.prod.example.com", "A"]);
    assert_eq!(status(&nodata), "NOERROR", "{nodata}");
    assert!(
        nodata.contains("ANSWER: 0") && nodata.contains("AUTHORITY: 1"),
        "{nodata}"
    );
    let outside = dns.dig(&["www.example.org", "A"]);
    assert_eq!(status(&outside), "REFUSED", "{outside}");
    let soa = dns.short(DOMAIN, "SOA");
    assert_eq!(soa.len(), 1);
    assert!(soa[0].starts_with("ns.dns.s.prod.example.com. hostmaster.s.prod.example.com."));
}

#[test]
fn v3_changes_show_within_a_second_and_ttl_follows_the_lease() {
    let etcd = Etcd::start();
    let dns = Responder::start(&etcd, "v3");
    let name = "api.s.prod.example.com";
    let key1 = format!("{BASE}/api/host-1");
    let key2 = format!("{BASE}/api/host-2");
    // Wait for the first list: an empty zone answers NXDOMAIN, not SERVFAIL.
    assert!(
        wait_for(READY, || (status(&dns.dig(&[name, "A"])) == "NXDOMAIN")
            .then_some(()))
        .is_some()
    );

    let id = lease(&etcd, 20);
    etcdctl(
        &etcd,
        &[
            "put",
            "--lease",
            &id,
            &key1,
            r#"{"host":"10.0.1.1","port":80,"ttl":60}"#,
        ],
    );
    put(&etcd, &key2, r#"{"host":"10.0.1.2","port":80,"ttl":60}"#);
    let start = Instant::now();
    assert!(dns.await_answer(name, "A", &["10.0.1.1", "10.0.1.2"], Duration::from_secs(1)));
    eprintln!("put visible after {:?}", start.elapsed());

    // The leased record answers with the lease TTL (20 < 60) as soon as the lease is
    // looked up, and never above its own ttl before.
    let ttl_of = || {
        let answer = dns.dig(&["+noall", "+answer", "host-1.api.s.prod.example.com", "A"]);
        answer
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let first = ttl_of();
    assert!(first <= 60, "{first}");
    let ttl = wait_for(Duration::from_secs(2), || {
        let ttl = ttl_of();
        (ttl <= 20).then_some(ttl)
    });
    assert!(matches!(ttl, Some(10..=20)), "{ttl:?}");
    let answer = dns.dig(&["+noall", "+answer", "host-2.api.s.prod.example.com", "A"]);
    assert!(answer.contains(" 60 IN A 10.0.1.2"), "{answer}");

    // A delete disappears within a second.
    etcdctl(&etcd, &["del", &key2]);
    let start = Instant::now();
    assert!(
        dns.await_answer(name, "A", &["10.0.1.1"], Duration::from_secs(1)),
        "still {:?}",
        dns.short(name, "A")
    );
    eprintln!("delete visible after {:?}", start.elapsed());

    // So does a revoked lease (what the announcer's TTL does when it dies).
    etcdctl(&etcd, &["lease", "revoke", &id]);
    let start = Instant::now();
    assert!(dns.await_answer(name, "A", &[], Duration::from_secs(1)));
    eprintln!("revoke visible after {:?}", start.elapsed());
    assert_eq!(status(&dns.dig(&[name, "A"])), "NXDOMAIN");

    // An overwrite replaces the answer.
    put(&etcd, &key1, r#"{"host":"10.0.1.9"}"#);
    assert!(dns.await_answer(name, "A", &["10.0.1.9"], Duration::from_secs(1)));
}

#[test]
fn v3_large_answers_fall_back_to_tcp() {
    let etcd = Etcd::start();
    let mut want = Vec::new();
    for i in 0..100 {
        let ip = format!("10.0.2.{}", i + 1);
        put(
            &etcd,
            &format!("{BASE}/big/node-{i}"),
            &format!(r#"{{"host":"{ip}","port":80}}"#),
        );
        want.push(ip);
    }
    let dns = Responder::start(&etcd, "v3");
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    // 100 A records do not fit 1232 bytes: dig gets TC and retries over TCP.
    assert!(
        dns.await_answer("big.s.prod.example.com", "A", &want, READY),
        "{}",
        dns.short("big.s.prod.example.com", "A").len()
    );
    let udp_only = dns.dig(&["+ignore", "big.s.prod.example.com", "A"]);
    assert!(udp_only.contains(" tc"), "{udp_only}");
}

#[test]
fn v3_watch_resumes_after_an_etcd_restart() {
    let mut etcd = Etcd::start();
    put(&etcd, &format!("{BASE}/db/a"), r#"{"host":"10.0.3.1"}"#);
    let dns = Responder::start(&etcd, "v3");
    assert!(dns.await_answer("db.s.prod.example.com", "A", &["10.0.3.1"], READY));

    etcd.stop();
    std::thread::sleep(Duration::from_millis(500));
    // The last known records keep answering while etcd is away.
    assert_eq!(dns.short("db.s.prod.example.com", "A"), ["10.0.3.1"]);
    etcd.restart();
    put(&etcd, &format!("{BASE}/db/b"), r#"{"host":"10.0.3.2"}"#);
    assert!(
        dns.await_answer(
            "db.s.prod.example.com",
            "A",
            &["10.0.3.1", "10.0.3.2"],
            READY
        ),
        "{:?}",
        dns.short("db.s.prod.example.com", "A")
    );
}

fn v2_put(etcd: &Etcd, key: &str, value: &str, ttl: Option<u32>) {
    let url = format!("{}/v2/keys{key}", etcd.endpoint());
    let mut args = vec!["-sf", "-XPUT", &url, "--data-urlencode"];
    let value = format!("value={value}");
    args.push(&value);
    let ttl = ttl.map(|t| format!("ttl={t}"));
    if let Some(ttl) = &ttl {
        args.extend(["-d", ttl]);
    }
    let out = run("curl", &args);
    assert!(out.status.success(), "v2 put {key}: {:?}", out);
}

fn v2_delete(etcd: &Etcd, key: &str, dir: bool) {
    let mut url = format!("{}/v2/keys{key}", etcd.endpoint());
    if dir {
        url.push_str("?recursive=true");
    }
    let out = run("curl", &["-sf", "-XDELETE", &url]);
    assert!(out.status.success(), "v2 delete {key}: {:?}", out);
}

#[test]
fn v2_answers_and_follows_changes() {
    let etcd = Etcd::start();
    v2_put(
        &etcd,
        &format!("{BASE}/cache/c1"),
        r#"{"host":"10.0.4.1","port":6379}"#,
        None,
    );
    v2_put(
        &etcd,
        &format!("{BASE}/cache/c2"),
        r#"{"host":"10.0.4.2","port":6379}"#,
        Some(30),
    );
    let dns = Responder::start(&etcd, "v2");
    let name = "cache.s.prod.example.com";
    assert!(
        dns.await_answer(name, "A", &["10.0.4.1", "10.0.4.2"], READY),
        "{:?}",
        dns.short(name, "A")
    );
    assert_eq!(
        dns.short(name, "SRV"),
        [
            "10 50 6379 c1.cache.s.prod.example.com.",
            "10 50 6379 c2.cache.s.prod.example.com."
        ]
    );
    let answer = dns.dig(&["+noall", "+answer", "c2.cache.s.prod.example.com", "A"]);
    let ttl: u32 = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((20..=30).contains(&ttl), "{answer}");

    v2_delete(&etcd, &format!("{BASE}/cache/c2"), false);
    assert!(dns.await_answer(name, "A", &["10.0.4.1"], Duration::from_secs(1)));
    v2_put(
        &etcd,
        &format!("{BASE}/cache/c3"),
        r#"{"host":"10.0.4.3"}"#,
        None,
    );
    assert!(dns.await_answer(name, "A", &["10.0.4.1", "10.0.4.3"], Duration::from_secs(1)));
    // Deleting the directory removes everything below it.
    v2_delete(&etcd, &format!("{BASE}/cache"), true);
    assert!(dns.await_answer(name, "A", &[], Duration::from_secs(1)));
}

#[test]
fn names_outside_the_domains_are_forwarded_when_asked() {
    let etcd = Etcd::start();
    put(&etcd, "/skydns/test/other/www/x", r#"{"host":"10.0.5.1"}"#);
    put(&etcd, &format!("{BASE}/local/l1"), r#"{"host":"10.0.5.2"}"#);
    // The upstream answers for other.test; the front one for our domain, forwarding the rest.
    let mut upstream = DnsOptions::new(vec!["other.test".into()]);
    upstream.etcd = vec![etcd.endpoint().parse().unwrap()];
    let upstream = Responder::start_with(upstream);
    let mut front = DnsOptions::new(vec![DOMAIN.into()]);
    front.etcd = vec![etcd.endpoint().parse().unwrap()];
    front.forward = Some(upstream.addr);
    let front = Responder::start_with(front);

    assert!(front.await_answer("local.s.prod.example.com", "A", &["10.0.5.2"], READY));
    assert!(upstream.await_answer("www.other.test", "A", &["10.0.5.1"], READY));
    assert_eq!(front.short("www.other.test", "A"), ["10.0.5.1"]);
    let tcp = front.dig(&["+tcp", "+short", "www.other.test", "A"]);
    assert_eq!(tcp.trim(), "10.0.5.1");
    // The upstream's refusal is passed on as it is.
    assert_eq!(status(&front.dig(&["www.example.org", "A"])), "REFUSED");

    // A CNAME to a name outside the zone comes with the forwarder's answer for it,
    // over UDP and TCP, so a stub resolver (glibc) needs no second query.
    put(
        &etcd,
        &format!("{BASE}/alias/a1"),
        r#"{"host":"www.other.test"}"#,
    );
    assert!(front.await_answer(
        "alias.s.prod.example.com",
        "A",
        &["10.0.5.1", "www.other.test."],
        READY
    ));
    let answer = front.dig(&["+noall", "+answer", "alias.s.prod.example.com", "A"]);
    assert_eq!(
        answer.lines().collect::<Vec<_>>(),
        [
            "alias.s.prod.example.com. 300 IN CNAME www.other.test.",
            "www.other.test. 300 IN A 10.0.5.1"
        ],
        "{answer}"
    );
    let tcp = front.dig(&["+tcp", "+short", "alias.s.prod.example.com", "A"]);
    assert_eq!(tcp.trim(), "www.other.test.\n10.0.5.1");
    // Without a forwarder the CNAME stands alone, as before.
    put(
        &etcd,
        "/skydns/test/other/alias/a1",
        r#"{"host":"www.example.org"}"#,
    );
    assert!(upstream.await_answer("alias.other.test", "A", &["www.example.org."], READY));
}

#[test]
fn rfc2782_srv_names_answer_with_the_service_instances() {
    let etcd = Etcd::start();
    for (node, ip) in [("node-1", "10.0.6.1"), ("node-2", "10.0.6.2")] {
        put(
            &etcd,
            &format!("{BASE}/web/{node}"),
            &format!(r#"{{"host":"{ip}","port":8080,"ttl":5}}"#),
        );
    }
    let dns = Responder::start(&etcd, "v3");
    let want = [
        "10 50 8080 node-1.web.s.prod.example.com.",
        "10 50 8080 node-2.web.s.prod.example.com.",
    ];
    assert!(dns.await_answer("_http._tcp.web.s.prod.example.com", "SRV", &want, READY));
    assert_eq!(dns.short("_tcp.web.s.prod.example.com", "SRV"), want);
    let full = dns.dig(&["_http._tcp.web.s.prod.example.com", "SRV"]);
    assert!(
        full.contains(
            "_http._tcp.web.s.prod.example.com. 5 IN SRV 10 50 8080 node-1.web.s.prod.example.com."
        ),
        "{full}"
    );
    assert!(
        full.contains("node-2.web.s.prod.example.com. 5 IN A 10.0.6.2"),
        "the targets' addresses are in the additional section: {full}"
    );
    // One instance by its own SRV name; A on a service name is NODATA; a missing
    // service is NXDOMAIN.
    assert_eq!(
        dns.short("_http._tcp.node-2.web.s.prod.example.com", "SRV"),
        ["10 100 8080 node-2.web.s.prod.example.com."]
    );
    let a = dns.dig(&["_http._tcp.web.s.prod.example.com", "A"]);
    assert_eq!(status(&a), "NOERROR", "{a}");
    assert!(a.contains("ANSWER: 0"), "{a}");
    let missing = dns.dig(&["_http._tcp.nothere.s.prod.example.com", "SRV"]);
    assert_eq!(status(&missing), "NXDOMAIN", "{missing}");
    // A withdrawn instance leaves the SRV answer.
    etcdctl(&etcd, &["del", &format!("{BASE}/web/node-1")]);
    assert!(dns.await_answer(
        "_http._tcp.web.s.prod.example.com",
        "SRV",
        &["10 100 8080 node-2.web.s.prod.example.com."],
        Duration::from_secs(1)
    ));
}

#[test]
fn before_the_first_list_queries_get_servfail_not_nxdomain() {
    let mut opts = DnsOptions::new(vec![DOMAIN.into()]);
    // Nothing listens there.
    opts.etcd = vec![format!("http://127.0.0.1:{}", rundock_testkit::free_port())
        .parse()
        .unwrap()];
    let dns = Responder::start_with(opts);
    let out = dns.dig(&["anything.s.prod.example.com", "A"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    assert_eq!(status(&dns.dig(&["www.example.org", "A"])), "REFUSED");
}
