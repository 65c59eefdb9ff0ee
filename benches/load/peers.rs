//! The processes a load run compares: backends (nginx serving a fixed small body, or
//! `mi-sim`) and the proxies in front of them (HAProxy, NGINX, healthgate), each configured
//! alike: round robin, keep-alive to the nodes, `X-Forwarded-For`, health checks every second.
//! The forwarders of this bench (the floor and the request-loop experiments) are this binary
//! again, started by [`start_self`] and reading their arguments with [`forwarder_args`].

use super::procs::{Proc, find_tool, free_port, http_get, metric_value, mi_sim, wait_until};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The body nginx serves on every traffic request.
pub const SMALL_BODY: &str = "hello from an MI node behind the proxy\n";
/// MI's ready answer (MI-HEALTH-API.md).
const READY_BODY: &str = r#"{"version":"4.4.0", "update_level":"-", "status" : "ready"}"#;
/// MI's liveness answer.
const LIVE_BODY: &str = r#"{"server" : "started"}"#;

/// The node list every proxy is given: one address per node, shared port numbers.
#[derive(Clone, Debug)]
pub struct Nodes {
    /// One loopback address per node (127.0.x.y), so every node is a distinct upstream.
    pub ips: Vec<Ipv4Addr>,
    /// Traffic port on every address.
    pub traffic_port: u16,
    /// Health port on every address.
    pub health_port: u16,
}

impl Nodes {
    /// `n` nodes on 127.0.0.1, 127.0.0.2, … with fresh ports.
    pub fn loopback(n: usize) -> Nodes {
        let ips = (0..n)
            .map(|i| Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 1) as u8))
            .collect();
        Nodes {
            ips,
            traffic_port: free_port(),
            health_port: free_port(),
        }
    }

    /// The first node's traffic address (the "direct" target).
    pub fn first_traffic(&self) -> SocketAddr {
        SocketAddr::from((self.ips[0], self.traffic_port))
    }
}

/// Where a run keeps its configs and logs.
pub struct Workdir(pub PathBuf);

impl Workdir {
    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Where the process `name` writes its output.
    pub fn log(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.log"))
    }
}

/// nginx with `workers` worker processes and the `http { … }` body given.
fn start_nginx(dir: &Workdir, name: &str, workers: usize, http: &str) -> Result<Proc, String> {
    let nginx = find_tool("nginx").ok_or("nginx not found (apt-get install nginx)")?;
    let prefix = dir.0.join(name);
    std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
    let p = prefix.display();
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         worker_rlimit_nofile 65536;\nevents {{ worker_connections 16384; }}\n\
         http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n\
         keepalive_requests 100000000;\n client_max_body_size 1m;\n client_body_buffer_size 128k;\n{http}}}\n"
    );
    let path = dir.write(&format!("{name}.conf"), &conf)?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(&path);
    Proc::spawn(name, command, &dir.log(name))
}

/// nginx as the backend: every node's traffic port answers `SMALL_BODY` to any method,
/// its health port answers MI's `/healthz` and `/liveness`.
pub fn nginx_backend(dir: &Workdir, nodes: &Nodes) -> Result<Proc, String> {
    let mut http = String::from(" server {\n");
    for ip in &nodes.ips {
        let _ = writeln!(http, "  listen {ip}:{};", nodes.traffic_port);
    }
    let _ = write!(
        http,
        "  location / {{ default_type text/plain; return 200 \"{}\"; }}\n }}\n server {{\n",
        SMALL_BODY.escape_default()
    );
    for ip in &nodes.ips {
        let _ = writeln!(http, "  listen {ip}:{};", nodes.health_port);
    }
    let _ = write!(
        http,
        "  default_type application/json;\n  location /healthz {{ return 200 '{READY_BODY}'; }}\n\
         \x20 location /liveness {{ return 200 '{LIVE_BODY}'; }}\n }}\n"
    );
    let mut proc = start_nginx(dir, "backend-nginx", 1, &http)?;
    wait_until(Duration::from_secs(10), "the nginx backend", || {
        http_get(nodes.first_traffic(), "/").is_some_and(|(s, _)| s == 200)
    })?;
    proc.check_running()?;
    Ok(proc)
}

