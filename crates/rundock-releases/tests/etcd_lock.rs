//! The deploy lock on a real etcd, through both APIs: one holder at a time, a waiter
//! that gives up names the holder from the key's value, a dropped lock is free at once,
//! and a holder that stops keeping it alive loses it within the TTL.

use rundock_releases::lock::{self, AcquireError};
use rundock_spec::{EtcdApi, EtcdSpec};
use rundock_testkit as kit;
use std::time::{Duration, Instant};

/// For each `body: v3_name, v2_name;`, a test of each API named so, running the
/// `fn(EtcdApi)` `body` (the list is at the end).
macro_rules! on_both_apis {
    ($($body:ident: $v3:ident, $v2:ident;)*) => {$(
        #[test]
        fn $v3() {
            $body(EtcdApi::V3);
        }

        #[test]
        fn $v2() {
            $body(EtcdApi::V2);
        }
    )*};
}

fn spec(etcd: &kit::Etcd, api: EtcdApi) -> EtcdSpec {
    EtcdSpec::new(vec![etcd.endpoint().parse().unwrap()], api)
}

fn one_holder_at_a_time(api: EtcdApi) {
    let etcd = kit::Etcd::start();
    let spec = spec(&etcd, api);
    let key = lock::lock_key("s.lock.example.com", "web");
    let first = lock::acquire(&spec, &key, r#"{"who":"first"}"#, Duration::ZERO).unwrap();
    assert!(first.waited.is_none());
    if api == EtcdApi::V3 {
        assert!(etcd.get_prefix(&key).contains(r#"{"who":"first"}"#));
    }
    let started = Instant::now();
    let e = lock::acquire(&spec, &key, r#"{"who":"second"}"#, Duration::from_secs(1)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    match &e {
        AcquireError::Timeout { holder, .. } => {
            assert_eq!(holder.as_deref(), Some(r#"{"who":"first"}"#), "{e}")
        }
        other => panic!("not a timeout: {other}"),
    }
    drop(first);
    let second = lock::acquire(&spec, &key, r#"{"who":"second"}"#, Duration::ZERO).unwrap();
    drop(second);
}

#[test]
fn a_waiter_gets_the_lock_once_the_holder_lets_it_go() {
    let etcd = kit::Etcd::start();
    let spec = spec(&etcd, EtcdApi::V3);
    let key = lock::lock_key("s.lock.example.com", "queue");
    let first = lock::acquire(&spec, &key, "first", Duration::ZERO).unwrap();
    let waiter = {
        let (spec, key) = (spec.clone(), key.clone());
        std::thread::spawn(move || lock::acquire(&spec, &key, "second", Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(1500));
    drop(first);
    let second = waiter.join().unwrap().unwrap();
    let waited = second.waited.clone().expect("it waited");
    assert_eq!(waited.holder.as_deref(), Some("first"));
    eprintln!("waited {:.2} s for the first holder", waited.seconds);
}

#[test]
fn a_lock_kept_alive_outlives_its_ttl() {
    let etcd = kit::Etcd::start();
    let spec = spec(&etcd, EtcdApi::V3);
    let key = lock::lock_key("s.lock.example.com", "long");
    let held = lock::acquire_with_ttl(&spec, &key, "holder", Duration::ZERO, 3).unwrap();
    std::thread::sleep(Duration::from_secs(7));
    assert!(!held.lost());
    assert!(matches!(
        lock::acquire(&spec, &key, "other", Duration::ZERO),
        Err(AcquireError::Timeout { .. })
    ));
}

fn a_playbook_lock_outlives_its_call_is_joined_by_token_and_let_go_by_it(api: EtcdApi) {
    let etcd = kit::Etcd::start();
    let spec = spec(&etcd, api);
    let key = lock::lock_key("s.lock.example.com", "play");
    let record = r#"{"pid":1,"token":"t-1"}"#;
    let play = lock::acquire_with_ttl(&spec, &key, record, Duration::ZERO, 60).unwrap();
    play.detach();
    assert!(
        matches!(
            lock::acquire(&spec, &key, "other", Duration::ZERO),
            Err(AcquireError::Timeout { .. })
        ),
        "a detached lock stays held"
    );
    match lock::join(&spec, &key, "t-2", 60).unwrap() {
        lock::Joined::Other(holder) => assert_eq!(holder, record),
        other => panic!("another token joined: {other:?}"),
    }
    match lock::join(&spec, &key, "t-1", 60).unwrap() {
        lock::Joined::Held(held) => drop(held),
        other => panic!("the play's token did not join: {other:?}"),
    }
    assert!(
        lock::acquire(&spec, &key, "other", Duration::ZERO).is_err(),
        "a joined lock is not let go by the call"
    );
    assert!(!lock::release(&spec, &key, "t-2").unwrap());
    assert!(lock::release(&spec, &key, "t-1").unwrap());
    assert!(matches!(
        lock::join(&spec, &key, "t-1", 60).unwrap(),
        lock::Joined::Gone
    ));
    drop(lock::acquire(&spec, &key, "next", Duration::ZERO).unwrap());
}

on_both_apis! {
    one_holder_at_a_time:
        v3_one_holder_at_a_time,
        v2_one_holder_at_a_time;
    a_playbook_lock_outlives_its_call_is_joined_by_token_and_let_go_by_it:
        v3_a_playbook_lock_is_joined_by_token,
        v2_a_playbook_lock_is_joined_by_token;
}
