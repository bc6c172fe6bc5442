//! The client against a real etcd 3.4 (v3 gateway and v2 keys API).

use rundock_etcd::{Client, EtcdApi, EtcdError, Event, Refreshed};
use rundock_spec::EtcdSpec;
use rundock_testkit::{free_port, Etcd};
use std::process::Command;
use std::time::{Duration, Instant};

fn spec(endpoints: Vec<String>, api: EtcdApi) -> EtcdSpec {
    let endpoints = endpoints.iter().map(|e| e.parse().unwrap()).collect();
    EtcdSpec::new(endpoints, api)
}

fn client(etcd: &Etcd, api: EtcdApi) -> Client {
    Client::new(&spec(vec![etcd.endpoint()], api)).unwrap()
}

fn etcdctl(etcd: &Etcd, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint()])
        .args(args)
        .output()
        .expect("etcdctl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// v2 reads go through curl: etcdctl 3.4 speaks v2 only with ETCDCTL_API=2 quirks.
fn v2_get(etcd: &Etcd, key: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/v2/keys{key}", etcd.endpoint())])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// For each `body: v3_name, v2_name;`, a test of each API named so, running the
/// `async fn(EtcdApi)` `body` (the bodies are below; the list is at the end).
macro_rules! on_both_apis {
    ($($body:ident: $v3:ident, $v2:ident;)*) => {$(
        #[tokio::test(flavor = "current_thread")]
        async fn $v3() {
            $body(EtcdApi::V3).await;
        }

        #[tokio::test(flavor = "current_thread")]
        async fn $v2() {
            $body(EtcdApi::V2).await;
        }
    )*};
}

const KEY: &str = "/skydns/com/example/s/web/node-1";
const VALUE: &str = r#"{"host":"10.0.0.5","port":8080,"ttl":30}"#;

#[tokio::test(flavor = "current_thread")]
async fn v3_announce_puts_the_value_with_a_lease_of_the_ttl() {
    let etcd = Etcd::start();
    let c = client(&etcd, EtcdApi::V3);
    let lease = c.announce(KEY, VALUE, 30).await.unwrap();
    let id = lease.id.expect("a v3 lease");
    assert_eq!(etcd.get_prefix(KEY), format!("{KEY}\n{VALUE}\n"));
    let ttl = etcdctl(
        &etcd,
        &["lease", "timetolive", &format!("{id:x}"), "--keys"],
    );
    assert!(ttl.contains("granted with TTL(30s)"), "{ttl}");
    assert!(ttl.contains(KEY), "{ttl}");

    let entry = c.get(KEY).await.unwrap().expect("the key");
    assert_eq!(entry.value, VALUE);
    assert_eq!(entry.lease, Some(id));
    assert!(matches!(entry.ttl, Some(28..=30)), "{entry:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn v2_announce_puts_the_value_with_a_ttl() {
    let etcd = Etcd::start();
    let c = client(&etcd, EtcdApi::V2);
    let lease = c.announce(KEY, VALUE, 30).await.unwrap();
    assert_eq!(lease.id, None);
    let node = &v2_get(&etcd, KEY)["node"];
    assert_eq!(node["value"], VALUE);
    assert!(node["ttl"].as_i64().unwrap() > 27, "{node}");
    let entry = c.get(KEY).await.unwrap().expect("the key");
    assert_eq!(entry.value, VALUE);
    assert!(matches!(entry.ttl, Some(28..=30)), "{entry:?}");
}

async fn refresh_keeps_the_key_past_its_ttl(api: EtcdApi) {
    let etcd = Etcd::start();
    let c = client(&etcd, api);
    let mut lease = c.announce(KEY, VALUE, 2).await.unwrap();
    let before = lease.clone();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = c.refresh(&mut lease, KEY, VALUE, 2).await.unwrap();
        assert_eq!(r, Refreshed::KeptAlive);
        assert!(
            c.get(KEY).await.unwrap().is_some(),
            "gone after {:?}",
            start.elapsed()
        );
    }
    assert_eq!(lease, before, "keep-alive keeps the lease");
    // Without refreshes the TTL removes it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(c.get(KEY).await.unwrap(), None);
    // A refresh after expiry announces again.
    let r = c.refresh(&mut lease, KEY, VALUE, 2).await.unwrap();
    assert_eq!(r, Refreshed::Reannounced);
    assert_eq!(c.get(KEY).await.unwrap().unwrap().value, VALUE);
}

async fn withdraw_deletes(api: EtcdApi) {
    let etcd = Etcd::start();
    let c = client(&etcd, api);
    let lease = c.announce(KEY, VALUE, 30).await.unwrap();
    c.withdraw(Some(&lease), KEY).await.unwrap();
    assert_eq!(c.get(KEY).await.unwrap(), None);
    // Twice is fine: already gone is success.
    c.withdraw(Some(&lease), KEY).await.unwrap();
    c.withdraw(None, KEY).await.unwrap();
    if let Some(id) = lease.id {
        let ttl = etcdctl(&etcd, &["lease", "timetolive", &format!("{id:x}")]);
        assert!(ttl.contains("already expired"), "lease revoked: {ttl}");
    }
}

async fn list_and_watch(api: EtcdApi) {
    let etcd = Etcd::start();
    let c = client(&etcd, api);
    let prefix = "/skydns/com/example/s/web";
    let empty = c.list(prefix).await.unwrap();
    assert!(empty.entries.is_empty());

    let a = c.announce(&format!("{prefix}/a"), "1", 30).await.unwrap();
    c.announce(&format!("{prefix}/b"), "2", 30).await.unwrap();
    // A sibling whose name merely starts with the prefix is not below it.
    c.announce("/skydns/com/example/s/web-other/x", "3", 30)
        .await
        .unwrap();
    let snap = c.list(&format!("{prefix}/")).await.unwrap();
    let keys: Vec<&str> = snap.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, [format!("{prefix}/a"), format!("{prefix}/b")]);
    assert!(snap.revision > empty.revision);
    assert!(snap.entries.iter().all(|e| matches!(e.ttl, Some(25..=30))));

    // Watching from the snapshot sees exactly what came after it.
    let mut watch = c.watch(prefix, snap.revision).await.unwrap();
    c.announce(&format!("{prefix}/c"), "3", 30).await.unwrap();
    c.announce("/skydns/com/example/s/web-other/y", "4", 30)
        .await
        .unwrap();
    c.withdraw(Some(&a), &format!("{prefix}/a")).await.unwrap();

    match next(&mut watch).await {
        Event::Put(e) => {
            assert_eq!(e.key, format!("{prefix}/c"));
            assert_eq!(e.value, "3");
            assert!(matches!(e.ttl, Some(25..=30)), "{e:?}");
        }
        other => panic!("expected the put, got {other:?}"),
    }
    match next(&mut watch).await {
        Event::Delete { key, .. } => assert_eq!(key, format!("{prefix}/a")),
        other => panic!("expected the delete, got {other:?}"),
    }
    let seen = watch.revision();
    drop(watch);

    // Watching again from where the stream stopped loses nothing.
    c.announce(&format!("{prefix}/d"), "5", 30).await.unwrap();
    let mut again = c.watch(prefix, seen).await.unwrap();
    assert_eq!(next(&mut again).await.key(), format!("{prefix}/d"));

    // "From now on" sees a change made right after watch() returns.
    let mut now = c.watch(prefix, 0).await.unwrap();
    c.announce(&format!("{prefix}/e"), "6", 30).await.unwrap();
    assert_eq!(next(&mut now).await.key(), format!("{prefix}/e"));
}

async fn next(w: &mut rundock_etcd::WatchStream) -> Event {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("an event within 5 s")
        .unwrap()
}

/// The trail's reads: plain puts, and the `limit` greatest keys below the prefix,
/// greatest first, without a sibling prefix's keys.
async fn newest_reads_the_greatest_keys_below_the_prefix(api: EtcdApi) {
    let etcd = Etcd::start();
    let c = client(&etcd, api);
    assert_eq!(c.newest("/trail/web", 3).await.unwrap(), Vec::new());
    for n in 1..=5 {
        c.put(&format!("/trail/web/{n:03}"), &format!("entry {n}"))
            .await
            .unwrap();
    }
    c.put("/trail/web-x/009", "a sibling's").await.unwrap();
    let newest = c.newest("/trail/web/", 3).await.unwrap();
    let read: Vec<(&str, &str)> = newest
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        read,
        [
            ("/trail/web/005", "entry 5"),
            ("/trail/web/004", "entry 4"),
            ("/trail/web/003", "entry 3"),
        ]
    );
    assert!(newest.iter().all(|e| e.ttl.is_none() && e.lease.is_none()));
    assert_eq!(c.newest("/trail/web", 10).await.unwrap().len(), 5);
}

