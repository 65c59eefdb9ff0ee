//! Answers of healthgate's own: the contract's 503s, and the bare 4xx/5xx a failed
//! request ends with. Each closes its connection (a request that failed may have left
//! its body unread), except a CApp's 503 after a request read whole.

use super::body::{DownBody, Finish};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// The body of the 503 sent when no node is ready.
pub const NO_READY_NODE_BODY: &str = "no ready Micro Integrator node is available; retry shortly\n";
/// The body of the 503 sent when a connect failed for want of healthgate's own resources.
pub const OUT_OF_RESOURCES_BODY: &str =
    "healthgate is out of local resources (file descriptors or ports); retry shortly\n";

/// `status` with `body` (may be empty), closing the connection.
pub fn own(status: StatusCode, body: &'static str, finish: Finish) -> Response<DownBody> {
    own_bytes(status, Bytes::from_static(body.as_bytes()), finish, true)
}

/// [`own`] with a body built elsewhere (shared, not copied); the connection is closed
/// after it only if `close`.
fn own_bytes(status: StatusCode, body: Bytes, finish: Finish, close: bool) -> Response<DownBody> {
    let length = body.len();
    let mut response = Response::new(DownBody::whole(body, finish));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if length > 0 {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// The contract's 503: `Retry-After: 1`, not to be cached, a one-line body; the connection
/// stays open when `keep_alive` (the request was read whole and other requests on it may
/// well be served).
pub fn unavailable(body: Bytes, finish: Finish, keep_alive: bool) -> Response<DownBody> {
    let mut response = own_bytes(StatusCode::SERVICE_UNAVAILABLE, body, finish, !keep_alive);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
