//! Operator actions on the admin listener: drain a node by hand, and put it back.
//!
//! `POST /nodes/{name}/drain` takes the node out of the routing table at once (requests in
//! flight to it finish; its probes go on); `POST /nodes/{name}/undrain` lets it back as soon
//! as it is ready. `{name}` is the node name as configured, percent-encoded as in any URL
//! path (`mi%201` is `mi 1`).
//!
//! Who may act:
//! - with `admin_token` set, a request carrying `Authorization: Bearer <admin_token>`, from
//!   anywhere — loopback included: a local process is not trusted more than a remote one;
//! - without a token, a loopback client only, and never a browser made to send the request by
//!   a page it visits: the `Host` must name this listener (a DNS-rebinding page's requests
//!   carry its own host name) and an `Origin`, if sent, must be this listener's own (a
//!   cross-site form post carries the other site's).

use percent_encoding::percent_decode_str;
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Take the node out of the routing table.
    Drain,
    /// Let the node back in when it is ready.
    Undrain,
}

/// An operator path: the node name (`Err`: not valid percent-encoded UTF-8) and the action,
/// or `None` if `path` is not one.
pub fn parse(path: &str) -> Option<(Result<String, ()>, Action)> {
    let rest = path.strip_prefix("/nodes/")?;
    let (name, verb) = rest.rsplit_once('/')?;
    let action = match verb {
        "drain" => Action::Drain,
        "undrain" => Action::Undrain,
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    let decoded = percent_decode_str(name)
        .decode_utf8()
        .map(|n| n.into_owned())
        .map_err(|_| ());
    Some((decoded, action))
}

/// What an operator request says about who sent it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Host` header (or the authority of an absolute request target).
    pub host: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
}

/// Why an operator request was refused; the text is the answer's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A token is configured and the request did not carry it (answered 401).
    Token,
    /// No token is configured and the client is not on loopback (403).
    NotLoopback,
    /// No token is configured and the request names another host or origin (403).
    ForeignSite,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Token => 401,
            Refusal::NotLoopback | Refusal::ForeignSite => 403,
        }
    }

    /// One line saying what would be allowed.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::Token => "operator actions need Authorization: Bearer <admin_token>\n",
            Refusal::NotLoopback => {
                "operator actions need a loopback client (or set admin_token and send it)\n"
            }
            Refusal::ForeignSite => {
                "operator actions must name this listener in Host, and Origin (if sent) must be \
                 this listener's own\n"
            }
        }
    }
}

/// Whether a request may act, under `token` (the configured `admin_token`), on the admin
/// listener at `listener`.
pub fn authorize(
    request: &Credentials<'_>,
    token: Option<&str>,
    listener: SocketAddr,
) -> Result<(), Refusal> {
    if let Some(token) = token {
        let sent = request
            .authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Constant time (for equal lengths), so the time taken does not tell an attacker how
        // much of a guessed token was right.
        return match bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
            true => Ok(()),
            false => Err(Refusal::Token),
        };
    }
    if !request.client.is_some_and(|ip| ip.is_loopback()) {
        return Err(Refusal::NotLoopback);
    }
    let host = request.host.ok_or(Refusal::ForeignSite)?;
    if !names_listener(host, listener) {
        return Err(Refusal::ForeignSite);
    }
    match request.origin {
        None => Ok(()),
        Some(origin) if origin.strip_prefix("http://") == Some(host) => Ok(()),
        Some(_) => Err(Refusal::ForeignSite),
    }
}

/// Whether a `Host` value names the listener: `localhost`, a loopback address or the
/// listener's own address, with the listener's port.
fn names_listener(host: &str, listener: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]:9300` or `127.0.0.1:9300` or `localhost:9300`; a bare IPv6 literal has
        // colons but no brackets and so no port.
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => {
            (name, port.parse::<u16>().ok())
        }
        _ => (host, Some(80)),
    };
    if port != Some(listener.port()) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == listener.ip(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "127.0.0.1:9300";

    fn listener() -> SocketAddr {
        LISTENER.parse().expect("addr")
    }

    fn local<'a>() -> Credentials<'a> {
        Credentials {
            client: Some("127.0.0.1".parse().expect("ip")),
            host: Some(LISTENER),
            ..Credentials::default()
        }
    }

    #[test]
    fn paths_are_parsed_and_names_percent_decoded() {
        let drain = |path| parse(path).map(|(name, action)| (name.ok(), action));
        assert_eq!(
            drain("/nodes/mi-1/drain"),
            Some((Some("mi-1".into()), Action::Drain))
        );
        assert_eq!(
            drain("/nodes/mi%201/undrain"),
            Some((Some("mi 1".into()), Action::Undrain))
        );
        assert_eq!(
            drain("/nodes/10.0.0.1%3A8290/drain"),
            Some((Some("10.0.0.1:8290".into()), Action::Drain))
        );
        assert_eq!(drain("/nodes/%FF/drain"), Some((None, Action::Drain)));
        assert_eq!(drain("/nodes//drain"), None);
        assert_eq!(drain("/nodes/mi-1/restart"), None);
        assert_eq!(drain("/status"), None);
    }

    #[test]
    fn with_a_token_everyone_needs_it_loopback_included() {
        let token = Some("0123456789abcdef");
        assert_eq!(authorize(&local(), token, listener()), Err(Refusal::Token));
        let wrong = Credentials {
            authorization: Some("Bearer 0123456789abcdeX"),
            ..local()
        };
        assert_eq!(authorize(&wrong, token, listener()), Err(Refusal::Token));
        let not_bearer = Credentials {
            authorization: Some("0123456789abcdef"),
            ..local()
        };
        assert_eq!(
            authorize(&not_bearer, token, listener()),
            Err(Refusal::Token)
        );
        let remote = Credentials {
            client: Some("10.0.0.7".parse().expect("ip")),
            authorization: Some("Bearer 0123456789abcdef"),
            host: Some("healthgate.internal:9300"),
            origin: None,
        };
        assert_eq!(authorize(&remote, token, listener()), Ok(()));
    }

    #[test]
    fn without_a_token_loopback_only_and_never_from_another_site() {
        assert_eq!(authorize(&local(), None, listener()), Ok(()));
        let v6 = Credentials {
            client: Some("::1".parse().expect("ip")),
            host: Some("[::1]:9300"),
            ..local()
        };
        assert_eq!(authorize(&v6, None, listener()), Ok(()));
        let named = Credentials {
            host: Some("localhost:9300"),
            origin: Some("http://localhost:9300"),
            ..local()
        };
        assert_eq!(authorize(&named, None, listener()), Ok(()));
        let remote = Credentials {
            client: Some("10.0.0.7".parse().expect("ip")),
            ..local()
        };
        assert_eq!(
            authorize(&remote, None, listener()),
            Err(Refusal::NotLoopback)
        );
        for (host, origin) in [
            (Some("evil.example:9300"), None),             // DNS rebinding
            (Some("127.0.0.1:9301"), None),                // another port
            (None, None),                                  // no Host at all
            (Some(LISTENER), Some("http://evil.example")), // cross-site form post
            (Some(LISTENER), Some("null")),                // sandboxed or file: page
            (Some(LISTENER), Some("https://127.0.0.1:9300")),
        ] {
            let request = Credentials {
                host,
                origin,
                ..local()
            };
            assert_eq!(
                authorize(&request, None, listener()),
                Err(Refusal::ForeignSite),
                "{host:?} {origin:?}"
            );
        }
    }
}
