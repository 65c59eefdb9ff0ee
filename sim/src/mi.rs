//! What an MI node answers, byte for byte (see MI-HEALTH-API.md): `/healthz`, `/liveness`,
//! 404 for anything else on the health port, and traffic on the pass-through port.

use super::{Shared, ws};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The response type of every simulated endpoint.
pub type SimResponse = Response<Full<Bytes>>;

/// `/healthz` body of a ready node, e.g.
/// `{"version":"4.4.0", "update_level":"-", "status" : "ready"}`.
pub fn ready_body(version: &str, update_level: Option<&str>) -> String {
    match update_level {
        Some(level) => {
            format!(r#"{{"version":"{version}", "update_level":"{level}", "status" : "ready"}}"#)
        }
        None => format!(r#"{{"version":"{version}", "status" : "ready"}}"#),
    }
}

/// `/healthz` body of a node with faulty CApps. MI joins the names as raw strings, without
/// JSON escaping, so a name with a quote yields invalid JSON — reproduced on purpose.
pub fn faulty_body(version: &str, update_level: Option<&str>, capps: &[String]) -> String {
    let list = format!("\"{}\"", capps.join("\",\""));
    let status = r#""status": "not ready, faulty CAPPs detected", "Faulty CAPPs" : ["#;
    match update_level {
        Some(level) => {
            format!(r#"{{"version":"{version}", "update_level":"{level}", {status}{list}]}}"#)
        }
        None => format!(r#"{{"version":"{version}", {status}{list}]}}"#),
    }
}

/// `/liveness` body (MI 4.2 and later).
pub const LIVENESS_BODY: &str = r#"{"server" : "started"}"#;

fn respond(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> SimResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    response
}

/// The internal API port: `/healthz` (and `/healthz/`), `/liveness`; GET only.
pub(crate) async fn health(
    request: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
) -> Result<SimResponse, Infallible> {
    // Hang: the connection stays open and nothing is ever answered.
    let mut hung = shared.hung.subscribe();
    let _ = hung.wait_for(|h| !*h).await;
    shared.health_requests.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path();
    if request.method() != Method::GET {
        return Ok(respond(StatusCode::NOT_FOUND, None, Bytes::new()));
    }
    let json = Some("application/json");
    let response = match path {
        "/healthz" | "/healthz/" => {
            let capps = shared.faulty_capps();
            let level = shared.options.update_level.as_deref();
            if capps.is_empty() {
                respond(
                    StatusCode::OK,
                    json,
                    ready_body(&shared.options.version, level),
                )
            } else {
                let body = faulty_body(&shared.options.version, level, &capps);
                respond(StatusCode::INTERNAL_SERVER_ERROR, json, body)
            }
        }
        "/liveness" if shared.options.liveness_endpoint => {
            respond(StatusCode::OK, json, LIVENESS_BODY)
        }
        _ => respond(StatusCode::NOT_FOUND, None, Bytes::new()),
    };
    Ok(response)
}

/// The pass-through port: answers 200 with the node's name in `x-mi-node`, after reading the
/// whole request body. `?delay_ms=N` holds the answer N ms more than the node's own delay. Headers the proxy
/// is expected to set are echoed back as `x-seen-*`. [`ws::ECHO_PATH`] is the WebSocket echo
/// endpoint (see [`ws`]); the delay and a status set with `set_traffic_status` apply to its
/// handshake too (a status other than 200 is answered instead of upgrading).
pub(crate) async fn traffic(
    request: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
    session: ws::Session,
) -> Result<SimResponse, Infallible> {
    shared.traffic_started.fetch_add(1, Ordering::Relaxed);
    let delay = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    if request.uri().path() == ws::ECHO_PATH {
        let delay = delay.unwrap_or_default() + shared.response_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let status = shared.traffic_status.load(Ordering::Relaxed);
        let mut response = match status {
            200 => ws::handshake(request, shared.clone(), session),
            other => respond(
                StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                None,
                Bytes::new(),
            ),
        };
        response
            .headers_mut()
            .insert("x-mi-node", shared.node_header.clone());
        shared.traffic_requests.fetch_add(1, Ordering::Relaxed);
        return Ok(response);
    }
    let echoed: Vec<(&'static str, HeaderValue)> = [
        ("x-seen-host", header::HOST.as_str()),
        ("x-seen-forwarded-for", "x-forwarded-for"),
        ("x-seen-forwarded-proto", "x-forwarded-proto"),
    ]
    .into_iter()
    .filter_map(|(out, name)| request.headers().get(name).map(|v| (out, v.clone())))
    .collect();
    let received = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, None, Bytes::new())),
    };
    let delay = delay.unwrap_or_default() + shared.response_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    shared.traffic_requests.fetch_add(1, Ordering::Relaxed);
    let status = StatusCode::from_u16(shared.traffic_status.load(Ordering::Relaxed))
        .unwrap_or(StatusCode::OK);
    let mut response = respond(status, Some("text/plain"), shared.traffic_body.clone());
    let headers = response.headers_mut();
    headers.insert("x-mi-node", shared.node_header.clone());
    headers.insert("x-request-bytes", HeaderValue::from(received));
    for (name, value) in echoed {
        headers.insert(name, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_mi_byte_for_byte() {
        assert_eq!(
            ready_body("4.4.0", Some("-")),
            r#"{"version":"4.4.0", "update_level":"-", "status" : "ready"}"#
        );
        assert_eq!(
            faulty_body(
                "4.4.0",
                Some("-"),
                &["bad_1.0.0.car".into(), "other_1.0.0.car".into()]
            ),
            r#"{"version":"4.4.0", "update_level":"-", "status": "not ready, faulty CAPPs detected", "Faulty CAPPs" : ["bad_1.0.0.car","other_1.0.0.car"]}"#
        );
        assert_eq!(LIVENESS_BODY, r#"{"server" : "started"}"#);
    }

    /// healthgate still reads the name out of this body: its parser's test
    /// (`src/health/body.rs`) takes the same bytes.
    #[test]
    fn unescaped_quote_makes_invalid_json_like_mi() {
        let body = faulty_body("4.4.0", Some("-"), &[r#"we"ird.car"#.into()]);
        assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
        assert!(
            body.ends_with(r#""Faulty CAPPs" : ["we"ird.car"]}"#),
            "{body}"
        );
    }

    #[test]
    fn mi_4_0_has_no_update_level() {
        assert_eq!(
            ready_body("4.0.0", None),
            r#"{"version":"4.0.0", "status" : "ready"}"#
        );
    }
}
