//! The WebSocket echo endpoint of the traffic port (`mi_sim::ws`): the handshake and frames
//! written byte by byte over a raw TcpStream (RFC 6455's own examples), then the client
//! helper, refusals, and what a shutdown or crash does to an open session.
#![allow(clippy::unwrap_used)]

use mi_sim::ws::{self, Frame, Opcode, WsClient, close_code};
use mi_sim::{SimNode, SimOptions};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(5);

/// Read until `buf` holds at least `n` bytes (or the peer closes); what was read.
async fn read_at_least(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    timeout(DEADLINE, async {
        while buf.len() < n {
            if stream.read_buf(&mut buf).await.unwrap() == 0 {
                break;
            }
        }
    })
    .await
    .expect("answer within the deadline");
    buf
}

/// Read an HTTP answer head (through the blank line) and whatever came with it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    timeout(DEADLINE, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(
                stream.read_buf(&mut buf).await.unwrap() > 0,
                "closed: {buf:?}"
            );
        }
    })
    .await
    .expect("answer head within the deadline");
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let rest = buf.split_off(end);
    (String::from_utf8(buf).unwrap(), rest)
}

fn node() -> SimNode {
    SimNode::start(SimOptions::new("mi-ws")).unwrap()
}

async fn connect(node: &SimNode) -> TcpStream {
    timeout(DEADLINE, async {
        loop {
            if let Ok(s) = TcpStream::connect(node.traffic_addr()).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("traffic port open")
}

#[tokio::test]
async fn raw_handshake_and_masked_text_frame_round_trip() {
    let node = node();
    let mut s = connect(&node).await;
    // RFC 6455 §1.3's key; its accept value is fixed by the RFC.
    s.write_all(
        b"GET /ws/echo HTTP/1.1\r\nHost: mi\r\nConnection: keep-alive, Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, rest) = read_head(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(lower.contains("\r\nx-mi-node: mi-ws\r\n"), "{head}");
    assert!(rest.is_empty(), "nothing before the client's first frame");

    // RFC 6455 §5.7: "Hello", masked with 37 fa 21 3d; echoed unmasked.
    s.write_all(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ])
    .await
    .unwrap();
    assert_eq!(read_at_least(&mut s, 7).await, b"\x81\x05Hello");

    // A masked ping "Hi" is answered with an unmasked pong "Hi".
    let ping = Frame::ping(&b"Hi"[..]).encode(Some([1, 2, 3, 4]));
    s.write_all(&ping).await.unwrap();
    assert_eq!(read_at_least(&mut s, 4).await, b"\x8a\x02Hi");

    // Close 1000 is answered with the same close, then the server closes the connection.
    let close = Frame::close(close_code::NORMAL, "done").encode(Some([9, 8, 7, 6]));
    s.write_all(&close).await.unwrap();
    assert_eq!(
        read_at_least(&mut s, usize::MAX).await,
        b"\x88\x06\x03\xe8done"
    );
    assert_eq!(node.websocket_upgrades(), 1);
    assert_eq!(node.websocket_frames(), 1);
}

#[tokio::test]
async fn client_helper_echoes_text_binary_and_fragments() {
    let node = node();
    connect(&node).await;
    let mut c = WsClient::connect(node.traffic_addr(), ws::ECHO_PATH)
        .await
        .unwrap();
    assert_eq!(
        c.echo_text("héllo").await.unwrap(),
        Some(Frame::text("héllo"))
    );
    // 16-bit and 64-bit lengths.
    for len in [300usize, 70_000] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        c.send(&Frame::binary(data.clone())).await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Some(Frame::binary(data)));
    }
    // A fragmented message comes back fragment by fragment, a ping answered in between.
    let first = Frame {
        fin: false,
        opcode: Opcode::Text,
        payload: b"frag".to_vec(),
    };
    let last = Frame::new(Opcode::Continuation, &b"ment"[..]);
    c.send(&first).await.unwrap();
    c.send(&Frame::ping(&b"p"[..])).await.unwrap();
    c.send(&last).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), Some(first));
    assert_eq!(
        c.recv().await.unwrap(),
        Some(Frame::new(Opcode::Pong, &b"p"[..]))
    );
    assert_eq!(c.recv().await.unwrap(), Some(last));
    assert_eq!(node.websocket_open(), 1);
    let close = c.close(close_code::NORMAL).await.unwrap().unwrap();
    assert_eq!(close.close_code(), Some(close_code::NORMAL));
    assert_eq!(
        node.traffic_requests(),
        1,
        "the handshake is one traffic request"
    );
}

