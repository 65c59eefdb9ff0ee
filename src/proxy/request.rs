//! One request, start to answer: check its size, pick a ready node, send it there, and on a
//! failure decide — by who failed and what was sent — whether another node may get it.

use super::body::{AccessLine, ClientBody, ClientFault, DownBody, FaultCell, Finish, UpBody};
use super::headers;
use super::upstream::{self, ConnectError, Sender};
use super::{Connection, HealthgateProxy, answers};
use crate::routing::{DEFAULT_ROUTE, InFlight, Tried};
use crate::telemetry::LocalErrorSource;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use std::sync::Arc;
use std::time::Instant;

/// Bodies up to this size of requests that may be sent again (idempotent methods) are
/// read whole before the first attempt, so another node can get them.
const REPLAY_BUFFER: u64 = 64 * 1024;

/// Where a request is between its attempts.
pub(super) struct Exchange<'a> {
    pub proxy: &'a HealthgateProxy,
    pub conn: &'a Connection,
    pub started: Instant,
    pub tried: Tried,
    /// Method and target, kept for the access log when it is on.
    pub logged: Option<(http::Method, http::Uri)>,
    /// The request's path and query (a reference count, no copy): each pick matches it
    /// against the CApp map of the table it picks from.
    pub target: Option<http::uri::PathAndQuery>,
    /// When the latest pick found no node for a mapped CApp's path: the 503 body naming
    /// it, from that pick's table (a reload may have changed the map since).
    pub refusal: Option<Bytes>,
}

