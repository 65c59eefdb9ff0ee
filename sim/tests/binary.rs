//! The `mi-sim` binary: driven through its control API, and SIGTERM behaves like MI's (the
//! traffic port closes first, `/healthz` answers through the grace, then the process exits).
#![allow(clippy::unwrap_used)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

/// Poll `condition` every 20 ms until it holds; panic with `what` after `deadline`.
async fn eventually<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn mi_sim_binary_is_driven_at_run_time() {
    let (traffic, health, control) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mi-sim"))
        .args(["--name", "mi-bin", "--traffic-port", &traffic.to_string()])
        .args([
            "--health-port",
            &health.to_string(),
            "--shutdown-grace",
            "1s",
        ])
        .args(["--control", &format!("127.0.0.1:{control}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health: SocketAddr = ([127, 0, 0, 1], health).into();
    let traffic: SocketAddr = ([127, 0, 0, 1], traffic).into();
    let control = format!("http://127.0.0.1:{control}");
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |url: String| {
        let c = c.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    eventually(Duration::from_secs(10), "mi-sim up", || async {
        c.get(format!("{control}/")).send().await.is_ok() && accepts(health).await
    })
    .await;

    let post = c.post(format!("{control}/faulty")).body("bad_1.0.0.car");
    assert_eq!(post.send().await.unwrap().status(), 200);
    let (status, body) = get(format!("http://{health}/healthz")).await;
    assert_eq!(status, 500);
    assert!(
        body.contains(r#""Faulty CAPPs" : ["bad_1.0.0.car"]"#),
        "{body}"
    );
    let del = c.delete(format!("{control}/faulty")).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(get(format!("http://{health}/healthz")).await.0, 200);
    let (_, state) = get(format!("{control}/")).await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["phase"], "running");

    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    eventually(
        Duration::from_secs(3),
        "traffic port closed first",
        || async { !accepts(traffic).await },
    )
    .await;
    assert_eq!(
        get(format!("http://{health}/healthz")).await.0,
        200,
        "healthz answers during the grace"
    );
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success());
    assert!(!accepts(health).await);
}