#[tokio::test]
async fn protocol_errors_close_with_1002() {
    let node = node();
    connect(&node).await;
    let c = WsClient::connect(node.traffic_addr(), ws::ECHO_PATH)
        .await
        .unwrap();
    let (mut s, _) = c.into_parts();
    // An unmasked client frame.
    s.write_all(b"\x81\x02hi").await.unwrap();
    let answer = read_at_least(&mut s, usize::MAX).await;
    let close = ws::decode(&answer, ws::MAX_PAYLOAD).unwrap().unwrap();
    assert!(!close.masked);
    assert_eq!(close.frame.close_code(), Some(close_code::PROTOCOL_ERROR));
}

#[tokio::test]
async fn requests_that_are_not_a_handshake_are_refused() {
    let node = node();
    connect(&node).await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    let cases = [
        // A plain GET.
        (
            "GET /ws/echo HTTP/1.1\r\nHost: mi\r\n\r\n".to_string(),
            "400",
        ),
        // No key, a key that is not 16 bytes of base64.
        (
            format!(
                "GET /ws/echo HTTP/1.1\r\nHost: mi\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET /ws/echo HTTP/1.1\r\nHost: mi\r\n{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n"
            ),
            "400",
        ),
        // Not GET.
        (
            format!(
                "POST /ws/echo HTTP/1.1\r\nHost: mi\r\n{upgrade}Sec-WebSocket-Version: 13\r\n{key}Content-Length: 0\r\n\r\n"
            ),
            "400",
        ),
        // Another version: 426 naming the one spoken.
        (
            format!(
                "GET /ws/echo HTTP/1.1\r\nHost: mi\r\n{upgrade}Sec-WebSocket-Version: 8\r\n{key}\r\n"
            ),
            "426",
        ),
    ];
    for (request, status) in cases {
        let mut s = connect(&node).await;
        s.write_all(request.as_bytes()).await.unwrap();
        let (head, _) = read_head(&mut s).await;
        assert_eq!(head.split(' ').nth(1), Some(status), "{request}\n{head}");
        if status == "426" {
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\nsec-websocket-version: 13\r\n"),
                "{head}"
            );
        }
    }
    assert_eq!(node.websocket_upgrades(), 0);
    // The rest of the traffic port is unchanged.
    let mut s = connect(&node).await;
    s.write_all(b"GET /ws/other HTTP/1.1\r\nHost: mi\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

#[tokio::test]
async fn shutdown_sends_going_away_and_crash_cuts_the_session() {
    let node = node();
    connect(&node).await;
    let mut c = WsClient::connect(node.traffic_addr(), ws::ECHO_PATH)
        .await
        .unwrap();
    assert!(c.echo_text("x").await.unwrap().is_some());
    node.shutdown();
    let bye = timeout(DEADLINE, c.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(bye.close_code(), Some(close_code::GOING_AWAY));
    assert_eq!(timeout(DEADLINE, c.recv()).await.unwrap().unwrap(), None);
    node.wait_for_phase(mi_sim::Phase::Stopped).await;
    assert_eq!(node.websocket_open(), 0);

    node.restart().unwrap();
    connect(&node).await;
    let c = WsClient::connect(node.traffic_addr(), ws::ECHO_PATH)
        .await
        .unwrap();
    let (mut s, _) = c.into_parts();
    node.crash();
    // No close frame: the connection just ends (EOF or reset).
    let mut buf = Vec::new();
    let read = timeout(DEADLINE, s.read_to_end(&mut buf)).await.unwrap();
    assert!(read.is_err() || buf.is_empty(), "{buf:?}");
}