impl Exchange<'_> {
    /// A finished request's bookkeeping, for an answer with `status`.
    pub fn finish(&self, status: u16, attempt: Option<InFlight>) -> Finish {
        let access = self.logged.as_ref().map(|(method, uri)| AccessLine {
            client: self.conn.peer_text(),
            method: method.clone(),
            path: uri.clone(),
            status,
        });
        Finish {
            started: self.started,
            duration: self
                .proxy
                .cluster
                .metrics()
                .request_duration_seconds
                .clone(),
            attempt,
            access,
            phase: self.conn.phase.clone(),
        }
    }

    /// An answer of healthgate's own that closes the connection.
    pub fn answer(&self, status: StatusCode, body: &'static str) -> Response<DownBody> {
        let finish = self.finish(status.as_u16(), None);
        answers::own(status, body, finish)
    }

    /// Whether `timeouts.total` is used up.
    fn out_of_time(&self) -> bool {
        self.proxy
            .settings
            .timeouts
            .total
            .is_some_and(|total| self.started.elapsed() >= total)
    }

    /// What is left of `timeouts.total`, capped at `limit`.
    pub fn within_total(&self, limit: std::time::Duration) -> std::time::Duration {
        match self.proxy.settings.timeouts.total {
            Some(total) => limit.min(total.saturating_sub(self.started.elapsed())),
            None => limit,
        }
    }

    /// The end of `timeouts.total`, if set.
    fn total_deadline(&self) -> Option<tokio::time::Instant> {
        let total = self.proxy.settings.timeouts.total?;
        let left = total.saturating_sub(self.started.elapsed());
        Some(tokio::time::Instant::now() + left)
    }

    /// The next node for this request: one it has not tried, counted and remembered; on
    /// the first attempt right after start, the first probe verdicts are waited for.
    pub async fn pick(&mut self) -> Option<InFlight> {
        if let Some(attempt) = self.pick_now() {
            return Some(attempt);
        }
        let cluster = &self.proxy.cluster;
        if self.tried.is_empty() {
            if cluster.awaiting_first_verdicts() {
                cluster.first_verdicts().await;
            }
            // Again even if the wait is over: the last first verdict's table may have come
            // out between the pick above and the check.
            return self.pick_now();
        }
        None
    }

    fn pick_now(&mut self) -> Option<InFlight> {
        let cluster = &self.proxy.cluster;
        cluster.with_table(|table| {
            let route = self
                .target
                .as_ref()
                .map_or(DEFAULT_ROUTE, |target| table.route(target.as_str()));
            let Some(backend) = table.pick_route(route, &self.tried) else {
                self.refusal = table.routes().unavailable_body(route).cloned();
                return None;
            };
            if !self.tried.is_empty() {
                cluster.metrics().retries_total.inc();
            } else if table.is_route_fallback(route) {
                cluster.metrics().fallback_requests_total.inc();
            }
            self.tried.push(backend.id);
            Some(InFlight::new(backend.clone()))
        })
    }

    /// Whether another attempt is allowed after this many.
    pub fn may_retry(&self) -> bool {
        self.tried.len() <= self.proxy.settings.retries
    }

    /// An attempt ended without an answer from the node. Outlier detection counts it
    /// only when the node is at fault.
    pub fn attempt_failed(&self, attempt: &InFlight, node_at_fault: bool) {
        attempt.backend().counters.count_status(None);
        if node_at_fault {
            self.proxy.cluster.record_answer(attempt.backend().id, None);
        }
    }

    /// 503, no (untried) node ready; for a mapped CApp's path, the body names the
    /// integration no node can serve, and the connection stays open if the request was
    /// `read_whole` (the client's other integrations are likely served: closing would only
    /// make it reconnect).
    pub fn no_ready_node(&self, read_whole: bool) -> Response<DownBody> {
        let cluster = &self.proxy.cluster;
        cluster.metrics().no_ready_backend_total.inc();
        let finish = self.finish(503, None);
        match &self.refusal {
            Some(body) => answers::unavailable(body.clone(), finish, read_whole),
            None => {
                let body = Bytes::from_static(answers::NO_READY_NODE_BODY.as_bytes());
                answers::unavailable(body, finish, false)
            }
        }
    }

    /// A connection to the attempt's node: pooled, or new.
    pub async fn connection(&self, attempt: &InFlight) -> Connected {
        let backend = attempt.backend();
        if let Some(sender) = upstream::pooled((backend.traffic_addr, backend.is_https())).await {
            return Connected::Ready(sender, true);
        }
        let timeout = self.within_total(self.proxy.settings.timeouts.connect);
        let tls = backend.tls();
        match upstream::connect(backend.traffic_addr, tls.as_deref(), timeout, false).await {
            Ok(sender) => Connected::Ready(sender, false),
            Err(e) => match self.connect_failed(attempt, &e) {
                Some(answer) => Connected::Ends(Box::new(answer)),
                None => Connected::Failed,
            },
        }
    }

    /// A connect failed: a local shortage ends the request with this 503 (nothing is
    /// known of the node, and the next node would meet the same shortage); otherwise the
    /// node is evicted at once (MI's shutdown trap shows as a refused connect), `None`,
    /// and the caller may try another.
    pub fn connect_failed(
        &self,
        attempt: &InFlight,
        e: &ConnectError,
    ) -> Option<Response<DownBody>> {
        let backend = attempt.backend();
        let detail = format!(
            "connect to {} ({}): {e}",
            backend.name, backend.traffic_addr
        );
        if e.is_local() {
            self.proxy
                .cluster
                .local_connect_error(LocalErrorSource::Traffic, &detail);
            let finish = self.finish(503, None);
            let body = Bytes::from_static(answers::OUT_OF_RESOURCES_BODY.as_bytes());
            return Some(answers::unavailable(body, finish, false));
        }
        log::debug!("{detail}");
        let tls = matches!(e, ConnectError::Tls(_));
        if tls {
            backend.counters.count_tls_failure();
        }
        self.proxy.cluster.traffic_failed(backend.id, detail, tls);
        self.attempt_failed(attempt, true);
        None
    }
}

/// What [`Exchange::connection`] got.
pub(super) enum Connected {
    /// A connection, and whether it came from the pool.
    Ready(Sender, bool),
    /// The connect failed (counted, node evicted): another node may be tried.
    Failed,
    /// The request ends with this answer.
    Ends(Box<Response<DownBody>>),
}

