//! The serde model of the YAML file. Private to `config`: everything else sees only the
//! validated [`super::Config`]. Values that a validation rule may reject are `Spanned`, so
//! the error can point at their line and column.

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Spanned<OneOrMany>>,
    pub admin: Option<Spanned<String>>,
    pub admin_token: Option<Spanned<String>>,
    pub threads: Option<Spanned<usize>>,
    pub nodes: Option<Spanned<Vec<Spanned<RawNode>>>>,
    pub discovery: Option<Spanned<Vec<Spanned<RawDiscovery>>>>,
    pub resolver: Option<Spanned<String>>,
    #[serde(default)]
    pub readiness: RawReadiness,
    #[serde(default)]
    pub liveness: RawLiveness,
    #[serde(default)]
    pub balancing: RawBalancing,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub forwarded: RawForwarded,
    pub upstream_tls: Option<Spanned<RawUpstreamTls>>,
    pub outlier_detection: Option<RawOutlier>,
    pub upgrade_socket: Option<Spanned<String>>,
    pub drain_file: Option<Spanned<String>>,
    pub capps: Option<Spanned<Vec<Spanned<RawCapp>>>>,
}

/// One `capps` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapp {
    pub name: Spanned<String>,
    pub paths: Spanned<Vec<Spanned<String>>>,
}

/// The `outlier_detection` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub base_ejection: Option<Spanned<HumanDuration>>,
    pub max_ejection: Option<Spanned<HumanDuration>>,
    pub max_ejected_percent: Option<Spanned<i64>>,
}

/// The `limits` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_request_header: Option<Spanned<ByteSize>>,
    pub max_request_body: Option<Spanned<ByteSize>>,
    pub max_connections: Option<Spanned<i64>>,
    pub allow_upgrade: Option<bool>,
}

/// The `forwarded` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwarded {
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
}

/// A size written as a number of bytes or with a unit: `64KiB`, `10MiB`, `1GiB`, `500kB`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Bytes(n) => return Ok(ByteSize(n)),
            Raw::Text(t) => t,
        };
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => u64::MAX,
        };
        match digits
            .parse::<u64>()
            .ok()
            .zip((scale != u64::MAX).then_some(scale))
        {
            Some((n, scale)) => n
                .checked_mul(scale)
                .map(ByteSize)
                .ok_or_else(|| serde::de::Error::custom(format!("size {text:?} is too large"))),
            None => Err(serde::de::Error::custom(format!(
                "invalid size {text:?}; write it like 65536, 64KiB or 10MiB"
            ))),
        }
    }
}

/// The `timeouts` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub connect: Option<Spanned<HumanDuration>>,
    pub read: Option<Spanned<HumanDuration>>,
    pub client_body: Option<Spanned<HumanDuration>>,
    pub total: Option<Spanned<HumanDuration>>,
    pub client_idle: Option<Spanned<HumanDuration>>,
    pub client_header: Option<Spanned<HumanDuration>>,
    pub tunnel_idle: Option<Spanned<HumanDuration>>,
}

/// `listen` accepts a single entry or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(RawListen),
    Many(Vec<RawListen>),
}

/// One `listen` entry: an address, or an address with TLS.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawListen {
    Address(String),
    Entry(RawListenEntry),
}

/// `{address, tls: {cert, key}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListenEntry {
    pub address: String,
    pub tls: Option<RawTlsFiles>,
}

/// A listener's `tls`: certificate chain and key files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsFiles {
    pub cert: String,
    pub key: String,
}

/// `upstream_tls`, and a node's own `tls` overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    pub ca: Option<Spanned<String>>,
    pub sni: Option<Spanned<String>>,
    pub verify: Option<bool>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// One entry of `nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: Option<Spanned<String>>,
    pub host: Spanned<String>,
    pub offset: Option<Spanned<i64>>,
    pub traffic_port: Option<Spanned<i64>>,
    pub health_port: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub scheme: Option<super::Scheme>,
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

/// One entry of `discovery`: a DNS name whose every address is a node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub dns: Spanned<String>,
    pub offset: Option<Spanned<i64>>,
    pub traffic_port: Option<Spanned<i64>>,
    pub health_port: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub scheme: Option<super::Scheme>,
    pub tls: Option<Spanned<RawUpstreamTls>>,
    pub interval: Option<Spanned<HumanDuration>>,
    pub max_nodes: Option<Spanned<i64>>,
}

/// The `readiness` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReadiness {
    pub path: Option<Spanned<String>>,
    pub period: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub initial_delay: Option<Spanned<HumanDuration>>,
    pub success_threshold: Option<Spanned<i64>>,
    pub failure_threshold: Option<Spanned<i64>>,
}

/// The `liveness` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLiveness {
    pub path: Option<Spanned<String>>,
    pub tcp: Option<bool>,
    pub period: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub initial_delay: Option<Spanned<HumanDuration>>,
    pub failure_threshold: Option<Spanned<i64>>,
}

/// The `balancing` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBalancing {
    pub algorithm: Option<super::Algorithm>,
    pub retries: Option<Spanned<i64>>,
    pub when_none_ready: Option<super::NoneReadyPolicy>,
    pub slow_start: Option<Spanned<HumanDuration>>,
}

/// The `shutdown` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShutdown {
    pub grace_period: Option<Spanned<HumanDuration>>,
}

/// The `log` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<super::LogLevel>,
    pub access_log: Option<bool>,
}

/// A duration written as `500ms`, `1s`, `2m` (anything `humantime` reads).
#[derive(Debug, Clone, Copy)]
pub(super) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write it like 500ms, 1s or 2m"
                ))
            })
    }
}
