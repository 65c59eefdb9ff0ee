//! Continuous concurrent load through the proxy, and what to read from its samples.
#![allow(dead_code)]

use super::client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The outcome of one request made by [`Load`].
#[derive(Clone, Debug)]
pub struct Sample {
    pub started: Instant,
    pub finished: Instant,
    pub status: Option<u16>,
    pub node: Option<String>,
    pub error: Option<String>,
}

impl Sample {
    /// Whether the client got a 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Continuous concurrent GET load through the proxy until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Start `workers` loops of sequential GETs to `url`.
    pub fn start(url: String, workers: usize) -> Load {
        Load::start_with(client(), url, workers)
    }

    /// Start `workers` loops of sequential GETs to `url`, each with its own clone of
    /// `client` (an HTTPS one, say).
    pub fn start_with(client: reqwest::Client, url: String, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let stop = stop.clone();
                let url = url.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = client.get(&url).send().await;
                        let sample = match result {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let node = r
                                    .headers()
                                    .get("x-mi-node")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = r.bytes().await;
                                Sample {
                                    started,
                                    finished: Instant::now(),
                                    status: Some(status),
                                    node,
                                    error: body.err().map(|e| format!("body: {e}")),
                                }
                            }
                            Err(e) => Sample {
                                started,
                                finished: Instant::now(),
                                status: None,
                                node: None,
                                error: Some(format!("{e:?}")),
                            },
                        };
                        samples.push(sample);
                    }
                    samples
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stop and collect every sample.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("load worker"));
        }
        all
    }
}

/// The samples that did not get a 2xx, formatted for an assertion message.
pub fn failures(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| !s.ok() || s.error.is_some())
        .map(|s| format!("{:?} {:?} {:?}", s.status, s.node, s.error))
        .collect()
}

/// How many samples each node answered.
pub fn count_by_node(samples: &[Sample]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in samples {
        if let Some(n) = &s.node {
            *counts.entry(n.clone()).or_insert(0) += 1;
        }
    }
    counts
}
