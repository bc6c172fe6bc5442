//! Drain until idle: after the record is withdrawn, wait until the container has no
//! established TCP connection on its served port, at most the drain time (gantryd's
//! "termination checks"), instead of always waiting the whole drain time.
//!
//! Why read `/proc/<container init pid>/net/tcp` and `tcp6`: those files are the TCP
//! table of the network namespace the process lives in, readable from the host as root,
//! so no tool has to exist in the image and nothing runs inside the container. State
//! `01` is ESTABLISHED; a connection is the container's if its *local* port is the
//! served port (the container port: inside its namespace no NAT has happened).
//!
//! Why "idle" also needs a quiet moment: a proxy that has not yet noticed the withdrawal
//! keeps opening short connections (a request every few milliseconds, each done in one),
//! and a sample between two of them sees an empty table. So idle is: no established
//! connection on the port **and** no connection accepted in the namespace (the
//! `PassiveOpens` counter of its `/proc/<pid>/net/snmp`) for [`QUIET`]. When the
//! container shares the host's namespace (`network: host`) the counter counts the whole
//! host and is not used.
//!
//! The same table answers the `tcp` health check's question, "does anything in the
//! container listen on the port?" ([`listener_on`]): a connect to a published port only
//! reaches Docker's userland proxy, which accepts whether or not the container listens.
//!
//! The parsing and the decisions are pure ([`parse_table`], [`passive_opens`],
//! [`Idleness`], [`listener_on`]); [`wait_until_idle`] and [`read_table`] alone read
//! `/proc`. [`drain`] is the one drain by a spec's `drain_mode` that both stop-tree and
//! a start-first update's retirement of the old container run.
#![warn(missing_docs)]

use rundock_spec::{DrainMode, Spec};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the namespace must accept no connection, with none established on the
/// port, to count as idle.
pub const QUIET: Duration = Duration::from_secs(1);
/// How often the tables are read.
pub const POLL: Duration = Duration::from_millis(50);

/// TCP state ESTABLISHED in `/proc/net/tcp` (`include/net/tcp_states.h`).
const ESTABLISHED: u8 = 0x01;
/// TCP state LISTEN.
const LISTEN: u8 = 0x0A;

/// One row of `/proc/<pid>/net/tcp{,6}`: what the drain and the `tcp` check need of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// The local address, decoded from the kernel's host-order words so it is right on
    /// any host; an IPv4-mapped address of a `tcp6` row stays IPv6 (`::ffff:a.b.c.d`).
    /// A wildcard listener has `0.0.0.0` or `::`.
    pub local_addr: IpAddr,
    /// The local port, as a number (the table prints it in hex). For a connection the
    /// container accepted, this is the port it serves on.
    pub local_port: u16,
    /// The peer's port; `0` for a listener.
    pub remote_port: u16,
    /// The kernel's TCP state number (`include/net/tcp_states.h`): `0x01` ESTABLISHED,
    /// `0x06` TIME_WAIT, `0x0A` LISTEN, …; not checked against that list.
    pub state: u8,
}

/// The rows of a `/proc/net/tcp` or `tcp6` table; lines that do not parse (the header)
/// are skipped. Addresses are `HEXADDR:HEXPORT`, the port in host-independent hex.
pub fn parse_table(text: &str) -> Vec<Socket> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?.strip_suffix(':')?;
            let local = fields.next()?;
            let remote = fields.next()?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            Some(Socket {
                local_addr: addr_of(local)?,
                local_port: port_of(local)?,
                remote_port: port_of(remote)?,
                state,
            })
        })
        .collect()
}

fn port_of(address: &str) -> Option<u16> {
    let (_, port) = address.rsplit_once(':')?;
    u16::from_str_radix(port, 16).ok()
}

/// The address of `HEXADDR:HEXPORT`. The kernel prints the address as 32-bit words in
/// the host's byte order (`%08X` of each `__be32`), so each word's native bytes are the
/// address bytes in network order.
fn addr_of(address: &str) -> Option<IpAddr> {
    let (hex, _) = address.rsplit_once(':')?;
    let words = |count: usize| -> Option<Vec<[u8; 4]>> {
        (0..count)
            .map(|i| {
                let word = hex.get(i * 8..i * 8 + 8)?;
                Some(u32::from_str_radix(word, 16).ok()?.to_ne_bytes())
            })
            .collect()
    };
    match hex.len() {
        8 => Some(Ipv4Addr::from(words(1)?[0]).into()),
        32 => {
            let bytes: Vec<u8> = words(4)?.concat();
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(Ipv6Addr::from(octets).into())
        }
        _ => None,
    }
}

