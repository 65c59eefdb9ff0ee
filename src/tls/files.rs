//! Loading and checking PEM files: certificate chains, private keys, CA bundles, and the
//! [`Identity`] a listener or a mutual-TLS client presents.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::{FileProblem, FileRole, TlsError};
use crate::config::TlsFiles;

/// Certificate, key and CA files larger than this are refused (a system bundle is ~200 KiB).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// A certificate chain with its private key, checked, ready to present in handshakes.
#[derive(Debug, Clone)]
pub struct Identity {
    certified: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
    subject: String,
}

impl Identity {
    /// The chain (leaf first) and signing key, as rustls presents them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }

    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // A loaded identity always has a leaf: load_identity refuses an empty chain.
        &self.certified.cert[0]
    }

    /// The leaf's `notBefore`.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's subject, as `CN=localhost, O=...`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether the leaf expires within `within` from now (the caller warns at 14 days).
    pub fn expires_within(&self, within: Duration) -> bool {
        SystemTime::now()
            .checked_add(within)
            .is_none_or(|deadline| deadline >= self.not_after)
    }
}

/// Loads a listener's certificate chain and key, refusing anything a handshake would trip
/// on: unreadable or non-PEM files, a key of another certificate, an expired or not yet
/// valid leaf.
pub fn load_identity(files: &TlsFiles) -> Result<Identity, TlsError> {
    load_identity_as(files, FileRole::Cert, FileRole::Key, SystemTime::now())
}

/// [`load_identity`] with the roles the files are reported under and the time to check at.
pub(super) fn load_identity_as(
    files: &TlsFiles,
    cert_role: FileRole,
    key_role: FileRole,
    now: SystemTime,
) -> Result<Identity, TlsError> {
    let chain = load_cert_chain(cert_role, &files.cert)?;
    let key_der = load_private_key(key_role, &files.key)?;
    let cert_error = |problem| TlsError::file(cert_role, &files.cert, problem);
    let (not_before, not_after, subject) = {
        let leaf = parse(&chain[0], 1).map_err(cert_error)?;
        let validity = leaf.validity();
        let times = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        (times.0, times.1, leaf.subject().to_string())
    };
    for (i, cert) in chain.iter().enumerate().skip(1) {
        parse(cert, i + 1).map_err(cert_error)?;
    }
    let key = super::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| {
            TlsError::file(
                key_role,
                &files.key,
                FileProblem::UnusableKey(e.to_string()),
            )
        })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            let problem = FileProblem::KeyMismatch(files.cert.clone());
            return Err(TlsError::file(key_role, &files.key, problem));
        }
        Err(e) => {
            let reason = e.to_string();
            return Err(cert_error(FileProblem::BadCertificate { index: 1, reason }));
        }
    }
    let seconds = unix_seconds(now);
    if seconds > not_after {
        return Err(cert_error(FileProblem::Expired(rfc3339(not_after))));
    }
    if seconds < not_before {
        return Err(cert_error(FileProblem::NotYetValid(rfc3339(not_before))));
    }
    Ok(Identity {
        certified: Arc::new(certified),
        not_before: system_time(not_before),
        not_after: system_time(not_after),
        subject,
    })
}

/// Every certificate of a PEM file, in file order (leaf first); at least one.
pub fn load_cert_chain(
    role: FileRole,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(role, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(role, path, FileProblem::NotPem(e.to_string())))?;
    if chain.is_empty() {
        return Err(TlsError::file(role, path, FileProblem::NoCertificate));
    }
    Ok(chain)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn load_private_key(role: FileRole, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(role, path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            let encrypted = pem
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|w| w == b"ENCRYPTED PRIVATE KEY")
                || pem
                    .windows(b"Proc-Type: 4,ENCRYPTED".len())
                    .any(|w| w == b"Proc-Type: 4,ENCRYPTED");
            let problem = if encrypted {
                FileProblem::EncryptedKey
            } else {
                FileProblem::NoKey
            };
            Err(TlsError::file(role, path, problem))
        }
        Err(e) => Err(TlsError::file(
            role,
            path,
            FileProblem::NotPem(e.to_string()),
        )),
    }
}

/// A CA bundle as trust anchors; an error unless at least one certificate is usable.
/// Certificates that cannot be trust anchors are skipped with a warning.
pub fn load_ca_bundle(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = load_cert_chain(FileRole::Ca, path)?;
    let total = certs.len();
    let mut roots = RootCertStore::empty();
    let (added, skipped) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::file(
            FileRole::Ca,
            path,
            FileProblem::NoUsableCa(total),
        ));
    }
    if skipped > 0 {
        log::warn!(
            "upstream_tls.ca {}: skipped {skipped} of {total} certificates that are not usable as a CA",
            path.display()
        );
    }
    Ok(roots)
}

/// The file's bytes, refusing unreadable and oversized files.
fn read(role: FileRole, path: &Path) -> Result<Vec<u8>, TlsError> {
    let unreadable = |e| TlsError::file(role, path, FileProblem::Unreadable(e));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let too_large = std::io::Error::other(format!("larger than {} MiB", MAX_FILE_BYTES >> 20));
        return Err(unreadable(too_large));
    }
    Ok(bytes)
}

/// Parses certificate number `index` (1-based) of a file.
fn parse<'a>(
    der: &'a CertificateDer<'_>,
    index: usize,
) -> Result<X509Certificate<'a>, FileProblem> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(FileProblem::BadCertificate {
            index,
            reason: e.to_string(),
        }),
    }
}

/// Seconds since the Unix epoch, negative before it.
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The inverse of [`unix_seconds`], saturating at what `SystemTime` holds.
fn system_time(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    let time = if seconds >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    time.unwrap_or(UNIX_EPOCH)
}

/// `2026-01-02T00:00:00Z` for a Unix time (any year a certificate can hold; never panics).
pub(super) fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Days to a civil date (H. Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
