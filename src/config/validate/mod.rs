//! Turns the serde model into a typed [`Config`], one small function per rule.

mod capps;
mod discovery;
mod nodes;
mod tls;

use super::error::RuleError;
use super::raw::{
    ByteSize, HumanDuration, RawConfig, RawForwarded, RawLiveness, RawOutlier, RawReadiness,
};
use super::{
    Algorithm, BalancingConfig, Config, ForwardedConfig, LimitsConfig, LivenessConfig, LogConfig,
    LogLevel, NoneReadyPolicy, OutlierConfig, ReadinessConfig, ShutdownConfig, TimeoutsConfig,
    UpstreamTlsConfig, defaults,
};
pub use capps::capp_of;
use nodes::nodes;
use serde_saphyr::Spanned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Upper bound that keeps a typo from becoming a resource problem.
const MAX_THREADS: usize = 1024;
/// Retries are bounded so the per-request record of tried nodes never allocates.
pub const MAX_RETRIES: i64 = 15;

type Rule<T> = Result<T, RuleError>;

/// `limits.max_request_header` unless configured.
const DEFAULT_MAX_REQUEST_HEADER: u64 = 64 * 1024;
/// The largest request head the HTTP/1 parser holds (1 MiB): `limits.max_request_header`
/// may not promise more.
pub const MAX_REQUEST_HEADER: u64 = 1024 * 1024;
/// Upper bound of `limits.max_connections`: more than any file limit allows.
const MAX_CONNECTIONS: i64 = 10_000_000;

/// Shortest `admin_token` accepted: guessable tokens protect nothing.
const MIN_TOKEN_LEN: usize = 16;

