//! The node list's rules: ports given or derived from MI's offset, weights, and the
//! uniqueness of names and traffic addresses.

use super::{Rule, RuleError, fail, int_in_range, position};
use crate::config::defaults;
use crate::config::raw::{RawNode, RawUpstreamTls};
use crate::config::{NodeConfig, Scheme, UpstreamTlsConfig};
use serde_saphyr::Spanned;
use std::collections::HashMap;

/// MI's base ports: traffic (HTTP pass-through) and the internal API that serves the probes.
const MI_TRAFFIC_BASE: i64 = 8280;
/// MI's HTTPS pass-through port, for `scheme: https`.
const MI_HTTPS_BASE: i64 = 8243;
const MI_HEALTH_BASE: i64 = 9191;
/// Upper bound that keeps a typo from becoming a resource problem.
const MAX_WEIGHT: i64 = 1000;

/// A port given explicitly (`{prefix}.{field}`), or derived as MI does: base + offset.
fn port(
    explicit: Option<&Spanned<i64>>,
    offset: Option<&Spanned<i64>>,
    base: i64,
    prefix: &str,
    field: &str,
) -> Rule<u16> {
    if let Some(p) = explicit {
        return match u16::try_from(p.value) {
            Ok(port) if port >= 1 => Ok(port),
            _ => fail(
                p,
                format!("{prefix}.{field}"),
                format!("port {} is outside 1–65535", p.value),
            ),
        };
    }
    let offset_value = offset.map_or(defaults::OFFSET, |o| o.value);
    let derived = base.saturating_add(offset_value);
    match u16::try_from(derived) {
        Ok(port) if port >= 1 => Ok(port),
        _ => {
            let message = format!(
                "offset {offset_value} puts {field} at {base}{offset_value:+} = {derived}, outside 1–65535"
            );
            match offset {
                Some(o) => fail(o, format!("{prefix}.offset"), message),
                None => Err(RuleError {
                    position: None,
                    path: format!("{prefix}.{field}"),
                    message,
                }),
            }
        }
    }
}

/// What a node entry and a discovery entry share: ports (given, or MI's base + offset),
/// scheme, TLS and weight.
pub(super) struct Serving<'a> {
    pub offset: Option<&'a Spanned<i64>>,
    pub traffic_port: Option<&'a Spanned<i64>>,
    pub health_port: Option<&'a Spanned<i64>>,
    pub weight: Option<&'a Spanned<i64>>,
    pub scheme: Option<Scheme>,
    pub tls: Option<&'a Spanned<RawUpstreamTls>>,
}

/// The validated [`Serving`] parts.
pub(super) struct Served {
    pub traffic_port: u16,
    pub health_port: u16,
    pub weight: u32,
    pub scheme: Scheme,
    pub tls: Option<UpstreamTlsConfig>,
}

impl Serving<'_> {
    /// Validate under `prefix` (`nodes[2]`, `discovery[0]`), with `upstream` as the TLS
    /// defaults.
    pub fn validate(&self, prefix: &str, upstream: &UpstreamTlsConfig) -> Rule<Served> {
        let scheme = self.scheme.unwrap_or(Scheme::Http);
        let base = match scheme {
            Scheme::Http => MI_TRAFFIC_BASE,
            Scheme::Https => MI_HTTPS_BASE,
        };
        let traffic_port = port(self.traffic_port, self.offset, base, prefix, "traffic_port")?;
        let health_port = port(
            self.health_port,
            self.offset,
            MI_HEALTH_BASE,
            prefix,
            "health_port",
        )?;
        let weight = match self.weight {
            Some(w) => int_in_range(w, &format!("{prefix}.weight"), 1, MAX_WEIGHT)? as u32,
            None => 1,
        };
        let tls = match (scheme, self.tls) {
            (Scheme::Https, tls) => Some(super::tls::upstream(
                tls,
                upstream,
                &format!("{prefix}.tls"),
            )?),
            (Scheme::Http, Some(tls)) => {
                return fail(
                    tls,
                    format!("{prefix}.tls"),
                    "TLS settings need `scheme: https`",
                );
            }
            (Scheme::Http, None) => None,
        };
        Ok(Served {
            traffic_port,
            health_port,
            weight,
            scheme,
            tls,
        })
    }
}

fn node(raw: &Spanned<RawNode>, index: usize, upstream: &UpstreamTlsConfig) -> Rule<NodeConfig> {
    let n = &raw.value;
    let prefix = format!("nodes[{index}]");
    let host = n.host.value.trim().to_string();
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return fail(
            &n.host,
            format!("{prefix}.host"),
            format!("{:?} is not a host name or IP address", n.host.value),
        );
    }
    let served = Serving {
        offset: n.offset.as_ref(),
        traffic_port: n.traffic_port.as_ref(),
        health_port: n.health_port.as_ref(),
        weight: n.weight.as_ref(),
        scheme: n.scheme,
        tls: n.tls.as_ref(),
    }
    .validate(&prefix, upstream)?;
    let name = match &n.name {
        Some(name) if name.value.trim().is_empty() => {
            return fail(
                name,
                format!("{prefix}.name"),
                "a node name cannot be empty",
            );
        }
        Some(name) if name.value.contains(char::is_control) => {
            return fail(
                name,
                format!("{prefix}.name"),
                "a node name cannot contain control characters (newlines, tabs, …)",
            );
        }
        Some(name) => name.value.trim().to_string(),
        None => format!("{host}:{}", served.traffic_port),
    };
    Ok(NodeConfig {
        name,
        host,
        traffic_port: served.traffic_port,
        scheme: served.scheme,
        tls: served.tls,
        health_port: served.health_port,
        weight: served.weight,
    })
}

/// `nodes`; empty (or absent) only when `discovery` may find some.
pub(super) fn nodes(
    raw: Option<&Spanned<Vec<Spanned<RawNode>>>>,
    upstream: &UpstreamTlsConfig,
    discovery: bool,
) -> Rule<Vec<NodeConfig>> {
    let Some(raw) = raw else {
        if discovery {
            return Ok(Vec::new());
        }
        return Err(RuleError {
            position: Some((1, 1)),
            path: "nodes".into(),
            message: "at least one node is needed: list `nodes`, or names under `discovery`".into(),
        });
    };
    if raw.value.is_empty() && !discovery {
        return fail(raw, "nodes", "at least one node is needed");
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut addresses: HashMap<(String, u16), usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.value.len());
    for (i, spanned) in raw.value.iter().enumerate() {
        let node = node(spanned, i, upstream)?;
        // Addresses first: a defaulted name is host:port, so a clash there is the real cause.
        let key = (node.host.to_ascii_lowercase(), node.traffic_port);
        if let Some(first) = addresses.insert(key, i) {
            return Err(RuleError {
                position: position(spanned),
                path: format!("nodes[{i}]"),
                message: format!(
                    "traffic address {}:{} is already used by nodes[{first}]",
                    node.host, node.traffic_port
                ),
            });
        }
        if let Some(first) = names.insert(node.name.clone(), i) {
            let at = spanned
                .value
                .name
                .as_ref()
                .map_or(position(spanned), position);
            return Err(RuleError {
                position: at,
                path: format!("nodes[{i}].name"),
                message: format!("{:?} is already the name of nodes[{first}]", node.name),
            });
        }
        out.push(node);
    }
    Ok(out)
}
