//! What a hostile or broken client can make `rundock dns` hold is bounded: with the
//! default limits and the usual 1,024 file descriptors, 1,100 idle TCP connections
//! (kept open, reopened as the server closes them) plus a flood of forwards to an
//! upstream that never answers leave in-zone UDP answering every query, a new TCP
//! client answered, over-limit forwards REFUSED at once, and the server's descriptors
//! and memory bounded. The server is a process of its own (this test binary run again
//! as `serve_dns_for_bounds_test`) so its descriptors and RSS are its alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use rundock_testkit::load;
use rundock_testkit::{free_port, wait_for, Etcd};

const DOMAIN: &str = "s.bounds.example.com";
const NAME: &str = "web.s.bounds.example.com.";
const ADDRESS: &str = "10.0.0.7";
/// The soft descriptor limit most systems give a service.
/// Arguments for the child server, one a line.
const CHILD_ARGS: &str = "RUNDOCK_BOUNDS_DNS_ARGS";
const IDLE_CONNECTIONS: usize = 1100;
const FLOOD_QUERIES: u16 = 20_000;

/// Run by [`load::serve_in_child`] in a process of its own; does nothing when run by `cargo test`.
#[test]
#[ignore = "the server side of another test"]
fn serve_dns_for_bounds_test() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dns: rundock_dns::DnsOptions,
    }
    let cli = Cli::parse_from(std::iter::once("dns").chain(args.lines()));
    rundock_dns::run(cli.dns).unwrap();
}

fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.parse().unwrap(), RecordType::A));
    query.to_vec().unwrap()
}

/// The A addresses of an answer, or its response code when it is not NOERROR.
fn addresses(reply: &[u8]) -> Result<Vec<String>, ResponseCode> {
    let message = Message::from_vec(reply).expect("a DNS message");
    if message.metadata.response_code != ResponseCode::NoError {
        return Err(message.metadata.response_code);
    }
    Ok(message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect())
}

/// One in-zone UDP query with a one-second wait: the addresses, or why not.
fn ask_udp(socket: &UdpSocket, server: SocketAddr, id: u16) -> Result<Vec<String>, String> {
    socket
        .send_to(&query_bytes(id, NAME), server)
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer within 1 s".into());
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            // An earlier query's late answer is not this one's.
            Ok(len) if len >= 2 && buf[..2] == id.to_be_bytes() => {
                return addresses(&buf[..len]).map_err(|code| format!("{code}"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err("no answer within 1 s".into()),
        }
    }
}

/// One in-zone query on a new TCP connection. The connect may take a second: when the
/// flood fills the kernel's accept queue, a connection attempt is retried after one.
fn ask_tcp(server: SocketAddr) -> Result<Vec<String>, String> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let query = query_bytes(4242, NAME);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream
        .write_all(&framed)
        .map_err(|e| format!("send: {e}"))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("read: {e}"))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    addresses(&reply).map_err(|code| format!("{code}"))
}

/// `rundock dns` with `args` in a child process with the usual descriptor limit.
fn serve_dns(args: &[String]) -> load::Killed {
    load::serve_in_child("serve_dns_for_bounds_test", (CHILD_ARGS, args.join("\n")))
}

