//! The network side: a UDP socket and a TCP listener on the same address, each query
//! parsed with hickory-proto, answered from the shared [`RecordSet`](crate::RecordSet) by
//! [`answer`](crate::answer()), or passed on to the `--forward` server when it is outside
//! our zones. UDP answers that do not fit the client's buffer are truncated (TC) so the
//! client retries over TCP. An answer that ends in a CNAME to a name outside our zones
//! gets that name's records from the `--forward` server appended.
//!
//! What a client can make the server hold is bounded (see [`Limits`]): forwards in
//! flight (one socket each, no buffer while waiting; beyond the cap a forward is REFUSED
//! at once), TCP connections (beyond the cap the oldest idle one is closed, or the new
//! one when none is idle), how long a TCP connection may idle or take to send a query or
//! read an answer, and how many queries one connection may ask. Only loopback clients
//! and the `--allow` networks are forwarded for ([`ClientNetworks`]); everyone gets
//! in-zone answers. UDP is served by one loop that never waits on the network, so
//! in-zone UDP answers keep coming whatever TCP clients and the upstream do.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::answer::{answer, append_upstream, outside_cname_target, Zones, EDNS_PAYLOAD};
use crate::sync::Shared;
use rundock_runtime::{Connections, Slot};

/// A UDP client without EDNS can take 512 bytes (RFC 1035).
const CLASSIC_UDP: usize = 512;
/// We never send UDP answers larger than this, whatever the client offers.
const MAX_UDP: usize = 4096;
/// How long a forwarded query may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest DNS message (TCP's two-byte length); only allocated once an upstream
/// answer is there to read.
const MAX_MESSAGE: usize = 65535;
/// Over-limit events are logged at most this often (a flood must not become a log flood).
const OVERLOAD_LOG_EVERY: Duration = Duration::from_secs(10);

/// Default of [`Limits`]' cap on forwards in flight, also the command line's.
pub const DEFAULT_MAX_FORWARDS: usize = 256;
/// Default of [`Limits`]' TCP connection cap, also the command line's.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 128;

/// What clients can make the server hold at most. With the defaults, sockets stay far
/// below the usual 1,024 file descriptors: one per forward in flight, one per TCP
/// connection, a few for the listeners and etcd.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Forwarded queries in flight (UDP, TCP, and CNAME targets resolved upstream).
    pub max_forwards: usize,
    /// Open TCP connections.
    pub max_tcp_connections: usize,
    /// How long a TCP connection may wait for its next query, take to send one, or take
    /// to read an answer. RFC 7766 (6.2.3) asks for an idle period "of the order of
    /// seconds".
    pub tcp_idle: Duration,
    /// Queries one TCP connection may ask before it is closed (the client reconnects).
    pub tcp_queries_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_forwards: DEFAULT_MAX_FORWARDS,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            tcp_idle: Duration::from_secs(3),
            tcp_queries_per_connection: 100,
        }
    }
}

/// The clients forwarded for: loopback always, plus the `--allow` networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// The networks whose clients may have other names forwarded (`--allow`); loopback
/// always may.
pub struct ClientNetworks(Vec<Network>);

impl ClientNetworks {
    /// Clients in `networks` (and loopback) may forward.
    pub fn new(networks: Vec<Network>) -> ClientNetworks {
        ClientNetworks(networks)
    }

    /// Whether `client` may have names forwarded.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        client.is_loopback() || self.0.iter().any(|net| net.contains(client))
    }
}

/// An address network, `10.0.0.0/8` or `fd00::/8`; a bare address is the one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(value: &str) -> Result<Network, String> {
        let wrong = || {
            // clap names the flag (--allow) before this.
            format!(
                "{value:?} is not an address or a network in CIDR form \
                 (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8)"
            )
        };
        let (addr, prefix) = match value.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (value, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| wrong())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(wrong)?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }
}

/// What the query handlers share.
pub struct Responder {
    zones: Zones,
    shared: Shared,
    forward: Option<SocketAddr>,
    allow: ClientNetworks,
    limits: Limits,
    forwards: Arc<Semaphore>,
    overload: Overload,
}

