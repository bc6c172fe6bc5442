//! CNAME graphs cost bounded work per query, end to end: generated graphs (complete,
//! fan-out layers, long cycles, random) are written to a real etcd and every name is
//! asked with a real `dig` while another client keeps asking a plain name. Each answer
//! must come within a generous bound (1 s; a release build answers the worst in
//! milliseconds) — the responder answers one query at a time, so the bound on each
//! chase is also what keeps one hostile name from holding up every other client.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rundock_dns::DnsOptions;
use rundock_testkit::{run, stdout, wait_for, Etcd};

const DOMAIN: &str = "s.prod.example.com";
const BASE: &str = "/skydns/com/example/prod/s";
const BOUND: Duration = Duration::from_secs(1);

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Puts every `(key, value)` through the v3 gateway, 128 (etcd's default limit) per txn.
fn put_all(etcd: &Etcd, records: &[(String, String)]) {
    for batch in records.chunks(128) {
        let ops: Vec<serde_json::Value> = batch
            .iter()
            .map(|(k, v)| {
                serde_json::json!({"request_put": {"key": base64(k.as_bytes()), "value": base64(v.as_bytes())}})
            })
            .collect();
        let body = serde_json::json!({ "success": ops }).to_string();
        let out = run(
            "curl",
            &[
                "-sf",
                "-X",
                "POST",
                &format!("{}/v3/kv/txn", etcd.endpoint()),
                "-d",
                &body,
            ],
        );
        assert!(out.status.success(), "txn: {out:?}");
    }
}

/// `dig +short` of `name`, and how long the answer took.
fn timed_dig(addr: SocketAddr, name: &str, qtype: &str) -> (String, Duration) {
    let started = Instant::now();
    let out = run(
        "dig",
        &[
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "+time=3",
            "+tries=1",
            "+short",
            name,
            qtype,
        ],
    );
    (stdout(&out), started.elapsed())
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// The records of graph `graph`: name `i` holds one record per edge, pointing at the
/// names in `edges[i]`.
fn graph(graph: &str, edges: &[Vec<usize>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (from, targets) in edges.iter().enumerate() {
        for (j, to) in targets.iter().enumerate() {
            out.push((
                format!("{BASE}/{graph}/n{from}/r{j}"),
                format!(r#"{{"host":"n{to}.{graph}.{DOMAIN}","port":80}}"#),
            ));
        }
    }
    out
}

#[test]
fn every_answer_on_a_hostile_cname_graph_is_bounded_and_others_keep_answering() {
    let etcd = Etcd::start();
    let complete: Vec<Vec<usize>> = (0..40)
        .map(|i| (0..40).filter(|j| *j != i).collect())
        .collect();
    let (width, layers) = (12, 6);
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
    let cycle: Vec<Vec<usize>> = (0..50).map(|i| vec![(i + 1) % 50]).collect();
    let mut rng = Rng(0xc0ffee);
    let random: Vec<Vec<usize>> = (0..60)
        .map(|_| (0..rng.below(16)).map(|_| rng.below(60)).collect())
        .collect();
    let graphs = [
        ("complete", &complete),
        ("fan", &fan),
        ("cycle", &cycle),
        ("random", &random),
    ];
    let mut records = vec![(
        format!("{BASE}/plain/a"),
        r#"{"host":"10.0.0.1"}"#.to_string(),
    )];
    for (name, edges) in graphs {
        records.extend(graph(name, edges));
    }
    put_all(&etcd, &records);

    let mut opts = DnsOptions::new(vec![DOMAIN.into()]);
    opts.etcd = vec![etcd.endpoint().parse().unwrap()];
    opts.listen = "127.0.0.1:0".parse().unwrap();
    let serving = common::InProcess::start(opts, || Ok(()));
    let dns = serving.addr;
    let plain = format!("plain.{DOMAIN}");
    assert!(
        wait_for(Duration::from_secs(10), || (timed_dig(dns, &plain, "A")
            .0
            .trim()
            == "10.0.0.1")
            .then_some(()))
        .is_some()
    );

    // Another client asks a plain name all along.
    let done = Arc::new(AtomicBool::new(false));
    let bystander = {
        let done = done.clone();
        let plain = plain.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut asked = 0;
            while !done.load(Ordering::Relaxed) {
                let (answer, took) = timed_dig(dns, &plain, "A");
                assert_eq!(answer.trim(), "10.0.0.1");
                slowest = slowest.max(took);
                asked += 1;
            }
            (asked, slowest)
        })
    };
    let mut slowest = (Duration::ZERO, String::new());
    for (name, edges) in graphs {
        for i in 0..edges.len() {
            for qtype in ["A", "SRV"] {
                let qname = format!("n{i}.{name}.{DOMAIN}");
                let (_, took) = timed_dig(dns, &qname, qtype);
                assert!(took < BOUND, "{qname} {qtype}: {took:?}");
                if took > slowest.0 {
                    slowest = (took, format!("{qname} {qtype}"));
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let (asked, bystander_slowest) = bystander.join().expect("the other client");
    assert!(asked > 0);
    assert!(bystander_slowest < BOUND, "{bystander_slowest:?}");
    eprintln!(
        "slowest dig on a CNAME graph: {:?} ({}); the other client's slowest of {asked}: {bystander_slowest:?}",
        slowest.0, slowest.1
    );
}
