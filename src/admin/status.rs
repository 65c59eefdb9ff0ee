//! `/status` (JSON) and `/` (a page a person reads at a glance), from one [`Status`] value.

use crate::cluster::Cluster;
use crate::health::NodeState;
use serde::Serialize;
use std::fmt::Write;
use std::time::SystemTime;

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Routing table generation.
    pub generation: u64,
    /// Number of ready nodes.
    pub ready: usize,
    /// Every configured node, in configuration order.
    pub nodes: Vec<NodeStatus>,
}

/// One node in `/status`.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Traffic address.
    pub address: String,
    /// Health (internal API) address.
    pub health_address: String,
    /// `starting`, `ready`, `not_ready` or `dead`.
    pub state: &'static str,
    /// Faulty CApps from the last readiness answer.
    pub faulty_capps: Vec<String>,
    /// The latest failure reason, if any.
    pub last_error: Option<String>,
    /// When the node entered its state (RFC 3339, UTC).
    pub since: String,
    /// Seconds in the current state.
    pub seconds_in_state: u64,
    /// Weight under `weighted`.
    pub weight: u32,
    /// Requests in flight to the node.
    pub in_flight: usize,
}

impl Status {
    /// The cluster's status now.
    pub fn of(cluster: &Cluster) -> Status {
        let table = cluster.table();
        let now = SystemTime::now();
        Status {
            generation: table.generation(),
            ready: table.len(),
            nodes: cluster
                .reports()
                .into_iter()
                .map(|r| NodeStatus {
                    name: r.name,
                    address: r.address.to_string(),
                    health_address: r.health_address.to_string(),
                    state: r.state.as_str(),
                    faulty_capps: r.faulty_capps,
                    last_error: r.last_error,
                    since: humantime::format_rfc3339_seconds(r.since).to_string(),
                    seconds_in_state: now.duration_since(r.since).map_or(0, |d| d.as_secs()),
                    weight: r.weight,
                    in_flight: r.in_flight,
                })
                .collect(),
        }
    }
}

fn colour(state: &str) -> &'static str {
    match state {
        s if s == NodeState::Ready.as_str() => "#1a7f37",
        s if s == NodeState::NotReady.as_str() => "#b35900",
        s if s == NodeState::Dead.as_str() => "#c62828",
        _ => "#555",
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A self-contained page (no external assets) that refreshes itself every 2 s.
pub fn html(status: &Status) -> String {
    let mut rows = String::new();
    for n in &status.nodes {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td><b style=\"color:{}\">{}</b></td><td>{}s</td><td>{}</td><td>{}</td></tr>",
            escape(&n.name),
            escape(&n.address),
            colour(n.state),
            n.state,
            n.seconds_in_state,
            escape(&n.faulty_capps.join(", ")),
            escape(n.last_error.as_deref().unwrap_or("")),
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>healthgate</title>\
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;width:100%}}\
td,th{{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}}</style></head>\
<body><h1>healthgate</h1><p>{} of {} node(s) ready · routing table generation {}</p>\
<table><tr><th>node</th><th>address</th><th>state</th><th>in state</th><th>faulty CApps</th><th>last error</th></tr>{}</table>\
<p><a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a></p></body></html>",
        status.ready,
        status.nodes.len(),
        status.generation,
        rows
    )
}
