//! Real handshakes on 127.0.0.1 that fail, and the words they fail with.

use std::io;
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::loopback::{connect, fixture, serve, upstream};
use super::{Ca, write};
use crate::tls::files::load_identity_as;
use crate::tls::{FileRole, ListenerTls, describe_handshake_error, is_tls_failure};

#[tokio::test]
async fn a_wrong_ca_is_an_unknown_issuer() {
    let f = fixture();
    let (addr, _) = serve(f.listener.acceptor()).await;
    let other = write(f.dir.path(), "other-ca.pem", &Ca::new("Other CA").pem());
    let tls = upstream(Some(other), Some("localhost"), true);
    let err = connect(&tls, addr, "127.0.0.1").await.unwrap_err();
    assert!(is_tls_failure(&err), "{err:?}");
    assert_eq!(
        describe_handshake_error(&err),
        "TLS: certificate verify failed: unknown issuer"
    );
}

#[tokio::test]
async fn a_wrong_name_is_not_valid_for_name() {
    let f = fixture();
    let (addr, _) = serve(f.listener.acceptor()).await;
    let tls = upstream(Some(f.ca_file.clone()), Some("mi.example"), true);
    let err = connect(&tls, addr, "127.0.0.1").await.unwrap_err();
    assert!(is_tls_failure(&err));
    assert_eq!(
        describe_handshake_error(&err),
        "TLS: certificate verify failed: certificate not valid for name \"mi.example\" (its names: localhost)"
    );
    // Without `sni`, the node's host is the name; an IP address is an IP name.
    let tls = upstream(Some(f.ca_file.clone()), None, true);
    let err = connect(&tls, addr, "127.0.0.1").await.unwrap_err();
    let text = describe_handshake_error(&err);
    assert!(
        text.starts_with(
            "TLS: certificate verify failed: certificate not valid for name \"127.0.0.1\""
        ),
        "{text}"
    );
}

#[tokio::test]
async fn an_expired_node_certificate_says_so() {
    let f = fixture();
    let (start, end) = (1_577_836_800, 1_609_545_600); // 2020-01-01, 2021-01-02
    let leaf = f.ca.leaf_valid(
        &["localhost"],
        UNIX_EPOCH + Duration::from_secs(start),
        UNIX_EPOCH + Duration::from_secs(end),
    );
    let files = leaf.write(f.dir.path(), "expired", &[]);
    let then = UNIX_EPOCH + Duration::from_secs(start + 86_400);
    let identity = load_identity_as(&files, FileRole::Cert, FileRole::Key, then).unwrap();
    let (addr, _) = serve(ListenerTls::new(identity).unwrap().acceptor()).await;
    let tls = upstream(Some(f.ca_file.clone()), Some("localhost"), true);
    let err = connect(&tls, addr, "127.0.0.1").await.unwrap_err();
    assert_eq!(
        describe_handshake_error(&err),
        "TLS: certificate verify failed: certificate expired on 2021-01-02T00:00:00Z"
    );
}

#[tokio::test]
async fn a_plain_http_port_and_a_closed_connection_are_tls_failures_a_refusal_is_not() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // First connection: an HTTP answer; second: closed after the ClientHello.
        // It reads until the client gives up: unread ClientHello bytes would make it a reset.
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = first.read(&mut buf).await;
        let _ = first
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        while let Ok(1..) = first.read(&mut buf).await {}
        let (mut second, _) = listener.accept().await.unwrap();
        let _ = second.read(&mut buf).await;
        drop(second);
    });
    let tls = upstream(None, Some("localhost"), false);
    let err = connect(&tls, addr, "127.0.0.1").await.unwrap_err();
    assert!(is_tls_failure(&err));
    assert!(
        describe_handshake_error(&err).contains("does not speak TLS"),
        "{err}"
    );
    let err = connect(&tls, addr, "127.0.0.1").await.unwrap_err();
    assert!(is_tls_failure(&err), "{err:?}");
    assert!(describe_handshake_error(&err).starts_with("TLS: handshake failed: the peer closed"));

    let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
    assert!(!is_tls_failure(&refused));
    assert_eq!(describe_handshake_error(&refused), refused.to_string());
}
