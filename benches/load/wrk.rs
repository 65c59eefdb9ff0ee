//! One `wrk` run: a Lua script sets the request body and prints what we need (p99.9 is not
//! in wrk's own summary) on one machine-readable line.

use super::procs::find_tool;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = r#"
local bytes = tonumber(os.getenv("HG_BODY_BYTES") or "0")
if bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("HGBENCH %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Socket errors plus non-2xx/3xx answers.
    pub errors: u64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

/// The load generator's fixed settings.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// wrk threads.
    pub threads: usize,
    /// Open connections.
    pub connections: usize,
    /// Request body bytes (0: GET).
    pub body_bytes: usize,
    /// HTTPS to `localhost` at the target's port (the target must be on 127.0.0.1), with
    /// keep-alive: one handshake per connection.
    pub tls: bool,
}

/// Write the Lua script into `dir`; fail clearly if wrk is missing.
pub fn prepare(dir: &Path) -> Result<(), String> {
    find_tool("wrk").ok_or("wrk not found (apt-get install wrk)")?;
    std::fs::write(dir.join("report.lua"), SCRIPT).map_err(|e| e.to_string())
}

/// Load `target` for `duration`.
pub fn run(
    dir: &Path,
    target: SocketAddr,
    load: Load,
    duration: Duration,
) -> Result<Measured, String> {
    let out = Command::new(find_tool("wrk").ok_or("wrk not found")?)
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        // wrk takes whole seconds only.
        .arg(format!("-d{}s", duration.as_secs_f64().ceil().max(1.0)))
        .arg("-s")
        .arg(dir.join("report.lua"))
        .arg(url(target, load.tls)?)
        .env("HG_BODY_BYTES", load.body_bytes.to_string())
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("HGBENCH "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result for {target}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(f64::NAN))
        .collect();
    if v.len() != 7 || v.iter().any(|x| x.is_nan()) {
        return Err(format!("unreadable wrk result: {line}"));
    }
    let seconds = v[1] / 1e6;
    Ok(Measured {
        requests: v[0] as u64,
        rps: v[0] / seconds,
        errors: (v[2] + v[3]) as u64,
        p50_us: v[4],
        p99_us: v[5],
        p999_us: v[6],
    })
}

/// `http://ADDR/`, or `https://localhost:PORT/`: the certificates of the run are issued for
/// `localhost`, and wrk sends the URL's host as SNI.
fn url(target: SocketAddr, tls: bool) -> Result<String, String> {
    if !tls {
        return Ok(format!("http://{target}/"));
    }
    if target.ip() != std::net::Ipv4Addr::LOCALHOST {
        return Err(format!(
            "an HTTPS target must be on 127.0.0.1, not {target}"
        ));
    }
    Ok(format!("https://localhost:{}/", target.port()))
}