/// `mi-sim` as the backend (one node; it binds one address), its traffic port serving HTTPS
/// with `tls`'s `(cert, key)` if given (the health port stays plain HTTP, as MI's is).
pub fn mi_sim_backend(
    dir: &Workdir,
    nodes: &Nodes,
    tls: Option<(&Path, &Path)>,
) -> Result<Proc, String> {
    assert_eq!(nodes.ips.len(), 1, "mi-sim serves one node");
    let mut command = Command::new(mi_sim()?);
    command
        .args(["--name", "mi-sim-1", "--host"])
        .arg(nodes.ips[0].to_string())
        .args(["--traffic-port", &nodes.traffic_port.to_string()])
        .args(["--health-port", &nodes.health_port.to_string()])
        .env("RUST_LOG", "warn");
    if let Some((cert, key)) = tls {
        command
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
    }
    let proc = Proc::spawn("mi-sim", command, &dir.log("mi-sim"))?;
    let health = SocketAddr::from((nodes.ips[0], nodes.health_port));
    wait_until(Duration::from_secs(10), "mi-sim", || {
        http_get(health, "/healthz").is_some_and(|(s, _)| s == 200)
    })?;
    Ok(proc)
}

/// HAProxy with `threads` threads, round robin, HTTP health checks every second.
pub fn haproxy(dir: &Workdir, nodes: &Nodes, threads: usize, port: u16) -> Result<Proc, String> {
    haproxy_with_maxconn(dir, nodes, threads, port, 4000)
}

/// [`haproxy`] holding up to `maxconn` client connections (it needs two descriptors each).
pub fn haproxy_with_maxconn(
    dir: &Workdir,
    nodes: &Nodes,
    threads: usize,
    port: u16,
    maxconn: usize,
) -> Result<Proc, String> {
    haproxy_configured(dir, nodes, threads, port, maxconn, &ProxyTls::default())
}

/// [`haproxy`] with TLS as `tls` says: a listener terminating TLS beside the plain one on
/// `port`, and/or https nodes verified against a CA with SNI `localhost`. Idle connections
/// to the nodes are shared by every client connection (`http-reuse always`), as
/// healthgate's pool is: with HAProxy's default (`safe`) the first request of each client
/// connection gets a node connection of its own, so a new client connection per request
/// would also cost a new node connection and handshake.
pub fn haproxy_tls(
    dir: &Workdir,
    nodes: &Nodes,
    threads: usize,
    port: u16,
    tls: &ProxyTls,
) -> Result<Proc, String> {
    haproxy_configured(dir, nodes, threads, port, 4000, tls)
}

fn haproxy_configured(
    dir: &Workdir,
    nodes: &Nodes,
    threads: usize,
    port: u16,
    maxconn: usize,
    tls: &ProxyTls,
) -> Result<Proc, String> {
    let haproxy = find_tool("haproxy").ok_or("haproxy not found (apt-get install haproxy)")?;
    let reuse = if tls.is_plain() { "safe" } else { "always" };
    let mut cfg = format!(
        "global\n  nbthread {threads}\n  maxconn {maxconn}\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n\
         \x20 option http-keep-alive\n  option forwardfor\n  http-reuse {reuse}\n\
         frontend fe\n  bind 127.0.0.1:{port}\n"
    );
    if let Some(listener) = &tls.listener {
        // healthgate sets X-Forwarded-Proto on every listener; so does HAProxy here.
        let _ = write!(
            cfg,
            "  bind 127.0.0.1:{} ssl crt {} alpn h2,http/1.1\n\
             \x20 http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}\n\
             \x20 http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}\n",
            listener.port,
            listener.pem.display()
        );
    }
    let _ = write!(
        cfg,
        "  default_backend be\n\
         backend be\n  balance roundrobin\n  option httpchk GET /healthz\n\
         \x20 default-server check inter 1s port {}\n",
        nodes.health_port
    );
    // With `port` set, the health checks stay plain HTTP while the traffic is TLS.
    let server_tls = match &tls.nodes_ca {
        Some(ca) => format!(
            " ssl verify required ca-file {} sni str(localhost) verifyhost localhost",
            ca.display()
        ),
        None => String::new(),
    };
    for (i, ip) in nodes.ips.iter().enumerate() {
        let _ = writeln!(cfg, "  server n{i} {ip}:{}{server_tls}", nodes.traffic_port);
    }
    let path = dir.write("haproxy.cfg", &cfg)?;
    let mut command = Command::new(haproxy);
    command.arg("-db").arg("-f").arg(path);
    let mut proc = Proc::spawn("haproxy", command, &dir.log("haproxy"))?;
    wait_for_proxy(port, &mut proc)?;
    Ok(proc)
}

