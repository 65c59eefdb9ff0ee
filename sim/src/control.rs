//! A small HTTP API to drive a simulated node at run time (`mi-sim --control ADDR`, and each
//! node of `healthgate demo`). CApp names travel in the request body, so no escaping is
//! needed:
//!
//! | request | effect |
//! |---|---|
//! | `GET /` | the node's state as JSON |
//! | `POST /faulty` body `x.car` | hot-deploy a faulty CApp |
//! | `DELETE /faulty` body `x.car` | remove it (empty body: remove all) |
//! | `POST /shutdown` | MI-style shutdown |
//! | `POST /crash` | close everything at once |
//! | `POST /hang`, `POST /unhang` | health port stops / resumes answering |
//! | `POST /delay` body `50ms` | hold every traffic response this long (`0s`: no delay) |
//! | `POST /start` | start again after shutdown or crash |

use super::SimNode;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// Longest accepted request body (a CApp name).
const MAX_BODY: usize = 4096;

/// Serve the control API for `node` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, node: SimNode) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, node.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The node's state as JSON (`scheme` is `https` when the traffic port serves TLS).
pub fn describe(node: &SimNode) -> serde_json::Value {
    serde_json::json!({
        "name": node.name(),
        "phase": node.phase().as_str(),
        "scheme": node.scheme(),
        "traffic": node.traffic_addr().to_string(),
        "health": node.health_addr().to_string(),
        "faulty_capps": node.faulty_capps(),
        "hung": node.is_hung(),
        "traffic_requests": node.traffic_requests(),
        "health_requests": node.health_requests(),
        "websocket_open": node.websocket_open(),
        "tls_handshake_failures": node.tls_handshake_failures(),
    })
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    node: SimNode,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(e) => return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n"))),
    };
    let ok = |what: String| Ok(text(StatusCode::OK, format!("{}: {what}\n", node.name())));
    match (method, path.as_str()) {
        (Method::GET, "/") => {
            let mut response = text(StatusCode::OK, format!("{:#}\n", describe(&node)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        (Method::POST, "/faulty") if !body.is_empty() => {
            node.add_faulty_capp(body.clone());
            ok(format!("faulty CApp {body} deployed"))
        }
        (Method::DELETE, "/faulty") if body.is_empty() => {
            node.set_faulty_capps(Vec::new());
            ok("all faulty CApps removed".into())
        }
        (Method::DELETE, "/faulty") => match node.remove_faulty_capp(&body) {
            true => ok(format!("faulty CApp {body} removed")),
            false => Ok(text(
                StatusCode::NOT_FOUND,
                format!("no faulty CApp {body}\n"),
            )),
        },
        (Method::POST, "/shutdown") => {
            node.shutdown();
            ok("MI-style shutdown started".into())
        }
        (Method::POST, "/crash") => {
            node.crash();
            ok("crashed".into())
        }
        (Method::POST, "/hang") => {
            node.set_hung(true);
            ok("health port hangs".into())
        }
        (Method::POST, "/unhang") => {
            node.set_hung(false);
            ok("health port answers again".into())
        }
        (Method::POST, "/delay") => match humantime::parse_duration(&body) {
            Ok(delay) => {
                node.set_response_delay(delay);
                ok(format!("traffic responses delayed {body}"))
            }
            Err(e) => Ok(text(StatusCode::BAD_REQUEST, format!("{body:?}: {e}\n"))),
        },
        (Method::POST, "/start") => match node.restart() {
            Ok(()) => ok("starting".into()),
            Err(e) => Ok(text(StatusCode::CONFLICT, format!("{e}\n"))),
        },
        _ => Ok(text(
            StatusCode::NOT_FOUND,
            "GET /, POST|DELETE /faulty, POST /shutdown|/crash|/hang|/unhang|/delay|/start\n"
                .into(),
        )),
    }
}
