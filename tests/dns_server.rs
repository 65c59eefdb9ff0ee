//! The discovery tests' DNS server (`tests/common/dns.rs`), tested with the resolver healthgate
//! uses (hickory-resolver, UDP with TCP fallback, no cache): answers follow the table as it
//! changes at run time; NXDOMAIN, NODATA, SERVFAIL and a dead server look as they would from a
//! real server; a large answer is truncated over UDP and comes back complete over TCP, up to
//! what one DNS message can hold.
#![allow(clippy::unwrap_used)]

mod common;

use common::dns::DnsServer;
use common::eventually;
use hickory_proto::ProtoErrorKind;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A resolver that asks only `server` (UDP, then TCP when the answer is truncated), keeps
/// nothing in a cache and gives up on a query after `timeout`.
fn resolver(server: &DnsServer, timeout: Duration) -> TokioResolver {
    let addr = server.addr();
    let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
    let config = ResolverConfig::from_parts(None, vec![], servers);
    let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
    let options = builder.options_mut();
    options.cache_size = 0;
    options.timeout = timeout;
    options.attempts = 1;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.use_hosts_file = ResolveHosts::Never;
    builder.build()
}

/// The addresses `name` resolves to, sorted.
async fn lookup(resolver: &TokioResolver, name: &str) -> BTreeSet<IpAddr> {
    resolver
        .lookup_ip(name)
        .await
        .unwrap_or_else(|e| panic!("lookup {name}: {e}"))
        .iter()
        .collect()
}

/// `count` distinct loopback addresses 127.b.c.d, starting at 127.<block>.0.1.
fn loopbacks(block: u8, count: usize) -> Vec<IpAddr> {
    (0..count)
        .map(|i| {
            let c = u8::try_from(i / 250).unwrap();
            let d = u8::try_from(i % 250 + 1).unwrap();
            IpAddr::V4(Ipv4Addr::new(127, block, c, d))
        })
        .collect()
}

/// The response code a failed lookup carries, if it failed on an answer.
fn response_code(error: &ResolveError) -> Option<ResponseCode> {
    match error.proto()?.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    }
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One A query for `name` over UDP, without a resolver: the parsed answer.
async fn udp_query(server: SocketAddr, name: &str) -> Option<Message> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = Message::new();
    query
        .set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0; 65535];
    let received = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer)).await;
    let len = received.ok()?.ok()?;
    assert!(
        len <= 512,
        "a UDP answer without EDNS is at most 512 bytes, got {len}"
    );
    Some(Message::from_vec(&buffer[..len]).unwrap())
}

#[tokio::test]
async fn set_names_are_answered_a_and_aaaa_in_any_case_with_or_without_the_dot() {
    let server = DnsServer::start().await;
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    server.set("MI-Headless.wso2.test.", &[v4(2), v4(3), v6]);
    let resolver = resolver(&server, Duration::from_secs(2));
    let expected = BTreeSet::from([v4(2), v4(3), v6]);
    assert_eq!(lookup(&resolver, "mi-headless.wso2.test.").await, expected);
    assert_eq!(lookup(&resolver, "MI-HEADLESS.WSO2.TEST").await, expected);
    // Ipv4AndIpv6: one A and one AAAA query per lookup.
    assert_eq!(server.queries(), 4);
}

#[tokio::test]
async fn the_next_lookup_sees_a_change() {
    let server = DnsServer::start().await;
    let resolver = resolver(&server, Duration::from_secs(2));
    server.set("mi.test", &[v4(2), v4(3)]);
    assert_eq!(
        lookup(&resolver, "mi.test.").await,
        BTreeSet::from([v4(2), v4(3)])
    );
    // Scale up, replace one, scale down: each seen by the very next lookup (TTL 0, no cache).
    server.set("mi.test", &[v4(2), v4(3), v4(4)]);
    assert_eq!(
        lookup(&resolver, "mi.test.").await,
        BTreeSet::from([v4(2), v4(3), v4(4)])
    );
    server.set("mi.test", &[v4(2), v4(5), v4(4)]);
    assert_eq!(
        lookup(&resolver, "mi.test.").await,
        BTreeSet::from([v4(2), v4(4), v4(5)])
    );
    server.set("mi.test", &[v4(5)]);
    assert_eq!(lookup(&resolver, "mi.test.").await, BTreeSet::from([v4(5)]));
    let answer = resolver.ipv4_lookup("mi.test.").await.unwrap();
    let ttls: Vec<u32> = answer
        .as_lookup()
        .records()
        .iter()
        .map(|r| r.ttl())
        .collect();
    assert_eq!(ttls, [0], "answers carry TTL 0");
}

