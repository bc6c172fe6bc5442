//! Generated records that must never be served or rendered: keys and values that are
//! not text, not JSON, of the wrong types, too large, or that carry line breaks,
//! directive and block delimiters, quotes or template syntax. Shared by the DNS and
//! the watch tests (the watch tests include this file by path), written to a real etcd
//! with `etcdctl`, keys as raw bytes and values on stdin (a 1 MB value does not fit in
//! one argument).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

/// One record to write below a service name: the key's last label(s) and the value.
#[derive(Debug, Clone)]
pub struct Case {
    pub what: String,
    pub label: Vec<u8>,
    pub value: Vec<u8>,
}

/// A value the record rule takes; put under a hostile key it must still be skipped.
pub const GOOD_VALUE: &str = r#"{"host":"10.0.0.66","port":80}"#;

/// Byte sequences that are not UTF-8: a lone continuation byte, bytes never valid, a
/// truncated sequence, an overlong encoding, a UTF-16 surrogate, a 5-byte form.
const NOT_UTF8: &[&[u8]] = &[
    b"\x80",
    b"\xff",
    b"\xfe",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
];

/// Key labels that are text but no DNS label; every one would change a rendered file
/// or a DNS name if it were taken.
const BAD_LABELS: &[&str] = &[
    "a\nserver 6.6.6.6:80;",
    "x;\n}\nserver {\n    listen 6666;\n}\n#",
    "a;b",
    "{a}",
    "a}",
    "a b",
    "\"a\"",
    "'a'",
    "{{ i.key }}",
    "{% if true %}x{% endif %}",
    "{# c #}",
    "#a",
    "a$b",
    "a\\b",
    "a\tb",
    "a\rb",
    "*",
    "a.b",
    "ä",
    "ａ",
    "a/", // an empty last label
];

/// `host` values that are text but neither an address nor a host name.
const BAD_HOSTS: &[&str] = &[
    "a;b",
    "a\nb",
    "a b",
    "{a}",
    "a}",
    "\"a\"",
    "{{ x }}",
    "{% x %}",
    "#x",
    "a$x",
    "a\\b",
    "a..b",
    ".",
    "10.0.0.1:80",
    "fe80::1%eth0",
    "10.0.0.1;",
    "6.6.6.6 backup",
];

/// Values of the wrong JSON types, out of range, or not JSON objects at all.
const BAD_JSON: &[&str] = &[
    "",
    "{",
    "}",
    "[]",
    "null",
    "\"10.0.0.1\"",
    "{\"host\":",
    "{\"host\":\"10.0.0.1\",}",
    "{'host':'10.0.0.1'}",
    "[\"10.0.0.1\",80]",
    r#"{"host":5}"#,
    r#"{"host":null}"#,
    r#"{"host":["10.0.0.1"]}"#,
    r#"{"host":"10.0.0.1","port":"80"}"#,
    r#"{"host":"10.0.0.1","port":70000}"#,
    r#"{"host":"10.0.0.1","port":-1}"#,
    r#"{"host":"10.0.0.1","port":1.5}"#,
    r#"{"host":"10.0.0.1","priority":true}"#,
    r#"{"host":"10.0.0.1","weight":{}}"#,
    r#"{"host":"10.0.0.1","ttl":-1}"#,
    r#"{"host":"10.0.0.1","ttl":4294967296}"#,
    r#"{"host":"10.0.0.1","mail":"yes"}"#,
    r#"{"host":"10.0.0.1","targetstrip":[]}"#,
    r#"{"host":"10.0.0.1","text":5}"#,
    r#"{"host":"10.0.0.1","group":7}"#,
    r#"{"host":"10.0.0.1","text":"a\u0000b"}"#,
    r#"{"host":"10.0.0.1","text":"\u001b[31mred"}"#,
    r#"{"host":"10.0.0.1","group":"a;b"}"#,
];

/// A small deterministic generator (xorshift64*), so a failing case can be rebuilt.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.below(256) as u8).collect()
    }
}