impl Responder {
    /// A responder for `zones` over the shared record state; other names go to
    /// `forward` for the clients `allow` lets through, within `limits`.
    pub fn new(
        zones: Zones,
        shared: Shared,
        forward: Option<SocketAddr>,
        allow: ClientNetworks,
        limits: Limits,
    ) -> Responder {
        Responder {
            zones,
            shared,
            forward,
            allow,
            forwards: Arc::new(Semaphore::new(limits.max_forwards)),
            limits,
            overload: Overload::default(),
        }
    }

    /// A forward slot, or None (and a note in the log now and then) when all are taken.
    fn forward_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.forwards.clone().try_acquire_owned().ok();
        if slot.is_none() {
            self.overload.note(&format!(
                "{} forwards in flight (--max-forwards); refusing more",
                self.limits.max_forwards
            ));
        }
        slot
    }
}

/// Counts over-limit events and logs them at most every [`OVERLOAD_LOG_EVERY`].
#[derive(Default)]
struct Overload(Mutex<(u64, Option<Instant>)>);

impl Overload {
    fn note(&self, what: &str) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        if state
            .1
            .is_none_or(|last| last.elapsed() >= OVERLOAD_LOG_EVERY)
        {
            eprintln!("rundock dns: {what} ({} times so far)", state.0);
            state.1 = Some(Instant::now());
        }
    }
}

/// Bound sockets, ready to serve.
pub struct Sockets {
    /// The UDP socket.
    pub udp: UdpSocket,
    /// The TCP listener, on the same address and port.
    pub tcp: TcpListener,
}

