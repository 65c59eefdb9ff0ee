//! Configuration: one YAML file → a validated, typed [`Config`].
//!
//! The serde model (`raw`) never leaves this module; everything else uses the types here.
//! Every error names the file, the line and column where known, and the key path.

mod error;
mod raw;
mod validate;

pub use error::{ConfigError, Invalid};
pub use validate::{MAX_REQUEST_HEADER, MAX_RETRIES, capp_of};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Traffic listeners, plain or TLS.
    pub listen: Vec<ListenConfig>,
    /// The admin listener (`/metrics`, `/status`, `/`, `/healthz`, `/liveness`).
    pub admin: SocketAddr,
    /// Lets non-loopback admin clients drain and undrain nodes (`Authorization: Bearer`).
    pub admin_token: Option<String>,
    /// Proxy worker threads.
    pub threads: usize,
    /// The MI nodes listed by hand, in file order.
    pub nodes: Vec<NodeConfig>,
    /// DNS names whose every address is a node, re-resolved on a schedule.
    pub discovery: Vec<DiscoveryConfig>,
    /// The DNS server discovery and re-resolution ask (`None`: `/etc/resolv.conf`'s).
    pub resolver: Option<SocketAddr>,
    /// The readiness probe (`/healthz`).
    pub readiness: ReadinessConfig,
    /// The liveness probe (`/liveness` and a TCP connect to the traffic port).
    pub liveness: LivenessConfig,
    /// How traffic is spread and retried.
    pub balancing: BalancingConfig,
    /// What is logged.
    pub log: LogConfig,
    /// How SIGTERM is handled.
    pub shutdown: ShutdownConfig,
    /// Upstream timeouts.
    pub timeouts: TimeoutsConfig,
    /// Request size and connection limits.
    pub limits: LimitsConfig,
    /// Which peers' `X-Forwarded-*` headers are believed.
    pub forwarded: ForwardedConfig,
    /// Ejecting nodes that fail live traffic (off unless the section is present).
    pub outlier_detection: Option<OutlierConfig>,
    /// Unix socket through which `--upgrade` takes the listeners over from the running
    /// process.
    pub upgrade_socket: String,
    /// Where the operator's drains are written, so a hand-over (`--upgrade`) or a restart
    /// keeps them (default: none; drains then last only as long as the process).
    pub drain_file: Option<PathBuf>,
    /// CApps mapped to the request paths they serve: a node with only these faulty stays
    /// routable for every other path (CApp-aware routing; empty: off).
    pub capps: Vec<CappRoute>,
}

/// One CApp and the request path prefixes its integrations serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CappRoute {
    /// The CApp's name: `orders` matches a faulty `orders_1.0.0.car`.
    pub name: String,
    /// Path prefixes, whole segments (`/orders` matches `/orders/1`, not `/ordersx`),
    /// normalised without a trailing `/`.
    pub paths: Vec<String>,
}

/// One traffic listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// The address it binds.
    pub address: SocketAddr,
    /// Terminate TLS with this certificate (ALPN `h2`, `http/1.1`); `None`: plain HTTP/1.1.
    pub tls: Option<TlsFiles>,
}

impl ListenConfig {
    /// A plain HTTP listener on `address`.
    pub fn plain(address: SocketAddr) -> ListenConfig {
        ListenConfig { address, tls: None }
    }
}

impl std::fmt::Display for ListenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tls {
            Some(_) => write!(f, "https://{}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// The certificate, then any intermediates (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// TLS towards https nodes (`upstream_tls`, with a node's own `tls` keys merged over it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTlsConfig {
    /// CA bundle (PEM) that node certificates must chain to; `None`: the system roots.
    pub ca: Option<PathBuf>,
    /// Server name sent and verified; `None`: the node's host.
    pub sni: Option<String>,
    /// Verify the node's certificate (default true).
    pub verify: bool,
    /// Client certificate and key for mutual TLS.
    pub client: Option<TlsFiles>,
}

impl Default for UpstreamTlsConfig {
    fn default() -> Self {
        UpstreamTlsConfig {
            ca: None,
            sni: None,
            verify: true,
            client: None,
        }
    }
}

/// How a node's traffic port is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Plain HTTP/1.1 (MI's pass-through port 8280 + offset; the default).
    Http,
    /// HTTP/1.1 over TLS (MI's 8243 + offset).
    Https,
}

impl Scheme {
    /// The name used in the config file and in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Outlier detection on live traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// 5xx answers or attempts without an answer in a row that eject a node (default 5).
    pub consecutive_failures: u32,
    /// The first ejection; each further one doubles, up to `max_ejection` (default 30 s).
    pub base_ejection: Duration,
    /// The longest ejection (default 5 min).
    pub max_ejection: Duration,
    /// At most this share of the nodes is ejected at once, in percent (default 50).
    pub max_ejected_percent: u32,
}