/// Every class of bad record, with generated members; labels are unique per case.
pub fn cases(seed: u64) -> Vec<Case> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    let mut push =
        |what: String, label: Vec<u8>, value: Vec<u8>| out.push(Case { what, label, value });
    for (i, bad) in NOT_UTF8.iter().enumerate() {
        // Inside the host string of a value that is otherwise a good record...
        let mut value = br#"{"host":"10.0.0."#.to_vec();
        value.extend_from_slice(bad);
        value.extend_from_slice(br#"","port":80}"#);
        push(
            format!("value bytes {bad:x?}"),
            format!("bytes-{i}").into_bytes(),
            value,
        );
        // ...in random bytes...
        let len = 1 + rng.below(64);
        let mut random = rng.bytes(len);
        let at = rng.below(random.len() + 1);
        random.splice(at..at, bad.iter().copied());
        push(
            format!("random value {random:x?}"),
            format!("random-{i}").into_bytes(),
            random,
        );
        // ...and in the key.
        let mut label = format!("key-{i}-").into_bytes();
        label.extend_from_slice(bad);
        push(format!("key bytes {bad:x?}"), label, GOOD_VALUE.into());
    }
    for (i, label) in BAD_LABELS.iter().enumerate() {
        push(
            format!("key label {label:?}"),
            format!("k{i}{label}").into_bytes(),
            GOOD_VALUE.into(),
        );
    }
    push(
        "key label of 64".into(),
        "k".repeat(64).into_bytes(),
        GOOD_VALUE.into(),
    );
    push(
        "key name over 253".into(),
        vec!["k".repeat(60); 5].join("/").into_bytes(),
        GOOD_VALUE.into(),
    );
    for (i, host) in BAD_HOSTS.iter().enumerate() {
        let value = serde_json::json!({"host": host, "port": 80}).to_string();
        push(
            format!("host {host:?}"),
            format!("host-{i}").into_bytes(),
            value.into_bytes(),
        );
    }
    push(
        "host of 254".into(),
        b"host-long".to_vec(),
        serde_json::json!({"host": vec!["h".repeat(50); 5].join("."), "port": 80})
            .to_string()
            .into_bytes(),
    );
    for (i, json) in BAD_JSON.iter().enumerate() {
        push(
            format!("json {json:?}"),
            format!("json-{i}").into_bytes(),
            json.as_bytes().to_vec(),
        );
    }
    // Good values cut at a random place.
    for i in 0..6 {
        let cut = 1 + rng.below(GOOD_VALUE.len() - 2);
        push(
            format!("cut at {cut}"),
            format!("cut-{i}").into_bytes(),
            GOOD_VALUE.as_bytes()[..cut].to_vec(),
        );
    }
    for (i, size) in [16 * 1024 + 1, 200 * 1024, 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let pad = size - r#"{"host":"10.0.0.1","port":80,"text":""}"#.len();
        let value = format!(
            r#"{{"host":"10.0.0.1","port":80,"text":"{}"}}"#,
            "x".repeat(pad)
        );
        push(
            format!("value of {size} bytes"),
            format!("size-{i}").into_bytes(),
            value.into_bytes(),
        );
    }
    out
}

/// `etcdctl put KEY` with the value on stdin, the key as raw bytes.
pub fn put_raw(endpoint: &str, key: &[u8], value: &[u8]) {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "put", "--"])
        .arg(OsStr::from_bytes(key));
    if value.is_empty() {
        // etcdctl takes no empty value from stdin.
        command.arg("");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child.stdin.take().unwrap().write_all(value).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl put {:?}: {}",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `etcdctl del KEY`, the key as raw bytes.
pub fn delete_raw(endpoint: &str, key: &[u8]) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "del", "--"])
        .arg(OsStr::from_bytes(key))
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl del: {out:?}");
}

/// `base` + `/` + the case's label.
pub fn key(base: &str, case: &Case) -> Vec<u8> {
    let mut key = format!("{base}/").into_bytes();
    key.extend_from_slice(&case.label);
    key
}
