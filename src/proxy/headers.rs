//! Headers between the two hops: the size check, hop-by-hop headers dropped (RFC 9110
//! §7.6.1), `X-Forwarded-*` set, and `Connection: close` while draining.

use super::{Connection, Trust};
use crate::config::LimitsConfig;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Version};

/// Headers that describe one hop, never passed on (RFC 9110 §7.6.1, and the old
/// `Keep-Alive` / `Proxy-Connection`). `Transfer-Encoding` is redone by each hop's framing.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The status a request gets for its size before anything is sent on: 431 for a head
/// over `max_request_header`, 413 for a declared body over `max_request_body`.
pub fn size_verdict<B>(req: &Request<B>, limits: &LimitsConfig) -> Option<StatusCode> {
    let head_bytes = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head_bytes as u64 > limits.max_request_header {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (declared, limits.max_request_body) {
        (Some(length), Some(max)) if length > max => Some(StatusCode::PAYLOAD_TOO_LARGE),
        _ => None,
    }
}

/// Whether the client asks to switch protocols (`Connection: upgrade` and `Upgrade`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Drop the hop-by-hop headers, and those the `Connection` header names. A
/// `Transfer-Encoding` with codings besides `chunked` (`gzip, chunked`) is kept: the body
/// is still coded that way, and the next hop frames it as chunked again.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let codings = headers
        .get(header::TRANSFER_ENCODING)
        .filter(|te| !te.as_bytes().eq_ignore_ascii_case(b"chunked"))
        .cloned();
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(codings) = codings {
        headers.insert(header::TRANSFER_ENCODING, codings);
    }
}

/// Whether an answer's body ends only when the node closes its connection (no length, not
/// chunked): passed on with `Connection: close`, since the client cannot tell a complete
/// body from one the node cut short.
fn close_delimited(parts: &http::response::Parts) -> bool {
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framed = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    !bodiless && !framed
}

/// The request as the node gets it: HTTP/1.1 in origin form, hop-by-hop headers dropped
/// (the upgrade pair kept for a tunnel), `Expect` answered here, `X-Forwarded-For` and
/// `X-Forwarded-Proto` set.
pub fn prepare_request(
    parts: &mut http::request::Parts,
    conn: &Connection,
    trust: &Trust,
    upgrade: bool,
) {
    let headers = &mut parts.headers;
    let upgrade_to = upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    drop_hop_by_hop(headers);
    headers.remove(header::UPGRADE);
    // hyper answered `100 Continue` to the client when the body was first read.
    headers.remove(header::EXPECT);
    if let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    if let Some(peer) = conn.peer_ip() {
        let prior = headers.get_all("x-forwarded-for");
        let value = trust.forwarded_for(peer, prior.iter().map(HeaderValue::as_bytes));
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        let proto = headers.contains_key("x-forwarded-proto");
        if !trust.keeps_proto(peer, proto) {
            let scheme = match conn.tls {
                true => "https",
                false => "http",
            };
            headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static(scheme),
            );
        }
    }
    // An HTTP/2 request names its host in `:authority`; the HTTP/1.1 node needs `Host`.
    if !headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    parts.version = Version::HTTP_11;
    if parts.uri.scheme().is_some() {
        // An absolute-form target (`GET http://host/path`): the node gets the path.
        let origin = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        parts.uri = origin;
    }
}

/// The answer as the client gets it: hop-by-hop headers dropped (the upgrade pair kept on
/// a 101), `Connection: close` while this process drains.
pub fn prepare_response(parts: &mut http::response::Parts, draining: bool) {
    let draining = draining || close_delimited(parts);
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let upgrade_to = switching
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    drop_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade_to {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    } else if draining {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
