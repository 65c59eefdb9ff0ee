//! The generated certificates, checked the way a client checks them: rustls' own WebPKI
//! verifier, at chosen times, for chosen names.

use super::*;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{CertificateError, Error};

/// Verify `leaf` for `name` at `at` against `ca`'s CA, as a client would.
fn verify(ca: &TestPki, leaf: &TestPki, name: &str, at: SystemTime) -> Result<(), Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.ca_der()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap();
    verifier
        .verify_server_cert(
            &leaf.cert_der(),
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
        .map(|_| ())
}

fn is_expired(result: Result<(), Error>) -> bool {
    matches!(
        result,
        Err(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ))
    )
}

fn not_valid_for_name(result: Result<(), Error>) -> bool {
    matches!(
        result,
        Err(Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ))
    )
}

#[test]
fn localhost_leaf_carries_mi_names_and_more_on_request() {
    let now = SystemTime::now();
    let pki = TestPki::localhost().unwrap();
    assert_eq!(verify(&pki, &pki, "localhost", now), Ok(()));
    assert_eq!(verify(&pki, &pki, "127.0.0.1", now), Ok(()));
    assert!(not_valid_for_name(verify(&pki, &pki, "127.0.0.2", now)));
    assert!(not_valid_for_name(verify(&pki, &pki, "mi.example", now)));

    let spec = LeafSpec::localhost()
        .ip("127.0.0.2".parse().unwrap())
        .dns("mi.example");
    let more = pki.issue(spec).unwrap();
    for name in ["localhost", "127.0.0.1", "127.0.0.2", "mi.example"] {
        assert_eq!(verify(&pki, &more, name, now), Ok(()), "{name}");
    }
}

#[test]
fn expired_leaf_was_valid_until_yesterday() {
    let now = SystemTime::now();
    let pki = TestPki::expired().unwrap();
    assert!(pki.spec().not_after < now);
    assert!(is_expired(verify(&pki, &pki, "localhost", now)));
    assert_eq!(verify(&pki, &pki, "localhost", now - 2 * DAY), Ok(()));
}

#[test]
fn leaf_expiring_in_days_is_valid_until_then() {
    let now = SystemTime::now();
    let pki = TestPki::expiring_in(5).unwrap();
    assert_eq!(verify(&pki, &pki, "localhost", now), Ok(()));
    assert_eq!(verify(&pki, &pki, "localhost", now + 4 * DAY), Ok(()));
    assert!(is_expired(verify(&pki, &pki, "localhost", now + 6 * DAY)));
    // The default leaf lasts a year.
    let year = TestPki::localhost().unwrap();
    assert_eq!(verify(&year, &year, "localhost", now + 300 * DAY), Ok(()));
}

#[test]
fn issued_leaves_share_the_ca_and_a_new_pki_does_not() {
    let now = SystemTime::now();
    let first = TestPki::localhost().unwrap();
    let second = first.issue(LeafSpec::localhost()).unwrap();
    assert!(first.same_ca(&second));
    assert_ne!(first.cert_der(), second.cert_der());
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(verify(&first, &second, "localhost", now), Ok(()));

    let other = TestPki::localhost().unwrap();
    assert!(!first.same_ca(&other));
    assert_eq!(
        verify(&other, &first, "localhost", now),
        Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
    );
}

#[test]
fn pem_texts_and_files_round_trip() {
    let pki = TestPki::localhost().unwrap();
    assert_eq!(certs_from_pem(&pki.ca_pem()).unwrap(), vec![pki.ca_der()]);
    assert_eq!(
        certs_from_pem(&pki.cert_pem()).unwrap(),
        vec![pki.cert_der()]
    );
    assert_eq!(
        certs_from_pem(&pki.chain_pem()).unwrap(),
        vec![pki.cert_der(), pki.ca_der()]
    );
    assert!(pki.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(matches!(certs_from_pem("junk"), Err(TlsError::Pem(_))));

    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_files(&dir.path().join("tls")).unwrap();
    assert_eq!(std::fs::read_to_string(&files.ca).unwrap(), pki.ca_pem());
    assert_eq!(
        std::fs::read_to_string(&files.cert).unwrap(),
        pki.cert_pem()
    );
    assert_eq!(std::fs::read_to_string(&files.key).unwrap(), pki.key_pem());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let identity = TlsIdentity::from_pem_files(&files.cert, &files.key).unwrap();
    assert!(identity.pki().is_none());
    assert_eq!(
        identity.server_config().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
    let swapped = TlsIdentity::from_pem_files(&files.key, &files.cert);
    assert!(matches!(swapped, Err(TlsError::Pem(_))), "{swapped:?}");
    let missing = TlsIdentity::from_pem_files(&dir.path().join("none"), &files.key);
    assert!(matches!(missing, Err(TlsError::Pem(_))), "{missing:?}");
}

#[test]
fn configs_speak_tls_1_2_and_1_3_with_http_1_1() {
    let pki = Arc::new(TestPki::localhost().unwrap());
    let identity = TlsIdentity::from_pki(pki.clone()).unwrap();
    assert!(Arc::ptr_eq(identity.pki().unwrap(), &pki));
    let server = identity.server_config();
    assert_eq!(server.alpn_protocols, vec![ALPN_HTTP_1_1.to_vec()]);
    let client = pki.client_config().unwrap();
    assert_eq!(client.alpn_protocols, vec![ALPN_HTTP_1_1.to_vec()]);
    for config in [server.crypto_provider(), client.crypto_provider()] {
        let versions: Vec<_> = config
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_3));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_2));
    }
}
