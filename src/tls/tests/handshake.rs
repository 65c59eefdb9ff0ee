//! Real handshakes on 127.0.0.1 that succeed: ALPN, `verify: false`, a certificate swap,
//! mutual TLS; and server names.

use std::sync::Arc;

use rustls::HandshakeKind;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::loopback::{connect, echo, fixture, peer_leaf, serve, upstream};
use super::{Ca, write};
use crate::config::UpstreamTlsConfig;
use crate::tls::{
    FileRole, PROTOCOL_VERSIONS, TlsError, UpstreamTls, describe_handshake_error, is_tls_failure,
    load_ca_bundle, load_cert_chain, load_identity, load_private_key, provider,
};

#[tokio::test]
async fn the_right_ca_and_name_connect_with_alpn() {
    let f = fixture();
    let (addr, _) = serve(f.listener.acceptor()).await;
    let tls = upstream(Some(f.ca_file.clone()), Some("localhost"), true);
    let mut stream = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut stream, b"ping").await;
    let conn = stream.get_ref().1;
    assert_eq!(
        conn.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "nodes get HTTP/1.1"
    );
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(peer_leaf(&stream), f.leaf);

    // A client offering h2 gets h2; a TLS 1.2-only client is served too.
    let roots = Arc::new(load_ca_bundle(&f.ca_file).unwrap());
    for versions in [PROTOCOL_VERSIONS, &[&rustls::version::TLS12]] {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = tls.server_name("localhost").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        echo(&mut stream, b"h2?").await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    }
}

#[tokio::test]
async fn verify_false_connects_despite_a_wrong_ca() {
    let f = fixture();
    let (addr, _) = serve(f.listener.acceptor()).await;
    let other = write(f.dir.path(), "other-ca.pem", &Ca::new("Other CA").pem());
    let tls = upstream(Some(other), Some("not-the-name"), false);
    assert!(!tls.verifies());
    let mut stream = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut stream, b"insecure but working").await;
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_handshakes_and_old_connections_stay() {
    let f = fixture();
    let acceptor = f.listener.acceptor(); // built before the swap, as a running listener's
    let (addr, _) = serve(acceptor).await;
    let tls = upstream(Some(f.ca_file.clone()), Some("localhost"), true);
    let mut old = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut old, b"before").await;
    assert_eq!(peer_leaf(&old), f.leaf);
    // Before a swap, a second connection resumes the session (the echo read its ticket).
    let mut resumed = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut resumed, b"again").await;
    let kind = resumed.get_ref().1.handshake_kind();
    assert_eq!(kind, Some(HandshakeKind::Resumed));

    let next = f.ca.leaf(&["localhost"]);
    let identity = load_identity(&next.write(f.dir.path(), "next", &[])).unwrap();
    let not_after = identity.not_after();
    f.listener.replace(identity);
    assert_eq!(f.listener.not_after(), not_after);

    let mut new = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut new, b"after").await;
    assert_eq!(
        peer_leaf(&new),
        next.der,
        "a new handshake sees the new certificate"
    );
    let kind = new.get_ref().1.handshake_kind();
    assert_eq!(
        kind,
        Some(HandshakeKind::Full),
        "no resumption across a swap"
    );
    echo(&mut old, b"still here").await;
    assert_eq!(peer_leaf(&old), f.leaf);
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let f = fixture();
    let client_ca = Ca::new("Client CA");
    let client_ca_file = write(f.dir.path(), "client-ca.pem", &client_ca.pem());
    let client_leaf = client_ca.leaf(&["healthgate"]);
    let client_files = client_leaf.write(f.dir.path(), "client", &[]);
    let server_files =
        f.ca.leaf(&["localhost"])
            .write(f.dir.path(), "mtls-server", &[]);
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(load_ca_bundle(&client_ca_file).unwrap()),
        provider(),
    )
    .build()
    .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_cert_chain(FileRole::Cert, &server_files.cert).unwrap(),
            load_private_key(FileRole::Key, &server_files.key).unwrap(),
        )
        .unwrap();
    let (addr, mut peers) = serve(TlsAcceptor::from(Arc::new(config))).await;

    let settings = UpstreamTlsConfig {
        ca: Some(f.ca_file.clone()),
        sni: Some("localhost".into()),
        verify: true,
        client: Some(client_files),
    };
    let tls = UpstreamTls::new(&settings).unwrap();
    let mut stream = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut stream, b"mutual").await;
    assert_eq!(peers.recv().await.unwrap(), Some(client_leaf.der));

    // Without a client certificate the node refuses (in TLS 1.3, after the client's Finished).
    let tls = upstream(Some(f.ca_file.clone()), Some("localhost"), true);
    let err = match connect(&tls, addr, "127.0.0.1").await {
        Err(e) => e,
        Ok(mut stream) => {
            let _ = stream.write_all(b"x").await;
            let mut buf = [0u8; 1];
            stream.read(&mut buf).await.unwrap_err()
        }
    };
    assert!(is_tls_failure(&err), "{err:?}");
    let text = describe_handshake_error(&err);
    assert!(text.contains("requires a client certificate"), "{text}");
}

#[test]
fn server_names_from_sni_or_host_and_never_empty() {
    let tls = upstream(None, None, false);
    assert!(matches!(
        tls.server_name("[::1]").unwrap(),
        rustls_pki_types::ServerName::IpAddress(_)
    ));
    assert!(matches!(
        tls.server_name("10.0.0.1").unwrap(),
        rustls_pki_types::ServerName::IpAddress(_)
    ));
    assert!(matches!(
        tls.server_name("mi-1.example").unwrap(),
        rustls_pki_types::ServerName::DnsName(_)
    ));
    assert!(matches!(
        tls.server_name(""),
        Err(TlsError::BadServerName { key: "host", .. })
    ));
    assert!(tls.server_name("not a name!").is_err());
    let with_sni = upstream(None, Some("localhost"), false);
    assert_eq!(
        with_sni.server_name("10.0.0.1").unwrap().to_str(),
        "localhost"
    );
    for empty in ["", "  "] {
        let settings = UpstreamTlsConfig {
            ca: None,
            sni: Some(empty.into()),
            verify: false,
            client: None,
        };
        let err = UpstreamTls::new(&settings).unwrap_err();
        assert!(matches!(err, TlsError::EmptySni), "{err}");
    }
}

#[test]
fn system_roots_load_or_tell_the_operator_to_set_a_ca() {
    match UpstreamTls::new(&UpstreamTlsConfig {
        ca: None,
        sni: None,
        verify: true,
        client: None,
    }) {
        Ok(tls) => assert!(tls.verifies()),
        Err(e) => assert!(e.to_string().contains("set upstream_tls.ca"), "{e}"),
    }
}