/// Proxy one request.
pub(super) async fn handle(
    proxy: &HealthgateProxy,
    conn: &Connection,
    req: Request<Incoming>,
) -> Response<DownBody> {
    conn.phase.request();
    let mut x = Exchange {
        proxy,
        conn,
        started: Instant::now(),
        tried: Tried::default(),
        logged: proxy
            .settings
            .access_log
            .then(|| (req.method().clone(), req.uri().clone())),
        target: req.uri().path_and_query().cloned(),
        refusal: None,
    };
    if let Some(status) = headers::size_verdict(&req, &proxy.settings.limits) {
        return x.answer(status, "");
    }
    if headers::is_upgrade(&req) {
        return super::tunnel::handle(&mut x, req).await;
    }
    let (mut parts, body) = req.into_parts();
    headers::prepare_request(&mut parts, conn, &proxy.trust, false);
    let fault = Arc::new(FaultCell::default());
    let idempotent = parts.method.is_idempotent();
    let body = match read_body(&x, body, idempotent, &fault).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    send(&mut x, parts, body, &fault).await
}

/// The request body as it will be sent: nothing; the whole body, for an idempotent
/// request whose body ends within [`REPLAY_BUFFER`] (it can go to another node, and a
/// malformed one is refused before any node sees it); or the stream, after what was read.
async fn read_body(
    x: &Exchange<'_>,
    body: Incoming,
    idempotent: bool,
    fault: &Arc<FaultCell>,
) -> Result<UpBody, Response<DownBody>> {
    if body.is_end_stream() {
        return Ok(UpBody::Empty);
    }
    let settings = &x.proxy.settings;
    let too_big = body.size_hint().exact().is_some_and(|n| n > REPLAY_BUFFER);
    let mut streamed = ClientBody::new(
        body,
        settings.limits.max_request_body,
        settings.timeouts.client_body,
        fault.clone(),
    );
    if !idempotent || too_big {
        return Ok(UpBody::Streamed(streamed));
    }
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = streamed.frame().await {
        let Ok(frame) = frame else {
            return Err(client_fault_answer(x, fault.get()));
        };
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if read.len() as u64 > REPLAY_BUFFER {
                streamed.put_back(read.freeze());
                return Ok(UpBody::Streamed(streamed));
            }
        }
    }
    Ok(UpBody::Whole(Some(read.freeze())))
}

/// The answer for a request whose client failed while sending its body.
fn client_fault_answer(x: &Exchange<'_>, fault: ClientFault) -> Response<DownBody> {
    match fault {
        ClientFault::Stalled => x.answer(StatusCode::REQUEST_TIMEOUT, ""),
        ClientFault::TooLarge => x.answer(StatusCode::PAYLOAD_TOO_LARGE, ""),
        // Nobody to answer; hyper drops this on the closed connection.
        ClientFault::Gone | ClientFault::None => x.answer(StatusCode::BAD_REQUEST, ""),
    }
}

/// Send the request to ready nodes until one answers or no attempt is left.
async fn send(
    x: &mut Exchange<'_>,
    parts: http::request::Parts,
    body: UpBody,
    fault: &Arc<FaultCell>,
) -> Response<DownBody> {
    let idempotent = parts.method.is_idempotent();
    let mut request = Some(Request::from_parts(parts, body));
    loop {
        if x.out_of_time() {
            return x.answer(StatusCode::GATEWAY_TIMEOUT, "");
        }
        let Some(attempt) = x.pick().await else {
            let read_whole = request
                .as_ref()
                .is_some_and(|r| !matches!(r.body(), UpBody::Streamed(_)));
            return x.no_ready_node(read_whole);
        };
        let Some(req) = request.take() else {
            return x.answer(StatusCode::BAD_GATEWAY, "");
        };
        // A copy for the next attempt, when one may follow and the body can go again.
        let spare = if idempotent && x.may_retry() {
            req.body().replay().map(|body| copy_request(&req, body))
        } else {
            None
        };
        let outcome = attempt_once(x, &attempt, req).await;
        match outcome {
            Attempt::Answered(response) => return response,
            Attempt::Unsent(req) => {
                // Connect failed (counted, node evicted): nothing was sent, so any request
                // may go to another node, if one is left.
                if !x.may_retry() {
                    return x.answer(StatusCode::BAD_GATEWAY, "");
                }
                request = Some(req);
            }
            Attempt::Ended(response) => return response,
            Attempt::Failed { timed_out } => {
                let client = fault.get();
                if client != ClientFault::None {
                    x.attempt_failed(&attempt, false);
                    return client_fault_answer(x, client);
                }
                x.attempt_failed(&attempt, true);
                // Only an idempotent request (RFC 9110 §9.2.2) with its whole body kept
                // may go again: a POST that may have reached the node is never replayed.
                match spare {
                    Some(spare) if x.may_retry() => request = Some(spare),
                    _ if timed_out => return x.answer(StatusCode::GATEWAY_TIMEOUT, ""),
                    _ => return x.answer(StatusCode::BAD_GATEWAY, ""),
                }
            }
        }
    }
}

