//! HTTPS for the traffic port, as MI serves its HTTPS pass-through transport (8243 + offset)
//! with a self-signed keystore whose certificate is CN `localhost`.
//!
//! [`TestPki`] generates a certificate authority and a leaf it signed (SANs DNS `localhost`
//! and IP `127.0.0.1` unless a [`LeafSpec`] says otherwise), so a client can verify the node
//! against the CA instead of switching verification off. From the same CA it issues further
//! leaves (a certificate swap); a second [`TestPki`] is an unrelated CA (a "wrong CA" test).
//! [`TlsIdentity`] is what a node serves: a [`TestPki`] or PEM files (`mi-sim --tls-cert`).
//!
//! Everything uses rustls' `ring` provider, the one the rest of the tree builds, and names it
//! explicitly: a process-wide default provider would be ambiguous if another crate in the
//! same binary enabled a second one.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(test)]
mod tests;

/// The one application protocol the traffic port speaks (ALPN).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a certificate could not be generated, loaded or served.
#[derive(Debug)]
pub enum TlsError {
    /// rcgen could not generate a key or sign a certificate.
    Generate(rcgen::Error),
    /// rustls refused a certificate, a key or the configuration.
    Rustls(rustls::Error),
    /// A PEM text or file could not be read, or held nothing usable.
    Pem(String),
    /// A validity date before 1970 or past what X.509 can say.
    Date(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Generate(e) => write!(f, "certificate generation: {e}"),
            TlsError::Rustls(e) => write!(f, "TLS: {e}"),
            TlsError::Pem(e) => write!(f, "PEM: {e}"),
            TlsError::Date(e) => write!(f, "validity date: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Generate(e) => Some(e),
            TlsError::Rustls(e) => Some(e),
            TlsError::Pem(_) | TlsError::Date(_) => None,
        }
    }
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> TlsError {
        TlsError::Generate(e)
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> TlsError {
        TlsError::Rustls(e)
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The names and validity of a leaf certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// DNS names in the subject alternative names; the first is also the subject's CN.
    pub dns_names: Vec<String>,
    /// IP addresses in the subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
}

impl LeafSpec {
    /// MI's keystore: CN and DNS `localhost`, IP `127.0.0.1`; valid from a day ago (a client
    /// clock slightly behind still accepts it) for a year.
    pub fn localhost() -> LeafSpec {
        let now = SystemTime::now();
        LeafSpec {
            dns_names: vec!["localhost".into()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            not_before: now - DAY,
            not_after: now + 365 * DAY,
        }
    }

    /// Add a DNS name.
    pub fn dns(mut self, name: impl Into<String>) -> LeafSpec {
        self.dns_names.push(name.into());
        self
    }

    /// Add an IP address (e.g. `127.0.0.2` for a second node on loopback).
    pub fn ip(mut self, ip: IpAddr) -> LeafSpec {
        self.ips.push(ip);
        self
    }

    /// Already expired: valid from 30 days ago until yesterday.
    pub fn expired(mut self) -> LeafSpec {
        let now = SystemTime::now();
        self.not_before = now - 30 * DAY;
        self.not_after = now - DAY;
        self
    }

    /// Valid now, expiring `days` days from now (0: a minute from now).
    pub fn expiring_in(mut self, days: u32) -> LeafSpec {
        self.not_after = SystemTime::now() + (DAY * days).max(Duration::from_secs(60));
        self
    }
}

/// The certificate authority of a [`TestPki`], shared by every leaf it issued.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A generated certificate authority and one leaf certificate it signed, with the leaf's key.
/// Cheap to make (ECDSA P-256 keys); share it in an `Arc` ([`TlsIdentity::from_pki`]).
pub struct TestPki {
    ca: Arc<Ca>,
    spec: LeafSpec,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_der: PrivatePkcs8KeyDer<'static>,
    key_pem: String,
}

impl fmt::Debug for TestPki {
    // The key stays out of logs and assertion messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Where [`TestPki::write_files`] put the PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiFiles {
    /// The CA certificate (`ca.pem`): what a client trusts (`curl --cacert`).
    pub ca: PathBuf,
    /// The leaf certificate (`cert.pem`).
    pub cert: PathBuf,
    /// The leaf's private key, PKCS#8 (`key.pem`, readable by its owner only).
    pub key: PathBuf,
}

impl TestPki {
    /// A new CA and a leaf for `localhost` / `127.0.0.1` ([`LeafSpec::localhost`]).
    pub fn localhost() -> Result<TestPki, TlsError> {
        TestPki::new(LeafSpec::localhost())
    }

    /// A new CA and a leaf for `localhost` that expired yesterday.
    pub fn expired() -> Result<TestPki, TlsError> {
        TestPki::new(LeafSpec::localhost().expired())
    }

    /// A new CA and a leaf for `localhost` that expires `days` days from now.
    pub fn expiring_in(days: u32) -> Result<TestPki, TlsError> {
        TestPki::new(LeafSpec::localhost().expiring_in(days))
    }

    /// A new CA (unrelated to any other) and a leaf as `spec` says.
    pub fn new(spec: LeafSpec) -> Result<TestPki, TlsError> {
        let key = KeyPair::generate()?;
        // A CN of its own per CA: two CAs with one name would make a verifier report a bad
        // signature rather than the unknown issuer a "wrong CA" test expects.
        let id: String = key.public_key_raw()[1..5]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mi-sim test CA {id}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mi-sim");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // Covers every leaf a test may want, expired ones included.
        let now = SystemTime::now();
        params.not_before = x509_time(now - 365 * DAY)?;
        params.not_after = x509_time(now + 10 * 365 * DAY)?;
        let cert = params.self_signed(&key)?;
        let ca = Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        };
        Self::sign(Arc::new(ca), spec)
    }

    /// Another leaf from this PKI's CA (a certificate swap: clients that trust the CA accept
    /// both).
    pub fn issue(&self, spec: LeafSpec) -> Result<TestPki, TlsError> {
        Self::sign(self.ca.clone(), spec)
    }

    fn sign(ca: Arc<Ca>, spec: LeafSpec) -> Result<TestPki, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let cn = spec.dns_names.first().map_or("localhost", String::as_str);
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mi-sim");
        for name in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into()?));
        }
        params
            .subject_alt_names
            .extend(spec.ips.iter().copied().map(SanType::IpAddress));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = x509_time(spec.not_before)?;
        params.not_after = x509_time(spec.not_after)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca.issuer)?;
        Ok(TestPki {
            ca,
            spec,
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            key_pem: key.serialize_pem(),
        })
    }

    /// The names and dates the leaf was issued with.
    pub fn spec(&self) -> &LeafSpec {
        &self.spec
    }

    /// Whether `other`'s leaf was signed by the same CA.
    pub fn same_ca(&self, other: &TestPki) -> bool {
        Arc::ptr_eq(&self.ca, &other.ca)
    }

    /// The CA certificate, PEM: what a client trusts.
    pub fn ca_pem(&self) -> String {
        self.ca.pem.clone()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der.clone()
    }

    /// The leaf certificate alone, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The leaf certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The leaf followed by the CA, PEM (a full chain, for servers that want one).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.ca.pem)
    }

    /// The leaf's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// The leaf's private key, DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from(self.key_der.clone_key())
    }

    /// Write `ca.pem`, `cert.pem` (the leaf) and `key.pem` into `dir` (created if missing,
    /// files replaced); the key is readable by its owner only.
    pub fn write_files(&self, dir: &Path) -> io::Result<PkiFiles> {
        std::fs::create_dir_all(dir)?;
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.ca, &self.ca.pem)?;
        std::fs::write(&files.cert, &self.cert_pem)?;
        write_private(&files.key, self.key_pem.as_bytes())?;
        Ok(files)
    }

    /// A server configuration serving the leaf (TLS 1.2 and 1.3, ALPN `http/1.1`).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        server_config(vec![self.cert_der()], self.key_der())
    }

    /// A client configuration that trusts this PKI's CA only.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        client_config(&[self.ca_der()])
    }
}