/// NGINX as a proxy: `threads` workers, round robin, keep-alive upstream connections
/// (open-source NGINX has no active health checks; it marks nodes down passively).
pub fn nginx_proxy(
    dir: &Workdir,
    nodes: &Nodes,
    threads: usize,
    port: u16,
) -> Result<Proc, String> {
    let mut http = String::from(" upstream be {\n");
    for ip in &nodes.ips {
        let _ = writeln!(http, "  server {ip}:{};", nodes.traffic_port);
    }
    let _ = write!(
        http,
        "  keepalive 1024;\n }}\n server {{\n  listen 127.0.0.1:{port};\n  location / {{\n\
         \x20  proxy_pass http://be;\n   proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n\
         \x20  proxy_set_header Host $http_host;\n\
         \x20  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n  }}\n }}\n"
    );
    let mut proc = start_nginx(dir, "nginx-proxy", threads, &http)?;
    wait_for_proxy(port, &mut proc)?;
    Ok(proc)
}

/// healthgate with `threads` worker threads over `nodes`; waits until every node is ready.
pub fn healthgate(dir: &Workdir, nodes: &Nodes, threads: usize, port: u16) -> Result<Proc, String> {
    let binary = Path::new(env!("CARGO_BIN_EXE_healthgate"));
    healthgate_binary(dir, nodes, threads, port, binary, "healthgate", "")
}

/// The healthgate build named by `HEALTHGATE_BASELINE` (e.g. one still on Pingora's
/// `ProxyHttp`, candidate (a) of docs/bench/hot-path.md), if set.
pub fn baseline_binary() -> Option<PathBuf> {
    std::env::var_os("HEALTHGATE_BASELINE").map(PathBuf::from)
}

/// healthgate from `binary`, its files and log under `name`, `extra` added to its
/// configuration.
pub fn healthgate_binary(
    dir: &Workdir,
    nodes: &Nodes,
    threads: usize,
    port: u16,
    binary: &Path,
    name: &str,
    extra: &str,
) -> Result<Proc, String> {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = healthgate_config(nodes, threads, port, admin) + extra;
    healthgate_started(dir, nodes, port, admin, binary, name, &config)
}

/// This bench's healthgate with TLS as `tls` says: a TLS listener beside the plain one on
/// `port`, and/or https nodes (`scheme: https`, `upstream_tls` with the CA and SNI
/// `localhost`).
pub fn healthgate_tls(
    dir: &Workdir,
    nodes: &Nodes,
    threads: usize,
    port: u16,
    tls: &ProxyTls,
) -> Result<Proc, String> {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = healthgate_config_tls(nodes, threads, port, admin, tls);
    let binary = Path::new(env!("CARGO_BIN_EXE_healthgate"));
    healthgate_started(dir, nodes, port, admin, binary, "healthgate", &config)
}

/// Start `binary` with `config`; wait until every node is ready and `port` answers.
fn healthgate_started(
    dir: &Workdir,
    nodes: &Nodes,
    port: u16,
    admin: SocketAddr,
    binary: &Path,
    name: &str,
    config: &str,
) -> Result<Proc, String> {
    let path = dir.write(&format!("{name}.yaml"), config)?;
    let mut command = Command::new(binary);
    command.arg("--config").arg(path).env("RUST_LOG", "warn");
    let mut proc = Proc::spawn(name, command, &dir.log(name))?;
    let want = nodes.ips.len() as f64;
    let ready = wait_until(
        Duration::from_secs(60),
        "healthgate to see every node ready",
        || {
            http_get(admin, "/metrics")
                .and_then(|(_, m)| metric_value(&m, "healthgate_ready_backends"))
                .is_some_and(|ready| ready == want)
        },
    );
    // An early exit explains more than the timeout: its log goes into the error.
    proc.check_running()?;
    ready?;
    wait_for_proxy(port, &mut proc)?;
    Ok(proc)
}

/// The YAML for healthgate over `nodes`: MI's documented probe cadence (1 s readiness,
/// 5 s liveness with a TCP connect), round robin.
pub fn healthgate_config(nodes: &Nodes, threads: usize, port: u16, admin: SocketAddr) -> String {
    healthgate_config_tls(nodes, threads, port, admin, &ProxyTls::default())
}

