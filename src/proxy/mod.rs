//! The Pingora proxy: picks a ready node from the current snapshot, evicts a node at once
//! when live traffic cannot reach it, and retries on another ready node (never the same one
//! twice). When no node is ready it answers 503 with `Retry-After`.

mod forwarded;

pub use forwarded::Trust;

use crate::cluster::Cluster;
use crate::config::{Config, LimitsConfig};
use crate::routing::{InFlight, Tried};
use crate::telemetry::LocalErrorSource;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result, RetryType};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The body of the 503 sent when no node is ready.
pub const NO_READY_NODE_BODY: &str = "no ready Micro Integrator node is available; retry shortly\n";
/// The body of the 503 sent when a connect failed for want of healthgate's own resources.
pub const OUT_OF_RESOURCES_BODY: &str =
    "healthgate is out of local resources (file descriptors or ports); retry shortly\n";

/// The `ProxyHttp` implementation.
pub struct HealthgateProxy {
    cluster: Arc<Cluster>,
    retries: usize,
    access_log: bool,
    limits: LimitsConfig,
    /// Whose `X-Forwarded-*` headers are kept.
    trust: Trust,
    client_body_timeout: Duration,
    /// `timeouts.total`, if set.
    total_timeout: Option<Duration>,
    /// `timeouts.client_idle` in whole seconds (what Pingora takes), at least 1.
    client_idle_secs: u64,
    /// Set once this process is handing over (`--upgrade`) or stopping: every answer then
    /// says `Connection: close`, so clients move to fresh connections while this process
    /// still serves, instead of meeting an idle connection closed under them.
    draining: Arc<AtomicBool>,
}

