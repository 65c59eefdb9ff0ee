//! The TLS listeners' certificates: loaded at start, read again on SIGHUP. A reload loads
//! every listener's new certificate before it swaps any, so a bad or mismatched file keeps
//! all the old ones; open connections keep the certificate they were made with.

use crate::config::{Config, ListenConfig};
use crate::telemetry::Metrics;
use crate::tls::{Identity, ListenerTls, TlsError, load_identity};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A certificate this close to its end is warned about at start, reload and `--check`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// The TLS listeners of this process, by address.
#[derive(Debug, Default)]
pub struct Certificates {
    listeners: Vec<(SocketAddr, Arc<ListenerTls>)>,
}

/// A listener's new certificate, loaded and checked, not yet in use.
#[derive(Debug)]
pub struct Swap {
    tls: Arc<ListenerTls>,
    identity: Identity,
}

/// A listener's certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("listen[{index}].{source}")]
pub struct CertificateError {
    /// The listener's index in `listen`.
    pub index: usize,
    /// What is wrong with its files.
    #[source]
    pub source: TlsError,
}

impl Certificates {
    /// Load every TLS listener's certificate of `config` (any failure fails the start).
    pub fn load(config: &Config) -> Result<Certificates, CertificateError> {
        let mut listeners = Vec::new();
        for (index, address, identity) in identities(&config.listen)? {
            let tls =
                ListenerTls::new(identity).map_err(|source| CertificateError { index, source })?;
            listeners.push((address, Arc::new(tls)));
        }
        Ok(Certificates { listeners })
    }

    /// Each listener's TLS, indexed like `listen` (`None`: plain HTTP).
    pub fn by_listener(&self, listen: &[ListenConfig]) -> Vec<Option<Arc<ListenerTls>>> {
        listen
            .iter()
            .map(|l| self.find(l.address).cloned())
            .collect()
    }

    fn find(&self, address: SocketAddr) -> Option<&Arc<ListenerTls>> {
        self.listeners
            .iter()
            .find_map(|(a, tls)| (*a == address).then_some(tls))
    }

    /// Read every TLS listener's files of `config` again, without using them yet: any
    /// failure leaves every listener as it was. A listener that was not TLS at start
    /// cannot become so (that takes a restart).
    pub fn prepare(&self, config: &Config) -> Result<Vec<Swap>, CertificateError> {
        Ok(identities(&config.listen)?
            .into_iter()
            .filter_map(|(_, address, identity)| {
                Some(Swap {
                    tls: self.find(address)?.clone(),
                    identity,
                })
            })
            .collect())
    }

    /// Use the prepared certificates for every new handshake; returns how many.
    pub fn swap(&self, swaps: Vec<Swap>) -> usize {
        let count = swaps.len();
        for Swap { tls, identity } in swaps {
            tls.replace(identity);
        }
        count
    }

    /// Export each listener's expiry, and warn about one that ends soon.
    pub fn report(&self, metrics: &Metrics) {
        for (address, tls) in &self.listeners {
            metrics.set_certificate_expiry(&address.to_string(), tls.identity().not_after());
        }
        for warning in self.warnings() {
            log::warn!("{warning}");
        }
    }

    /// A line for each listener certificate that expires within [`EXPIRY_WARNING`].
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (address, tls) in &self.listeners {
            let identity = tls.identity();
            if identity.expires_within(EXPIRY_WARNING) {
                out.push(format!(
                    "the certificate of listener {address} ({}) expires within 14 days, at {}",
                    identity.subject(),
                    humantime::format_rfc3339_seconds(identity.not_after())
                ));
            }
        }
        out
    }
}

/// Every TLS listener's identity, loaded and checked.
fn identities(
    listen: &[ListenConfig],
) -> Result<Vec<(usize, SocketAddr, Identity)>, CertificateError> {
    let mut out = Vec::new();
    for (index, listener) in listen.iter().enumerate() {
        if let Some(files) = &listener.tls {
            let identity =
                load_identity(files).map_err(|source| CertificateError { index, source })?;
            out.push((index, listener.address, identity));
        }
    }
    Ok(out)
}