/// Who can reach a port's listeners, from a container's own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Nothing listens on the port.
    None,
    /// Something listens, but only on a loopback address: nothing outside the
    /// container's network namespace (Docker's proxy, a peer) can connect.
    LoopbackOnly,
    /// Something listens on a wildcard or non-loopback address.
    Reachable,
}

/// Whether something in the table listens on `port`, and whether that listener can be
/// reached from outside its namespace.
pub fn listener_on(sockets: &[Socket], port: u16) -> Listener {
    let mut found = Listener::None;
    for socket in sockets
        .iter()
        .filter(|s| s.state == LISTEN && s.local_port == port)
    {
        if is_loopback(socket.local_addr) {
            found = Listener::LoopbackOnly;
        } else {
            return Listener::Reachable;
        }
    }
    found
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The TCP table (IPv4 and IPv6) of the network namespace process `pid` lives in.
/// `Err` when the process is gone or its table unreadable (reading another process's
/// table takes root or the same user).
pub fn read_table(pid: u32) -> std::io::Result<Vec<Socket>> {
    read_sockets(&PathBuf::from(format!("/proc/{pid}")))
}

fn read_sockets(proc_dir: &Path) -> std::io::Result<Vec<Socket>> {
    let mut sockets = parse_table(&std::fs::read_to_string(proc_dir.join("net/tcp"))?);
    // A kernel without IPv6 has no tcp6.
    if let Ok(text) = std::fs::read_to_string(proc_dir.join("net/tcp6")) {
        sockets.extend(parse_table(&text));
    }
    Ok(sockets)
}

/// How many established connections have `port` as their local port.
pub fn established_on(sockets: &[Socket], port: u16) -> usize {
    sockets
        .iter()
        .filter(|s| s.state == ESTABLISHED && s.local_port == port)
        .count()
}

/// The `PassiveOpens` counter (connections accepted so far) of a `/proc/net/snmp`.
pub fn passive_opens(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?.split_whitespace();
    let values = tcp.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(name, _)| *name == "PassiveOpens")
        .and_then(|(_, value)| value.parse().ok())
}

/// One reading of a container's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// How many ESTABLISHED connections had the served port as their local port, over
    /// the IPv4 and IPv6 tables together ([`established_on`]).
    pub established: usize,
    /// `None` where the counter is not the container's own (host network) or unreadable.
    pub passive_opens: Option<u64>,
}

/// The decision, fed one sample at a time: idle once a quiet period has passed with no
/// established connection and no accepted one.
#[derive(Debug, Default)]
pub struct Idleness {
    /// When the current quiet stretch began, and the counter then.
    quiet_since: Option<(Instant, Option<u64>)>,
}

impl Idleness {
    /// A decision that has seen no sample yet: the first sample with nothing
    /// established begins the quiet stretch, so idleness is reported no sooner than
    /// `quiet` after it (at once only for a zero `quiet`). The same as `default()`.
    pub fn new() -> Idleness {
        Idleness::default()
    }

    /// Whether the container is idle as of `sample` taken at `now`.
    pub fn observe(&mut self, now: Instant, sample: Sample, quiet: Duration) -> bool {
        if sample.established > 0 {
            self.quiet_since = None;
            return false;
        }
        match self.quiet_since {
            Some((_, opens)) if opens != sample.passive_opens => {
                // Something connected (and may already be done): start over.
                self.quiet_since = Some((now, sample.passive_opens));
                quiet.is_zero()
            }
            Some((since, _)) => now.duration_since(since) >= quiet,
            None => {
                self.quiet_since = Some((now, sample.passive_opens));
                quiet.is_zero()
            }
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Idle after this long.
    Idle(Duration),
    /// The drain time ended with this many connections still established.
    TimedOut {
        /// Established connections on the port in the last sample, taken when the
        /// drain time was reached.
        established: usize,
    },
    /// The process is gone (the container stopped on its own).
    Gone,
}

/// Waits until the network namespace of process `pid` is idle on `port` (see the crate
/// docs), at most `limit`. Blocking.
pub fn wait_until_idle(pid: u32, port: u16, limit: Duration) -> Drained {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let own_namespace = !same_namespace(&proc_dir, Path::new("/proc/self"));
    let start = Instant::now();
    let mut idleness = Idleness::new();
    loop {
        let Some(sample) = read_sample(&proc_dir, port, own_namespace) else {
            return Drained::Gone;
        };
        let now = Instant::now();
        if idleness.observe(now, sample, QUIET) {
            return Drained::Idle(start.elapsed());
        }
        if now.duration_since(start) >= limit {
            return Drained::TimedOut {
                established: sample.established,
            };
        }
        std::thread::sleep(POLL.min(limit.saturating_sub(now.duration_since(start))));
    }
}

/// How a [`drain`] went, for the caller's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The whole drain time was waited: `drain_mode: time`, no served port, or the
    /// container's process was not known.
    Waited(Duration),
    /// `drain_mode: idle`: the served port was watched, with this end.
    Watched {
        /// The port watched: the spec's `announce.container_port`, as seen inside the
        /// container's namespace.
        port: u16,
        /// How the wait on that port ended.
        drained: Drained,
        /// The drain time the wait was bounded by (the `limit` given to [`drain`]).
        limit: Duration,
    },
}

impl std::fmt::Display for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drain::Waited(limit) => write!(f, "waited the drain time ({}s)", limit.as_secs()),
            Drain::Watched {
                port,
                drained: Drained::Idle(after),
                ..
            } => write!(f, "idle on port {port} after {} ms", after.as_millis()),
            Drain::Watched {
                port,
                drained: Drained::TimedOut { established },
                limit,
            } => write!(
                f,
                "still had {established} connection(s) on port {port} when the drain time ({}s) ended",
                limit.as_secs()
            ),
            Drain::Watched {
                drained: Drained::Gone,
                ..
            } => write!(f, "its process is gone"),
        }
    }
}