/// Validate every rule and build the typed configuration.
pub(super) fn validate(raw: RawConfig) -> Rule<Config> {
    let listen = tls::listeners(raw.listen.as_ref())?;
    let upstream_tls = tls::upstream(
        raw.upstream_tls.as_ref(),
        &UpstreamTlsConfig::default(),
        "upstream_tls",
    )?;
    let admin = match &raw.admin {
        Some(text) => socket_addr(text, "admin")?,
        None => defaults::admin(),
    };
    let admin_token = match &raw.admin_token {
        Some(t) if t.value.trim().len() < MIN_TOKEN_LEN => {
            return fail(
                t,
                "admin_token",
                format!("an admin token must be at least {MIN_TOKEN_LEN} characters"),
            );
        }
        Some(t) => Some(t.value.trim().to_string()),
        None => None,
    };
    let threads = match &raw.threads {
        Some(t) => in_range(t, "threads", 1, MAX_THREADS)?,
        None => defaults::threads(),
    };
    let upgrade_socket = match &raw.upgrade_socket {
        Some(path) => unix_socket_path(path, "upgrade_socket")?,
        None => defaults::UPGRADE_SOCKET.to_string(),
    };
    let drain_file = match &raw.drain_file {
        Some(path) => Some(file_in_existing_directory(path, "drain_file")?),
        None => None,
    };
    let discovery = discovery::discovery(raw.discovery.as_ref(), &upstream_tls)?;
    let resolver = discovery::resolver(raw.resolver.as_ref())?;
    let nodes = nodes(raw.nodes.as_ref(), &upstream_tls, !discovery.is_empty())?;
    let readiness = readiness(&raw.readiness)?;
    let liveness = liveness(&raw.liveness)?;
    let retries = match &raw.balancing.retries {
        Some(r) => int_in_range(r, "balancing.retries", 0, MAX_RETRIES)? as usize,
        None => defaults::RETRIES,
    };
    let slow_start = optional_duration(raw.balancing.slow_start.as_ref(), "balancing.slow_start")?;
    let capps = capps::capps(raw.capps.as_ref())?;
    Ok(Config {
        capps,
        listen,
        admin,
        admin_token,
        upgrade_socket,
        drain_file,
        threads,
        nodes,
        discovery,
        resolver,
        readiness,
        liveness,
        balancing: BalancingConfig {
            algorithm: raw.balancing.algorithm.unwrap_or(Algorithm::RoundRobin),
            retries,
            when_none_ready: raw
                .balancing
                .when_none_ready
                .unwrap_or(NoneReadyPolicy::Reject),
            slow_start,
        },
        outlier_detection: match &raw.outlier_detection {
            Some(o) => Some(outlier(o)?),
            None => None,
        },
        limits: LimitsConfig {
            max_request_header: max_request_header(raw.limits.max_request_header.as_ref())?,
            max_request_body: size(
                raw.limits.max_request_body.as_ref(),
                "limits.max_request_body",
            )?,
            max_connections: match &raw.limits.max_connections {
                Some(n) => {
                    Some(int_in_range(n, "limits.max_connections", 1, MAX_CONNECTIONS)? as usize)
                }
                None => None,
            },
            allow_upgrade: raw.limits.allow_upgrade.unwrap_or(true),
        },
        forwarded: forwarded(&raw.forwarded)?,
        timeouts: TimeoutsConfig {
            connect: duration(
                raw.timeouts.connect.as_ref(),
                "timeouts.connect",
                Duration::from_secs(1),
                false,
            )?,
            read: duration(
                raw.timeouts.read.as_ref(),
                "timeouts.read",
                Duration::from_secs(60),
                false,
            )?,
            client_body: duration(
                raw.timeouts.client_body.as_ref(),
                "timeouts.client_body",
                Duration::from_secs(60),
                false,
            )?,
            client_idle: duration(
                raw.timeouts.client_idle.as_ref(),
                "timeouts.client_idle",
                Duration::from_secs(60),
                false,
            )?,
            total: optional_duration(raw.timeouts.total.as_ref(), "timeouts.total")?,
            client_header: duration(
                raw.timeouts.client_header.as_ref(),
                "timeouts.client_header",
                Duration::from_secs(10),
                false,
            )?,
            tunnel_idle: duration(
                raw.timeouts.tunnel_idle.as_ref(),
                "timeouts.tunnel_idle",
                Duration::from_secs(3600),
                false,
            )?,
        },
        shutdown: ShutdownConfig {
            grace_period: duration(
                raw.shutdown.grace_period.as_ref(),
                "shutdown.grace_period",
                Duration::from_secs(5),
                false,
            )?,
        },
        log: LogConfig {
            level: raw.log.level.unwrap_or(LogLevel::Info),
            access_log: raw.log.access_log.unwrap_or(false),
        },
    })
}

fn position<T>(spanned: &Spanned<T>) -> Option<(u64, u64)> {
    let at = spanned.referenced;
    (at.line() > 0).then(|| (at.line(), at.column()))
}

fn fail<T, S>(at: &Spanned<S>, path: impl Into<String>, message: impl Into<String>) -> Rule<T> {
    Err(RuleError {
        position: position(at),
        path: path.into(),
        message: message.into(),
    })
}

fn socket_addr(text: &Spanned<String>, path: &str) -> Rule<SocketAddr> {
    match text.value.trim().parse() {
        Ok(addr) => Ok(addr),
        Err(_) => fail(
            text,
            path,
            format!(
                "{:?} is not a socket address; write it as IP:PORT, e.g. 127.0.0.1:9300",
                text.value
            ),
        ),
    }
}

/// Longest Unix socket path the kernel accepts (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

fn unix_socket_path(text: &Spanned<String>, path: &str) -> Rule<String> {
    let value = text.value.trim();
    if value.is_empty() || value.len() > MAX_SOCKET_PATH {
        return fail(
            text,
            path,
            format!("a Unix socket path must be 1–{MAX_SOCKET_PATH} bytes long"),
        );
    }
    Ok(value.to_string())
}