fn copy_request(req: &Request<UpBody>, body: UpBody) -> Request<UpBody> {
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// How one attempt ended.
enum Attempt {
    /// The node answered (or the request ended with an answer of ours).
    Answered(Response<DownBody>),
    /// Nothing reached the node; the request is handed back.
    Unsent(Request<UpBody>),
    /// The request ends with this answer (a local shortage).
    Ended(Response<DownBody>),
    /// The request was sent, or partly, and no answer came.
    Failed {
        /// `timeouts.read` (or what was left of `timeouts.total`) passed.
        timed_out: bool,
    },
}

/// Send `req` to the attempt's node: on a pooled connection that turns out closed before
/// the request went out, once more on a new one.
async fn attempt_once(x: &Exchange<'_>, attempt: &InFlight, req: Request<UpBody>) -> Attempt {
    let mut req = req;
    loop {
        let (mut sender, pooled) = match x.connection(attempt).await {
            Connected::Ready(sender, pooled) => (sender, pooled),
            Connected::Failed => return Attempt::Unsent(req),
            Connected::Ends(answer) => return Attempt::Ended(*answer),
        };
        let wait = x.within_total(x.proxy.settings.timeouts.read);
        let sent = tokio::time::timeout(wait, sender.try_send_request(req)).await;
        match sent {
            Ok(Ok(response)) => return Attempt::Answered(answered(x, attempt, sender, response)),
            Ok(Err(mut e)) => match e.take_message() {
                // A pooled connection the node had closed: a new one, same node.
                Some(back) if pooled => {
                    log::debug!(
                        "pooled connection to {} was closed: {}",
                        attempt.backend().name,
                        e.error()
                    );
                    req = back;
                }
                Some(back) => {
                    let e = ConnectError::Handshake(e.into_error());
                    return match x.connect_failed(attempt, &e) {
                        None => Attempt::Unsent(back),
                        Some(answer) => Attempt::Ended(answer),
                    };
                }
                None => {
                    log::debug!(
                        "{} failed before answering: {}",
                        attempt.backend().name,
                        e.error()
                    );
                    return Attempt::Failed { timed_out: false };
                }
            },
            Err(_) => {
                log::debug!("{} did not answer within {wait:?}", attempt.backend().name);
                return Attempt::Failed { timed_out: true };
            }
        }
    }
}

/// The node answered: count it, and pass the answer on.
fn answered(
    x: &Exchange<'_>,
    attempt: &InFlight,
    sender: Sender,
    response: Response<Incoming>,
) -> Response<DownBody> {
    let status = response.status().as_u16();
    let backend = attempt.backend().clone();
    backend.counters.count_status(Some(status));
    x.proxy.cluster.record_answer(backend.id, Some(status));
    let (mut parts, body) = response.into_parts();
    headers::prepare_response(&mut parts, x.proxy.is_draining());
    let finish = x.finish(status, Some(InFlight::new(backend.clone())));
    let body = DownBody::node(
        body,
        Some(((backend.traffic_addr, backend.is_https()), sender)),
        x.proxy.settings.timeouts.read,
        x.total_deadline(),
        finish,
    );
    Response::from_parts(parts, body)
}
