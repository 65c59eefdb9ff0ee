//! The load of `tls-handshakes`: every request on a new TCP connection with a full TLS
//! handshake, `connections` of them at a time from one thread, like `wrk -t1 -cN` does for
//! keep-alive.
//!
//! wrk is not used for this: with `Connection: close` it reconnects on the same OpenSSL
//! object (`SSL_shutdown` then `SSL_clear`), which keeps the last session, so its new
//! connections are mostly resumed handshakes (docs/bench/tls.md has the measurement). Here
//! session resumption is off, so each connection is a full handshake (TLS 1.3, X25519, the
//! server's ECDSA P-256 signature). The client checks nothing it is shown (any certificate,
//! any signature), so that what it spends per handshake is only key exchange and records:
//! it shares the machine with the target and should take as little of it as it can.

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::wrk::Measured;

/// The name sent as SNI; the certificates of the run are issued for it.
const SERVER_NAME: &str = "localhost";

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Load `target` for `duration` with `connections` concurrent clients, each opening a new
/// TLS connection for every request (`Connection: close`).
pub fn run(target: SocketAddr, connections: usize, duration: Duration) -> Result<Measured, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("handshake client runtime: {e}"))?;
    let connector = connector()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let deadline = started + duration;
        let clients: Vec<_> = (0..connections.max(1))
            .map(|_| tokio::spawn(client(connector.clone(), target, deadline)))
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for c in clients {
            let done = c.await.map_err(|e| format!("handshake client task: {e}"))?;
            latencies.extend(done.latencies_us);
            errors += done.errors;
            first_error = first_error.or(done.first_error);
        }
        let seconds = started.elapsed().as_secs_f64();
        if latencies.is_empty() {
            return Err(format!(
                "no request to {target} succeeded: {}",
                first_error.unwrap_or_default()
            ));
        }
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
            f64::from(latencies[i - 1])
        };
        Ok(Measured {
            requests: latencies.len() as u64,
            rps: latencies.len() as f64 / seconds,
            errors,
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
        })
    })
}

/// One request over a new TLS connection to `target`: Ok if it was answered 200.
pub fn probe(target: SocketAddr) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("handshake client runtime: {e}"))?;
    let connector = connector()?;
    runtime.block_on(async move {
        tokio::time::timeout(REQUEST_TIMEOUT, request(&connector, target))
            .await
            .map_err(|_| format!("TLS request to {target} timed out"))?
    })
}

/// What one client task measured.
struct Done {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn client(connector: TlsConnector, target: SocketAddr, deadline: Instant) -> Done {
    let mut done = Done {
        latencies_us: Vec::new(),
        errors: 0,
        first_error: None,
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, request(&connector, target)).await;
        match outcome {
            Ok(Ok(())) => {
                let us = started.elapsed().as_micros();
                done.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(Err(e)) => {
                done.errors += 1;
                done.first_error.get_or_insert(e);
            }
            Err(_) => {
                done.errors += 1;
                done.first_error.get_or_insert("timed out".into());
            }
        }
    }
    done
}

/// Connect, hand-shake, send a GET with `Connection: close`, read the whole answer, and let
/// the server close first (so the TIME_WAIT sockets are on its side, as with wrk).
async fn request(connector: &TlsConnector, target: SocketAddr) -> Result<(), String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {target}: {e}"))?;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {SERVER_NAME}:{}\r\nConnection: close\r\n\r\n",
        target.port()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write to {target}: {e}"))?;
    let mut answer = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // A server that closes without close_notify after a complete answer is fine.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && complete(&answer) => {
                break;
            }
            Err(e) => return Err(format!("read from {target}: {e}")),
        }
    }
    let status = answer.get(9..12).unwrap_or_default();
    if !answer.starts_with(b"HTTP/1.1 ") || status != b"200" {
        let line = answer.split(|b| *b == b'\r').next().unwrap_or_default();
        return Err(format!(
            "{target} answered {:?}",
            String::from_utf8_lossy(line)
        ));
    }
    if !complete(&answer) {
        return Err(format!("{target} closed before the answer's end"));
    }
    Ok(())
}

/// Whether `answer` holds a whole response head and the `Content-Length` bytes after it.
fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(length) => answer.len() >= end + 4 + length,
        // Chunked or until close: the read loop ends at the close.
        None => true,
    }
}

/// TLS 1.3 and 1.2 with ring, no session resumption, ALPN `http/1.1`, nothing verified.
fn connector() -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A load generator's verifier: accepts every certificate and signature (see the module
/// documentation for why).
#[derive(Debug)]
struct TrustAnything;

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
        ]
    }
}