/// Request size and connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Request line and headers together, in bytes; larger gets 431 (default 64 KiB, at
    /// most [`MAX_REQUEST_HEADER`]).
    pub max_request_header: u64,
    /// Request body in bytes; larger gets 413 (default: no limit).
    pub max_request_body: Option<u64>,
    /// Client connections each traffic listener holds open at once; further ones wait in
    /// the listen queue (default: sized from the open-file limit at start).
    pub max_connections: Option<usize>,
    /// Whether `Upgrade` requests (WebSocket) are tunnelled to the nodes (default true);
    /// `false` answers them 403.
    pub allow_upgrade: bool,
}

/// Trust in the `X-Forwarded-For` / `X-Forwarded-Proto` headers clients send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardedConfig {
    /// Peers (load balancers in front of healthgate) whose `X-Forwarded-*` headers are
    /// kept and appended to. From any other peer they are replaced (default: none).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Timeouts towards the nodes' traffic ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutsConfig {
    /// To open a connection; past it the request goes to another node (default 1 s).
    pub connect: Duration,
    /// Between two reads of an answer; past it the client gets 504, or an idempotent
    /// request goes to another node (default 60 s, as NGINX's `proxy_read_timeout`).
    pub read: Duration,
    /// Between two reads of a client's request body; past it the client gets 408 (default
    /// 60 s, as NGINX's `client_body_timeout`).
    pub client_body: Duration,
    /// From a request's arrival to the end of its answer, across every attempt; past it
    /// the client gets 504 (default: none, as Envoy's route `timeout` when set).
    pub total: Option<Duration>,
    /// How long a client's keep-alive connection may sit idle between requests before it
    /// is closed (default 60 s; HTTP/1.1 keeps it open forever otherwise).
    pub client_idle: Duration,
    /// From a request's first byte to the end of its head (request line and headers), for
    /// every request on a connection; past it the client gets 408 and is dropped (default
    /// 10 s). Bounds slow-header (slowloris) clients.
    pub client_header: Duration,
    /// How long an upgraded connection (WebSocket) may pass no byte either way before it
    /// is closed (default 1 h).
    pub tunnel_idle: Duration,
}

/// Graceful shutdown settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After SIGTERM the listeners close at once; requests in flight get this long to finish
    /// (default 5 s; whole seconds, rounded up).
    pub grace_period: Duration,
}

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// healthgate's own log level (default `info`: start-up, config, state flips). `RUST_LOG`,
    /// when set, overrides it.
    pub level: LogLevel,
    /// One line per request: client, method, path, status, node, duration (default off).
    pub access_log: bool,
}

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Start-up, configuration loads and every node state change (the default).
    Info,
    /// Also routing table rebuilds and per-request failures.
    Debug,
    /// Everything, including Pingora's internals.
    Trace,
}

impl LogLevel {
    /// The name used in the config file and in `RUST_LOG`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// One MI node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Unique name used in metrics, logs and `/status`.
    pub name: String,
    /// Host name or IP address.
    pub host: String,
    /// HTTP pass-through port that client traffic goes to (8280 + offset; 8243 + offset
    /// for https).
    pub traffic_port: u16,
    /// Plain HTTP or TLS on the traffic port.
    pub scheme: Scheme,
    /// TLS settings for an https node (`upstream_tls` with the node's overrides); `None`
    /// for http.
    pub tls: Option<UpstreamTlsConfig>,
    /// Internal API port that serves `/healthz` and `/liveness` (9191 + offset).
    pub health_port: u16,
    /// Relative share of traffic under `weighted` (1–1000).
    pub weight: u32,
}

/// One `discovery` entry: every A/AAAA record of `dns` is a node named `ip:traffic_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The name, lower case, without a trailing dot.
    pub dns: String,
    /// Each discovered node's traffic port (8280 + offset, 8243 + offset for https).
    pub traffic_port: u16,
    /// Each discovered node's health port (9191 + offset).
    pub health_port: u16,
    /// Each discovered node's weight.
    pub weight: u32,
    /// Plain HTTP or TLS on the traffic port.
    pub scheme: Scheme,
    /// TLS settings for https nodes.
    pub tls: Option<UpstreamTlsConfig>,
    /// How often the name is resolved again (default 5 s).
    pub interval: Duration,
    /// At most this many nodes from this name (default 5000); more are left out, warned.
    pub max_nodes: usize,
}

impl DiscoveryConfig {
    /// The node at address `ip`, named `ip:traffic_port` (IPv6 in brackets).
    pub fn node(&self, ip: std::net::IpAddr) -> NodeConfig {
        NodeConfig {
            name: SocketAddr::new(ip, self.traffic_port).to_string(),
            host: ip.to_string(),
            traffic_port: self.traffic_port,
            health_port: self.health_port,
            scheme: self.scheme,
            tls: self.tls.clone(),
            weight: self.weight,
        }
    }
}

/// Readiness probe settings. Defaults follow MI's docs: `/healthz` every 1 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessConfig {
    /// Path on the health port (default `/healthz`).
    pub path: String,
    /// Time between probes (default 1 s).
    pub period: Duration,
    /// Deadline for a whole probe: connect, request, response (default 1 s, ≤ period).
    pub timeout: Duration,
    /// Wait before the first probe (default 0 s).
    pub initial_delay: Duration,
    /// Consecutive passes that make a node ready (default 1).
    pub success_threshold: u32,
    /// Consecutive failures that make a ready node not ready (default 3).
    pub failure_threshold: u32,
}

