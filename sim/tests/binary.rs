//! The `mi-sim` binary: driven through its control API, and SIGTERM behaves like MI's (the
//! traffic port closes first, `/healthz` answers through the grace, then the process exits);
//! with `--https` its traffic port serves TLS on 8243 + offset with a generated CA.
#![allow(clippy::unwrap_used)]

mod common;

use common::{accepts, eventually, https_get};
use mi_sim::tls::{certs_from_pem, client_config};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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

#[tokio::test]
async fn mi_sim_binary_serves_https_on_8243_plus_offset() {
    // An offset that puts 8243 + offset on a port that was free a moment ago (ephemeral ports
    // are all above 8243); the health port is explicit, 9191 + offset may be taken.
    let traffic = free_port();
    let offset = traffic - 8243;
    let (health, control) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mi-sim"))
        .args([
            "--name",
            "mi-https",
            "--https",
            "--offset",
            &offset.to_string(),
        ])
        .args(["--health-port", &health.to_string()])
        .args(["--control", &format!("127.0.0.1:{control}")])
        .arg("--tls-dir")
        .arg(&tls_dir)
        .args(["--shutdown-grace", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let traffic: SocketAddr = ([127, 0, 0, 1], traffic).into();
    let health: SocketAddr = ([127, 0, 0, 1], health).into();
    let ca = tls_dir.join("ca.pem");
    eventually(
        Duration::from_secs(10),
        "mi-sim up with its CA written",
        || async { ca.exists() && accepts(health).await },
    )
    .await;
    assert!(tls_dir.join("cert.pem").exists() && tls_dir.join("key.pem").exists());

    let roots = certs_from_pem(&std::fs::read_to_string(&ca).unwrap()).unwrap();
    let answer = https_get(traffic, client_config(&roots).unwrap(), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-mi-node"), Some("mi-https"));

    let state = reqwest::get(format!("http://127.0.0.1:{control}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["scheme"], "https");
    assert_eq!(state["traffic"], traffic.to_string());

    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success());
}

#[tokio::test]
async fn mi_sim_binary_serves_given_certificate_files() {
    let pki = mi_sim::tls::TestPki::localhost().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_files(dir.path()).unwrap();
    // An explicit --traffic-port wins over 8243 + offset.
    let (traffic, health) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mi-sim"))
        .args(["--name", "mi-files", "--traffic-port", &traffic.to_string()])
        .args([
            "--health-port",
            &health.to_string(),
            "--shutdown-grace",
            "0s",
        ])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let traffic: SocketAddr = ([127, 0, 0, 1], traffic).into();
    let health: SocketAddr = ([127, 0, 0, 1], health).into();
    eventually(Duration::from_secs(10), "mi-sim up", || async {
        accepts(health).await
    })
    .await;
    let answer = https_get(traffic, pki.client_config().unwrap(), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-mi-node"), Some("mi-files"));

    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success());
}