#[tokio::test]
async fn a_removed_name_is_nxdomain_and_an_empty_one_nodata() {
    let server = DnsServer::start().await;
    let resolver = resolver(&server, Duration::from_secs(2));
    server.set("mi.test", &[v4(2)]);
    assert_eq!(lookup(&resolver, "mi.test.").await, BTreeSet::from([v4(2)]));

    server.set("mi.test", &[]);
    let empty = resolver.lookup_ip("mi.test.").await.unwrap_err();
    assert_eq!(
        response_code(&empty),
        Some(ResponseCode::NoError),
        "NODATA: {empty:?}"
    );
    assert!(!empty.is_nx_domain(), "{empty:?}");

    server.remove("mi.test.");
    let gone = resolver.lookup_ip("mi.test.").await.unwrap_err();
    assert!(gone.is_nx_domain(), "a removed name is NXDOMAIN: {gone:?}");
    assert_eq!(response_code(&gone), Some(ResponseCode::NXDomain));
    let never = resolver.lookup_ip("other.test.").await.unwrap_err();
    assert!(never.is_nx_domain(), "{never:?}");

    server.set("mi.test", &[v4(3)]);
    assert_eq!(lookup(&resolver, "mi.test.").await, BTreeSet::from([v4(3)]));
}

/// hickory-resolver reports SERVFAIL as `NoRecordsFound` with `response_code: ServFail`: so
/// `is_no_records_found()` alone does not tell an empty answer from a failed one.
#[tokio::test]
async fn servfail_fails_every_lookup_until_turned_off() {
    let server = DnsServer::start().await;
    let resolver = resolver(&server, Duration::from_secs(2));
    server.set("mi.test", &[v4(2)]);
    server.set_servfail(true);
    let before = server.queries();
    let error = resolver.lookup_ip("mi.test.").await.unwrap_err();
    assert_eq!(
        response_code(&error),
        Some(ResponseCode::ServFail),
        "{error:?}"
    );
    assert!(error.is_no_records_found());
    assert!(server.queries() > before, "SERVFAIL is an answer");
    server.set_servfail(false);
    assert_eq!(lookup(&resolver, "mi.test.").await, BTreeSet::from([v4(2)]));
}

#[tokio::test]
async fn a_down_server_answers_nothing_and_lookups_time_out() {
    let server = DnsServer::start().await;
    let resolver = resolver(&server, Duration::from_millis(300));
    server.set("mi.test", &[v4(2)]);
    assert_eq!(lookup(&resolver, "mi.test.").await, BTreeSet::from([v4(2)]));

    server.set_down(true);
    let answered = server.queries();
    let started = Instant::now();
    let error = resolver.lookup_ip("mi.test.").await.unwrap_err();
    let timed_out = matches!(
        error.proto().map(|e| e.kind()),
        Some(ProtoErrorKind::Timeout)
    );
    assert!(timed_out, "{error:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "failed only after the timeout: {:?}, {error}",
        started.elapsed()
    );
    assert_eq!(server.queries(), answered, "nothing answered while down");
    assert!(udp_query(server.addr(), "mi.test.").await.is_none());

    server.set_down(false);
    eventually(Duration::from_secs(10), "lookups succeed again", || async {
        resolver.lookup_ip("mi.test.").await.is_ok()
    })
    .await;
    assert_eq!(lookup(&resolver, "mi.test.").await, BTreeSet::from([v4(2)]));
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let server = DnsServer::start().await;
    // About 64 KB of answer: close to the most one DNS message can hold.
    let addresses = loopbacks(1, 4000);
    server.set("big.test", &addresses);

    let udp = udp_query(server.addr(), "big.test.").await.unwrap();
    assert!(udp.truncated(), "TC over UDP");
    assert!(udp.answers().len() < 4000);

    let resolver = resolver(&server, Duration::from_secs(5));
    let found = lookup(&resolver, "big.test.").await;
    assert_eq!(found, addresses.iter().copied().collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn five_thousand_nodes_come_back_complete_from_two_names() {
    let server = DnsServer::start().await;
    let (a, b) = (loopbacks(1, 2500), loopbacks(2, 2500));
    server.set("mi-a.test", &a);
    server.set("mi-b.test", &b);
    let resolver = resolver(&server, Duration::from_secs(5));
    let mut found = lookup(&resolver, "mi-a.test.").await;
    found.extend(lookup(&resolver, "mi-b.test.").await);
    assert_eq!(found.len(), 5000);
    assert_eq!(found, a.iter().chain(&b).copied().collect::<BTreeSet<_>>());
}

/// One DNS message is at most 65,535 bytes: 5000 A records (16 bytes each) do not fit in one.
/// The server sends what fits with TC set, and hickory-resolver takes a truncated TCP answer
/// as it is, without a word: 4094 records = (65,535 - 12 header - 15 question) / 16, for this
/// name without EDNS. That is the most addresses one discovery name can carry.
#[tokio::test]
async fn one_name_holds_at_most_4094_ipv4_addresses_and_more_are_cut_silently() {
    let server = DnsServer::start().await;
    let addresses = loopbacks(1, 5000);
    server.set("huge.test", &addresses);
    let resolver = resolver(&server, Duration::from_secs(5));
    let found = lookup(&resolver, "huge.test.").await;
    assert_eq!(found.len(), 4094);
    let first: BTreeSet<IpAddr> = addresses[..found.len()].iter().copied().collect();
    assert_eq!(found, first, "the first ones, in order");
}

#[tokio::test]
async fn the_server_stops_when_dropped() {
    let server = DnsServer::start().await;
    server.set("mi.test", &[v4(2)]);
    let addr = server.addr();
    assert!(udp_query(addr, "mi.test.").await.is_some());
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(server);
    eventually(Duration::from_secs(5), "the TCP port closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(udp_query(addr, "mi.test.").await.is_none());
}