#[tokio::test(flavor = "current_thread")]
async fn fails_over_to_the_second_endpoint_when_the_first_is_down() {
    let etcd = Etcd::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    for api in [EtcdApi::V3, EtcdApi::V2] {
        let c = Client::new(&spec(vec![dead.clone(), etcd.endpoint()], api)).unwrap();
        let key = format!("{KEY}-{api:?}");
        c.announce(&key, VALUE, 30).await.unwrap();
        assert_eq!(c.current_endpoint(), etcd.endpoint());
        assert_eq!(c.get(&key).await.unwrap().unwrap().value, VALUE);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_when_no_endpoint_answers() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = Client::new(&spec(vec![dead], EtcdApi::V3)).unwrap();
    let err = c.announce(KEY, VALUE, 30).await.unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test(flavor = "current_thread")]
async fn v3_authenticates_with_username_and_password() {
    let etcd = Etcd::start();
    for args in [
        &["user", "add", "root:s3cret"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        let out = etcdctl(&etcd, args);
        assert!(!out.contains("Error"), "etcdctl {args:?}: {out}");
    }
    let mut s = spec(vec![etcd.endpoint()], EtcdApi::V3);
    s.username = Some("root".into());
    s.password = Some("s3cret".into());
    let c = Client::new(&s).unwrap();
    let lease = c.announce(KEY, VALUE, 30).await.unwrap();
    assert_eq!(c.get(KEY).await.unwrap().unwrap().value, VALUE);
    let mut watch = c.watch("/skydns", 0).await.unwrap();
    c.withdraw(Some(&lease), KEY).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Event::Delete { .. }));

    // Without credentials etcd refuses; with a wrong password authentication fails.
    let anonymous = client(&etcd, EtcdApi::V3);
    let err = anonymous.list("/skydns").await.unwrap_err();
    assert!(matches!(err, EtcdError::Status { .. }), "{err:?}");
    s.password = Some("wrong".into());
    let err = Client::new(&s).unwrap().list("/skydns").await.unwrap_err();
    assert!(matches!(err, EtcdError::Auth(_)), "{err:?}");
    assert!(
        !err.to_string().contains("wrong"),
        "no secret in errors: {err}"
    );
}

