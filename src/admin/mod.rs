//! The admin listener: `/metrics`, `/status`, `/`, `/healthz`, `/liveness`, and the
//! operator's `POST /nodes/{name}/drain|undrain`.

mod histogram;
mod metrics;
mod node_series;
pub mod operator;
mod status;

pub use histogram::{DURATION_BUCKETS, DurationHistogram, HistogramSnapshot};
pub use metrics::Metrics;
pub use node_series::{NodeSeries, Probe, STATUS_CLASSES};
pub use status::{NodeStatus, Status};

use crate::cluster::Cluster;
use async_trait::async_trait;
use http::{Method, Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::net::IpAddr;
use std::sync::Arc;

/// Serves the admin endpoints from the cluster's live state.
pub struct AdminApp {
    cluster: Arc<Cluster>,
    /// Lets non-loopback clients use the operator actions.
    token: Option<String>,
}

impl AdminApp {
    /// An admin app over `cluster`; `token`, if set, authorises operator actions from
    /// non-loopback clients.
    pub fn new(cluster: Arc<Cluster>, token: Option<String>) -> AdminApp {
        AdminApp { cluster, token }
    }

    /// Drain or undrain a node, if the client may.
    fn operate(
        &self,
        name: &str,
        action: operator::Action,
        client: Option<IpAddr>,
        authorization: Option<&str>,
    ) -> Response<Vec<u8>> {
        if !operator::authorized(client, authorization, self.token.as_deref()) {
            let body =
                b"operator actions need a loopback client or Authorization: Bearer <admin_token>\n";
            return reply(StatusCode::FORBIDDEN, "text/plain", body.to_vec());
        }
        let drained = action == operator::Action::Drain;
        match self.cluster.set_drained(name, drained) {
            Some(()) => {
                let who = client.map_or_else(|| "?".to_string(), |c| c.to_string());
                log::info!("node={name} drained={drained} by the operator (admin client {who})");
                let body = serde_json::json!({ "node": name, "drained": drained });
                reply(
                    StatusCode::OK,
                    "application/json",
                    body.to_string().into_bytes(),
                )
            }
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("no node named {name:?}\n").into_bytes(),
            ),
        }
    }

    /// Route one read-only request.
    fn route(&self, method: &Method, path: &str) -> Response<Vec<u8>> {
        if method != Method::GET && method != Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET only\n".to_vec(),
            );
        }
        match path {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.cluster.metrics().render(),
            ),
            "/status" => {
                let body = serde_json::to_vec_pretty(&Status::of(&self.cluster))
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
                reply(StatusCode::OK, "application/json", body)
            }
            "/" | "/index.html" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::html(&Status::of(&self.cluster)).into_bytes(),
            ),
            "/healthz" => {
                let ready = self.cluster.table().ready();
                if ready > 0 {
                    reply(
                        StatusCode::OK,
                        "text/plain",
                        format!("ready: {ready} node(s)\n").into_bytes(),
                    )
                } else {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"no ready node\n".to_vec(),
                    )
                }
            }
            "/liveness" => reply(StatusCode::OK, "text/plain", b"alive\n".to_vec()),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let length = body.len();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        let method = request.method.clone();
        let path = request.uri.path().to_string();
        if let Some((name, action)) = operator::parse(&path) {
            if method != Method::POST {
                return reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    b"POST only\n".to_vec(),
                );
            }
            let authorization = request
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            return self.operate(name, action, client, authorization.as_deref());
        }
        let mut response = self.route(&method, &path);
        if method == Method::HEAD {
            response.body_mut().clear();
        }
        response
    }
}
