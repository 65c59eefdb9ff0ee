//! An authoritative DNS server in the test process whose answers change at run time: the
//! fixture of the discovery tests (`tests/dns_server.rs` tests the fixture itself).
//!
//! It listens on 127.0.0.1, UDP and TCP on the same port, and answers A and AAAA queries from
//! a table the test sets ([`DnsServer::set`], [`DnsServer::remove`]); messages are parsed and
//! built with hickory-proto. Answers carry TTL 0 (see [`DnsServer::set_ttl`]) so that no
//! resolver keeps them. A name in the table with no address of the queried type is NODATA
//! (NOERROR, no answer); a name not in the table is NXDOMAIN. Negative answers carry no SOA,
//! so resolvers do not cache them either (RFC 2308).
//!
//! An answer larger than the transport allows (512 bytes over UDP, or the EDNS payload size the
//! query advertised; 65,535 over TCP, the most one DNS message can be) carries as many records
//! as fit, with TC set: over UDP a resolver then asks again over TCP. One name therefore
//! carries at most about 4,090 IPv4 addresses (16 bytes each in a compressed answer): more
//! than that need several names.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// The largest DNS message: TCP frames it with a 16-bit length.
const TCP_MAX: usize = u16::MAX as usize;

/// The UDP payload size this server advertises in its own EDNS record.
const OUR_UDP_PAYLOAD: u16 = 1232;

/// The server; its tasks stop (and its sockets close) when it is dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Zone>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the server answers, shared with its tasks.
struct Zone {
    /// Lower-case names without the trailing dot → addresses.
    names: Mutex<HashMap<String, Vec<IpAddr>>>,
    ttl: AtomicU32,
    down: AtomicBool,
    servfail: AtomicBool,
    answered: AtomicU64,
}

impl DnsServer {
    /// Bind UDP on a free loopback port, then TCP on the same port number (a new port if
    /// TCP's is taken), and serve both.
    pub async fn start() -> DnsServer {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _attempt in 0..50 {
            let udp = UdpSocket::bind((loopback, 0)).await.expect("bind UDP");
            let addr = udp.local_addr().expect("UDP address");
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            let zone = Arc::new(Zone {
                names: Mutex::new(HashMap::new()),
                ttl: AtomicU32::new(0),
                down: AtomicBool::new(false),
                servfail: AtomicBool::new(false),
                answered: AtomicU64::new(0),
            });
            let tasks = vec![
                tokio::spawn(serve_udp(udp, zone.clone())),
                tokio::spawn(serve_tcp(tcp, zone.clone())),
            ];
            return DnsServer { addr, zone, tasks };
        }
        panic!("no loopback port free for both UDP and TCP in 50 attempts");
    }