impl Sockets {
    /// UDP and TCP on the same address and port (with port 0, one port free for both).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Sockets> {
        // With port 0 the kernel picks UDP's port and TCP takes the same number, which
        // an outgoing TCP connection may hold already (both come from the ephemeral
        // range): pick again a few times rather than fail.
        let attempts = if addr.port() == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr).await?;
            match rundock_runtime::listen(udp.local_addr()?) {
                Ok(tcp) => return Ok(Sockets { udp, tcp }),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Serves until the returned future is dropped.
pub async fn serve(sockets: Sockets, responder: Arc<Responder>) {
    let Sockets { udp, tcp } = sockets;
    // Tasks of their own (stopped when this future is dropped): in one task a UDP flood
    // would spend the task's whole scheduling budget, and TCP accepts would starve.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(serve_udp(Arc::new(udp), responder.clone()));
    tasks.spawn(serve_tcp(tcp, responder));
    while tasks.join_next().await.is_some() {}
}

async fn serve_udp(socket: Arc<UdpSocket>, responder: Arc<Responder>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; keep serving.
                eprintln!("rundock dns: udp receive: {e}");
                continue;
            }
        };
        let request = &buf[..len];
        match responder.local(request, peer.ip()) {
            Local::Reply(pair) => {
                let (query, resp) = *pair;
                let bytes = fit_udp(&query, resp);
                if let Err(e) = socket.send_to(&bytes, peer).await {
                    eprintln!("rundock dns: udp send to {peer}: {e}");
                }
            }
            Local::Complete(partial, upstream) => {
                let (query, mut resp, target) = *partial;
                let Some(slot) = responder.forward_slot() else {
                    // No room to ask upstream: the bare CNAME, which the client may follow.
                    let _ = socket.send_to(&fit_udp(&query, resp), peer).await;
                    continue;
                };
                let socket = socket.clone();
                tokio::spawn(async move {
                    complete(&mut resp, &query, target, upstream).await;
                    drop(slot);
                    let bytes = fit_udp(&query, resp);
                    if let Err(e) = socket.send_to(&bytes, peer).await {
                        eprintln!("rundock dns: udp send to {peer}: {e}");
                    }
                });
            }
            Local::Forward(upstream) => {
                let Some(slot) = responder.forward_slot() else {
                    if let Some(bytes) = error_bytes(request, ResponseCode::Refused) {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                    continue;
                };
                let socket = socket.clone();
                let request = request.to_vec();
                tokio::spawn(async move {
                    let reply = forward_udp(upstream, &request).await;
                    drop(slot);
                    match reply {
                        Ok(bytes) => {
                            let _ = socket.send_to(&bytes, peer).await;
                        }
                        Err(e) => {
                            eprintln!("rundock dns: forwarding to {upstream}: {e}");
                            if let Some(bytes) = error_bytes(&request, ResponseCode::ServFail) {
                                let _ = socket.send_to(&bytes, peer).await;
                            }
                        }
                    }
                });
            }
            Local::Drop => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, responder: Arc<Responder>) {
    let connections = Connections::new(responder.limits.max_tcp_connections);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Accepting and closing at once (rather than leaving it in the backlog)
                // tells the client now, and keeps the backlog for those we can serve.
                let Some(slot) = connections.admit() else {
                    responder.overload.note(&format!(
                        "{} TCP connections, none idle (--max-tcp-connections); closing new ones",
                        responder.limits.max_tcp_connections
                    ));
                    continue;
                };
                let responder = responder.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, peer.ip(), slot, responder).await;
                });
                if connections.full() {
                    // Let a connection told to make room close before the next accept,
                    // so the descriptors open never run far past the cap.
                    tokio::task::yield_now().await;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                eprintln!("rundock dns: tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    client: IpAddr,
    slot: Slot,
    responder: Arc<Responder>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let limits = &responder.limits;
    for _ in 0..limits.tcp_queries_per_connection {
        // Idle: the connection may be closed for a newcomer while waiting here.
        let evicted = slot.idle();
        let len = tokio::select! {
            len = tokio::time::timeout(limits.tcp_idle, stream.read_u16()) => match len {
                Ok(Ok(len)) => usize::from(len),
                _ => return Ok(()),
            },
            _ = evicted.notified() => return Ok(()),
        };
        slot.busy();
        let mut request = vec![0u8; len];
        tokio::time::timeout(limits.tcp_idle, stream.read_exact(&mut request))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let bytes = match responder.local(&request, client) {
            Local::Reply(pair) => to_bytes(&pair.1),
            Local::Complete(partial, upstream) => {
                let (query, mut resp, target) = *partial;
                if let Some(_slot) = responder.forward_slot() {
                    complete(&mut resp, &query, target, upstream).await;
                }
                to_bytes(&resp)
            }
            Local::Forward(upstream) => match responder.forward_slot() {
                Some(_slot) => match forward_tcp(upstream, &request).await {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        eprintln!("rundock dns: forwarding to {upstream}: {e}");
                        error_bytes(&request, ResponseCode::ServFail)
                    }
                },
                None => error_bytes(&request, ResponseCode::Refused),
            },
            Local::Drop => return Ok(()),
        };
        let Some(bytes) = bytes.filter(|b| b.len() <= usize::from(u16::MAX)) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        // A client that does not read its answers must not hold the connection.
        tokio::time::timeout(limits.tcp_idle, stream.write_all(&framed))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
    }
    Ok(())
}

/// What to do with one request.
enum Local {
    /// The query (for its EDNS buffer size) and the answer.
    Reply(Box<(Message, Message)>),
    /// As `Reply`, once the out-of-zone CNAME target is resolved upstream.
    Complete(Box<(Message, Message, Name)>, SocketAddr),
    Forward(SocketAddr),
    /// Not a DNS query at all (or a response): no reply, as the RFCs ask.
    Drop,
}