/// The one drain, between a record's withdrawal and its container's stop (stop-tree
/// and a start-first update's old container alike): at most `limit`, until the
/// container's process `pid` serves no connection on the spec's container port with
/// `drain_mode: idle`, else all of `limit`. `pid: None` means the process is not
/// known: the whole limit is waited. A caller that knows no container runs has nothing
/// to drain and does not call it. Blocking.
pub fn drain(spec: &Spec, pid: Option<u32>, limit: Duration) -> Drain {
    let served_port = spec.announce.as_ref().map(|a| a.container_port);
    match (spec.drain_mode, served_port, pid) {
        (DrainMode::Idle, Some(port), Some(pid)) => Drain::Watched {
            port,
            drained: wait_until_idle(pid, port, limit),
            limit,
        },
        _ => {
            std::thread::sleep(limit);
            Drain::Waited(limit)
        }
    }
}

fn read_sample(proc_dir: &Path, port: u16, own_namespace: bool) -> Option<Sample> {
    let sockets = read_sockets(proc_dir).ok()?;
    let passive_opens = if own_namespace {
        std::fs::read_to_string(proc_dir.join("net/snmp"))
            .ok()
            .and_then(|text| passive_opens(&text))
    } else {
        None
    };
    Some(Sample {
        established: established_on(&sockets, port),
        passive_opens,
    })
}

