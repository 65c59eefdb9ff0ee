//! The listener side: a TLS acceptor whose certificate can be replaced while it runs.
//!
//! The `ServerConfig` is built once; its certificate resolver reads the current
//! [`Identity`] from an `ArcSwap`, so [`ListenerTls::replace`] affects the handshakes that
//! start after it and leaves open connections alone. A replacement also empties the session
//! cache: a client cannot resume a session authenticated by the old certificate, so every
//! new connection after a swap sees the new one.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::error::TlsError;
use super::files::Identity;

/// Sessions a listener keeps for resumption (rustls' default size).
const SESSION_CACHE_SIZE: usize = 256;

/// ALPN protocols a TLS listener offers, in order of preference.
pub const LISTENER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A TLS listener's configuration: one `ServerConfig`, a replaceable certificate.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    current: Arc<CurrentIdentity>,
    sessions: Arc<Sessions>,
    config: Arc<ServerConfig>,
}

/// The certificate resolver: whatever identity was stored last.
#[derive(Debug)]
struct CurrentIdentity(ArcSwap<Identity>);

impl ResolvesServerCert for CurrentIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.0.load().certified_key()))
    }
}

/// The session cache for resumption, replaced by an empty one with the certificate.
#[derive(Debug)]
struct Sessions(ArcSwap<ServerSessionMemoryCache>);

impl Sessions {
    fn new() -> Sessions {
        Sessions(ArcSwap::new(ServerSessionMemoryCache::new(
            SESSION_CACHE_SIZE,
        )))
    }

    fn clear(&self) {
        self.0
            .store(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE));
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.load().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.load().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.load().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

impl ListenerTls {
    /// A listener presenting `identity`: TLS 1.2 and 1.3 (ring), ALPN `h2` then `http/1.1`.
    pub fn new(identity: Identity) -> Result<ListenerTls, TlsError> {
        let current = Arc::new(CurrentIdentity(ArcSwap::from_pointee(identity)));
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(super::PROTOCOL_VERSIONS)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = LISTENER_ALPN.iter().map(|p| p.to_vec()).collect();
        let sessions = Arc::new(Sessions::new());
        config.session_storage = Arc::clone(&sessions) as Arc<dyn StoresServerSessions>;
        Ok(ListenerTls {
            current,
            sessions,
            config: Arc::new(config),
        })
    }

    /// An acceptor for streams the listener accepted (cheap: shares the one config).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// The shared server configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Presents `identity` from the next handshake on, and forgets the sessions made with
    /// the old one (no resumption across a swap); open connections are untouched.
    pub fn replace(&self, identity: Identity) {
        self.current.0.store(Arc::new(identity));
        self.sessions.clear();
    }

    /// The identity new handshakes present.
    pub fn identity(&self) -> Arc<Identity> {
        self.current.0.load_full()
    }

    /// The current certificate's `notAfter` (`healthgate_tls_certificate_expiry_seconds`).
    pub fn not_after(&self) -> SystemTime {
        self.current.0.load().not_after()
    }
}
