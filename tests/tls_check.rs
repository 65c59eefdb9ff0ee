//! `healthgate --check` loads every TLS file the configuration names, as a start would: a
//! listener's certificate and key (readable, PEM, matching, within their dates), the
//! upstream CA and client certificate. Each problem is exit 1 with the file and key path in
//! the message; a certificate that expires within 14 days and `verify: false` are warnings.
#![allow(clippy::unwrap_used)]

use mi_sim::tls::{LeafSpec, PkiFiles, TestPki};
use std::path::Path;
use std::process::{Command, Output};

fn check(dir: &Path, yaml: &str) -> Output {
    let path = dir.join("healthgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_healthgate"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap()
}

fn listener(cert: &Path, key: &Path) -> String {
    format!(
        "listen:\n  - 127.0.0.1:8280\n  - address: 127.0.0.1:8443\n    tls:\n      cert: {}\n      key: {}\nnodes: [{{host: 127.0.0.1}}]\n",
        cert.display(),
        key.display()
    )
}

fn files(pki: &TestPki, dir: &Path, name: &str) -> PkiFiles {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    pki.write_files(&dir).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn good_files_pass_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = files(&TestPki::localhost().unwrap(), dir.path(), "good");
    let out = check(dir.path(), &listener(&good.cert, &good.key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok"), "{}", text(&out.stdout));

    // The key of another certificate.
    let other = files(&TestPki::localhost().unwrap(), dir.path(), "other");
    let out = check(dir.path(), &listener(&good.cert, &other.key));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listen[1].tls.key"), "{stderr}");
    assert!(
        stderr.contains(&other.key.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("does not match"), "{stderr}");

    // Not PEM, empty, missing.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.pem");
    for bad in [&garbage, &empty, &missing] {
        let out = check(dir.path(), &listener(bad, &good.key));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", bad.display());
        assert!(stderr.contains("listen[1].tls.cert"), "{stderr}");
        assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A key file that holds a certificate.
    let out = check(dir.path(), &listener(&good.cert, &good.cert));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("listen[1].tls.key"));
}

#[test]
fn an_expired_certificate_fails_and_one_ending_soon_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let expired = files(&TestPki::expired().unwrap(), dir.path(), "expired");
    let out = check(dir.path(), &listener(&expired.cert, &expired.key));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(
        stderr.contains(&expired.cert.display().to_string()),
        "{stderr}"
    );

    let soon = files(&TestPki::expiring_in(5).unwrap(), dir.path(), "soon");
    let out = check(dir.path(), &listener(&soon.cert, &soon.key));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("expires within 14 days"), "{stderr}");

    let later = TestPki::new(LeafSpec::localhost().expiring_in(60)).unwrap();
    let later = files(&later, dir.path(), "later");
    let out = check(dir.path(), &listener(&later.cert, &later.key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn upstream_ca_and_client_files_are_checked_and_verify_false_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let pki = files(&TestPki::localhost().unwrap(), dir.path(), "pki");
    let nodes = "nodes:\n  - {host: 127.0.0.1, scheme: https}\n";
    let ok = format!(
        "upstream_tls: {{ca: {}, sni: localhost}}\n{nodes}",
        pki.ca.display()
    );
    let out = check(dir.path(), &ok);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let missing = dir.path().join("no-such-ca.pem");
    let out = check(
        dir.path(),
        &format!("upstream_tls: {{ca: {}}}\n{nodes}", missing.display()),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nodes[0]"), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");

    // A client certificate with the key of another one.
    let other = files(&TestPki::localhost().unwrap(), dir.path(), "other");
    let mismatched = format!(
        "upstream_tls: {{ca: {}, cert: {}, key: {}}}\n{nodes}",
        pki.ca.display(),
        pki.cert.display(),
        other.key.display()
    );
    let out = check(dir.path(), &mismatched);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let unverified = format!("upstream_tls: {{verify: false}}\n{nodes}");
    let out = check(dir.path(), &unverified);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("verify is false"),
        "{stderr}"
    );
}
