//! The network side: a UDP socket and a TCP listener on the same address, each query
//! parsed with hickory-proto, answered from the shared [`RecordSet`](crate::RecordSet) by
//! [`answer`](crate::answer()), or passed on to the `--forward` server when it is outside
//! our zones. UDP answers that do not fit the client's buffer are truncated (TC) so the
//! client retries over TCP. An answer that ends in a CNAME to a name outside our zones
//! gets that name's records from the `--forward` server appended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::answer::{answer, append_upstream, outside_cname_target, Zones, EDNS_PAYLOAD};
use crate::sync::Shared;

/// A UDP client without EDNS can take 512 bytes (RFC 1035).
const CLASSIC_UDP: usize = 512;
/// We never send UDP answers larger than this, whatever the client offers.
const MAX_UDP: usize = 4096;
/// How long a forwarded query may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// An idle TCP connection is closed after this.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What the query handlers share.
pub struct Responder {
    pub zones: Zones,
    pub shared: Shared,
    pub forward: Option<SocketAddr>,
}

/// Bound sockets, ready to serve.
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl Sockets {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Sockets> {
        let udp = UdpSocket::bind(addr).await?;
        // With port 0 the kernel picks UDP's port; TCP takes the same one.
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Ok(Sockets { udp, tcp })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Serves until the returned future is dropped.
pub async fn serve(sockets: Sockets, responder: Arc<Responder>) {
    let Sockets { udp, tcp } = sockets;
    tokio::join!(
        serve_udp(Arc::new(udp), responder.clone()),
        serve_tcp(tcp, responder)
    );
}

async fn serve_udp(socket: Arc<UdpSocket>, responder: Arc<Responder>) {
    let mut buf = vec![0u8; 65535];
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
        match responder.local(request) {
            Local::Reply(pair) => {
                let (query, resp) = *pair;
                let bytes = fit_udp(&query, resp);
                if let Err(e) = socket.send_to(&bytes, peer).await {
                    eprintln!("rundock dns: udp send to {peer}: {e}");
                }
            }
            Local::Complete(partial, upstream) => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let (query, mut resp, target) = *partial;
                    complete(&mut resp, &query, target, upstream).await;
                    let bytes = fit_udp(&query, resp);
                    if let Err(e) = socket.send_to(&bytes, peer).await {
                        eprintln!("rundock dns: udp send to {peer}: {e}");
                    }
                });
            }
            Local::Forward(upstream) => {
                let socket = socket.clone();
                let request = request.to_vec();
                tokio::spawn(async move {
                    match forward_udp(upstream, &request).await {
                        Ok(bytes) => {
                            let _ = socket.send_to(&bytes, peer).await;
                        }
                        Err(e) => {
                            eprintln!("rundock dns: forwarding to {upstream}: {e}");
                            if let Some(bytes) = servfail_bytes(&request) {
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
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let responder = responder.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, responder).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                eprintln!("rundock dns: tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(mut stream: TcpStream, responder: Arc<Responder>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        let mut request = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let bytes = match responder.local(&request) {
            Local::Reply(pair) => to_bytes(&pair.1),
            Local::Complete(partial, upstream) => {
                let (query, mut resp, target) = *partial;
                complete(&mut resp, &query, target, upstream).await;
                to_bytes(&resp)
            }
            Local::Forward(upstream) => match forward_tcp(upstream, &request).await {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    eprintln!("rundock dns: forwarding to {upstream}: {e}");
                    servfail_bytes(&request)
                }
            },
            Local::Drop => return Ok(()),
        };
        let Some(bytes) = bytes.filter(|b| b.len() <= usize::from(u16::MAX)) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
    }
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
    fn local(&self, request: &[u8]) -> Local {
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
        if let (Some(upstream), Some(q)) = (self.forward, query.queries.first()) {
            if self.zones.find(q.name()).is_none() {
                return Local::Forward(upstream);
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
        if let Some(upstream) = self.forward {
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

fn servfail_bytes(request: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(request).ok()?;
    let mut resp = Message::error_msg(
        query.metadata.id,
        query.metadata.op_code,
        ResponseCode::ServFail,
    );
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
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        let len = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        // Only the answer to our query (same id) counts; anything else is noise.
        if len >= 2 && buf[..2] == request[..2] {
            buf.truncate(len);
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