impl Responder {
    fn local(&self, request: &[u8], client: IpAddr) -> Local {
        let query = match Message::from_vec(request) {
            Ok(query) => query,
            Err(_) => {
                return match header_id(request) {
                    Some(id) => Local::Reply(Box::new((
                        Message::query(),
                        Message::error_msg(id, OpCode::Query, ResponseCode::FormErr),
                    ))),
                    None => Local::Drop,
                };
            }
        };
        if query.metadata.message_type != hickory_proto::op::MessageType::Query {
            return Local::Drop;
        }
        // Only clients we forward for reach the upstream, directly or for a CNAME target.
        let forward = self.forward.filter(|_| self.allow.allows(client));
        if let Some(q) = query.queries.first() {
            if self.zones.find(q.name()).is_none() {
                if let Some(upstream) = forward {
                    return Local::Forward(upstream);
                }
            }
        }
        let state = self.shared.read().unwrap_or_else(|e| e.into_inner());
        let resp = if state.loaded {
            answer(&query, &state.records, &self.zones)
        } else {
            let mut resp = answer(&query, &crate::RecordSet::default(), &self.zones);
            if resp.metadata.response_code != ResponseCode::Refused {
                resp.metadata.response_code = ResponseCode::ServFail;
                resp.answers.clear();
                resp.authorities.clear();
                resp.additionals.clear();
            }
            resp
        };
        drop(state);
        if let Some(upstream) = forward {
            if let Some(target) = outside_cname_target(&query, &resp, &self.zones) {
                return Local::Complete(Box::new((query, resp, target)), upstream);
            }
        }
        Local::Reply(Box::new((query, resp)))
    }
}

/// Resolves `target` (the type of `query`) at `upstream` and appends the answer to
/// `resp`; on failure `resp` keeps its bare CNAME (the client may still follow it).
async fn complete(resp: &mut Message, query: &Message, target: Name, upstream: SocketAddr) {
    let Some(q) = query.queries.first() else {
        return;
    };
    let mut ask = Message::query();
    // A fresh id: the upstream must not confuse it with the client's own query.
    ask.metadata.id = query.metadata.id ^ (std::process::id() as u16) ^ 0x5a5a;
    ask.metadata.recursion_desired = true;
    ask.add_query(Query::query(target.clone(), q.query_type()));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    ask.edns = Some(edns);
    let Ok(request) = ask.to_vec() else { return };
    let mut reply = forward_udp(upstream, &request).await;
    if matches!(&reply, Ok(bytes) if bytes.len() > 2 && bytes[2] & 0x02 != 0) {
        // Truncated: ask again over TCP for the whole answer.
        reply = forward_tcp(upstream, &request).await;
    }
    match reply.map(|bytes| Message::from_vec(&bytes)) {
        Ok(Ok(answer)) => append_upstream(resp, &answer),
        Ok(Err(e)) => eprintln!("rundock dns: resolving {target} at {upstream}: {e}"),
        Err(e) => eprintln!("rundock dns: resolving {target} at {upstream}: {e}"),
    }
}

/// Serialises a UDP answer, truncating it (TC, no records) if the client cannot take it.
fn fit_udp(query: &Message, resp: Message) -> Vec<u8> {
    let limit = match &query.edns {
        Some(edns) => usize::from(edns.max_payload()).clamp(CLASSIC_UDP, MAX_UDP),
        None => CLASSIC_UDP,
    };
    match resp.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        Ok(_) => resp.truncate().to_vec().unwrap_or_default(),
        Err(e) => {
            eprintln!("rundock dns: cannot serialise an answer: {e}");
            Message::error_msg(resp.metadata.id, OpCode::Query, ResponseCode::ServFail)
                .to_vec()
                .unwrap_or_default()
        }
    }
}

fn to_bytes(resp: &Message) -> Option<Vec<u8>> {
    resp.to_vec()
        .map_err(|e| eprintln!("rundock dns: cannot serialise an answer: {e}"))
        .ok()
}

fn header_id(request: &[u8]) -> Option<u16> {
    // A header is 12 bytes; the QR bit (top of byte 2) set means it is a response.
    (request.len() >= 12 && request[2] & 0x80 == 0)
        .then(|| u16::from_be_bytes([request[0], request[1]]))
}

/// An answer with no records and `code`, echoing the question.
fn error_bytes(request: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    let query = Message::from_vec(request).ok()?;
    let mut resp = Message::error_msg(query.metadata.id, query.metadata.op_code, code);
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    resp.queries = query.queries;
    resp.to_vec().ok()
}