/// Write a file only its owner can read (a private key), replacing any old one.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created: an older key file keeps its mode otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)
}

/// rcgen takes `time`'s dates; whole seconds are all X.509 keeps.
fn x509_time(at: SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TlsError::Date(format!("{at:?} is before 1970")))?
        .as_secs();
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| TlsError::Date(format!("{at:?} is out of range")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for a certificate chain (leaf first) and its key: TLS 1.2 and 1.3,
/// ALPN `http/1.1`, no client certificates.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(config)
}

/// A client configuration trusting exactly `roots` (TLS 1.2 and 1.3, ALPN `http/1.1`).
pub fn client_config(roots: &[CertificateDer<'static>]) -> Result<ClientConfig, TlsError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(config)
}

/// The certificates of a PEM text (e.g. a CA file for [`client_config`]).
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// What a node's traffic port serves over TLS: a [`TestPki`]'s leaf, or a certificate and key
/// read from files. Cheap to clone.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<ServerConfig>,
    pki: Option<Arc<TestPki>>,
    what: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Serve `pki`'s leaf (alone: a client trusts the CA).
    pub fn from_pki(pki: Arc<TestPki>) -> Result<TlsIdentity, TlsError> {
        Ok(TlsIdentity {
            config: Arc::new(pki.server_config()?),
            what: format!(
                "generated leaf for {:?} {:?}",
                pki.spec.dns_names, pki.spec.ips
            ),
            pki: Some(pki),
        })
    }

    /// Serve the certificate chain in `cert` (PEM, leaf first) with the key in `key` (PEM:
    /// PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Pem(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(TlsError::Pem(format!(
                "{}: no CERTIFICATE block",
                cert.display()
            )));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::Pem(format!("{}: {e}", key.display())))?;
        Ok(TlsIdentity {
            config: Arc::new(server_config(chain, private)?),
            pki: None,
            what: format!("{} with key {}", cert.display(), key.display()),
        })
    }

    /// The rustls configuration the port accepts connections with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The generated PKI served, if it is one (not files).
    pub fn pki(&self) -> Option<&Arc<TestPki>> {
        self.pki.as_ref()
    }

    /// What is served, for logs: the leaf's names or the files' paths.
    pub fn describe(&self) -> &str {
        &self.what
    }
}