#[test]
fn idle_connections_and_a_forward_flood_leave_in_zone_answers_and_bounded_resources() {
    load::raise_own_fd_limit(IDLE_CONNECTIONS as u64 + 200);
    let etcd = Etcd::start();
    let put = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "put"])
        .arg("/skydns/com/example/bounds/s/web/node-1")
        .arg(format!(r#"{{"host":"{ADDRESS}","port":80,"ttl":60}}"#))
        .output()
        .expect("run etcdctl");
    assert!(put.status.success(), "etcdctl put: {put:?}");
    // An upstream that takes every query and never answers one.
    let silent_upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = serve_dns(&[
        format!("--etcd={}", etcd.endpoint()),
        format!("--domain={DOMAIN}"),
        format!("--listen={server}"),
        format!("--forward={}", silent_upstream.local_addr().unwrap()),
    ]);
    let pid = child.0.id();
    let checker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ready = wait_for(Duration::from_secs(20), || {
        ask_udp(&checker, server, 1)
            .ok()
            .filter(|a| a == &[ADDRESS])
    });
    assert!(ready.is_some(), "rundock dns never answered {NAME}");
    let (fds_at_rest, rss_at_rest) = load::usage(pid);

    let stop = Arc::new(AtomicBool::new(false));
    // Idle TCP connections: 1,100 held open, each reopened once the server closes it.
    let idle = load::hold_idle_connections(server, IDLE_CONNECTIONS, stop.clone());
    // The forward flood: FLOOD_QUERIES names outside the zone, as fast as the loopback
    // takes them, tallying what comes back.
    let refused = Arc::new(AtomicU64::new(0));
    let other_replies = Arc::new(AtomicU64::new(0));
    let flood_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood_socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let tally = {
        let socket = flood_socket.try_clone().unwrap();
        let (stop, refused, other) = (stop.clone(), refused.clone(), other_replies.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(len) = socket.recv(&mut buf) {
                    match Message::from_vec(&buf[..len]).map(|m| m.metadata.response_code) {
                        Ok(ResponseCode::Refused) => refused.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        })
    };
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for id in 0..FLOOD_QUERIES {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("q{id}.flood.example.org.");
                let _ = flood_socket.send_to(&query_bytes(id, &name), server);
                // A burst of 100, then a breath: a flood for the upstream (20,000 in
                // about 2 s against 256 slots), not a test of the socket's buffer.
                if id % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };

    // Meanwhile: in-zone UDP answers, one after another, for 6 s; and TCP now and then.
    let mut peak = (fds_at_rest, rss_at_rest);
    let mut failures = Vec::new();
    let mut asked = 0u32;
    let mut tcp_failures = Vec::new();
    let started = Instant::now();
    let mut last_tcp = started;
    while started.elapsed() < Duration::from_secs(6) {
        asked += 1;
        let id = 1000 + asked as u16;
        // As a stub resolver does (glibc and dig try again), a query unanswered for a
        // second is asked once more; starved answers fail both tries.
        let answer = ask_udp(&checker, server, id)
            .or_else(|_| ask_udp(&checker, server, id.wrapping_add(30_000)));
        match answer {
            Ok(addresses) if addresses == [ADDRESS] => {}
            other => failures.push(format!("{:?}: {other:?}", started.elapsed())),
        }
        if last_tcp.elapsed() >= Duration::from_millis(250) {
            last_tcp = Instant::now();
            if let Err(e) = ask_tcp(server) {
                tcp_failures.push(format!("{:?}: {e}", started.elapsed()));
            }
        }
        let (fds, rss) = load::usage(pid);
        peak = (peak.0.max(fds), peak.1.max(rss));
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let reopened = idle.join().unwrap();
    tally.join().unwrap();
    let (refused, other_replies) = (
        refused.load(Ordering::Relaxed),
        other_replies.load(Ordering::Relaxed),
    );
    eprintln!(
        "rundock dns under {IDLE_CONNECTIONS} idle TCP connections ({reopened} opened in all) \
         and {FLOOD_QUERIES} forwards to a silent upstream: descriptors {fds_at_rest} at rest, \
         {} at most; RSS {rss_at_rest} KiB at rest, {} KiB at most; {asked} in-zone UDP queries, \
         {} unanswered; forwards REFUSED at once: {refused}, other replies: {other_replies}",
        peak.0,
        peak.1,
        failures.len()
    );

    assert!(
        failures.is_empty(),
        "in-zone UDP queries failed: {failures:?}"
    );
    assert!(
        tcp_failures.is_empty(),
        "in-zone TCP queries on new connections failed: {tcp_failures:?}"
    );
    assert!(
        asked >= 100,
        "only {asked} in-zone queries in 6 s: answers were slow"
    );
    // The default caps (256 forwards, 128 connections) and a few for listeners and etcd.
    assert!(
        peak.0 <= 256 + 128 + 32,
        "{} descriptors open at the peak",
        peak.0
    );
    assert!(
        peak.1 < rss_at_rest + 64 * 1024,
        "RSS grew from {rss_at_rest} KiB to {} KiB",
        peak.1
    );
    assert!(
        refused > 1000,
        "forwards beyond the cap must be REFUSED at once; {refused} were"
    );
    assert!(
        matches!(child.0.try_wait(), Ok(None)),
        "the server exited during the flood"
    );
}
