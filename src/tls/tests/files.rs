//! Loading and checking PEM files: what loads, and the message for what does not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Ca, DAY, write};
use crate::config::TlsFiles;
use crate::tls::files::{load_identity_as, rfc3339};
use crate::tls::{FileRole, TlsError, load_ca_bundle, load_identity};

fn message(result: Result<impl std::fmt::Debug, TlsError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn a_valid_chain_loads_with_its_dates_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let files = ca.leaf(&["localhost"]).write(dir.path(), "leaf", &[&ca]);
    let identity = load_identity(&files).unwrap();
    assert_eq!(identity.certified_key().cert.len(), 2, "leaf and CA");
    assert_eq!(identity.subject(), "CN=localhost");
    let now = SystemTime::now();
    assert!(identity.not_before() < now && now < identity.not_after());
    assert!(!identity.expires_within(Duration::from_secs(14 * 86_400)));
    assert!(identity.expires_within(Duration::from_secs(400 * 86_400)));
}

#[test]
fn a_certificate_ending_soon_is_flagged_for_the_warning() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let now = SystemTime::now();
    let leaf = ca.leaf_valid(&["localhost"], now - DAY, now + 3 * DAY);
    let identity = load_identity(&leaf.write(dir.path(), "soon", &[])).unwrap();
    assert!(identity.expires_within(Duration::from_secs(14 * 86_400)));
}

#[test]
fn the_key_of_another_certificate_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["localhost"]).write(dir.path(), "a", &[]);
    let b = ca.leaf(&["localhost"]).write(dir.path(), "b", &[]);
    let files = TlsFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    let text = message(load_identity(&files));
    assert_eq!(
        text,
        format!(
            "tls.key {}: the key does not match the certificate {}",
            b.key.display(),
            a.cert.display()
        )
    );
}

#[test]
fn an_expired_certificate_is_refused_naming_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let start = UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020-01-01
    let end = UNIX_EPOCH + Duration::from_secs(1_609_545_600); // 2021-01-02
    let files = ca
        .leaf_valid(&["localhost"], start, end)
        .write(dir.path(), "old", &[]);
    let text = message(load_identity(&files));
    assert_eq!(
        text,
        format!(
            "tls.cert {}: expired on 2021-01-02T00:00:00Z",
            files.cert.display()
        )
    );
}

#[test]
fn a_certificate_not_yet_valid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let now = SystemTime::now();
    let leaf = ca.leaf_valid(&["localhost"], now + 30 * DAY, now + 60 * DAY);
    let files = leaf.write(dir.path(), "future", &[]);
    let text = message(load_identity(&files));
    assert!(
        text.starts_with(&format!(
            "tls.cert {}: not valid before 20",
            files.cert.display()
        )),
        "{text}"
    );
    // The same files load when checked at a time inside their validity.
    let later = now + 45 * DAY;
    load_identity_as(&files, FileRole::Cert, FileRole::Key, later).unwrap();
}

#[test]
fn garbage_empty_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let good = ca.leaf(&["localhost"]).write(dir.path(), "good", &[]);
    let garbage = write(
        dir.path(),
        "garbage.pem",
        "hello, not a certificate\n\0\u{1}",
    );
    let empty = write(dir.path(), "empty.pem", "");
    let missing = dir.path().join("missing.pem");
    let broken = write(
        dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n-----END CERTIFICATE-----\n",
    );
    let not_x509 = write(
        dir.path(),
        "notx509.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    );
    let cases = [
        (
            garbage.clone(),
            good.key.clone(),
            "tls.cert",
            "no PEM certificate in the file",
        ),
        (
            empty.clone(),
            good.key.clone(),
            "tls.cert",
            "no PEM certificate in the file",
        ),
        (
            missing.clone(),
            good.key.clone(),
            "tls.cert",
            "cannot read the file: No such file",
        ),
        (
            broken.clone(),
            good.key.clone(),
            "tls.cert",
            "not a valid PEM file",
        ),
        (
            not_x509.clone(),
            good.key.clone(),
            "tls.cert",
            "certificate 1 in the file is not a valid X.509",
        ),
        (
            good.cert.clone(),
            garbage.clone(),
            "tls.key",
            "no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        ),
        (
            good.cert.clone(),
            empty.clone(),
            "tls.key",
            "no PEM private key",
        ),
        (
            good.cert.clone(),
            missing.clone(),
            "tls.key",
            "cannot read the file",
        ),
        (
            good.cert.clone(),
            good.cert.clone(),
            "tls.key",
            "no PEM private key",
        ),
        (
            good.key.clone(),
            good.key.clone(),
            "tls.cert",
            "no PEM certificate in the file",
        ),
    ];
    for (cert, key, role, expected) in cases {
        let files = TlsFiles { cert, key };
        let text = message(load_identity(&files));
        let file = if role == "tls.cert" {
            &files.cert
        } else {
            &files.key
        };
        let prefix = format!("{role} {}: {expected}", file.display());
        assert!(
            text.starts_with(&prefix),
            "{text:?} does not start with {prefix:?}"
        );
    }
}

#[test]
fn an_encrypted_key_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let good = ca.leaf(&["localhost"]).write(dir.path(), "good", &[]);
    let key = write(
        dir.path(),
        "enc.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let text = message(load_identity(&TlsFiles {
        cert: good.cert,
        key,
    }));
    assert!(text.contains("the private key is encrypted"), "{text}");
}

#[test]
fn a_ca_bundle_loads_and_one_without_a_certificate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Ca::new("A"), Ca::new("B"));
    let bundle = write(dir.path(), "bundle.pem", &format!("{}{}", a.pem(), b.pem()));
    assert_eq!(load_ca_bundle(&bundle).unwrap().len(), 2);
    let key_only = write(dir.path(), "key.pem", &a.leaf(&["x"]).key);
    assert_eq!(
        message(load_ca_bundle(&key_only)),
        format!(
            "upstream_tls.ca {}: no PEM certificate in the file",
            key_only.display()
        )
    );
    let missing = dir.path().join("nope.pem");
    let text = message(load_ca_bundle(&missing));
    assert!(text.starts_with(&format!(
        "upstream_tls.ca {}: cannot read",
        missing.display()
    )));
}

#[test]
fn dates_are_written_as_rfc3339_for_any_year() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_609_545_600), "2021-01-02T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    // Extremes format without panicking.
    let _ = (rfc3339(i64::MAX), rfc3339(i64::MIN));
}
