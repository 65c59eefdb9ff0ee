//! TLS towards https nodes: one connector per distinct `upstream_tls` setting, built at
//! start and on every reload (so a reload reads the CA and client certificate again), and
//! shared by the nodes that use it.

use super::ClusterError;
use crate::config::{Config, NodeConfig, UpstreamTlsConfig};
use crate::routing::NodeTls;
use crate::tls::UpstreamTls;
use std::collections::HashMap;
use std::sync::Arc;

/// The connectors built for one configuration.
#[derive(Default)]
pub(super) struct Connectors {
    built: HashMap<UpstreamTlsConfig, Arc<UpstreamTls>>,
    /// What an operator should hear about (`verify: false`), once per start or reload.
    pub warnings: Vec<String>,
}

impl Connectors {
    /// How to speak TLS to `node` (from `origin`: `nodes[2]`, `discovery[0]`); `None` for
    /// an http node.
    pub fn for_node(
        &mut self,
        origin: &str,
        node: &NodeConfig,
    ) -> Result<Option<Arc<NodeTls>>, ClusterError> {
        let Some(settings) = &node.tls else {
            return Ok(None);
        };
        let failed = |source| ClusterError::Tls {
            origin: origin.to_string(),
            name: node.name.clone(),
            source,
        };
        let connector = match self.built.get(settings) {
            Some(connector) => connector.clone(),
            None => {
                let connector = Arc::new(UpstreamTls::new(settings).map_err(failed)?);
                if !settings.verify {
                    self.warnings.push(format!(
                        "{origin} ({}): upstream_tls.verify is false: node certificates \
                         are not checked, and anyone on the path can read and change traffic",
                        node.name
                    ));
                }
                self.built.insert(settings.clone(), connector.clone());
                connector
            }
        };
        let server_name = connector.server_name(&node.host).map_err(failed)?;
        Ok(Some(Arc::new(NodeTls {
            connector,
            server_name,
        })))
    }
}

/// Build the TLS of every https node and discovery entry of `config`, as a start or
/// reload would: the CA and client files are read and checked. Returns the warnings
/// (`verify: false`).
pub fn check(config: &Config) -> Result<Vec<String>, ClusterError> {
    let mut connectors = Connectors::default();
    for (index, node) in config.nodes.iter().enumerate() {
        connectors.for_node(&format!("nodes[{index}]"), node)?;
    }
    for (index, entry) in config.discovery.iter().enumerate() {
        // Any address stands in: the settings, not the name, are checked here.
        let stand_in = entry.node(std::net::Ipv4Addr::LOCALHOST.into());
        connectors.for_node(&format!("discovery[{index}]"), &stand_in)?;
    }
    Ok(connectors.warnings)
}