impl HealthgateProxy {
    /// A proxy over `cluster` with the retries, access log and limits of `config`.
    pub fn new(cluster: Arc<Cluster>, config: &Config) -> HealthgateProxy {
        HealthgateProxy {
            cluster,
            retries: config.balancing.retries,
            access_log: config.log.access_log,
            limits: config.limits,
            trust: Trust::new(config.forwarded.trusted_proxies.clone()),
            client_body_timeout: config.timeouts.client_body,
            total_timeout: config.timeouts.total,
            client_idle_secs: config.timeouts.client_idle.as_secs_f64().ceil().max(1.0) as u64,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that makes every answer close its connection (see `draining`).
    pub fn draining_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// A node from the current table that this request has not tried yet, counted and
    /// remembered in `ctx`.
    fn pick(&self, ctx: &mut RequestCtx) -> Option<Box<HttpPeer>> {
        let table = self.cluster.table();
        let backend = table.pick(&ctx.tried)?;
        if !ctx.tried.is_empty() {
            self.cluster.metrics().retries_total.inc();
        } else if table.is_fallback() {
            self.cluster.metrics().fallback_requests_total.inc();
        }
        ctx.tried.push(backend.id);
        ctx.attempt = Some(InFlight::new(backend.clone()));
        let mut peer = Box::new(backend.peer.clone());
        if let Some(total) = self.total_timeout {
            // No wait of this attempt may outlast what is left of the request's budget.
            let left = total.saturating_sub(ctx.started.elapsed());
            let o = &mut peer.options;
            o.read_timeout = o.read_timeout.map(|t| t.min(left));
            o.connection_timeout = o.connection_timeout.map(|t| t.min(left));
        }
        Some(peer)
    }

    /// Whether the request has used up `timeouts.total`.
    fn out_of_time(&self, ctx: &RequestCtx) -> bool {
        self.total_timeout
            .is_some_and(|total| ctx.started.elapsed() >= total)
    }

    /// The status a request gets for its size, before anything is sent upstream: 431 for
    /// a header over the limit, 413 for a declared body over it.
    fn size_verdict(&self, request: &RequestHeader) -> Option<u16> {
        let header_bytes = request.method.as_str().len()
            + request.raw_path().len()
            + request
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        if header_bytes as u64 > self.limits.max_request_header {
            return Some(431);
        }
        let declared = request
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match (declared, self.limits.max_request_body) {
            (Some(length), Some(max)) if length > max => Some(413),
            _ => None,
        }
    }

    /// Whether this request may make another attempt.
    fn may_retry(&self, ctx: &RequestCtx) -> bool {
        ctx.tried.len() <= self.retries
    }

    /// End the current attempt without a response from the node. Outlier detection counts
    /// it only when the node is at fault: a client that stalls, disconnects or sends too
    /// much must not get a healthy node ejected.
    fn attempt_failed(&self, ctx: &mut RequestCtx, node_at_fault: bool) {
        if let Some(attempt) = ctx.attempt.take() {
            attempt.backend().counters.count_status(None);
            if node_at_fault {
                self.cluster.record_answer(attempt.backend().id, None);
            }
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// Nodes this request was already sent to.
    tried: Tried,
    /// The node of the attempt in progress; counted in flight while held.
    attempt: Option<InFlight>,
    /// Status of the node's response, once its header arrived.
    upstream_status: Option<u16>,
    /// Set when the request ends in the contract's 503, with its body: no (untried) node is
    /// ready ([`NO_READY_NODE_BODY`]), or a connect failed for want of this host's resources
    /// ([`OUT_OF_RESOURCES_BODY`]: nothing is known of the node, and another attempt now
    /// would meet the same shortage).
    unavailable: Option<&'static str>,
    /// When the request arrived.
    started: Instant,
    /// Request body bytes seen so far.
    body_bytes: u64,
}

#[async_trait]
impl ProxyHttp for HealthgateProxy {
    type CTX = RequestCtx;

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // Pingora's default adds its response-compression module, disabled, which still
        // builds a context and runs its filters on every request. healthgate never
        // compresses: no modules.
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            tried: Tried::default(),
            attempt: None,
            upstream_status: None,
            unavailable: None,
            started: Instant::now(),
            body_bytes: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(code) = self.size_verdict(session.req_header()) {
            // Answered here, body unread: the connection closes after it.
            if let Err(e) = session.respond_error(code).await {
                log::debug!("could not send {code} to the client: {e}");
            }
            return Ok(true);
        }
        // Keep (up to Pingora's limit) the request body, so an idempotent request whose
        // pooled connection broke can be re-sent to another node.
        let downstream = session.as_downstream_mut();
        downstream.enable_retry_buffering();
        // A client that stalls while sending its body is given up on (408).
        downstream.set_read_timeout(Some(self.client_body_timeout));
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A body without Content-Length (chunked) is counted as it streams.
        if let (Some(chunk), Some(max)) = (body.as_ref(), self.limits.max_request_body) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > max {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over limits.max_request_body",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if self.out_of_time(ctx) {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                "timeouts.total used up before another attempt",
            ));
        }
        if let Some(peer) = self.pick(ctx) {
            return Ok(peer);
        }
        // Just started, or just took the listeners over (`--upgrade`): rather than answer
        // 503 before any node had its first probe, wait for the first verdicts.
        if ctx.tried.is_empty() && self.cluster.awaiting_first_verdicts() {
            self.cluster.first_verdicts().await;
            if let Some(peer) = self.pick(ctx) {
                return Ok(peer);
            }
        }
        ctx.unavailable = Some(NO_READY_NODE_BODY);
        self.cluster.metrics().no_ready_backend_total.inc();
        Err(Error::explain(
            ErrorType::HTTPStatus(503),
            "no ready node left to try",
        ))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(client) = session
            .as_downstream()
            .client_addr()
            .and_then(|a| a.as_inet())
        {
            let peer = client.ip();
            let prior = upstream_request.headers.get_all("x-forwarded-for");
            let forwarded_for = self
                .trust
                .forwarded_for(peer, prior.iter().map(|v| v.as_bytes()));
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
            let proto = upstream_request.headers.contains_key("x-forwarded-proto");
            if !self.trust.keeps_proto(peer, proto) {
                upstream_request
                    .insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !upstream_response.status.is_informational() {
            ctx.upstream_status = Some(upstream_response.status.as_u16());
        }
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            // Pingora keeps an HTTP/1.1 client connection open forever between requests.
            session.set_keepalive(Some(self.client_idle_secs));
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        // An answer still streaming when the budget is used up is cut: the client sees a
        // truncated body rather than a wait without end.
        if self.out_of_time(ctx) {
            let mut e = Error::explain(ErrorType::ReadTimedout, "timeouts.total used up");
            e.as_up();
            return Err(e);
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if crate::os::caused_locally(e.root_cause()) {
            // Out of descriptors or ports here: nothing is known about the node. Counted,
            // not held against it (a burst would otherwise empty the routing table), and
            // not retried (the next node would meet the same shortage): a 503.
            let detail = format!("connect to {peer}: {e}");
            self.cluster
                .local_connect_error(LocalErrorSource::Traffic, &detail);
            ctx.attempt = None;
            ctx.unavailable = Some(OUT_OF_RESOURCES_BODY);
            e.set_retry(false);
            return e;
        }
        // A failed connect to the traffic port is evidence on its own (MI's shutdown trap):
        // evict at once; the poller re-verifies before readmitting.
        if let Some(attempt) = &ctx.attempt {
            self.cluster
                .traffic_failed(attempt.backend().id, format!("connect to {peer}: {e}"));
        }
        self.attempt_failed(ctx, true);
        // Nothing was sent, so any request may go to another node.
        e.set_retry(self.may_retry(ctx));
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        upstream_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A pooled connection that broke before any answer: the node closed it (MI does so on
        // shutdown). Treat it like a refused connect.
        if upstream_reused && e.retry == RetryType::ReusedOnly {
            if let Some(attempt) = &ctx.attempt {
                let reason = format!("pooled connection to {peer} broke: {e}");
                self.cluster.traffic_failed(attempt.backend().id, reason);
            }
        }
        // Only idempotent requests (RFC 9110 §9.2.2) with their whole body kept may go
        // again: after any failure of the node before its answer began (a read failure, a
        // node that died mid-request), or on a broken reused connection. A POST that may
        // have reached the node is never replayed; nor is a request whose client failed
        // (stalled, disconnected, sent too much): another node would see the same.
        let node_at_fault = *e.esource() == ErrorSource::Upstream;
        let downstream = session.as_downstream();
        if !downstream.req_header().method.is_idempotent() || downstream.retry_buffer_truncated() {
            e.set_retry(false);
        } else if ctx.upstream_status.is_none() && node_at_fault {
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(upstream_reused);
        }
        if e.retry() && !self.may_retry(ctx) {
            e.set_retry(false);
        }
        if e.retry() || ctx.upstream_status.is_none() {
            self.attempt_failed(ctx, node_at_fault);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if let Some(body) = ctx.unavailable {
            respond_unavailable(session, body).await;
            return FailToProxy {
                error_code: 503,
                can_reuse_downstream: false,
            };
        }
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            // The node took too long: a gateway timeout, not a bad gateway.
            ErrorType::ReadTimedout | ErrorType::ConnectTimedout
                if *e.esource() == ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::ReadTimedout => 408,
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            if let Err(write_error) = session.respond_error(code).await {
                log::debug!("could not send {code} to the client: {write_error}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Counted (healthgate_no_ready_backend_total, _local_connect_errors_total) and, for a
        // shortage, logged once per burst: a log line per request would flood.
        ctx.unavailable.is_some()
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let attempt = ctx.attempt.take();
        if let Some(attempt) = &attempt {
            attempt.backend().counters.count_status(ctx.upstream_status);
            self.cluster
                .record_answer(attempt.backend().id, ctx.upstream_status);
        }
        let elapsed = ctx.started.elapsed();
        self.cluster
            .metrics()
            .request_duration_seconds
            .observe(elapsed.as_secs_f64());
        if self.access_log {
            access_log_line(session, attempt.as_ref(), elapsed);
        }
    }
}

/// One access-log line: client, method, path, status sent, node, duration.
fn access_log_line(session: &Session, attempt: Option<&InFlight>, elapsed: std::time::Duration) {
    let request = session.req_header();
    let client = session
        .client_addr()
        .map_or_else(|| "-".to_string(), ToString::to_string);
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let node = attempt.map_or("-", |a| a.backend().name.as_str());
    log::info!(
        target: "healthgate::access",
        "client={client} method={} path={} status={status} node={node} ms={:.1}",
        request.method,
        request.uri,
        elapsed.as_secs_f64() * 1000.0
    );
}

/// Write the contract's 503: `Retry-After: 1` and a one-line body, with `Connection: close`:
/// Pingora 0.9 closes the client connection after any failed proxy attempt, so saying
/// keep-alive would let the client send its next request into a closing socket (a test
/// caught exactly that).
async fn respond_unavailable(session: &mut Session, body: &'static str) {
    let body = Bytes::from_static(body.as_bytes());
    let header = (|| -> Result<ResponseHeader> {
        let mut h = ResponseHeader::build(503, Some(4))?;
        h.insert_header("retry-after", "1")?;
        h.insert_header("content-type", "text/plain; charset=utf-8")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("cache-control", "no-store")?;
        Ok(h)
    })();
    let Ok(header) = header else {
        return;
    };
    session.set_keepalive(None);
    let result = async {
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    if let Err(e) = result {
        log::debug!("could not send 503 to the client: {e}");
    }
}