async fn forward_udp(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    // The buffer is made once something arrived: a forward waiting on a silent upstream
    // holds a socket, not 64 KB.
    let mut buf = Vec::new();
    loop {
        tokio::time::timeout_at(deadline, socket.readable())
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        buf.resize(MAX_MESSAGE, 0);
        let len = match socket.try_recv(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        // Only the answer to our query (same id) counts; anything else is noise.
        if len >= 2 && buf[..2] == request[..2] {
            buf.truncate(len);
            buf.shrink_to_fit();
            return Ok(buf);
        }
    }
}

async fn forward_tcp(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    tokio::time::timeout(FORWARD_TIMEOUT, async {
        let mut stream = TcpStream::connect(upstream).await?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&(request.len() as u16).to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await?;
        let len = usize::from(stream.read_u16().await?);
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    })
    .await
    .map_err(|_| std::io::ErrorKind::TimedOut)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(networks: &[&str]) -> ClientNetworks {
        ClientNetworks::new(networks.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn loopback_is_always_forwarded_for_and_others_only_when_allowed() {
        let none = allow(&[]);
        for client in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            assert!(none.allows(client.parse().unwrap()), "{client}");
        }
        for client in [
            "10.0.0.1",
            "192.0.2.1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!none.allows(client.parse().unwrap()), "{client}");
        }
        let some = allow(&["10.0.0.0/8", "192.0.2.7", "fd00::/8", "198.51.100.0/31"]);
        let table = [
            ("10.255.0.1", true),
            ("11.0.0.1", false),
            ("::ffff:10.1.2.3", true),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("198.51.100.1", true),
            ("198.51.100.2", false),
        ];
        for (client, allowed) in table {
            assert_eq!(some.allows(client.parse().unwrap()), allowed, "{client}");
        }
        assert!(allow(&["0.0.0.0/0"]).allows("203.0.113.9".parse().unwrap()));
        assert!(allow(&["::/0"]).allows("2001:db8::1".parse().unwrap()));
        assert!(!allow(&["::/0"]).allows("203.0.113.9".parse().unwrap()));
    }

    fn responder(allowed: &[&str]) -> Responder {
        let zones = Zones::new(&["s.example.com".to_string()], 300).unwrap();
        let mut state = crate::sync::State::default();
        state.loaded = true;
        Responder::new(
            zones,
            Arc::new(std::sync::RwLock::new(state)),
            Some("192.0.2.53:53".parse().unwrap()),
            allow(allowed),
            Limits::default(),
        )
    }

    fn query(name: &str) -> Vec<u8> {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.add_query(Query::query(
            name.parse().unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        query.to_vec().unwrap()
    }

    fn code(local: Local) -> Option<ResponseCode> {
        match local {
            Local::Reply(pair) => Some(pair.1.metadata.response_code),
            _ => None,
        }
    }

    #[test]
    fn only_allowed_clients_are_forwarded_for_and_everyone_gets_in_zone_answers() {
        let outside = query("www.example.org.");
        let inside = query("missing.s.example.com.");
        let loopback_only = responder(&[]);
        let with_lan = responder(&["10.0.0.0/8"]);
        for (responder, client, forwarded) in [
            (&loopback_only, "127.0.0.1", true),
            (&loopback_only, "::1", true),
            (&loopback_only, "10.1.2.3", false),
            (&loopback_only, "2001:db8::1", false),
            (&with_lan, "10.1.2.3", true),
            (&with_lan, "192.0.2.1", false),
        ] {
            let client: IpAddr = client.parse().unwrap();
            match responder.local(&outside, client) {
                Local::Forward(_) => assert!(forwarded, "{client} was forwarded for"),
                other => {
                    assert!(!forwarded, "{client} was not forwarded for");
                    assert_eq!(code(other), Some(ResponseCode::Refused), "{client}");
                }
            }
            assert_eq!(
                code(responder.local(&inside, client)),
                Some(ResponseCode::NXDomain),
                "{client} gets in-zone answers"
            );
        }
    }

    #[test]
    fn networks_are_checked_with_a_message_naming_the_allowed_form() {
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "10.0.0.0/-1",
            "host",
            "/8",
        ] {
            let err = bad.parse::<Network>().unwrap_err();
            assert!(
                err.starts_with(&format!("{bad:?} ")) && err.contains("CIDR"),
                "{bad}: {err}"
            );
        }
    }
}
