//! `/status` (JSON) and `/` (a page a person reads at a glance), from one [`Status`] value.

use crate::cluster::{Cluster, LastProbe};
use crate::health::{NodeState, ProbeKind};
use serde::Serialize;
use serde::ser::SerializeMap;
use std::fmt::Write;
use std::time::SystemTime;

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Routing table generation.
    pub generation: u64,
    /// Number of ready nodes.
    pub ready: usize,
    /// True while no node is ready and traffic goes to alive, not ready nodes.
    pub fallback: bool,
    /// Every configured node, in configuration order.
    pub nodes: Vec<NodeStatus>,
    /// Every mapped CApp (`capps`), in configuration order.
    pub capps: Vec<CappStatus>,
}

/// One mapped CApp in `/status`: where its paths go now.
#[derive(Debug, Serialize)]
pub struct CappStatus {
    /// The CApp's name.
    pub name: String,
    /// The path prefixes it serves.
    pub paths: Vec<String>,
    /// Ready nodes that receive its paths (0: its requests get 503, or go to alive, not
    /// ready nodes under `when_none_ready: any_alive`).
    pub ready_nodes: usize,
    /// The nodes that list it as faulty.
    pub faulty_on: Vec<String>,
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
    /// `starting`, `ready`, `partly_ready`, `not_ready` or `dead`.
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
    /// Requests sent to the node (every outcome).
    pub requests: u64,
    /// Of those, 5xx answers and attempts that got no answer.
    pub errors: u64,
    /// Taken out of the routing table by the operator (`POST /nodes/{name}/drain`).
    pub drained: bool,
    /// Milliseconds outlier detection still keeps the node out (`null`: not ejected).
    pub ejected_for_ms: Option<u64>,
    /// The latest probe of each kind (`null` before the first).
    pub probes: ProbesStatus,
}

/// The latest probe of each kind, as a JSON object keyed by kind (`readiness`, `liveness`,
/// `tcp`) in [`ProbeKind::ALL`] order.
#[derive(Debug)]
pub struct ProbesStatus(pub [Option<ProbeStatus>; ProbeKind::ALL.len()]);

impl ProbesStatus {
    /// The latest probe of `kind`.
    pub fn of(&self, kind: ProbeKind) -> Option<&ProbeStatus> {
        self.0[kind as usize].as_ref()
    }
}

impl Serialize for ProbesStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(ProbeKind::ALL.len()))?;
        for kind in ProbeKind::ALL {
            map.serialize_entry(kind.as_str(), &self.of(kind))?;
        }
        map.end()
    }
}

/// One probe's latest result.
#[derive(Debug, Serialize)]
pub struct ProbeStatus {
    /// `success`, `failure`, `timeout` or `error`.
    pub result: &'static str,
    /// How long it took, in milliseconds.
    pub ms: f64,
    /// Seconds since it ended.
    pub seconds_ago: u64,
}

impl ProbeStatus {
    fn of(probe: Option<LastProbe>, now: SystemTime) -> Option<ProbeStatus> {
        probe.map(|p| ProbeStatus {
            result: p.result.as_str(),
            ms: (p.elapsed.as_secs_f64() * 1e4).round() / 10.0,
            seconds_ago: now.duration_since(p.at).map_or(0, |d| d.as_secs()),
        })
    }
}

impl Status {
    /// The cluster's status now.
    pub fn of(cluster: &Cluster) -> Status {
        let table = cluster.table();
        let now = SystemTime::now();
        let reports = cluster.reports();
        let routes = table.routes();
        let capps = routes
            .capps()
            .iter()
            .enumerate()
            .map(|(i, capp)| {
                let route = i + 1;
                CappStatus {
                    name: capp.name.clone(),
                    paths: capp.paths.clone(),
                    ready_nodes: table.route_ready(route),
                    faulty_on: reports
                        .iter()
                        .filter(|r| {
                            r.faulty_capps
                                .iter()
                                .any(|c| routes.route_of_faulty(c) == Some(route))
                        })
                        .map(|r| r.name.clone())
                        .collect(),
                }
            })
            .collect();
        Status {
            generation: table.generation(),
            ready: table.ready(),
            fallback: table.is_fallback(),
            capps,
            nodes: reports
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
                    requests: r.requests,
                    errors: r.errors,
                    drained: r.drained,
                    ejected_for_ms: r.ejected_for.map(|d| d.as_millis() as u64),
                    probes: ProbesStatus(r.last_probes.map(|p| ProbeStatus::of(p, now))),
                })
                .collect(),
        }
    }
}

/// One line on where each mapped CApp's paths go; a CApp no ready node serves stands out.
fn capps_line(capps: &[CappStatus]) -> String {
    if capps.is_empty() {
        return String::new();
    }
    let items: Vec<String> = capps
        .iter()
        .map(|c| {
            let faulty = match c.faulty_on.is_empty() {
                true => String::new(),
                false => format!(", faulty on {}", escape(&c.faulty_on.join(", "))),
            };
            let class = if c.ready_nodes == 0 { " class=\"down\"" } else { "" };
            format!(
                "<span data-capp=\"{name}\"{class}><b>{name}</b> ({paths}): {n} node(s){faulty}</span>",
                name = escape(&c.name),
                paths = escape(&c.paths.join(" ")),
                n = c.ready_nodes,
            )
        })
        .collect();
    format!(
        "<p class=\"routes\" id=\"capps\">CApps: {}</p>",
        items.join(" · ")
    )
}

