//! Why a TLS set-up was refused: every error names the configuration key, the file and the
//! problem, in one line an operator can act on.

use std::fmt;
use std::path::PathBuf;

/// Which file of a TLS set-up an error is about; shown as its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileRole {
    /// A listener's certificate chain (`tls.cert`).
    Cert,
    /// A listener's private key (`tls.key`).
    Key,
    /// The CA bundle node certificates must chain to (`upstream_tls.ca`).
    Ca,
    /// The client certificate chain for mutual TLS towards nodes (`upstream_tls.cert`).
    ClientCert,
    /// The client certificate's private key (`upstream_tls.key`).
    ClientKey,
}

impl FileRole {
    /// The configuration key this file is given under.
    pub fn key(self) -> &'static str {
        match self {
            FileRole::Cert => "tls.cert",
            FileRole::Key => "tls.key",
            FileRole::Ca => "upstream_tls.ca",
            FileRole::ClientCert => "upstream_tls.cert",
            FileRole::ClientKey => "upstream_tls.key",
        }
    }
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// What is wrong with one certificate, key or CA file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Unreadable(#[source] std::io::Error),
    /// The file is not valid PEM.
    #[error("not a valid PEM file: {0}")]
    NotPem(String),
    /// The file holds no `CERTIFICATE` section.
    #[error("no PEM certificate in the file")]
    NoCertificate,
    /// A certificate in the file is not valid X.509.
    #[error("certificate {index} in the file is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// 1-based position of the certificate in the file.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// A CA bundle holds certificates but none usable as a trust anchor.
    #[error("none of the {0} certificate(s) in the file is usable as a CA")]
    NoUsableCa(usize),
    /// The file holds no private key section.
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file")]
    NoKey,
    /// The private key is encrypted with a passphrase.
    #[error(
        "the private key is encrypted; give it unencrypted (openssl pkey -in KEY -out KEY.plain)"
    )]
    EncryptedKey,
    /// The private key is of a kind the TLS library cannot sign with.
    #[error("the private key is not usable: {0}")]
    UnusableKey(String),
    /// The private key belongs to another certificate.
    #[error("the key does not match the certificate {}", .0.display())]
    KeyMismatch(PathBuf),
    /// The leaf certificate's `notAfter` has passed.
    #[error("expired on {0}")]
    Expired(String),
    /// The leaf certificate's `notBefore` is still ahead.
    #[error("not valid before {0}")]
    NotYetValid(String),
}

/// A TLS set-up that cannot be built: a bad file, a bad name, no trust anchors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file was refused.
    #[error("{role} {}: {problem}", path.display())]
    File {
        /// Which file it is.
        role: FileRole,
        /// The file as configured.
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// `upstream_tls.sni` is set but empty.
    #[error("upstream_tls.sni: must not be empty (leave it out to send the node's host)")]
    EmptySni,
    /// A server name that is neither a DNS name nor an IP address.
    #[error("{key}: {name:?} is not a valid DNS name or IP address")]
    BadServerName {
        /// `upstream_tls.sni`, or `host` when the node's host is used.
        key: &'static str,
        /// The name as given.
        name: String,
    },
    /// No CA file is configured and the system trust store gave no certificate.
    #[error(
        "upstream_tls: no CA certificates in the system trust store ({0}); set upstream_tls.ca to a PEM bundle"
    )]
    NoSystemRoots(String),
    /// The TLS library refused the configuration (not expected with the ring provider).
    #[error("TLS set-up: {0}")]
    Setup(#[from] rustls::Error),
}

impl TlsError {
    /// An error about the file `path` in role `role`.
    pub(super) fn file(role: FileRole, path: impl Into<PathBuf>, problem: FileProblem) -> Self {
        TlsError::File {
            role,
            path: path.into(),
            problem,
        }
    }

    /// The configuration key the error is about (`tls.cert`, `upstream_tls.sni`, ...), so a
    /// caller can prefix where it sits (`listen[1].`, `nodes[2].`).
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::File { role, .. } => role.key(),
            TlsError::EmptySni => "upstream_tls.sni",
            TlsError::BadServerName { key, .. } => key,
            TlsError::NoSystemRoots(_) | TlsError::Setup(_) => "upstream_tls",
        }
    }
}
