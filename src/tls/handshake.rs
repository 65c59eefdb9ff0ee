//! Telling a failed TLS handshake from a plain connection failure, and saying why it failed
//! in words for `/status` and the log (`TLS: certificate verify failed: unknown issuer`).

use std::io;

use rustls::{AlertDescription, CertificateError, InvalidMessage};
use rustls_pki_types::ServerName;

use super::files::rfc3339;

/// The peer closed the connection before the handshake completed.
#[derive(Debug, thiserror::Error)]
#[error("the peer closed the connection during the TLS handshake")]
pub(super) struct ClosedDuringHandshake;

/// Marks tokio-rustls's "tls handshake eof" as a TLS failure (see [`is_tls_failure`]).
pub(super) fn mark_handshake_eof(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::UnexpectedEof && rustls_error(&err).is_none() {
        io::Error::new(io::ErrorKind::UnexpectedEof, ClosedDuringHandshake)
    } else {
        err
    }
}

/// Whether a connect/handshake error is a TLS failure (a rustls error, as tokio-rustls
/// returns them, or the peer closing mid-handshake) rather than a plain connect or I/O error.
pub fn is_tls_failure(err: &io::Error) -> bool {
    rustls_error(err).is_some() || closed_during_handshake(err)
}

/// Operator text for a handshake error: `TLS: certificate verify failed: unknown issuer`,
/// `TLS: handshake failed: ...`; an error that is not a TLS failure keeps its own text.
pub fn describe_handshake_error(err: &io::Error) -> String {
    if let Some(e) = rustls_error(err) {
        return describe_rustls_error(e);
    }
    if closed_during_handshake(err) {
        return "TLS: handshake failed: the peer closed the connection during the handshake"
            .to_owned();
    }
    err.to_string()
}

/// Operator text for a rustls error, starting with `TLS: `.
pub fn describe_rustls_error(err: &rustls::Error) -> String {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(e) => {
            format!(
                "TLS: certificate verify failed: {}",
                describe_certificate_error(e)
            )
        }
        E::AlertReceived(alert) => format!("TLS: handshake failed: {}", describe_alert(*alert)),
        E::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "TLS: handshake failed: the peer does not speak TLS (plain HTTP on this port?)"
                .to_owned()
        }
        E::NoCertificatesPresented => {
            "TLS: handshake failed: the peer presented no certificate".to_owned()
        }
        E::PeerIncompatible(why) => {
            format!("TLS: handshake failed: no TLS version or cipher suite in common ({why:?})")
        }
        E::NoApplicationProtocol => "TLS: handshake failed: no ALPN protocol in common".to_owned(),
        other => format!("TLS: handshake failed: {other}"),
    }
}

/// Why a certificate was refused, without the `TLS: ` prefix.
fn describe_certificate_error(err: &CertificateError) -> String {
    use CertificateError as C;
    match err {
        C::UnknownIssuer => "unknown issuer".to_owned(),
        C::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
            let names = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            };
            format!(
                "certificate not valid for name {:?} (its names: {names})",
                name_text(expected)
            )
        }
        C::NotValidForName => "certificate not valid for the name sent".to_owned(),
        C::ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", rfc3339(seconds(*not_after)))
        }
        C::Expired => "certificate expired".to_owned(),
        C::NotValidYetContext { not_before, .. } => {
            format!(
                "certificate not valid before {}",
                rfc3339(seconds(*not_before))
            )
        }
        C::NotValidYet => "certificate not valid yet".to_owned(),
        C::BadSignature => "bad certificate signature".to_owned(),
        C::BadEncoding => "malformed certificate".to_owned(),
        C::Revoked => "certificate revoked".to_owned(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate not valid for this purpose (extended key usage)".to_owned()
        }
        other => other.to_string(),
    }
}

/// What an alert from the peer most likely means.
fn describe_alert(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let meaning = match alert {
        A::UnknownCA => "the peer does not trust our certificate's issuer",
        A::BadCertificate | A::CertificateUnknown | A::UnsupportedCertificate => {
            "the peer rejected our certificate"
        }
        A::CertificateExpired => "the peer says our certificate has expired",
        A::CertificateRequired => "the peer requires a client certificate (upstream_tls.cert/key)",
        A::HandshakeFailure => "the peer refused the handshake (no common parameters?)",
        A::ProtocolVersion => "no TLS version in common (TLS 1.2 is the minimum)",
        A::UnrecognisedName => "the peer does not know the server name sent (SNI)",
        A::NoApplicationProtocol => "no ALPN protocol in common",
        _ => "the peer sent an alert",
    };
    format!("{meaning} (alert {alert:?})")
}

/// A server name as text: the DNS name or the IP address.
fn name_text(name: &ServerName<'_>) -> String {
    name.to_str().into_owned()
}

/// `localhost` from webpki's `DnsName("localhost")`, `10.0.0.1` from `IpAddress(10.0.0.1)`.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| name.strip_prefix("IpAddress(")?.strip_suffix(')'))
        .unwrap_or(name)
}

/// Unix seconds of a rustls time.
fn seconds(time: rustls_pki_types::UnixTime) -> i64 {
    i64::try_from(time.as_secs()).unwrap_or(i64::MAX)
}

/// The rustls error inside an `io::Error`, if it carries one.
fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether the error is the peer closing mid-handshake, as `UpstreamTls::connect` marks it.
fn closed_during_handshake(err: &io::Error) -> bool {
    match err.get_ref() {
        Some(inner) => inner.is::<ClosedDuringHandshake>(),
        None => false,
    }
}