fn colour(state: &str) -> &'static str {
    match state {
        s if s == NodeState::Ready.as_str() => "#1a7f37",
        s if s == NodeState::PartlyReady.as_str() => "#5c7f1a",
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

/// `12s`, `4m 5s`, `3h 2m`, `2d 1h`: time in state, short.
fn short_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// One probe cell: result and latency, coloured by result.
fn probe_cell(probe: Option<&ProbeStatus>) -> String {
    match probe {
        None => "<span class=\"muted\">–</span>".into(),
        Some(p) => {
            let class = if p.result == "success" { "ok" } else { "bad" };
            format!("<span class=\"{class}\">{}</span> {:.1} ms", p.result, p.ms)
        }
    }
}

/// The page's style: a table on wide screens, one card per node on a phone.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em;color:#222}\
h1{font-size:1.4em;margin:0 0 .3em}.summary{margin:.2em 0 1em}\
table{border-collapse:collapse;width:100%}th{font-size:.85em;color:#555}\
td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top;\
white-space:nowrap}td.wrap{white-space:normal}\
.state{display:inline-block;padding:.1em .5em;border-radius:.8em;color:#fff;font-weight:600}\
.ok{color:#1a7f37}.bad{color:#c62828;font-weight:600}.muted{color:#888}.small{font-size:.85em;color:#555}\
.capps{color:#b35900;font-weight:600}.routes .down{color:#c62828;font-weight:600}\
.fallback{background:#fff3e0;border-left:.3em solid #b35900;padding:.4em .6em}\
@media (max-width:700px){table,tbody,tr,td{display:block;width:100%}tr:first-child{display:none}\
tr{border:1px solid #ddd;border-radius:.4em;margin:0 0 .8em;padding:.3em}\
td{border:0;padding:.15em .3em}td::before{content:attr(data-label) \": \";color:#555;font-size:.85em}}";

/// A self-contained page (no external assets, no script) that reloads itself every 2 s.
pub fn html(status: &Status) -> String {
    let mut rows = String::new();
    for n in &status.nodes {
        let probes: String = ProbeKind::ALL
            .iter()
            .map(|&k| {
                let kind = k.as_str();
                format!(
                    "<td data-label=\"{kind}\">{}</td>",
                    probe_cell(n.probes.of(k))
                )
            })
            .collect();
        let _ = write!(
            rows,
            "<tr data-node=\"{name}\" data-state=\"{state}\">\
<td data-label=\"node\"><b>{name}</b><br><span class=\"small\">{address}</span></td>\
<td data-label=\"state\"><span class=\"state\" style=\"background:{colour}\">{state}</span> \
<span class=\"small\">for {age}</span>{drained}</td>\
{probes}\
<td data-label=\"faulty CApps\" class=\"capps wrap\">{capps}</td>\
<td data-label=\"requests\">{requests}</td><td data-label=\"errors\">{errors}</td>\
<td data-label=\"weight\">{weight}</td>\
<td data-label=\"last error\" class=\"small wrap\">{error}</td></tr>",
            name = escape(&n.name),
            address = escape(&n.address),
            colour = colour(n.state),
            state = n.state,
            age = short_duration(n.seconds_in_state),
            drained = match (n.drained, n.ejected_for_ms) {
                (true, _) =>
                    " <span class=\"state\" style=\"background:#555\">drained</span>".to_string(),
                (false, Some(ms)) => format!(
                    " <span class=\"state\" style=\"background:#6a1b9a\">ejected {}s</span>",
                    ms.div_ceil(1000)
                ),
                (false, None) => String::new(),
            },
            capps = escape(&n.faulty_capps.join(", ")),
            requests = n.requests,
            errors = n.errors,
            weight = n.weight,
            error = escape(n.last_error.as_deref().unwrap_or("")),
        );
    }
    let probe_headers: String = ProbeKind::ALL
        .iter()
        .map(|k| format!("<th>{}</th>", k.as_str()))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"2\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>healthgate: {ready}/{total} ready</title><style>{STYLE}</style></head>\
<body><h1>healthgate</h1>\
<p class=\"summary\" id=\"summary\"><b>{ready} of {total}</b> node(s) ready · routing table \
generation <b>{generation}</b></p>{fallback}{capps}\
<table><tr><th>node</th><th>state</th>{probe_headers}\
<th>faulty CApps</th><th>requests</th><th>errors</th><th>weight</th><th>last error</th></tr>\
{rows}</table>\
<p class=\"small\"><a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a> · \
reloads every 2 s</p></body></html>",
        ready = status.ready,
        total = status.nodes.len(),
        capps = capps_line(&status.capps),
        generation = status.generation,
        fallback = if status.fallback {
            "<p class=\"fallback\" id=\"fallback\">No node is ready: traffic goes to the alive, \
not ready nodes (<code>when_none_ready: any_alive</code>).</p>"
        } else {
            ""
        },
    )
}
