//! The upstream side: TLS towards https nodes, built from an [`UpstreamTlsConfig`].

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::{FileRole, TlsError};
use super::files::{Identity, load_ca_bundle, load_identity_as};
use crate::config::UpstreamTlsConfig;

/// ALPN protocols offered to nodes: MI's pass-through port speaks HTTP/1.1.
pub const UPSTREAM_ALPN: [&[u8]; 1] = [b"http/1.1"];

/// TLS towards nodes of one `upstream_tls` set-up: a shared `ClientConfig` and the SNI.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
    verify: bool,
}

impl UpstreamTls {
    /// Builds the client side: roots from `ca` (or the system store), the verifier, the client
    /// certificate. Cheap enough for every reload (the system store is read once per process).
    pub fn new(settings: &UpstreamTlsConfig) -> Result<UpstreamTls, TlsError> {
        let sni = match settings.sni.as_deref() {
            None => None,
            Some(name) => Some(parse_server_name("upstream_tls.sni", name)?),
        };
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(super::PROTOCOL_VERSIONS)?;
        let builder = if settings.verify {
            let roots = match &settings.ca {
                Some(path) => Arc::new(load_ca_bundle(path)?),
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        } else {
            let verifier =
                AcceptAnyCertificate(super::provider().signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        };
        let mut config = match &settings.client {
            None => builder.with_no_client_auth(),
            Some(files) => {
                let identity = load_identity_as(
                    files,
                    FileRole::ClientCert,
                    FileRole::ClientKey,
                    SystemTime::now(),
                )?;
                builder.with_client_cert_resolver(Arc::new(ClientIdentity(identity)))
            }
        };
        config.alpn_protocols = UPSTREAM_ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(UpstreamTls {
            config: Arc::new(config),
            sni,
            verify: settings.verify,
        })
    }

    /// The name to send and verify for a node: `sni` if set, else the node's host (an IP
    /// address becomes an IP server name, for which no SNI is sent).
    pub fn server_name(&self, node_host: &str) -> Result<ServerName<'static>, TlsError> {
        match &self.sni {
            Some(sni) => Ok(sni.clone()),
            None => parse_server_name("host", node_host),
        }
    }

    /// Whether node certificates are verified (`false` accepts any certificate).
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// The shared client configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Runs the TLS handshake over `stream`, a connection to the node already open.
    /// A failed handshake is an `io::Error` that [`super::describe_handshake_error`] explains.
    pub async fn connect<S>(&self, stream: S, name: ServerName<'static>) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, stream)
            .await
            .map_err(super::handshake::mark_handshake_eof)
    }
}

/// A DNS name or IP address (`[::1]` allowed) as a server name; empty is an error.
fn parse_server_name(key: &'static str, name: &str) -> Result<ServerName<'static>, TlsError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(match key {
            "upstream_tls.sni" => TlsError::EmptySni,
            _ => TlsError::BadServerName {
                key,
                name: name.to_owned(),
            },
        });
    }
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(trimmed);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::BadServerName {
        key,
        name: name.to_owned(),
    })
}

/// The system trust store, read once per process; an error when it has no certificate.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return Ok(Arc::clone(roots));
    }
    let certs = rustls_native_certs::load_native_certs()
        .map_err(|e| TlsError::NoSystemRoots(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        let hint = match std::env::var_os("SSL_CERT_FILE") {
            Some(file) => format!("SSL_CERT_FILE={}", Path::new(&file).display()),
            None => "none found".to_owned(),
        };
        return Err(TlsError::NoSystemRoots(hint));
    }
    Ok(Arc::clone(ROOTS.get_or_init(|| Arc::new(roots))))
}

/// `verify: false`: any certificate is accepted, but the handshake's signatures are still
/// checked with the provider's algorithms (the peer must hold the certificate's key).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The client certificate presented when a node asks for one (mutual TLS).
#[derive(Debug)]
struct ClientIdentity(Identity);

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let certified = self.0.certified_key();
        certified
            .key
            .choose_scheme(sigschemes)
            .is_some()
            .then(|| Arc::clone(certified))
    }

    fn has_certs(&self) -> bool {
        true
    }
}