fn same_namespace(a: &Path, b: &Path) -> bool {
    match (
        std::fs::read_link(a.join("ns/net")),
        std::fs::read_link(b.join("ns/net")),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 020011AC:1F90 010011AC:D2F4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 020011AC:1F90 010011AC:D2F6 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0
   3: 020011AC:C350 0A0A0A0A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
   1: 0000000000000000FFFF0000020011AC:1F90 0000000000000000FFFF0000010011AC:B5A2 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0 20 4 30 10 -1
";

    #[test]
    fn rows_parse_into_ports_and_states() {
        let rows = parse_table(TCP);
        assert_eq!(rows.len(), 4, "the header is skipped");
        assert_eq!(
            rows[1],
            Socket {
                local_addr: "172.17.0.2".parse().unwrap(),
                local_port: 8080,
                remote_port: 0xD2F4,
                state: 0x01
            }
        );
        assert_eq!(rows[2].state, 0x06, "TIME_WAIT");
        assert_eq!(parse_table(TCP6)[1].local_port, 8080);
        assert!(parse_table("garbage\n\n  7: nonsense").is_empty());
    }

    #[test]
    fn only_established_connections_to_the_served_port_count() {
        let mut rows = parse_table(TCP);
        // Listening (0A), TIME_WAIT (06) and an outgoing connection *to* a remote 8080
        // do not count; the one established inbound connection does.
        assert_eq!(established_on(&rows, 8080), 1);
        rows.extend(parse_table(TCP6));
        assert_eq!(established_on(&rows, 8080), 2);
        assert_eq!(established_on(&rows, 9090), 0);
        assert_eq!(established_on(&rows, 0xC350), 1);
    }

    #[test]
    fn passive_opens_is_read_from_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n\
Tcp: 1 200 120000 -1 133701 74998 46178\n\
Udp: InDatagrams NoPorts\nUdp: 5 6\n";
        assert_eq!(passive_opens(snmp), Some(74998));
        assert_eq!(passive_opens("Ip: a\nIp: 1\n"), None);
    }

    fn sample(established: usize, opens: u64) -> Sample {
        Sample {
            established,
            passive_opens: Some(opens),
        }
    }

    #[test]
    fn idle_needs_no_connection_and_none_accepted_for_the_quiet_period() {
        let quiet = Duration::from_secs(1);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut idle = Idleness::new();
        assert!(!idle.observe(at(0), sample(1, 10), quiet));
        assert!(!idle.observe(at(100), sample(0, 10), quiet));
        // A short connection between two samples: the counter moved, start over.
        assert!(!idle.observe(at(600), sample(0, 11), quiet));
        assert!(!idle.observe(at(1500), sample(0, 11), quiet));
        assert!(idle.observe(at(1600), sample(0, 11), quiet));
        // An established connection resets it.
        assert!(!idle.observe(at(1700), sample(1, 11), quiet));
        assert!(!idle.observe(at(1800), sample(0, 11), quiet));
        assert!(idle.observe(at(2800), sample(0, 11), quiet));
    }

    #[test]
    fn without_the_counter_only_established_connections_decide() {
        let quiet = Duration::from_secs(1);
        let t0 = Instant::now();
        let none = |established| Sample {
            established,
            passive_opens: None,
        };
        let mut idle = Idleness::new();
        assert!(!idle.observe(t0, none(0), quiet));
        assert!(idle.observe(t0 + quiet, none(0), quiet));
        let mut at_once = Idleness::new();
        assert!(at_once.observe(t0, none(0), Duration::ZERO));
    }

    /// One LISTEN row of a table, local address as the kernel prints it, port 8080.
    fn listen_row(hex_addr: &str) -> String {
        format!("   0: {hex_addr}:1F90 {}:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n", "0".repeat(hex_addr.len()))
    }

    #[test]
    fn addresses_parse_in_the_kernels_word_order() {
        // Fixtures as an x86-64 kernel prints them (little-endian words).
        let cases = [
            ("0100007F", "127.0.0.1"),
            ("020011AC", "172.17.0.2"),
            ("00000000", "0.0.0.0"),
            ("00000000000000000000000001000000", "::1"),
            ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1"),
            ("B80D0120000000000000000001000000", "2001:db8::1"),
        ];
        for (hex, want) in cases {
            let rows = parse_table(&listen_row(hex));
            assert_eq!(rows.len(), 1, "{hex}");
            let want: IpAddr = want.parse().unwrap();
            if cfg!(target_endian = "little") {
                assert_eq!(rows[0].local_addr, want, "{hex}");
            }
        }
    }

    #[test]
    fn a_listener_counts_only_in_state_listen_on_the_port_and_off_loopback() {
        let reachable = ["00000000", "020011AC", "00000000000000000000000000000000"];
        let loopback = [
            "0100007F",
            "00000000000000000000000001000000",
            "0000000000000000FFFF00000100007F",
        ];
        for hex in reachable {
            let rows = parse_table(&listen_row(hex));
            assert_eq!(listener_on(&rows, 8080), Listener::Reachable, "{hex}");
            assert_eq!(listener_on(&rows, 8081), Listener::None, "{hex}");
        }
        for hex in loopback {
            let rows = parse_table(&listen_row(hex));
            assert_eq!(listener_on(&rows, 8080), Listener::LoopbackOnly, "{hex}");
        }
        // Loopback and wildcard listeners of one port: reachable, whatever the order.
        let both = parse_table(&(listen_row("0100007F") + &listen_row("00000000")));
        assert_eq!(listener_on(&both, 8080), Listener::Reachable);
        // Established connections and outgoing ones to a remote 8080 are not listeners.
        let mut rows = parse_table(TCP);
        rows.retain(|s| s.state != LISTEN);
        assert_eq!(listener_on(&rows, 8080), Listener::None);
        assert_eq!(listener_on(&[], 8080), Listener::None);
    }

    #[test]
    fn the_live_table_shows_our_own_listeners() {
        let me = std::process::id();
        let open = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let table = read_table(me).unwrap();
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        assert_eq!(listener_on(&table, port(&open)), Listener::Reachable);
        assert_eq!(listener_on(&table, port(&local)), Listener::LoopbackOnly);
        let closed = port(&local);
        drop(local);
        assert_eq!(
            listener_on(&read_table(me).unwrap(), closed),
            Listener::None
        );
        assert!(read_table(u32::MAX).is_err());
    }

    #[test]
    fn a_process_of_our_own_namespace_is_read_and_a_missing_one_is_gone() {
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Nothing established on it: idle once the quiet period passed.
        match wait_until_idle(me, port, Duration::from_secs(5)) {
            Drained::Idle(after) => assert!(after >= QUIET, "{after:?}"),
            other => panic!("{other:?}"),
        }
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        assert_eq!(
            wait_until_idle(me, port, Duration::from_millis(200)),
            Drained::TimedOut { established: 1 }
        );
        assert_eq!(
            wait_until_idle(u32::MAX, port, Duration::from_secs(1)),
            Drained::Gone
        );
    }
}
