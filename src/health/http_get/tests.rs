use super::*;
use crate::health::answer::MAX_ANSWER_BYTES;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(2);
const OK_KEEP_ALIVE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What the test server does with the n-th request (0-based) on a connection.
#[derive(Clone, Copy)]
enum Act {
    /// Write this answer and keep the connection.
    Answer(&'static str),
    /// Write this answer, then close the connection.
    AnswerAndClose(&'static str),
    /// Close the connection without answering.
    Close,
}

/// A raw HTTP server acting per `act`; counts the connections it accepts.
async fn serve(act: fn(usize) -> Act) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for n in 0.. {
                    if !read_request_head(&mut stream).await {
                        return;
                    }
                    match act(n) {
                        Act::Answer(a) => {
                            let _ = stream.write_all(a.as_bytes()).await;
                        }
                        Act::AnswerAndClose(a) => {
                            let _ = stream.write_all(a.as_bytes()).await;
                            return;
                        }
                        Act::Close => return,
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Reads up to the end of a request head; false at EOF.
async fn read_request_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

async fn probe(connection: &mut HealthConnection, addr: SocketAddr) -> Answer {
    get(connection, addr, "h", "/healthz", DEADLINE)
        .await
        .expect("an answer")
}

#[tokio::test]
async fn a_keep_alive_answer_keeps_the_connection_for_the_next_probe() {
    let (addr, accepted) = serve(|_| Act::Answer(OK_KEEP_ALIVE)).await;
    let mut connection = HealthConnection::default();
    for _ in 0..3 {
        assert_eq!(probe(&mut connection, addr).await.status, 200);
        assert!(connection.is_kept());
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection served all"
    );
}

#[tokio::test]
async fn a_connection_the_node_closed_is_replaced_without_a_failed_probe() {
    // The node closes after every answer (as after an idle timeout or a restart).
    let (addr, accepted) = serve(|_| Act::AnswerAndClose(OK_KEEP_ALIVE)).await;
    let mut connection = HealthConnection::default();
    for _ in 0..3 {
        // Whether the close has arrived before the next probe or not, the probe passes.
        assert_eq!(probe(&mut connection, addr).await.status, 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_close_racing_the_request_is_retried_once_on_a_fresh_connection() {
    // The node answers the first request on a connection and drops the second unanswered,
    // as a node closing an idle connection just as the next probe is sent.
    let (addr, accepted) = serve(|n| {
        if n == 0 {
            Act::Answer(OK_KEEP_ALIVE)
        } else {
            Act::Close
        }
    })
    .await;
    let mut connection = HealthConnection::default();
    for _ in 0..3 {
        assert_eq!(probe(&mut connection, addr).await.status, 200);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "a fresh connection each retry"
    );
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_kept() {
    let (addr, accepted) = serve(|_| {
        Act::Answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    let mut connection = HealthConnection::default();
    assert_eq!(probe(&mut connection, addr).await.status, 200);
    assert!(!connection.is_kept());
    let (old, _) = serve(|_| Act::Answer("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    assert_eq!(probe(&mut connection, old).await.status, 200);
    assert!(!connection.is_kept());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_timed_out_connection_is_never_reused() {
    // First answer at once, then silence on that connection.
    let (addr, accepted) = serve(|n| {
        if n == 0 {
            Act::Answer(OK_KEEP_ALIVE)
        } else {
            Act::Answer("")
        }
    })
    .await;
    let mut connection = HealthConnection::default();
    assert_eq!(probe(&mut connection, addr).await.status, 200);
    let silent = get(&mut connection, addr, "h", "/", Duration::from_millis(200)).await;
    assert!(matches!(silent, Err(GetError::Timeout)), "{silent:?}");
    assert!(!connection.is_kept());
    assert_eq!(probe(&mut connection, addr).await.status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_node_that_moved_is_asked_at_its_new_address() {
    let (first, _) = serve(|_| Act::Answer(OK_KEEP_ALIVE)).await;
    let (second, accepted) = serve(|_| Act::Answer(OK_KEEP_ALIVE)).await;
    let mut connection = HealthConnection::default();
    probe(&mut connection, first).await;
    probe(&mut connection, second).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// Serves one answer: a head declaring `size` bytes, then that many bytes.
async fn serve_body(size: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        read_request_head(&mut stream).await;
        let head = format!("HTTP/1.1 500 X\r\nContent-Length: {size}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&vec![b'x'; size]).await;
    });
    addr
}

#[tokio::test]
async fn body_is_cut_at_the_limit_and_the_connection_dropped() {
    let addr = serve_body(1024 * 1024).await;
    let mut connection = HealthConnection::default();
    let answer = probe(&mut connection, addr).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body.len(), MAX_ANSWER_BYTES);
    assert!(answer.truncated);
    assert!(!connection.is_kept());
}

#[tokio::test]
async fn small_body_is_read_whole() {
    let addr = serve_body(100).await;
    let answer = probe(&mut HealthConnection::default(), addr).await;
    assert_eq!(answer.body.len(), 100);
    assert!(!answer.truncated);
}

#[test]
fn host_header_brackets_ipv6_literals() {
    assert_eq!(host_header("10.0.0.1", 9201), "10.0.0.1:9201");
    assert_eq!(host_header("mi-1.local", 9201), "mi-1.local:9201");
    assert_eq!(host_header("::1", 9201), "[::1]:9201");
}