#[test]
fn https_without_a_ca_is_a_configuration_error() {
    let err = Client::new(&spec(vec!["https://127.0.0.1:2379".into()], EtcdApi::V3))
        .err()
        .unwrap();
    assert!(matches!(err, EtcdError::Config(_)), "{err:?}");
}

/// `etcdctl put` with raw bytes for key and value (argv is bytes on Unix).
fn put_bytes(etcd: &Etcd, key: &[u8], value: &[u8]) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "put", "--"])
        .arg(OsStr::from_bytes(key))
        .arg(OsStr::from_bytes(value))
        .output()
        .expect("etcdctl");
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn v3_keys_and_values_that_are_not_text_are_reported_one_by_one() {
    let etcd = Etcd::start();
    let c = client(&etcd, EtcdApi::V3);
    let prefix = "/skydns/com/example/s/web";
    put_bytes(&etcd, format!("{prefix}/a").as_bytes(), b"1");
    put_bytes(
        &etcd,
        format!("{prefix}/bad-value").as_bytes(),
        b"{\xff\xfe}",
    );
    let mut bad_key = format!("{prefix}/bad-key-").into_bytes();
    bad_key.extend_from_slice(b"\xc3\x28");
    put_bytes(&etcd, &bad_key, b"2");
    put_bytes(&etcd, format!("{prefix}/z").as_bytes(), b"3");

    // A list takes every key that is text and reports the others, whatever their order.
    let snap = c.list(prefix).await.unwrap();
    let keys: Vec<&str> = snap.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, [format!("{prefix}/a"), format!("{prefix}/z")]);
    let mut bad: Vec<(String, bool, String)> = snap
        .undecodable
        .iter()
        .map(|u| (u.key.clone(), u.key_is_text, u.reason.clone()))
        .collect();
    bad.sort();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].0, format!("{prefix}/bad-key-\u{fffd}("));
    assert!(
        !bad[0].1 && bad[0].2.starts_with("kv.key: not UTF-8"),
        "{bad:?}"
    );
    assert_eq!(bad[1].0, format!("{prefix}/bad-value"));
    assert!(
        bad[1].1 && bad[1].2.starts_with("kv.value: not UTF-8"),
        "{bad:?}"
    );

    // A watch yields them at their revisions and moves on past them.
    let mut watch = c.watch_keys(prefix, snap.revision).await.unwrap();
    put_bytes(&etcd, format!("{prefix}/a").as_bytes(), b"\x80");
    put_bytes(&etcd, format!("{prefix}/b").as_bytes(), b"4");
    let first = next(&mut watch).await;
    match &first {
        Event::Undecodable(u) => {
            assert_eq!(u.key, format!("{prefix}/a"));
            assert!(u.key_is_text && !u.deleted);
        }
        other => panic!("expected the undecodable put, got {other:?}"),
    }
    match next(&mut watch).await {
        Event::Put(e) => assert_eq!(
            (e.key.as_str(), e.value.as_str()),
            (&*format!("{prefix}/b"), "4")
        ),
        other => panic!("expected the put after it, got {other:?}"),
    }
    assert!(watch.revision() > first.revision());
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint(),
            "del",
            "--prefix",
            &format!("{prefix}/bad-key-"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    match next(&mut watch).await {
        Event::Undecodable(u) => assert!(u.deleted && !u.key_is_text, "{u:?}"),
        other => panic!("expected the delete of the key that is not text, got {other:?}"),
    }
}

on_both_apis! {
    refresh_keeps_the_key_past_its_ttl:
        v3_refresh_keeps_the_key_past_its_ttl,
        v2_refresh_keeps_the_key_past_its_ttl;
    withdraw_deletes:
        v3_withdraw_deletes_the_key_and_revokes_the_lease,
        v2_withdraw_deletes_the_key;
    newest_reads_the_greatest_keys_below_the_prefix:
        v3_newest_reads_the_greatest_keys_below_the_prefix,
        v2_newest_reads_the_greatest_keys_below_the_prefix;
    list_and_watch:
        v3_list_and_watch_see_puts_and_deletes,
        v2_list_and_watch_see_puts_and_deletes;
}
