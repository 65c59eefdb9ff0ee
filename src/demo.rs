//! `healthgate demo`: three simulated MI nodes, each with a control API, and the proxy in
//! front of them on a built-in configuration. The out-of-the-box main job.

use crate::config::Config;
use crate::server;
use mi_sim::{SimNode, SimOptions, control};
use std::error::Error;
use std::fmt::Write;
use std::io::Write as _;
use std::net::SocketAddr;

/// Options of `healthgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the proxy listens for traffic.
    #[arg(long, default_value = "127.0.0.1:8280")]
    pub listen: SocketAddr,
    /// Where the admin listener (status page, metrics) listens.
    #[arg(long, default_value = "127.0.0.1:9300")]
    pub admin: SocketAddr,
}

/// A simulated node and the address of its control API.
struct DemoNode {
    node: SimNode,
    control: SocketAddr,
}

/// Run the demo until interrupted.
pub fn run(args: DemoArgs) -> Result<(), Box<dyn Error>> {
    // The simulated nodes live on their own runtime; the proxy runs Pingora's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mi-sim")
        .enable_all()
        .build()?;
    let nodes = runtime.block_on(start_nodes())?;
    let config = Config::from_yaml("<demo config>", &config_yaml(&args, &nodes))?;
    let built = server::build(&config, &server::Launch::default())?;
    print!("{}", banner(&args, &nodes));
    std::io::stdout().flush()?;
    built.server.run_forever()
}

async fn start_nodes() -> std::io::Result<Vec<DemoNode>> {
    let mut nodes = Vec::new();
    for name in ["mi-1", "mi-2", "mi-3"] {
        let node = SimNode::start(SimOptions::new(name))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let control = listener.local_addr()?;
        tokio::spawn(control::serve(listener, node.clone()));
        nodes.push(DemoNode { node, control });
    }
    Ok(nodes)
}

/// The demo's configuration, written as YAML so it goes through the same parser as a file.
fn config_yaml(args: &DemoArgs, nodes: &[DemoNode]) -> String {
    let mut yaml = format!(
        "listen: \"{}\"\nadmin: \"{}\"\nthreads: 2\nreadiness:\n  period: 1s\n  timeout: 500ms\nliveness:\n  period: 2s\n  timeout: 500ms\nnodes:\n",
        args.listen, args.admin
    );
    for n in nodes {
        let _ = writeln!(
            yaml,
            "  - name: {}\n    host: {}\n    traffic_port: {}\n    health_port: {}",
            n.node.name(),
            n.node.traffic_addr().ip(),
            n.node.traffic_addr().port(),
            n.node.health_addr().port()
        );
    }
    yaml
}

fn banner(args: &DemoArgs, nodes: &[DemoNode]) -> String {
    let admin = args.admin;
    let mut text = format!(
        "\nhealthgate demo: three simulated MI nodes behind the proxy\n\n  \
         proxy:       http://{}/\n  status page: http://{admin}/\n  status JSON: http://{admin}/status\n  \
         metrics:     http://{admin}/metrics\n\n",
        args.listen
    );
    for n in nodes {
        let _ = writeln!(
            text,
            "  {}: traffic {}, health {}, control http://{}/",
            n.node.name(),
            n.node.traffic_addr(),
            n.node.health_addr(),
            n.control
        );
    }
    let (second, third) = (
        nodes.get(1).map(|n| n.control),
        nodes.get(2).map(|n| n.control),
    );
    if let (Some(second), Some(third)) = (second, third) {
        let _ = write!(
            text,
            "\nTry:\n  curl -i http://{}/\n  \
             curl -X POST -d bad_1.0.0.car http://{second}/faulty     # mi-2 reports a faulty CApp\n  \
             curl -X DELETE http://{second}/faulty                     # and recovers\n  \
             curl -X POST http://{third}/shutdown                       # MI-style shutdown of mi-3\n  \
             curl -X POST http://{third}/start                          # mi-3 starts again\n\nCtrl-C stops.\n",
            args.listen
        );
    }
    text
}