/// [`healthgate_config`] with TLS as `tls` says.
pub fn healthgate_config_tls(
    nodes: &Nodes,
    threads: usize,
    port: u16,
    admin: SocketAddr,
    tls: &ProxyTls,
) -> String {
    let listen = match &tls.listener {
        None => format!("\"127.0.0.1:{port}\""),
        Some(l) => format!(
            "\n  - \"127.0.0.1:{port}\"\n  - {{ address: \"127.0.0.1:{}\", tls: {{ cert: \"{}\", key: \"{}\" }} }}",
            l.port,
            l.cert.display(),
            l.key.display()
        ),
    };
    let mut yaml = format!(
        "listen: {listen}\nadmin: \"{admin}\"\nthreads: {threads}\n\
         readiness: {{ path: /healthz, period: 1s, timeout: 1s }}\n\
         liveness: {{ path: /liveness, tcp: true, period: 5s, timeout: 1s }}\n\
         balancing: {{ algorithm: round_robin, retries: 2 }}\n"
    );
    let scheme = match &tls.nodes_ca {
        Some(ca) => {
            let _ = writeln!(
                yaml,
                "upstream_tls: {{ ca: \"{}\", sni: localhost }}",
                ca.display()
            );
            ", scheme: https"
        }
        None => "",
    };
    yaml.push_str("nodes:\n");
    for (i, ip) in nodes.ips.iter().enumerate() {
        let _ = writeln!(
            yaml,
            "  - {{ name: n{i}, host: \"{ip}\", traffic_port: {}, health_port: {}{scheme} }}",
            nodes.traffic_port, nodes.health_port
        );
    }
    yaml
}

/// TLS for a proxy under test; the default is none (plain HTTP on both sides).
#[derive(Clone, Debug, Default)]
pub struct ProxyTls {
    /// A listener terminating TLS for clients, beside the plain one.
    pub listener: Option<TlsListener>,
    /// The nodes speak HTTPS: verify them against this CA file, SNI `localhost`.
    pub nodes_ca: Option<PathBuf>,
}

impl ProxyTls {
    /// No TLS on either side.
    pub fn is_plain(&self) -> bool {
        self.listener.is_none() && self.nodes_ca.is_none()
    }
}

/// A TLS listener: its port and the PEM files it presents.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The certificate (healthgate's `tls.cert`).
    pub cert: PathBuf,
    /// Its private key (healthgate's `tls.key`).
    pub key: PathBuf,
    /// Certificate and key in one file (HAProxy's `crt`).
    pub pem: PathBuf,
}

/// Start this bench binary again as the forwarder `name` over `nodes`, with `threads` threads
/// on `port`: `ARG THREADS 127.0.0.1:PORT NODE…`, as a child process whose CPU time is counted
/// like the others'. Waits until it answers.
pub fn start_self(
    dir: &Workdir,
    name: &str,
    arg: &str,
    nodes: &Nodes,
    threads: usize,
    port: u16,
) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the bench binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg(arg)
        .arg(threads.to_string())
        .arg(format!("127.0.0.1:{port}"))
        .args(
            nodes
                .ips
                .iter()
                .map(|ip| format!("{ip}:{}", nodes.traffic_port)),
        );
    let mut proc = Proc::spawn(name, command, &dir.log(name))?;
    wait_for_proxy(port, &mut proc)?;
    Ok(proc)
}

/// The arguments a forwarder started by [`start_self`] gets after its `arg`:
/// `THREADS LISTEN NODE…`.
pub fn forwarder_args(
    arg: &str,
    args: &[String],
) -> Result<(usize, SocketAddr, Vec<SocketAddr>), String> {
    let [threads, listen, nodes @ ..] = args else {
        return Err(format!("usage: {arg} THREADS LISTEN NODE…"));
    };
    let threads: usize = threads.parse().map_err(|e| format!("threads: {e}"))?;
    let nodes: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| n.parse().map_err(|e| format!("node {n}: {e}")))
        .collect::<Result<_, _>>()?;
    if nodes.is_empty() {
        return Err("no nodes".into());
    }
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| format!("listen {listen}: {e}"))?;
    Ok((threads.max(1), listen, nodes))
}

/// Wait until the proxy on `port` answers `/` with 200, or fail with its log.
pub fn wait_for_proxy(port: u16, proc: &mut Proc) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let result = wait_until(
        Duration::from_secs(20),
        &format!("{} to answer", proc.name),
        || http_get(addr, "/").is_some_and(|(s, _)| s == 200),
    );
    proc.check_running()?;
    result
}
