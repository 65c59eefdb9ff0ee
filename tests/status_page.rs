//! The status page in a real browser: headless Chromium, driven through ChromeDriver, shows
//! every node with its state, follows a node going not ready while the page stays open (the
//! page reloads itself), and fits a phone-width screen.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/ensure-deps.sh` installs them).
//! `HEALTHGATE_SCREENSHOT=1` also writes `docs/status-page.png`, the README's picture.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A ChromeDriver process on a free loopback port, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = free_port();
        let binary = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("chromedriver not found: run scripts/ensure-deps.sh (Debian: chromium-driver)");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session.
    async fn session(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,720"
            ]}),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            // ChromeDriver speaks plain HTTP on loopback: no TLS connector needed.
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&self.url)
                .await
            {
                Ok(client) => return client,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("no Chromium session from {}: {e}", self.url)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's row as the page shows it now: `(data-state, text)`. `None` while the row is
/// missing or the page is reloading under us (stale element).
async fn row(browser: &Client, node: &str) -> Option<(String, String)> {
    let row = browser
        .find(Locator::Css(&format!("tr[data-node=\"{node}\"]")))
        .await
        .ok()?;
    let state = row.attr("data-state").await.ok()??;
    let text = row.text().await.ok()?;
    Some((state, text))
}

/// Wait (with a deadline) until `node`'s row is in `state` and its text contains every one
/// of `texts`.
async fn wait_row(browser: &Client, node: &str, state: &str, texts: &[&str]) {
    let mut last = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        last = row(browser, node).await;
        if let Some((s, text)) = &last {
            if s == state && texts.iter().all(|t| text.contains(t)) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{node}: wanted {state} with {texts:?}, the page shows {last:?}");
}

/// Wait until the summary line contains `text`.
async fn wait_summary(browser: &Client, text: &str) {
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Ok(summary) = browser.find(Locator::Id("summary")).await {
            last = summary.text().await.unwrap_or_default();
            if last.contains(text) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("summary: wanted {text:?}, the page shows {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_nodes_and_follows_a_node_going_not_ready() {
    let driver = ChromeDriver::start();
    let nodes = start_nodes(3);
    let proxy = ProxyConfig::new(&nodes).start().await;
    proxy.wait_ready(3).await;
    for _ in 0..6 {
        assert_eq!(proxy.get("/api").await.0, 200);
    }

    let browser = driver.session().await;
    browser.goto(&proxy.admin_url("/")).await.unwrap();
    wait_summary(&browser, "3 of 3").await;
    for node in &nodes {
        let address = node.traffic_addr().to_string();
        wait_row(&browser, node.name(), "ready", &[&address, "success"]).await;
    }

    // mi-2 gets a faulty CApp while the page stays open: the page reloads itself and shows it.
    nodes[1].set_faulty_capps(vec!["orders_1.0.0.car".into()]);
    wait_row(
        &browser,
        "mi-2",
        "not_ready",
        &["orders_1.0.0.car", "failure"],
    )
    .await;
    wait_summary(&browser, "2 of 3").await;
    wait_row(&browser, "mi-1", "ready", &[]).await;

    if std::env::var_os("HEALTHGATE_SCREENSHOT").is_some() {
        let png = browser.screenshot().await.unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-page.png");
        std::fs::write(path, png).unwrap();
    }

    // A phone-width screen: one card per node, nothing wider than the screen.
    browser.set_window_size(390, 844).await.unwrap();
    browser.refresh().await.unwrap();
    wait_row(&browser, "mi-2", "not_ready", &["orders_1.0.0.car"]).await;
    let fits = browser
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits,
        serde_json::Value::Bool(true),
        "no horizontal scrolling"
    );
    browser.close().await.unwrap();
}
