//! The loopback harness: an echo server behind a TLS acceptor on 127.0.0.1, and clients.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::client::TlsStream;

use super::{Ca, write};
use crate::config::UpstreamTlsConfig;
use crate::tls::{ListenerTls, UpstreamTls, load_identity};

/// An echo server; each handshake reports the client's certificate (DER) on the channel.
pub(super) async fn serve(
    acceptor: TlsAcceptor,
) -> (SocketAddr, mpsc::UnboundedReceiver<Option<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates();
                let _ = tx.send(peer.and_then(|c| c.first()).map(|c| c.to_vec()));
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

pub(super) fn upstream(ca: Option<PathBuf>, sni: Option<&str>, verify: bool) -> UpstreamTls {
    UpstreamTls::new(&UpstreamTlsConfig {
        ca,
        sni: sni.map(str::to_owned),
        verify,
        client: None,
    })
    .unwrap()
}

pub(super) async fn connect(
    tls: &UpstreamTls,
    addr: SocketAddr,
    host: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls.connect(tcp, tls.server_name(host).unwrap()).await
}

pub(super) async fn echo(stream: &mut TlsStream<TcpStream>, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, text);
}

pub(super) fn peer_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A CA file, a `ListenerTls` for `localhost` signed by it, and the leaf's DER.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) ca: Ca,
    pub(super) ca_file: PathBuf,
    pub(super) listener: ListenerTls,
    pub(super) leaf: Vec<u8>,
}

pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Node CA");
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let leaf = ca.leaf(&["localhost"]);
    let identity = load_identity(&leaf.write(dir.path(), "server", &[])).unwrap();
    let listener = ListenerTls::new(identity).unwrap();
    Fixture {
        dir,
        ca,
        ca_file,
        listener,
        leaf: leaf.der,
    }
}
