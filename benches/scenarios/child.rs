//! Child processes for the scenarios: started with output to a log, signalled by pid with the
//! system `kill` (so `kill -9` is literal), and killed with their whole process group when
//! dropped, so no node, proxy or HAProxy worker outlives the harness, even on a panic.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A child process (leading its own process group) killed with its group when dropped.
pub struct Child {
    log: PathBuf,
    child: std::process::Child,
}

impl Child {
    /// Start `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Child, String> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // Its own group: HAProxy's master forks workers, and a group kill reaches them too.
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Child {
            log: log.to_path_buf(),
            child,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Send `signal` (a name such as `TERM`, `HUP`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        send_signal(signal, &self.pid().to_string())
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

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // The group first (workers a master left behind), then the leader itself.
        let _ = send_signal("KILL", &format!("-{}", self.pid()));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_signal(signal: &str, target: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-s", signal, "--", target])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s {signal} {target} failed"))
    }
}
