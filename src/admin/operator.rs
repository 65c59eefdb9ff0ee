//! Operator actions on the admin listener: drain a node by hand, and put it back.
//!
//! `POST /nodes/{name}/drain` takes the node out of the routing table at once (requests in
//! flight to it finish; its probes go on); `POST /nodes/{name}/undrain` lets it back as soon
//! as it is ready. `{name}` is the node name as configured, matched exactly as sent.
//!
//! Allowed from a loopback client, or from anywhere with `Authorization: Bearer <token>` when
//! `admin_token` is set. Everything else is refused with 403.

use std::net::IpAddr;

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Take the node out of the routing table.
    Drain,
    /// Let the node back in when it is ready.
    Undrain,
}

/// The node name and action of an operator path, or `None` if `path` is not one.
pub fn parse(path: &str) -> Option<(&str, Action)> {
    let rest = path.strip_prefix("/nodes/")?;
    let (name, verb) = rest.rsplit_once('/')?;
    let action = match verb {
        "drain" => Action::Drain,
        "undrain" => Action::Undrain,
        _ => return None,
    };
    (!name.is_empty()).then_some((name, action))
}

/// Whether a request may act: it comes from loopback, or carries the configured token.
pub fn authorized(
    client: Option<IpAddr>,
    authorization: Option<&str>,
    token: Option<&str>,
) -> bool {
    let loopback = client.is_some_and(|ip| ip.is_loopback());
    let bearer = authorization.and_then(|a| a.strip_prefix("Bearer "));
    let token_ok =
        matches!((token, bearer), (Some(t), Some(b)) if same(t.as_bytes(), b.as_bytes()));
    loopback || token_ok
}

/// Compares without stopping at the first difference, so the time taken does not tell an
/// attacker how much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse("/nodes/mi-1/drain"), Some(("mi-1", Action::Drain)));
        assert_eq!(
            parse("/nodes/mi-1/undrain"),
            Some(("mi-1", Action::Undrain))
        );
        assert_eq!(parse("/nodes//drain"), None);
        assert_eq!(parse("/nodes/mi-1/restart"), None);
        assert_eq!(parse("/status"), None);
    }

    #[test]
    fn loopback_or_token() {
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        let v6_local: IpAddr = "::1".parse().expect("ip");
        let remote: IpAddr = "10.0.0.7".parse().expect("ip");
        assert!(authorized(Some(local), None, None));
        assert!(authorized(Some(v6_local), None, Some("s3cret")));
        assert!(!authorized(Some(remote), None, None), "no token configured");
        assert!(
            !authorized(Some(remote), None, Some("s3cret")),
            "no token sent"
        );
        assert!(!authorized(
            Some(remote),
            Some("Bearer wrong!"),
            Some("s3cret")
        ));
        assert!(
            !authorized(Some(remote), Some("s3cret"), Some("s3cret")),
            "not a bearer"
        );
        assert!(authorized(
            Some(remote),
            Some("Bearer s3cret"),
            Some("s3cret")
        ));
        assert!(!authorized(None, None, Some("s3cret")));
    }
}