    /// The address (UDP and TCP) to give a resolver: healthgate's `resolver:`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `name` (with or without the trailing dot, any case) with `ips`: A records for
    /// the IPv4 ones, AAAA for the IPv6 ones. An empty list makes the name NODATA.
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        self.zone.names().insert(key(name), ips.to_vec());
    }

    /// Forget `name`: it becomes NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.zone.names().remove(&key(name));
    }

    /// While down, the server answers nothing, as a dead one: UDP queries are dropped, TCP
    /// connections are closed (new ones at once, open ones at their next query).
    pub fn set_down(&self, down: bool) {
        self.zone.down.store(down, Ordering::SeqCst);
    }

    /// While on, every query is answered SERVFAIL.
    pub fn set_servfail(&self, on: bool) {
        self.zone.servfail.store(on, Ordering::SeqCst);
    }

    /// The TTL of the records answered from now on (0 at start).
    pub fn set_ttl(&self, seconds: u32) {
        self.zone.ttl.store(seconds, Ordering::SeqCst);
    }

    /// Queries answered so far (over both transports, SERVFAIL and NXDOMAIN included): poll
    /// it to see that a resolution happened.
    pub fn queries(&self) -> u64 {
        self.zone.answered.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The table key of a name: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<IpAddr>>> {
        self.names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// The encoded answer to the query in `bytes`, at most `limit` bytes long (`None` for
    /// UDP: the query's EDNS payload size, or 512). `None` when there is nothing to answer.
    fn answer(&self, bytes: &[u8], limit: Option<usize>) -> Option<Vec<u8>> {
        let Ok(request) = Message::from_vec(bytes) else {
            // Not a DNS message we can read: FORMERR if it has an id at least.
            let id = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
            let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return self.sent(reply.to_vec().ok());
        };
        if request.message_type() != MessageType::Query {
            return None;
        }
        let limit = limit.unwrap_or(usize::from(request.max_payload()));
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_authoritative(true)
            .set_recursion_desired(request.recursion_desired())
            .add_queries(request.queries().iter().cloned());
        if request.extensions().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(OUR_UDP_PAYLOAD);
            response.set_edns(edns);
        }
        let mut answers = Vec::new();
        if self.servfail.load(Ordering::SeqCst) {
            response.set_response_code(ResponseCode::ServFail);
        } else if request.op_code() != OpCode::Query {
            response.set_response_code(ResponseCode::NotImp);
        } else {
            let names = self.names();
            let ttl = self.ttl.load(Ordering::SeqCst);
            for query in request.queries() {
                let Some(ips) = names.get(&key(&query.name().to_string())) else {
                    response.set_response_code(ResponseCode::NXDomain);
                    continue;
                };
                let wanted = query.query_type();
                for ip in ips {
                    let rdata = match (ip, wanted) {
                        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                            RData::AAAA(AAAA(*v6))
                        }
                        _ => continue,
                    };
                    answers.push(Record::from_rdata(query.name().clone(), ttl, rdata));
                }
            }
        }
        self.sent(fit(response, answers, limit))
    }

    /// Count an answer that is about to be sent.
    fn sent(&self, reply: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if reply.is_some() {
            self.answered.fetch_add(1, Ordering::SeqCst);
        }
        reply
    }
}

/// `response` with as many of `answers` as fit in `limit` bytes, encoded; TC set if not all
/// of them do.
fn fit(mut response: Message, answers: Vec<Record>, limit: usize) -> Option<Vec<u8>> {
    let encode = |response: &mut Message, count: usize| {
        response.answers_mut().clear();
        response.add_answers(answers[..count].iter().cloned());
        response.set_truncated(count < answers.len());
        response.to_vec().ok().filter(|bytes| bytes.len() <= limit)
    };
    if let Some(bytes) = encode(&mut response, answers.len()) {
        return Some(bytes);
    }
    // Binary search for the most answers that fit: `low` fits, `high` does not.
    let (mut low, mut high) = (0, answers.len());
    while high - low > 1 {
        let middle = (low + high) / 2;
        if encode(&mut response, middle).is_some() {
            low = middle;
        } else {
            high = middle;
        }
    }
    encode(&mut response, low)
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buffer = vec![0; TCP_MAX];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        if zone.down() {
            continue;
        }
        if let Some(reply) = zone.answer(&buffer[..len], None) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// Accept connections; each is served by a task of `connections`, which is dropped (and so
/// every connection closed) with this task.
async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        if !zone.down() {
            connections.spawn(serve_connection(stream, zone.clone()));
        }
    }
}

/// Length-prefixed queries, one answer each, until the client closes or the server is down.
async fn serve_connection(mut stream: TcpStream, zone: Arc<Zone>) {
    let mut buffer = vec![0; TCP_MAX];
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let query = &mut buffer[..usize::from(len)];
        if stream.read_exact(query).await.is_err() || zone.down() {
            return;
        }
        let Some(reply) = zone.answer(query, Some(TCP_MAX)) else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut frame = Vec::with_capacity(reply.len() + 2);
        frame.extend_from_slice(&reply_len.to_be_bytes());
        frame.extend_from_slice(&reply);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}
