//! Fixtures for the TLS tests: CAs and leaves made with rcgen, written to a tempdir.

mod failures;
mod files;
mod handshake;
mod loopback;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::config::TlsFiles;

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate authority that signs leaves.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, valid from yesterday for a year.
    fn leaf(&self, names: &[&str]) -> Leaf {
        let now = SystemTime::now();
        self.leaf_valid(names, now - DAY, now + 365 * DAY)
    }

    /// A leaf for `names`, valid between the two times.
    fn leaf_valid(&self, names: &[&str], not_before: SystemTime, not_after: SystemTime) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A leaf certificate (PEM and DER) and its key (PKCS#8 PEM).
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Leaf {
    /// Writes `<stem>.crt` (leaf, then `chain`) and `<stem>.key` into `dir`.
    fn write(&self, dir: &Path, stem: &str, chain: &[&Ca]) -> TlsFiles {
        let mut cert = self.cert.clone();
        for ca in chain {
            cert.push_str(&ca.pem());
        }
        TlsFiles {
            cert: write(dir, &format!("{stem}.crt"), &cert),
            key: write(dir, &format!("{stem}.key"), &self.key),
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