/// Liveness probe settings. Defaults: `/liveness` plus a TCP connect every 5 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Path on the health port (default `/liveness`).
    pub path: String,
    /// Also connect to the traffic port (default true): MI's shutdown trap shows only there.
    pub tcp: bool,
    /// Time between probes (default 5 s).
    pub period: Duration,
    /// Deadline for a whole probe (default 1 s, ≤ period).
    pub timeout: Duration,
    /// Wait before the first probe (default 0 s).
    pub initial_delay: Duration,
    /// Consecutive failures that make a node dead (default 3).
    pub failure_threshold: u32,
}

/// Load-balancing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancingConfig {
    /// How a ready node is chosen (default `round_robin`).
    pub algorithm: Algorithm,
    /// Further attempts on other ready nodes after a connect failure (default 2, at most 15).
    pub retries: usize,
    /// What to do when no node is ready (default `reject`).
    pub when_none_ready: NoneReadyPolicy,
    /// A readmitted node's share ramps up linearly over this long (default: off).
    pub slow_start: Option<Duration>,
}

/// What traffic gets when no node is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoneReadyPolicy {
    /// Answer 503 with `Retry-After` (the default).
    Reject,
    /// Route to the nodes that are alive but not ready (e.g. a faulty CApp deployed to every
    /// node, while the other CApps still serve), flagged in metrics, logs and the status page.
    AnyAlive,
}

impl NoneReadyPolicy {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            NoneReadyPolicy::Reject => "reject",
            NoneReadyPolicy::AnyAlive => "any_alive",
        }
    }
}

/// Node selection algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each ready node in turn.
    RoundRobin,
    /// In proportion to `weight`, interleaved.
    Weighted,
    /// The node with fewer requests in flight (exact for small tables, two random choices above).
    LeastConnections,
}

impl Algorithm {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Weighted => "weighted",
            Algorithm::LeastConnections => "least_connections",
        }
    }
}

/// Default values, in one place so docs, README and code agree.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};

    /// MI's default port offset.
    pub const OFFSET: i64 = 10;
    /// Retries after a connect failure.
    pub const RETRIES: usize = 2;

    /// Where `--upgrade` meets the running process (Pingora's default is its own name).
    pub const UPGRADE_SOCKET: &str = "/tmp/healthgate-upgrade.sock";

    /// `0.0.0.0:8280`, plain HTTP.
    pub fn listen() -> Vec<crate::config::ListenConfig> {
        vec![crate::config::ListenConfig::plain(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            8280,
        )))]
    }

    /// `127.0.0.1:9300`: the admin listener is loopback unless configured otherwise.
    pub fn admin() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 9300))
    }

    /// One worker thread per available core.
    pub fn threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            path: "/healthz".into(),
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            initial_delay: Duration::ZERO,
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            path: "/liveness".into(),
            tcp: true,
            period: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            initial_delay: Duration::ZERO,
            failure_threshold: 3,
        }
    }
}

impl Config {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::from_yaml(&file, &text)
    }

    /// Parse and validate YAML text; `file` is the name errors will carry.
    pub fn from_yaml(file: &str, text: &str) -> Result<Config, ConfigError> {
        let raw = parse(file, text)?;
        validate::validate(raw).map_err(|e| e.in_file(file))
    }

    /// A one-line summary, as printed by `--check`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        let discovered = match self.discovery.len() {
            0 => String::new(),
            n => format!(" + {n} DNS name(s) resolved at run time"),
        };
        let capps = match self.capps.len() {
            0 => String::new(),
            n => format!(", {n} CApp(s) mapped to paths"),
        };
        format!(
            "{} node(s){discovered}, listen {}, admin {}, {} thread(s), {} with {} retries, when none ready: {}{capps}",
            self.nodes.len(),
            listen.join(","),
            self.admin,
            self.threads,
            self.balancing.algorithm.as_str(),
            self.balancing.retries,
            self.balancing.when_none_ready.as_str()
        )
    }
}

/// Deserialise with both the YAML position (from serde-saphyr) and the key path (from
/// serde_path_to_error) of the first problem.
fn parse(file: &str, text: &str) -> Result<raw::RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Err(error::RuleError {
            position: None,
            path: String::new(),
            message: "the file is empty; a configuration needs at least `nodes`".into(),
        }
        .in_file(file));
    }
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = key_path(e.path());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let position = e.location().map(|l| (l.line(), l.column()));
        let message = e.without_snippet().to_string();
        // saphyr appends " at line L, column C"; the position is reported separately.
        let message = match message.rfind(" at line ") {
            Some(cut) if position.is_some() => message[..cut].to_string(),
            _ => message,
        };
        error::RuleError {
            position,
            path,
            message,
        }
        .in_file(file)
    })
}

/// `nodes[1].offset` from serde's path, without the inner field of `Spanned` wrappers (the
/// schema has no key named `value`, so every such segment is the wrapper's).
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == "value" => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
