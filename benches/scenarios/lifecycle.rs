//! Scenarios on the proxy itself: configuration reload, graceful stop with slow requests in
//! flight, binary upgrade. healthgate's reload (SIGHUP) and upgrade (`--upgrade`, SIGQUIT)
//! are reported "n/a" when the build under test does not have them.

use crate::nodes::NodeSpec;
use crate::procs::Signal;
use crate::proxies::{Extra, GRACE_SECONDS, Kind, Proxy};
use crate::report::{Incident, Outcome};
use crate::run::Run;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a reload may take to show.
const RELOAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long a node added by a reload may take to be routed.
const IN_DEADLINE: Duration = Duration::from_secs(10);

/// HAProxy's seamless reload: save server states, SIGUSR2 to the master, wait until a new
/// worker answers the stats page.
async fn haproxy_reload(proxy: &Proxy) -> Result<(), String> {
    proxy.haproxy_save_state()?;
    let old = proxy.haproxy_worker().ok_or("no HAProxy worker pid")?;
    proxy.process.signal(Signal::SIGUSR2)?;
    let started = Instant::now();
    while proxy.haproxy_worker().is_none_or(|pid| pid == old) {
        if started.elapsed() > RELOAD_DEADLINE {
            return Err(format!(
                "no new HAProxy worker; log:\n{}",
                proxy.process.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Scenario 7: reload under load: the configuration drops the first node and adds a running fourth.
pub async fn reload(run: &mut Run, added: &NodeSpec) -> Result<Outcome, String> {
    let specs = run.cluster.specs();
    let removed = specs[0].name.clone();
    let new: Vec<NodeSpec> = specs[1..]
        .iter()
        .filter(|s| s.name != added.name)
        .cloned()
        .chain([added.clone()])
        .collect();
    run.proxy.write_config(&new, &Extra::default())?;
    let at = Instant::now();
    let mut notes = Vec::new();
    if run.kind == Kind::Healthgate {
        run.proxy.process.signal(Signal::SIGHUP)?;
        let started = Instant::now();
        loop {
            if run.proxy.process.exited() {
                return Ok(Outcome::na(
                    "SIGHUP ended healthgate: this build has no reload",
                ));
            }
            let reloaded = run
                .proxy
                .admin
                .reloads_succeeded()
                .await
                .is_some_and(|n| n >= 1.0);
            let routed = run.proxy.admin.routed().await.unwrap_or_default();
            if reloaded && routed.contains_key(&added.name) && !routed.contains_key(&removed) {
                break;
            }
            if started.elapsed() > RELOAD_DEADLINE {
                return Ok(Outcome::na(
                    "no healthgate_config_reloads_total{result=\"success\"} and new node list after SIGHUP",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        haproxy_reload(&run.proxy).await?;
        notes.push("HAProxy's counters restart with the new worker: answered requests only".into());
    }
    run.view.wait(&removed, false, RELOAD_DEADLINE).await;
    run.view.wait(&added.name, true, IN_DEADLINE).await;
    Ok(Outcome {
        incidents: vec![
            Incident::between(&removed, at, None),
            Incident {
                node: added.name.clone(),
                out_at: None,
                back_at: Some(at),
                bad: Vec::new(),
            },
        ],
        window: Some((at, Instant::now())),
        counters_kept: run.kind == Kind::Healthgate,
        notes,
        ..Outcome::default()
    })
}

/// Scenario 8: graceful stop with slow (2 s) requests in flight: healthgate SIGTERM, HAProxy
/// SIGUSR1 (soft stop). Counts the requests in flight at the signal.
pub async fn sigterm(run: &mut Run) -> Result<Outcome, String> {
    for i in 0..run.cluster.nodes.len() {
        run.cluster.control(i, "POST", "/delay", "2s").await?;
    }
    // Every connection has a slow request in flight by then.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let at = Instant::now();
    run.proxy.process.signal(if run.kind == Kind::Healthgate {
        Signal::SIGTERM
    } else {
        Signal::SIGUSR1
    })?;
    let exited = run
        .proxy
        .process
        .wait_exit(Duration::from_secs(GRACE_SECONDS * 2 + 10))
        .await;
    let note = match exited {
        true => format!(
            "exited {:.1} s after the signal",
            at.elapsed().as_secs_f64()
        ),
        false => "still running after the grace period".into(),
    };
    Ok(Outcome {
        in_flight_at: Some(at),
        notes: vec![note],
        ..Outcome::default()
    })
}

/// Why this healthgate build cannot do a binary upgrade, if it cannot: `--upgrade` missing
/// from `--help`, or `upgrade_socket` rejected by `--check`.
pub fn upgrade_unsupported(dir: &Path) -> Option<String> {
    let binary = env!("CARGO_BIN_EXE_healthgate");
    let help = Command::new(binary).arg("--help").output().ok()?;
    if !String::from_utf8_lossy(&help.stdout).contains("--upgrade") {
        return Some("this build has no --upgrade flag".into());
    }
    let config = dir.join("upgrade-check.yaml");
    let yaml = format!(
        "upgrade_socket: \"{}\"\nnodes:\n  - {{ name: a, host: 127.0.0.1 }}\n",
        dir.join("check.sock").display()
    );
    std::fs::write(&config, yaml).ok()?;
    let check = Command::new(binary)
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .ok()?;
    (!check.status.success()).then(|| {
        let err = String::from_utf8_lossy(&check.stderr);
        format!(
            "upgrade_socket rejected: {}",
            err.trim().rsplit(": ").next().unwrap_or_default()
        )
    })
}

/// Scenario 9: binary upgrade under load. healthgate: a new process with `--upgrade`, 0.5 s, then
/// SIGQUIT to the old one, which hands over its sockets and exits once its requests finished.
/// HAProxy: a reload with the same binary.
pub async fn upgrade(run: &mut Run) -> Result<Outcome, String> {
    let at;
    let mut notes = Vec::new();
    if run.kind == Kind::Healthgate {
        run.proxy.spawn_upgrade()?;
        // The handover protocol: the new process gets this long to connect to the socket.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if run.proxy.process.exited() {
            return Ok(Outcome::na(format!(
                "the --upgrade process exited: {}",
                run.proxy.process.log_tail()
            )));
        }
        at = Instant::now();
        let old = run.proxy.retired().ok_or("no old process")?;
        old.signal(Signal::SIGQUIT)?;
        let gone = old
            .wait_exit(Duration::from_secs(GRACE_SECONDS * 2 + 10))
            .await;
        notes.push(match gone {
            true => format!(
                "old process exited {:.1} s after SIGQUIT",
                at.elapsed().as_secs_f64()
            ),
            false => "old process still running after the grace period".into(),
        });
        if run.proxy.process.exited() {
            return Err(format!(
                "the new process exited: {}",
                run.proxy.process.log_tail()
            ));
        }
    } else {
        at = Instant::now();
        haproxy_reload(&run.proxy).await?;
    }
    Ok(Outcome {
        window: Some((at, Instant::now())),
        notes,
        ..Outcome::default()
    })
}
