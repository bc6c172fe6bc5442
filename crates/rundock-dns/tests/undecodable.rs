//! No record can stop `rundock dns` from serving and following the zone: generated keys
//! and values that cannot be taken (not text, not JSON, wrong types, too large, hostile
//! keys and hosts; see `hostile/mod.rs`) are written to a real etcd before a fresh
//! start and while it runs. The rest of the zone answers from the first list (never
//! SERVFAIL), records written after the bad ones appear, one overwritten with bytes
//! that are not text goes away, deleting a bad key works, and no bad record adds an
//! answer or SRV weight.

mod common;
mod hostile;

use std::time::Duration;

use rundock_dns::DnsOptions;
use rundock_testkit::{run, stdout, wait_for, Etcd};

const DOMAIN: &str = "s.prod.example.com";
const BASE: &str = "/skydns/com/example/prod/s";
const WEB: &str = "web.s.prod.example.com";
const READY: Duration = Duration::from_secs(10);

fn dig(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let port = addr.port().to_string();
    let server = format!("@{}", addr.ip());
    let mut all = vec![server.as_str(), "-p", &port, "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    stdout(&run("dig", &all))
}

fn short(addr: std::net::SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig(addr, &["+short", name, qtype])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

fn good(ip: &str) -> String {
    format!(r#"{{"host":"{ip}","port":80}}"#)
}

#[test]
fn records_that_cannot_be_taken_never_stop_the_zone() {
    let etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    let cases = hostile::cases(0x0ddba11);
    assert!(cases.len() > 100, "{} cases", cases.len());
    let (before, during) = cases.split_at(cases.len() / 2);
    let web = format!("{BASE}/web");

    hostile::put_raw(
        &endpoint,
        format!("{web}/good-1").as_bytes(),
        good("10.0.0.1").as_bytes(),
    );
    for case in before {
        hostile::put_raw(&endpoint, &hostile::key(&web, case), &case.value);
    }

    // A fresh start lists them all and serves the rest of the zone at once.
    let mut opts = DnsOptions::new(vec![DOMAIN.into()]);
    opts.etcd = vec![endpoint.parse().unwrap()];
    opts.listen = "127.0.0.1:0".parse().unwrap();
    let serving = common::InProcess::start(opts, || Ok(()));
    let dns = serving.addr;
    let first = wait_for(READY, || {
        let out = dig(dns, &[WEB, "A"]);
        (!out.contains("status: SERVFAIL")).then_some(out)
    })
    .expect("the zone is served");
    assert!(first.contains("status: NOERROR"), "{first}");
    assert_eq!(
        short(dns, WEB, "A"),
        ["10.0.0.1"],
        "{:?}",
        short(dns, WEB, "SRV")
    );
    // The one good record carries the whole weight: no skipped record adds any.
    assert_eq!(
        short(dns, WEB, "SRV"),
        ["10 100 80 good-1.web.s.prod.example.com."]
    );

    // While it runs: more of them, then a good record, which must appear.
    for case in during {
        hostile::put_raw(&endpoint, &hostile::key(&web, case), &case.value);
    }
    hostile::put_raw(
        &endpoint,
        format!("{web}/good-2").as_bytes(),
        good("10.0.0.2").as_bytes(),
    );
    assert!(
        wait_for(READY, || (short(dns, WEB, "A") == ["10.0.0.1", "10.0.0.2"])
            .then_some(()))
        .is_some(),
        "a record written after the bad ones is followed: {:?}",
        short(dns, WEB, "A")
    );
    assert_eq!(
        short(dns, WEB, "SRV"),
        [
            "10 50 80 good-1.web.s.prod.example.com.",
            "10 50 80 good-2.web.s.prod.example.com."
        ]
    );

    // A good record overwritten with bytes that are not text stops answering, and the
    // watch goes on past it.
    hostile::put_raw(
        &endpoint,
        format!("{web}/good-1").as_bytes(),
        b"{\"host\":\"10.0.0.1\xff\"}",
    );
    hostile::put_raw(
        &endpoint,
        format!("{web}/good-3").as_bytes(),
        good("10.0.0.3").as_bytes(),
    );
    assert!(
        wait_for(READY, || (short(dns, WEB, "A") == ["10.0.0.2", "10.0.0.3"])
            .then_some(()))
        .is_some(),
        "{:?}",
        short(dns, WEB, "A")
    );

    // Deleting bad keys works as usual, and a good value at the same key answers.
    for case in &cases {
        hostile::delete_raw(&endpoint, &hostile::key(&web, case));
    }
    let bytes_case = cases
        .iter()
        .find(|c| c.label == b"bytes-0")
        .expect("a bytes case");
    hostile::put_raw(
        &endpoint,
        &hostile::key(&web, bytes_case),
        good("10.0.0.4").as_bytes(),
    );
    assert!(
        wait_for(READY, || (short(dns, WEB, "A")
            == ["10.0.0.2", "10.0.0.3", "10.0.0.4"])
        .then_some(()))
        .is_some(),
        "{:?}",
        short(dns, WEB, "A")
    );

    // And a fresh start after all that answers the same.
    drop(serving);
    let mut opts = DnsOptions::new(vec![DOMAIN.into()]);
    opts.etcd = vec![endpoint.parse().unwrap()];
    opts.listen = "127.0.0.1:0".parse().unwrap();
    let again = common::InProcess::start(opts, || Ok(()));
    assert!(wait_for(READY, || (short(again.addr, WEB, "A")
        == ["10.0.0.2", "10.0.0.3", "10.0.0.4"])
    .then_some(()))
    .is_some());
}

#[test]
fn v2_records_that_cannot_be_taken_are_skipped_too() {
    // The v2 keys API carries text only (etcd writes bytes that are not UTF-8 as
    // U+FFFD), so of the classes only JSON, types, sizes and hostile text apply.
    let etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    let web = format!("{BASE}/web");
    let v2_put = |key: &str, value: &str| {
        let path: String = key
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let out = run(
            "curl",
            &[
                "-sfg",
                "-X",
                "PUT",
                &format!("{endpoint}/v2/keys{path}"),
                "--data-urlencode",
                &format!("value={value}"),
            ],
        );
        assert!(out.status.success(), "v2 put {key:?}: {out:?}");
    };
    v2_put(&format!("{web}/good-1"), &good("10.0.0.1"));
    let text_cases: Vec<_> = hostile::cases(7)
        .into_iter()
        .filter(|c| {
            std::str::from_utf8(&c.label)
                // v2 drops a trailing '/', which makes that key a good one.
                .is_ok_and(|l| !l.ends_with('/'))
                && std::str::from_utf8(&c.value).is_ok()
                && c.value.len() < 64 * 1024
        })
        .collect();
    assert!(text_cases.len() > 50, "{}", text_cases.len());
    for case in &text_cases {
        let key = format!("{web}/{}", String::from_utf8_lossy(&case.label));
        v2_put(&key, std::str::from_utf8(&case.value).unwrap());
    }
    let mut opts = DnsOptions::new(vec![DOMAIN.into()]);
    opts.etcd = vec![endpoint.parse().unwrap()];
    opts.etcd_api = "v2".into();
    opts.listen = "127.0.0.1:0".parse().unwrap();
    let serving = common::InProcess::start(opts, || Ok(()));
    assert!(
        wait_for(READY, || (short(serving.addr, WEB, "A") == ["10.0.0.1"])
            .then_some(()))
        .is_some(),
        "{:?}",
        short(serving.addr, WEB, "SRV")
    );
    assert_eq!(
        short(serving.addr, WEB, "SRV"),
        ["10 100 80 good-1.web.s.prod.example.com."]
    );
    v2_put(&format!("{web}/good-2"), &good("10.0.0.2"));
    assert!(wait_for(READY, || (short(serving.addr, WEB, "A")
        == ["10.0.0.1", "10.0.0.2"])
    .then_some(()))
    .is_some());
}
