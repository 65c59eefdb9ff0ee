//! What a scrape shows, read from where each fact is kept when the scrape begins: a
//! member's state from its health machine, its drain and ejection from its own flags, `up`
//! and the table's gauges from the routing table now published.

use super::Cluster;
use crate::telemetry::{NodeGauges, NodeSample, Scrape, TableGauges};
use std::collections::HashSet;

impl Cluster {
    /// The gauges of the table and of every member, in configuration order, with each
    /// member's counters.
    pub fn scrape(&self) -> Scrape {
        let table = self.table();
        let routes = table.routes();
        let routed: HashSet<usize> = table.backends().iter().map(|b| b.id).collect();
        let members = self.members.load();
        let nodes = members
            .list
            .iter()
            .map(|m| {
                let (state, faulty_capps, mapped_faulty) = {
                    let h = m.lock();
                    let mut mapped: Vec<String> = h
                        .faulty_capps
                        .iter()
                        .filter_map(|c| routes.route_of_faulty(c))
                        .filter_map(|route| routes.name(route))
                        .map(str::to_string)
                        .collect();
                    // Two versions of one CApp would make one series twice.
                    mapped.sort();
                    mapped.dedup();
                    (h.machine.state(), h.faulty_capps.len(), mapped)
                };
                NodeSample {
                    counters: m.backend.counters.clone(),
                    gauges: NodeGauges {
                        state,
                        up: routed.contains(&m.backend.id),
                        drained: m.is_drained(),
                        ejected: self.is_ejected(m),
                        faulty_capps,
                        mapped_faulty,
                    },
                }
            })
            .collect();
        Scrape {
            table: TableGauges {
                ready: table.ready(),
                generation: table.generation(),
                fallback: table.is_fallback(),
                capps: (1..routes.len())
                    .filter_map(|route| {
                        Some((routes.name(route)?.to_string(), table.route_ready(route)))
                    })
                    .collect(),
            },
            nodes,
        }
    }
}
