//! The admin listener, HTTP only: `/metrics`, `/status`, `/`, `/healthz`, `/liveness`, and
//! the operator's `POST /nodes/{name}/drain|undrain`. It reads the cluster when asked and
//! renders; it keeps no state of its own.

pub mod operator;
mod status;

pub use status::{NodeStatus, Status};

use crate::cluster::{Cluster, DrainError};
use async_trait::async_trait;
use http::{Method, Response, StatusCode, Version, header};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::Arc;

/// Bytes of metrics text written at a time: a scrape holds one piece, not the whole text.
const METRICS_PIECE_BYTES: usize = 64 * 1024;

/// How a request is answered.
enum Answer {
    /// A response built whole (every endpoint's answer is small, except the metrics).
    Whole(Response<Vec<u8>>),
    /// `/metrics`, written piece by piece as it is rendered; `head`: the header only.
    Metrics { head: bool },
}

/// Serves the admin endpoints from the cluster's live state.
pub struct AdminApp {
    cluster: Arc<Cluster>,
    /// When set, every operator action must carry it (see [`operator`]).
    token: Option<String>,
    /// The admin listener's own address: operator requests without a token must name it.
    listener: SocketAddr,
}

impl AdminApp {
    /// An admin app over `cluster`, listening on `listener`; `token`, if set, is what every
    /// operator action must carry.
    pub fn new(cluster: Arc<Cluster>, token: Option<String>, listener: SocketAddr) -> AdminApp {
        AdminApp {
            cluster,
            token,
            listener,
        }
    }

    /// Drain or undrain a node, if the request may.
    fn operate(
        &self,
        name: &str,
        action: operator::Action,
        credentials: &operator::Credentials<'_>,
    ) -> Response<Vec<u8>> {
        if let Err(refusal) = operator::authorize(credentials, self.token.as_deref(), self.listener)
        {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut response = reply(status, "text/plain", refusal.explain().as_bytes().to_vec());
            if refusal == operator::Refusal::Token {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            return response;
        }
        let drained = action == operator::Action::Drain;
        match self.cluster.set_drained(name, drained) {
            Ok(outcome) => {
                let who = credentials
                    .client
                    .map_or_else(|| "?".to_string(), |c| c.to_string());
                log::info!("node={name} drained={drained} by the operator (admin client {who})");
                let mut body = serde_json::json!({
                    "node": name,
                    "drained": drained,
                    "changed": outcome.changed,
                });
                if let Some(persisted) = outcome.persisted {
                    body["persisted"] = persisted.into();
                }
                reply(
                    StatusCode::OK,
                    "application/json",
                    body.to_string().into_bytes(),
                )
            }
            Err(e @ DrainError::NoSuchNode(_)) => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("{e}\n").into_bytes(),
            ),
        }
    }

    /// Route one read-only request.
    fn route(&self, method: &Method, path: &str) -> Answer {
        if method != Method::GET && method != Method::HEAD {
            return Answer::Whole(reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET only\n".to_vec(),
            ));
        }
        let whole = match path {
            "/metrics" => {
                let head = method == Method::HEAD;
                return Answer::Metrics { head };
            }
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
        };
        Answer::Whole(whole)
    }

    /// The answer to the request just read.
    fn answer(&self, session: &ServerSession) -> Answer {
        let request = session.req_header();
        let method = request.method.clone();
        let path = request.uri.path();
        if let Some((name, action)) = operator::parse(path) {
            if method != Method::POST {
                return Answer::Whole(reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    b"POST only\n".to_vec(),
                ));
            }
            let Ok(name) = name else {
                return Answer::Whole(reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    b"the node name is not valid percent-encoded UTF-8\n".to_vec(),
                ));
            };
            let text = |h: header::HeaderName| request.headers.get(h).and_then(|v| v.to_str().ok());
            let credentials = operator::Credentials {
                client: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                authorization: text(header::AUTHORIZATION),
                host: text(header::HOST).or(request.uri.authority().map(|a| a.as_str())),
                origin: text(header::ORIGIN),
            };
            return Answer::Whole(self.operate(&name, action, &credentials));
        }
        match self.route(&method, path) {
            Answer::Whole(mut response) if method == Method::HEAD => {
                response.body_mut().clear();
                Answer::Whole(response)
            }
            answer => answer,
        }
    }

    /// Write the metrics as they are rendered, one piece at a time.
    async fn write_metrics(&self, session: &mut ServerSession, head: bool) -> pingora::Result<()> {
        let mut response = ResponseHeader::build(StatusCode::OK, Some(4))?;
        response.insert_header(header::CONTENT_TYPE, "text/plain; version=0.0.4")?;
        response.insert_header(header::CACHE_CONTROL, "no-store")?;
        // The length is known only once everything is rendered: chunked for HTTP/1.1
        // (a cut scrape is then detectable), else the body ends with the connection.
        if session.req_header().version == Version::HTTP_11 {
            response.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        } else {
            session.set_keepalive(None);
        }
        session.write_response_header(Box::new(response)).await?;
        if head {
            return Ok(());
        }
        let scrape = self.cluster.scrape();
        for piece in self
            .cluster
            .metrics()
            .exposition(scrape, METRICS_PIECE_BYTES)
        {
            session.write_response_body(piece.into(), false).await?;
        }
        Ok(())
    }
}

/// Write a response built whole.
async fn write_whole(
    session: &mut ServerSession,
    response: Response<Vec<u8>>,
) -> pingora::Result<()> {
    let (parts, body) = response.into_parts();
    session
        .write_response_header(Box::new(parts.into()))
        .await?;
    if !body.is_empty() {
        session.write_response_body(body.into(), true).await?;
    }
    Ok(())
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

/// Pingora's `ServeHttp` would be simpler, but it wants every body whole, and the
/// metrics of 5000 nodes are ~29 MB of text: this is its loop with a streamed `/metrics`.
#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                log::debug!("admin: reading a request failed: {e}");
                return None;
            }
        }
        // As `ServeHttp`: idle keep-alive for 60 s, none once the server is stopping.
        session.set_keepalive((!*shutdown.borrow()).then_some(60));
        let written = match self.answer(&session) {
            Answer::Whole(response) => write_whole(&mut session, response).await,
            Answer::Metrics { head } => self.write_metrics(&mut session, head).await,
        };
        if let Err(e) = written {
            log::debug!("admin: answering {} failed: {e}", session.request_summary());
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(e) => {
                log::debug!("admin: finishing an answer failed: {e}");
                None
            }
        }
    }
}