/// A file path whose directory exists (the file itself may not yet).
fn file_in_existing_directory(text: &Spanned<String>, path: &str) -> Rule<PathBuf> {
    let value = PathBuf::from(text.value.trim());
    if value.as_os_str().is_empty() || value.file_name().is_none() {
        return fail(text, path, format!("{:?} is not a file path", text.value));
    }
    let directory = match value.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return fail(
            text,
            path,
            format!("directory {} does not exist", directory.display()),
        );
    }
    Ok(value)
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1–63 bytes, 253 bytes in all (a
/// DNS name's shape; an IPv4 address has it too, callers tell those apart).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn int_in_range(value: &Spanned<i64>, path: &str, min: i64, max: i64) -> Rule<i64> {
    if (min..=max).contains(&value.value) {
        Ok(value.value)
    } else {
        fail(
            value,
            path,
            format!("{} is out of range; it must be {min}–{max}", value.value),
        )
    }
}

fn in_range(value: &Spanned<usize>, path: &str, min: usize, max: usize) -> Rule<usize> {
    if (min..=max).contains(&value.value) {
        Ok(value.value)
    } else {
        fail(
            value,
            path,
            format!("{} is out of range; it must be {min}–{max}", value.value),
        )
    }
}

fn threshold(value: Option<&Spanned<i64>>, path: &str, default: u32) -> Rule<u32> {
    match value {
        None => Ok(default),
        Some(v) if v.value >= 1 && v.value <= i64::from(u32::MAX) => Ok(v.value as u32),
        Some(v) => fail(
            v,
            path,
            format!("{} is not allowed; a threshold must be ≥ 1", v.value),
        ),
    }
}

fn outlier(raw: &RawOutlier) -> Rule<OutlierConfig> {
    let base = duration(
        raw.base_ejection.as_ref(),
        "outlier_detection.base_ejection",
        Duration::from_secs(30),
        false,
    )?;
    let max = duration(
        raw.max_ejection.as_ref(),
        "outlier_detection.max_ejection",
        Duration::from_secs(300),
        false,
    )?;
    if let (Some(at), true) = (&raw.max_ejection, max < base) {
        return fail(
            at,
            "outlier_detection.max_ejection",
            format!("max_ejection {max:?} is shorter than base_ejection {base:?}"),
        );
    }
    Ok(OutlierConfig {
        consecutive_failures: threshold(
            raw.consecutive_failures.as_ref(),
            "outlier_detection.consecutive_failures",
            5,
        )?,
        base_ejection: base,
        max_ejection: max,
        max_ejected_percent: match &raw.max_ejected_percent {
            Some(p) => int_in_range(p, "outlier_detection.max_ejected_percent", 1, 100)? as u32,
            None => 50,
        },
    })
}

/// `limits.max_request_header`: at least 1 byte, at most what the parser holds.
fn max_request_header(value: Option<&Spanned<ByteSize>>) -> Rule<u64> {
    let path = "limits.max_request_header";
    match value {
        Some(v) if v.value.0 > MAX_REQUEST_HEADER => fail(
            v,
            path,
            format!(
                "the HTTP/1 parser holds at most {MAX_REQUEST_HEADER} bytes of request head \
                 (1MiB); a larger limit could not be honoured"
            ),
        ),
        _ => Ok(size(value, path)?.unwrap_or(DEFAULT_MAX_REQUEST_HEADER)),
    }
}

/// `forwarded.trusted_proxies`: CIDRs (`10.0.0.0/8`) or single addresses.
fn forwarded(raw: &RawForwarded) -> Rule<ForwardedConfig> {
    let mut trusted_proxies = Vec::new();
    for (i, entry) in raw.trusted_proxies.iter().flatten().enumerate() {
        let text = entry.value.trim();
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => {
                return fail(
                    entry,
                    format!("forwarded.trusted_proxies[{i}]"),
                    format!(
                        "{text:?} is not an address or CIDR range; write it like 10.0.0.0/8, \
                         192.168.1.7 or fd00::/8"
                    ),
                );
            }
        }
    }
    Ok(ForwardedConfig { trusted_proxies })
}

/// A size limit: at least 1 byte.
fn size(value: Option<&Spanned<ByteSize>>, path: &str) -> Rule<Option<u64>> {
    match value {
        None => Ok(None),
        Some(v) if v.value.0 == 0 => fail(v, path, "a size limit must be at least 1 byte"),
        Some(v) => Ok(Some(v.value.0)),
    }
}

