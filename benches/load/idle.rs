//! What an idle client connection costs: the resident memory of healthgate and of HAProxy
//! before and after each has been handed 9 900 keep-alive client connections that made
//! one request and then sit idle (`--only idle-10k`). Not quite 10 000: HAProxy reserves
//! two descriptors per `maxconn` and refuses to start when that passes the hard open-file
//! limit, which is 20 000 on the machine the numbers come from and cannot be raised there.

use super::peers::{self, Nodes, Workdir};
use super::procs::{Proc, free_port, rss_bytes};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The scenario's name for `--only`.
pub const NAME: &str = "idle-10k";
/// Idle client connections each proxy is given.
const CONNECTIONS: usize = 9_900;
/// HAProxy's `maxconn`: the connections and the warm-up one, within 20 000 descriptors.
const HAPROXY_MAXCONN: usize = 9_950;
/// Descriptors the bench and its children need at least: the connections on both ends
/// live in different processes, so each needs one per connection and some room.
const OPEN_FILES: u64 = CONNECTIONS as u64 + 2_000;

/// One proxy's memory with and without the idle connections.
struct Row {
    label: &'static str,
    before: u64,
    after: u64,
    held: usize,
}

/// Measure healthgate and HAProxy, one at a time; the Markdown section.
pub fn run(dir: &Workdir) -> Result<String, String> {
    raise_open_files()?;
    let nodes = Nodes::loopback(3);
    let _backend = peers::nginx_backend(dir, &nodes)?;
    let mut rows = Vec::new();
    for label in ["HAProxy 2.6", "healthgate"] {
        let port = free_port();
        let proc = match label {
            "healthgate" => {
                let binary = std::path::Path::new(env!("CARGO_BIN_EXE_healthgate"));
                // Above the default cap, which leaves room for a node connection per client.
                let cap = format!("limits:\n  max_connections: {}\n", 2 * CONNECTIONS);
                peers::healthgate_binary(dir, &nodes, 1, port, binary, "healthgate-idle", &cap)?
            }
            _ => peers::haproxy_with_maxconn(dir, &nodes, 1, port, HAPROXY_MAXCONN)?,
        };
        rows.push(measure(
            label,
            &proc,
            SocketAddr::from(([127, 0, 0, 1], port)),
        )?);
    }
    let mut out = format!(
        "### {NAME}: {CONNECTIONS} idle keep-alive client connections, 1 proxy thread\n\n\
         Each connection made one GET and then sits idle; RSS from /proc before the first and \
         1 s after the last.\n\n\
         | target | connections held | RSS before (MiB) | RSS after (MiB) | KiB per connection |\n\
         |---|---:|---:|---:|---:|\n"
    );
    for r in &rows {
        let per = r.after.saturating_sub(r.before) as f64 / 1024.0 / r.held.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {per:.2} |",
            r.label,
            r.held,
            r.before as f64 / 1048576.0,
            r.after as f64 / 1048576.0
        );
    }
    if let [haproxy, healthgate] = &rows[..] {
        let per = |r: &Row| r.after.saturating_sub(r.before) as f64 / r.held.max(1) as f64;
        let _ = writeln!(
            out,
            "\nhealthgate / HAProxy, memory per idle connection: {:.2}×",
            per(healthgate) / per(haproxy).max(1.0)
        );
    }
    Ok(out)
}

/// The soft open-file limit raised to the hard one (the proxies inherit it).
fn raise_open_files() -> Result<(), String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if hard < OPEN_FILES {
        return Err(format!(
            "{NAME} needs {OPEN_FILES} open files; the hard limit is {hard}"
        ));
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Open the connections to `addr`, one request each, and read the proxy's memory.
fn measure(label: &'static str, proc: &Proc, addr: SocketAddr) -> Result<Row, String> {
    // One request first: buffers and pools that any traffic allocates are not counted.
    let _warm = open(addr)?;
    let before = rss_bytes(proc.pid());
    let mut held = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        match open(addr) {
            Ok(conn) => held.push(conn),
            Err(e) => {
                eprintln!("{label}: stopped at {} connections: {e}", held.len());
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_bytes(proc.pid());
    Ok(Row {
        label,
        before,
        after,
        held: held.len(),
    })
}

/// A connection that made one GET and read its whole answer.
fn open(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    conn.write_all(b"GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the answer".into());
        }
        answer.extend_from_slice(&buf[..n]);
        if answer_complete(&answer) {
            return Ok(conn);
        }
    }
}

/// Whether `answer` holds a whole response framed by Content-Length.
fn answer_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    answer.len() >= end + 4 + length
}
