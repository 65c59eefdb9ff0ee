//! `discovery` (DNS names whose every address is a node) and `resolver`.

use super::nodes::Serving;
use super::{Rule, duration, fail, int_in_range};
use crate::config::raw::RawDiscovery;
use crate::config::{DiscoveryConfig, UpstreamTlsConfig};
use serde_saphyr::Spanned;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Re-resolution period unless configured (Envoy's `STRICT_DNS` refresh is 5 s too).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Nodes one name may add unless configured.
const DEFAULT_MAX_NODES: i64 = 5000;
/// Upper bound of `max_nodes`: beyond what one process probes each second.
const MAX_NODES: i64 = 100_000;

/// Every `discovery` entry.
pub(super) fn discovery(
    raw: Option<&Spanned<Vec<Spanned<RawDiscovery>>>>,
    upstream: &UpstreamTlsConfig,
) -> Rule<Vec<DiscoveryConfig>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out: Vec<DiscoveryConfig> = Vec::with_capacity(raw.value.len());
    for (index, entry) in raw.value.iter().enumerate() {
        let d = &entry.value;
        let prefix = format!("discovery[{index}]");
        let name = d
            .dns
            .value
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if name.parse::<IpAddr>().is_ok() || !super::is_dns_name(&name) {
            return fail(
                &d.dns,
                format!("{prefix}.dns"),
                format!("{:?} is not a DNS name", d.dns.value),
            );
        }
        let served = Serving {
            offset: d.offset.as_ref(),
            traffic_port: d.traffic_port.as_ref(),
            health_port: d.health_port.as_ref(),
            weight: d.weight.as_ref(),
            scheme: d.scheme,
            tls: d.tls.as_ref(),
        }
        .validate(&prefix, upstream)?;
        if let Some(first) = out
            .iter()
            .position(|o| o.dns == name && o.traffic_port == served.traffic_port)
        {
            return fail(
                &d.dns,
                format!("{prefix}.dns"),
                format!(
                    "{name} on port {} is already discovery[{first}]",
                    served.traffic_port
                ),
            );
        }
        let interval_path = format!("{prefix}.interval");
        let interval = duration(d.interval.as_ref(), &interval_path, DEFAULT_INTERVAL, false)?;
        let max_nodes = match &d.max_nodes {
            Some(n) => int_in_range(n, &format!("{prefix}.max_nodes"), 1, MAX_NODES)?,
            None => DEFAULT_MAX_NODES,
        } as usize;
        out.push(DiscoveryConfig {
            dns: name,
            traffic_port: served.traffic_port,
            health_port: served.health_port,
            weight: served.weight,
            scheme: served.scheme,
            tls: served.tls,
            interval,
            max_nodes,
        });
    }
    Ok(out)
}

/// `resolver`: `IP:PORT`, or an IP (port 53).
pub(super) fn resolver(raw: Option<&Spanned<String>>) -> Rule<Option<SocketAddr>> {
    let Some(text) = raw else {
        return Ok(None);
    };
    let value = text.value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    match value.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(SocketAddr::new(ip, 53))),
        Err(_) => fail(
            text,
            "resolver",
            format!(
                "{:?} is not a DNS server address; write it as IP or IP:PORT, e.g. 10.96.0.10:53",
                text.value
            ),
        ),
    }
}
