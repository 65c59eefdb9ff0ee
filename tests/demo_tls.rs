//! `healthgate demo --tls`, the built binary on free ports: it prints the CA it generated,
//! and a client that trusts only that CA gets 200 over HTTPS from its TLS listener (HTTP/1.1
//! and HTTP/2), from nodes that themselves serve HTTPS; the plain listener still answers.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the demo gets to print its banner, and its nodes to become ready.
const DEADLINE: Duration = Duration::from_secs(30);

/// A loopback address whose port was free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A running `healthgate demo --tls`; killed when dropped.
struct Demo {
    child: Child,
    /// Its TMPDIR (where it writes the certificates) and its stdout and stderr files.
    dir: tempfile::TempDir,
    listen: SocketAddr,
    admin: SocketAddr,
    tls_listen: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The banner's `CA:` line.
    fn ca_path(&self) -> PathBuf {
        let stdout = self.stdout();
        let line = stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("CA:"))
            .unwrap_or_else(|| panic!("no CA line in the banner:\n{stdout}"));
        PathBuf::from(line.trim())
    }

    /// The control API addresses the banner lists, one per node.
    fn controls(&self) -> Vec<String> {
        self.stdout()
            .lines()
            .filter_map(|l| l.split_once(", control ").map(|(_, url)| url.to_string()))
            .collect()
    }
}

/// Start the demo on free ports and wait for its banner. A port found free may be taken
/// before the demo binds it: the demo then exits at once, and is started again on others.
async fn start_demo() -> Demo {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin, tls_listen) = (free_addr(), free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_healthgate"))
            .args(["demo", "--tls"])
            .args(["--listen", &listen.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--tls-listen", &tls_listen.to_string()])
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("spawn healthgate demo --tls");
        let mut demo = Demo {
            child,
            dir,
            listen,
            admin,
            tls_listen,
        };
        let started = Instant::now();
        loop {
            if demo.stdout().contains("Ctrl-C stops.") {
                return demo;
            }
            if demo.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the demo printed no banner within {DEADLINE:?}:\n{}\n{}",
                demo.stdout(),
                demo.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "the demo exited at start (a port taken?):\n{}",
            demo.stderr()
        );
    }
    panic!("the demo did not start in 3 attempts");
}

/// A client that trusts only `ca` (no system roots), reaching `localhost` at `tls_listen`.
fn client_trusting(ca: &Path, tls_listen: SocketAddr) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", tls_listen)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Poll `url` until it answers 200 (the nodes become ready about a second after start).
async fn first_200(client: &reqwest::Client, url: &str, demo: &Demo) -> reqwest::Response {
    let started = Instant::now();
    loop {
        let last = match client.get(url).send().await {
            Ok(response) if response.status() == 200 => return response,
            Ok(response) => format!("status {}", response.status()),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            started.elapsed() < DEADLINE,
            "{url} did not answer 200 within {DEADLINE:?} (last: {last}):\n{}",
            demo.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tls_serves_https_and_http2_with_the_printed_ca() {
    let demo = start_demo().await;
    let banner = demo.stdout();
    let ca = demo.ca_path();
    assert!(
        ca.starts_with(demo.dir.path()) && ca.is_file(),
        "the CA is written under TMPDIR: {}",
        ca.display()
    );
    let url = format!("https://localhost:{}/", demo.tls_listen.port());
    assert!(
        banner.contains(&format!("curl -i --cacert {} {url}", ca.display())),
        "banner: {banner}"
    );
    assert!(banner.contains("--http2"), "banner: {banner}");

    // HTTP/1.1 over TLS, verified against the printed CA and the name localhost.
    let http1 = client_trusting(&ca, demo.tls_listen);
    let response = first_200(&http1, &url, &demo).await;
    assert!(
        response.headers()["x-mi-node"]
            .to_str()
            .unwrap()
            .starts_with("mi-")
    );
    assert_eq!(response.headers()["x-seen-forwarded-proto"], "https");

    // HTTP/2 (ALPN) on the same listener; the nodes still get HTTP/1.1 over TLS.
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    // The plain listener beside it answers too.
    let plain = reqwest::Client::new();
    let response = first_200(&plain, &format!("http://{}/", demo.listen), &demo).await;
    assert_eq!(response.headers()["x-seen-forwarded-proto"], "http");

    // Every node serves HTTPS (its control API says so), and all three are ready.
    let controls = demo.controls();
    assert_eq!(controls.len(), 3, "banner: {banner}");
    for control in controls {
        let state: serde_json::Value = plain
            .get(&control)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["scheme"], "https", "{control}: {state}");
    }
    let status: serde_json::Value = plain
        .get(format!("http://{}/status", demo.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3));
}

/// A client that does not trust the demo's CA is refused: the listener's certificate is the
/// generated one, not something any client would accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tls_certificate_is_not_trusted_without_the_ca() {
    let demo = start_demo().await;
    let ca = demo.ca_path();
    let url = format!("https://localhost:{}/", demo.tls_listen.port());
    // Wait until it serves, so the refusal below is about trust, not readiness.
    first_200(&client_trusting(&ca, demo.tls_listen), &url, &demo).await;
    let other = mi_sim::tls::TestPki::localhost().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = other.write_files(dir.path()).unwrap();
    let error = client_trusting(&files.ca, demo.tls_listen)
        .get(&url)
        .send()
        .await
        .expect_err("a client trusting another CA must fail the handshake");
    assert!(error.is_connect(), "{error:?}");
}
