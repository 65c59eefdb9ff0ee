//! TLS on both sides, with rustls (ring provider; TLS 1.2 and 1.3): PEM files checked before
//! use ([`files`]), a listener's acceptor whose certificate is replaced on reload
//! ([`server`]), the client side towards https nodes ([`client`]), and handshake failures
//! in words ([`handshake`]). Nothing here panics on bad input; every refused file is a
//! [`TlsError`] naming its key and path. Why rustls and how reload works: `docs/tls.md`.

pub mod client;
pub mod error;
pub mod files;
pub mod handshake;
pub mod server;

#[cfg(test)]
mod tests;

use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;

pub use client::UpstreamTls;
pub use error::{FileProblem, FileRole, TlsError};
pub use files::{Identity, load_ca_bundle, load_cert_chain, load_identity, load_private_key};
pub use handshake::{describe_handshake_error, describe_rustls_error, is_tls_failure};
pub use server::ListenerTls;

/// The TLS versions both sides speak: 1.3, then 1.2 (the minimum).
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider (ring), shared by every configuration.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    Arc::clone(&PROVIDER)
}