/// Longest duration any key takes: longer ones are typos (`5000years`), and every deadline
/// computed from one stays far from `Instant`'s range.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn duration(
    value: Option<&Spanned<HumanDuration>>,
    path: &str,
    default: Duration,
    allow_zero: bool,
) -> Rule<Duration> {
    match value {
        None => Ok(default),
        Some(v) if v.value.0.is_zero() && !allow_zero => fail(v, path, "must be greater than zero"),
        Some(v) if v.value.0 > MAX_DURATION => fail(v, path, "must be at most 7 days"),
        Some(v) => Ok(v.value.0),
    }
}

/// A duration with no default (`None` when absent); when given, it must be > 0.
fn optional_duration(value: Option<&Spanned<HumanDuration>>, path: &str) -> Rule<Option<Duration>> {
    value
        .map(|v| duration(Some(v), path, Duration::ZERO, false))
        .transpose()
}

fn probe_path(value: Option<&Spanned<String>>, path: &str, default: &str) -> Rule<String> {
    match value {
        None => Ok(default.to_string()),
        Some(v) if v.value.starts_with('/') && !v.value.chars().any(char::is_whitespace) => {
            Ok(v.value.clone())
        }
        Some(v) => fail(
            v,
            path,
            format!("{:?} must start with '/' and contain no spaces", v.value),
        ),
    }
}

fn timeout_within_period(
    timeout: Duration,
    period: Duration,
    at: Option<&Spanned<HumanDuration>>,
    section: &str,
) -> Rule<()> {
    if timeout <= period {
        return Ok(());
    }
    let message = format!(
        "timeout {} is longer than period {}; probes would overlap",
        humantime::format_duration(timeout),
        humantime::format_duration(period)
    );
    let path = format!("{section}.timeout");
    match at {
        Some(at) => fail(at, path, message),
        None => Err(RuleError {
            position: None,
            path,
            message,
        }),
    }
}

fn readiness(raw: &RawReadiness) -> Rule<ReadinessConfig> {
    let d = ReadinessConfig::default();
    let config = ReadinessConfig {
        path: probe_path(raw.path.as_ref(), "readiness.path", &d.path)?,
        period: duration(raw.period.as_ref(), "readiness.period", d.period, false)?,
        timeout: duration(raw.timeout.as_ref(), "readiness.timeout", d.timeout, false)?,
        initial_delay: duration(
            raw.initial_delay.as_ref(),
            "readiness.initial_delay",
            d.initial_delay,
            true,
        )?,
        success_threshold: threshold(
            raw.success_threshold.as_ref(),
            "readiness.success_threshold",
            d.success_threshold,
        )?,
        failure_threshold: threshold(
            raw.failure_threshold.as_ref(),
            "readiness.failure_threshold",
            d.failure_threshold,
        )?,
    };
    timeout_within_period(
        config.timeout,
        config.period,
        raw.timeout.as_ref().or(raw.period.as_ref()),
        "readiness",
    )?;
    Ok(config)
}

fn liveness(raw: &RawLiveness) -> Rule<LivenessConfig> {
    let d = LivenessConfig::default();
    let config = LivenessConfig {
        path: probe_path(raw.path.as_ref(), "liveness.path", &d.path)?,
        tcp: raw.tcp.unwrap_or(d.tcp),
        period: duration(raw.period.as_ref(), "liveness.period", d.period, false)?,
        timeout: duration(raw.timeout.as_ref(), "liveness.timeout", d.timeout, false)?,
        initial_delay: duration(
            raw.initial_delay.as_ref(),
            "liveness.initial_delay",
            d.initial_delay,
            true,
        )?,
        failure_threshold: threshold(
            raw.failure_threshold.as_ref(),
            "liveness.failure_threshold",
            d.failure_threshold,
        )?,
    };
    timeout_within_period(
        config.timeout,
        config.period,
        raw.timeout.as_ref().or(raw.period.as_ref()),
        "liveness",
    )?;
    Ok(config)
}
