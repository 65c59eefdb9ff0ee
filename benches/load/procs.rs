//! Processes for the benchmarks: finding tools, starting children that die with the harness,
//! CPU time and memory from `/proc`, free ports, and a tiny HTTP GET for readiness polls.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Start `command` with output to `log` (a file), or fail with a message naming it.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the process (SIGSTOP) or let it go on (SIGCONT). Only this process: a master's
    /// workers run on.
    pub fn set_paused(&self, paused: bool) -> Result<(), String> {
        let signal = if paused { "-STOP" } else { "-CONT" };
        match self.signal(signal) {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("kill {signal} {}: {e}", self.name)),
        }
    }

    /// Send `signal` (as `kill` spells it, `-TERM`) to the process.
    fn signal(&self, signal: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    }

    /// Fail if the process already exited (a bad config, a taken port).
    pub fn check_running(&mut self, log: &Path) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            _ => Err(format!(
                "{} exited early; its log:\n{}",
                self.name,
                std::fs::read_to_string(log).unwrap_or_default()
            )),
        }
    }
}

impl Drop for Proc {
    /// SIGTERM first: a master process (nginx's) then stops its workers, which a SIGKILL to
    /// the master alone would leave running. SIGKILL if it is not gone within 3 s.
    fn drop(&mut self) {
        // A stopped process (see `set_paused`) only acts on SIGTERM once continued.
        for signal in ["-TERM", "-CONT"] {
            let _ = self.signal(signal);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of `tool` on `PATH` or in the sbin directories (nginx and haproxy live there).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Clock ticks per second for `/proc/*/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (ppid, user + system ticks) of a process, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU seconds used so far by `pid` and its direct children (nginx's workers).
pub fn cpu_seconds(pid: u32) -> f64 {
    let mut ticks = stat(pid).map_or(0, |(_, t)| t);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((ppid, t)) = stat(child) {
                if ppid == pid {
                    ticks += t;
                }
            }
        }
    }
    ticks as f64 / clock_ticks()
}

/// Resident memory of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> u64 {
    memory_bytes(pid, "VmRSS:")
}

/// Peak resident memory of `pid` in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> u64 {
    memory_bytes(pid, "VmHWM:")
}

/// A memory field of `/proc/PID/status`, in bytes (0 if unreadable).
fn memory_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `GET path` over a fresh connection; the status and body, or `None` on any failure.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// The data of a chunked body (healthgate's `/metrics` is chunked); `None` if malformed.
fn dechunk(body: &str) -> Option<String> {
    // Sizes count bytes, and a chunk may end inside a UTF-8 character: cut bytes.
    let (mut body, mut data) = (body.as_bytes(), Vec::new());
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return String::from_utf8(data).ok();
        }
        let rest = &body[line_end + 2..];
        data.extend_from_slice(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// Poll `condition` every 50 ms until it holds, or fail with `what` after `deadline`.
pub fn wait_until(
    deadline: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > deadline {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A value of a metric line `name value` in Prometheus text (unlabelled series only).
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Sum of every series of a labelled metric (`name{...} value`).
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}
