//! The listeners' rules (plain or TLS) and `upstream_tls`, with a node's own overrides.

use super::{Rule, fail};
use crate::config::raw::{OneOrMany, RawListen, RawTlsFiles, RawUpstreamTls};
use crate::config::{ListenConfig, TlsFiles, UpstreamTlsConfig, defaults};
use serde_saphyr::Spanned;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `listen`: one entry or a list; each an address, or `{address, tls: {cert, key}}`.
pub(super) fn listeners(listen: Option<&Spanned<OneOrMany>>) -> Rule<Vec<ListenConfig>> {
    let Some(listen) = listen else {
        return Ok(defaults::listen());
    };
    let entries: Vec<&RawListen> = match &listen.value {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many.iter().collect(),
    };
    if entries.is_empty() {
        return fail(listen, "listen", "at least one listen address is needed");
    }
    let mut out: Vec<ListenConfig> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let path = format!("listen[{i}]");
        let (text, tls, key) = match entry {
            RawListen::Address(text) => (text, None, path.clone()),
            RawListen::Entry(entry) => (
                &entry.address,
                entry.tls.as_ref(),
                format!("{path}.address"),
            ),
        };
        let Ok(address) = text.trim().parse::<SocketAddr>() else {
            return fail(
                listen,
                key,
                format!("{text:?} is not a socket address; write it as IP:PORT, e.g. 0.0.0.0:8280"),
            );
        };
        if out.iter().any(|l| l.address == address) {
            return fail(listen, path, format!("{address} is listed twice"));
        }
        let tls = match tls {
            Some(files) => Some(listener_files(listen, &path, files)?),
            None => None,
        };
        out.push(ListenConfig { address, tls });
    }
    Ok(out)
}

fn listener_files<S>(at: &Spanned<S>, path: &str, files: &RawTlsFiles) -> Rule<TlsFiles> {
    Ok(TlsFiles {
        cert: file_path(&files.cert, at, format!("{path}.tls.cert"))?,
        key: file_path(&files.key, at, format!("{path}.tls.key"))?,
    })
}

/// A certificate, key or CA file named at `key` (reported at `at`'s position): not empty.
/// Whether it can be read is for the TLS set-up and `--check` to say.
fn file_path<S>(text: &str, at: &Spanned<S>, key: String) -> Rule<PathBuf> {
    let value = PathBuf::from(text.trim());
    match value.as_os_str().is_empty() {
        true => fail(at, key, "a file path is needed"),
        false => Ok(value),
    }
}

/// `upstream_tls` (`prefix` = `upstream_tls`) or a node's `tls` merged over `base`.
pub(super) fn upstream(
    raw: Option<&Spanned<RawUpstreamTls>>,
    base: &UpstreamTlsConfig,
    prefix: &str,
) -> Rule<UpstreamTlsConfig> {
    let Some(raw) = raw else {
        return Ok(base.clone());
    };
    let tls = &raw.value;
    let path =
        |text: &Spanned<String>, key: &str| file_path(&text.value, text, format!("{prefix}.{key}"));
    let ca = match &tls.ca {
        Some(ca) => Some(path(ca, "ca")?),
        None => base.ca.clone(),
    };
    let sni = match &tls.sni {
        Some(sni) => Some(server_name(sni, &format!("{prefix}.sni"))?),
        None => base.sni.clone(),
    };
    let client = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: path(cert, "cert")?,
            key: path(key, "key")?,
        }),
        (Some(cert), None) => {
            return fail(cert, format!("{prefix}.key"), "a client cert needs its key");
        }
        (None, Some(key)) => {
            return fail(key, format!("{prefix}.cert"), "a client key needs its cert");
        }
        (None, None) => base.client.clone(),
    };
    Ok(UpstreamTlsConfig {
        ca,
        sni,
        verify: tls.verify.unwrap_or(base.verify),
        client,
    })
}

/// A name to send as SNI and verify the certificate against. Empty is refused: a TLS
/// library given no name may skip the name check altogether.
fn server_name(text: &Spanned<String>, path: &str) -> Rule<String> {
    let name = text.value.trim();
    let valid = name.parse::<std::net::IpAddr>().is_ok() || super::is_dns_name(name);
    match valid {
        true => Ok(name.to_ascii_lowercase()),
        false => fail(
            text,
            path,
            format!(
                "{:?} is not a DNS name or IP address to verify the node's certificate against",
                text.value
            ),
        ),
    }
}
