//! Processes for the benchmarks, shared by every bench target (each includes this file with
//! `#[path]`): starting children with their output in a log, signalling them, stopping them
//! when dropped, finding tools and the `mi-sim` binary, CPU time and memory from `/proc`, free
//! ports, and a tiny HTTP GET for readiness polls.

pub use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A child process with its output appended to a log, stopped and reaped when dropped.
///
/// [`Proc::spawn`]: in the harness's process group (Ctrl-C reaches it too); dropping it sends
/// SIGTERM — a master process (nginx's) then stops its workers — and SIGKILL if it is not gone
/// within 3 s. [`Proc::spawn_group`]: leading a group of its own; dropping it kills the whole
/// group at once (HAProxy's old workers after a reload, any node, even on a panic).
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    log: PathBuf,
    /// Where this process's output starts in `log` (a restarted node appends to the same one).
    log_start: u64,
    own_group: bool,
}

impl Proc {
    /// Start `command` in this process group, output appended to `log`, or fail naming it.
    pub fn spawn(name: &str, command: Command, log: &Path) -> Result<Proc, String> {
        Proc::start(name, command, log, false)
    }

    /// Start `command` leading a process group of its own, output appended to `log`.
    pub fn spawn_group(name: &str, mut command: Command, log: &Path) -> Result<Proc, String> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        Proc::start(name, command, log, true)
    }

    fn start(
        name: &str,
        mut command: Command,
        log: &Path,
        own_group: bool,
    ) -> Result<Proc, String> {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let log_start = out.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
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
            log: log.to_path_buf(),
            log_start,
            own_group,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// Send `signal` to the process (only to it: a master's workers do not get it).
    pub fn signal(&self, signal: Signal) -> Result<(), String> {
        kill(self.nix_pid(), signal).map_err(|e| format!("{signal} to {}: {e}", self.name))
    }

    /// Stop the process (SIGSTOP) or let it go on (SIGCONT). Only this process: a master's
    /// workers run on.
    pub fn set_paused(&self, paused: bool) -> Result<(), String> {
        self.signal(if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        })
    }

    /// Whether the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until the process exits, polling; false if it still runs after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> bool {
        let started = Instant::now();
        while !self.exited() {
            if started.elapsed() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Fail if the process already exited (a bad config, a taken port), with its log.
    pub fn check_running(&mut self) -> Result<(), String> {
        if self.exited() {
            Err(format!(
                "{} exited early; its log:\n{}",
                self.name,
                self.log()
            ))
        } else {
            Ok(())
        }
    }

    /// What this process has written to its log so far.
    pub fn log(&self) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.seek(SeekFrom::Start(self.log_start));
            let _ = file.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.own_group {
            // The group first (workers a master left behind), then the leader itself.
            let _ = killpg(self.nix_pid(), Signal::SIGKILL);
        } else {
            // A stopped process (see `set_paused`) only acts on SIGTERM once continued.
            for signal in [Signal::SIGTERM, Signal::SIGCONT] {
                let _ = self.signal(signal);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && !self.exited() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `mi-sim` binary (the workspace's `sim` package), built beside this bench's healthgate
/// with the same profile. A bench can name only its own package's binaries
/// (`CARGO_BIN_EXE_…`), so it asks cargo for this one, once per run (quick when it is fresh).
pub fn mi_sim() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build_mi_sim).clone()
}

fn build_mi_sim() -> Result<PathBuf, String> {
    let healthgate = Path::new(env!("CARGO_BIN_EXE_healthgate"));
    let out = healthgate
        .parent()
        .ok_or("healthgate binary has no directory")?;
    let target = out.parent().ok_or("no target directory")?;
    let profile = match out.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(profile) => profile,
        None => return Err(format!("profile of {}", healthgate.display())),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "mi-sim",
            "--bin",
            "mi-sim",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cargo build -p mi-sim: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p mi-sim: {status}"));
    }
    Ok(out.join("mi-sim"))
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
