//! Address selection against real interfaces: a network namespace of the test's own
//! (entered by one thread with `unshare(CLONE_NEWNET)`, so the host's interfaces are
//! neither seen nor touched, and everything vanishes with the thread) holding
//! `rdtest0` with 10.99.0.1/24, 10.99.0.2/24 and fd99::1/64.

use rundock_hostip::{resolve, resolve_token, HostIpError};
use rundock_spec::{AnnounceAs, Interfaces};
use std::net::IpAddr;
use std::process::Command;

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside a fresh network namespace with `rdtest0` set up.
fn in_test_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespaces; children forked from
        // it (the `ip` commands) inherit them.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        // A dummy interface where the kernel has the module, else a veth pair.
        let dummy = Command::new("ip")
            .args(["link", "add", "rdtest0", "type", "dummy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !dummy {
            ip("link add rdtest0 type veth peer name rdtest1");
        }
        ip("addr add 10.99.0.1/24 dev rdtest0");
        ip("addr add 10.99.0.2/24 dev rdtest0");
        ip("-6 addr add fd99::1/64 dev rdtest0 nodad");
        ip("link set rdtest0 up");
        f()
    })
    .join()
    .expect("netns thread")
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn selects_addresses_of_a_real_interface() {
    let results = in_test_netns(|| {
        let lists = Interfaces {
            private: vec!["eth1".parse().unwrap(), "rdtest0".parse().unwrap()],
            public: vec!["rdtest0:inet6".parse().unwrap()],
        };
        let none = Interfaces {
            private: vec!["eth9".parse().unwrap()],
            public: vec!["eth9".parse().unwrap()],
        };
        let choice = |c: AnnounceAs, i: &Interfaces| resolve(&c, i);
        vec![
            choice(AnnounceAs::Private, &lists),
            choice(AnnounceAs::Public, &lists),
            choice(AnnounceAs::Interface("rdtest0".parse().unwrap()), &lists),
            choice(AnnounceAs::Interface("rdtest0[1]".parse().unwrap()), &lists),
            choice(
                AnnounceAs::Interface("rdtest0:inet6".parse().unwrap()),
                &lists,
            ),
            choice(AnnounceAs::Cidr("10.99.0.0/16".parse().unwrap()), &lists),
            choice(AnnounceAs::Cidr("fd99::/16".parse().unwrap()), &lists),
            choice(AnnounceAs::Cidr("10.98.0.0/16".parse().unwrap()), &lists),
            // Nothing listed exists: fall back to the first up, non-loopback address.
            choice(AnnounceAs::Private, &none),
            resolve_token("$PRIVATE_IP", &lists),
            resolve_token("$PUBLIC_IP", &lists),
            choice(AnnounceAs::Interface("eth9".parse().unwrap()), &lists),
        ]
    });
    assert_eq!(results[0], Ok(addr("10.99.0.1")));
    assert_eq!(results[1], Ok(addr("fd99::1")));
    assert_eq!(results[2], Ok(addr("10.99.0.1")));
    assert_eq!(results[3], Ok(addr("10.99.0.2")));
    assert_eq!(results[4], Ok(addr("fd99::1")));
    assert_eq!(results[5], Ok(addr("10.99.0.1")));
    assert_eq!(results[6], Ok(addr("fd99::1")));
    assert_eq!(
        results[7],
        Err(HostIpError::NotInCidr("10.98.0.0/16".into()))
    );
    assert_eq!(results[8], Ok(addr("10.99.0.1")));
    assert_eq!(results[9], Ok(addr("10.99.0.1")));
    assert_eq!(results[10], Ok(addr("fd99::1")));
    assert_eq!(
        results[11],
        Err(HostIpError::NoSuchInterface("eth9".into()))
    );
}
