//! `capps`: CApp names and the request path prefixes their integrations serve.

use super::{Rule, fail};
use crate::config::CappRoute;
use crate::config::raw::RawCapp;
use serde_saphyr::Spanned;

/// More CApps than an MI node deploys in practice; the bound keeps route ids small.
const MAX_CAPPS: usize = 1000;
/// Paths per CApp.
const MAX_PATHS: usize = 1000;
/// Paths of all CApps together: the map is rebuilt on every reload.
const MAX_ALL_PATHS: usize = 10_000;
/// Longest CApp name.
const MAX_NAME: usize = 128;
/// Longest path prefix.
const MAX_PATH: usize = 1024;

/// Every `capps` entry: names unique, paths unique across all CApps.
pub(super) fn capps(raw: Option<&Spanned<Vec<Spanned<RawCapp>>>>) -> Rule<Vec<CappRoute>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.value.len() > MAX_CAPPS {
        return fail(
            raw,
            "capps",
            format!("at most {MAX_CAPPS} CApps may be mapped"),
        );
    }
    let mut out: Vec<CappRoute> = Vec::with_capacity(raw.value.len());
    // Every path so far, with the index of the CApp it belongs to.
    let mut taken: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, entry) in raw.value.iter().enumerate() {
        let c = &entry.value;
        let prefix = format!("capps[{index}]");
        let name = capp_name(&c.name, &format!("{prefix}.name"))?;
        if let Some(first) = out.iter().position(|o| o.name == name) {
            return fail(
                &c.name,
                format!("{prefix}.name"),
                format!("CApp {name:?} is already capps[{first}]"),
            );
        }
        if c.paths.value.is_empty() || c.paths.value.len() > MAX_PATHS {
            return fail(
                &c.paths,
                format!("{prefix}.paths"),
                format!("list 1–{MAX_PATHS} path prefixes, e.g. [/{name}]"),
            );
        }
        if taken.len() + c.paths.value.len() > MAX_ALL_PATHS {
            return fail(
                &c.paths,
                format!("{prefix}.paths"),
                format!("at most {MAX_ALL_PATHS} path prefixes in all CApps together"),
            );
        }
        let mut paths: Vec<String> = Vec::with_capacity(c.paths.value.len());
        for (p, raw_path) in c.paths.value.iter().enumerate() {
            let at = format!("{prefix}.paths[{p}]");
            let path = path_prefix(raw_path, &at)?;
            if let Some(i) = taken.get(&path) {
                return fail(
                    raw_path,
                    at,
                    format!("{path} is already mapped to capps[{i}]; a path serves one CApp"),
                );
            }
            taken.insert(path.clone(), index);
            paths.push(path);
        }
        out.push(CappRoute { name, paths });
    }
    Ok(out)
}

/// A CApp name as MI's file names start: `orders`, not `orders_1.0.0.car`.
fn capp_name(raw: &Spanned<String>, at: &str) -> Rule<String> {
    let name = raw.value.trim();
    if name.ends_with(".car") {
        let bare = capp_of(name);
        return fail(
            raw,
            at,
            format!("write the CApp's name without version and .car: {bare:?}"),
        );
    }
    let well_formed = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return fail(
            raw,
            at,
            format!(
                "{:?} is not a CApp name (1–{MAX_NAME} letters, digits, '-', '_', '.')",
                raw.value
            ),
        );
    }
    Ok(name.to_string())
}

/// A path prefix: absolute, whole segments, no query; a trailing `/` is dropped.
fn path_prefix(raw: &Spanned<String>, at: &str) -> Rule<String> {
    let path = raw.value.trim();
    let problem = if !path.starts_with('/') {
        Some("must start with '/'")
    } else if path.len() > MAX_PATH {
        Some("is too long")
    } else if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        Some("may not contain spaces or control characters")
    } else if !path.is_ascii() {
        Some("is not ASCII: write it percent-encoded, as clients send it")
    } else if path.contains(['?', '#']) {
        Some("is a path prefix: no query or fragment")
    } else {
        let trimmed = path.trim_end_matches('/');
        trimmed
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
            .then_some("may not contain empty, '.' or '..' segments")
    };
    if let Some(problem) = problem {
        return fail(raw, at, format!("{:?} {problem}", raw.value));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
}

/// The CApp name in a faulty CApp's file name as MI reports it: `orders_1.0.0.car` →
/// `orders`, `my_api_2.1.0-SNAPSHOT.car` → `my_api`. Without `.car` or a version the name
/// is what is left.
pub fn capp_of(reported: &str) -> &str {
    let stem = reported.trim();
    let stem = stem.strip_suffix(".car").unwrap_or(stem);
    match stem.rsplit_once('_') {
        Some((name, version))
            if !name.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            name
        }
        _ => stem,
    }
}
