//! `X-Forwarded-For` and `X-Forwarded-Proto` as the nodes see them: what a trusted proxy in
//! front of healthgate said is kept; what any other client says about itself is replaced,
//! so the leftmost address a node reads cannot be forged by the client.

use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Which peers' forwarding headers are believed (`forwarded.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    trusted: Vec<IpNet>,
}

impl Trust {
    /// Trust the peers in `trusted` (CIDR ranges), no one else.
    pub fn new(trusted: Vec<IpNet>) -> Trust {
        Trust { trusted }
    }

    /// Whether `peer`'s forwarding headers are kept.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The `X-Forwarded-For` value to send upstream for a request from `peer` that carried
    /// the header lines `prior`: `prior, …, peer` from a trusted peer, `peer` alone from
    /// any other. One buffer, sized for the common case.
    pub fn forwarded_for<'a>(&self, peer: IpAddr, prior: impl Iterator<Item = &'a [u8]>) -> String {
        let mut value = String::with_capacity(48);
        if self.trusts(peer) {
            // Earlier hops may come in several header lines: keep them all, in order.
            for line in prior {
                value.push_str(&String::from_utf8_lossy(line));
                value.push_str(", ");
            }
        }
        let _ = write!(value, "{}", peer.to_canonical());
        value
    }

    /// Whether a request's own `X-Forwarded-Proto` from `peer` is kept (trusted peer and
    /// header present) rather than set to the scheme healthgate was reached by.
    pub fn keeps_proto(&self, peer: IpAddr, present: bool) -> bool {
        present && self.trusts(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(nets: &[&str]) -> Trust {
        Trust::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn an_untrusted_peer_cannot_forge_the_leftmost_address() {
        let t = trust(&["10.0.0.0/8"]);
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let prior = [b"1.2.3.4".as_slice()];
        assert_eq!(t.forwarded_for(peer, prior.into_iter()), "192.0.2.7");
    }

    #[test]
    fn a_trusted_peer_s_chain_is_kept_and_appended_to() {
        let t = trust(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let prior = [b"1.2.3.4, 5.6.7.8".as_slice(), b"9.9.9.9".as_slice()];
        assert_eq!(
            t.forwarded_for(peer, prior.into_iter()),
            "1.2.3.4, 5.6.7.8, 9.9.9.9, 10.1.2.3"
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_matches_an_ipv4_range() {
        let t = trust(&["127.0.0.0/8"]);
        let peer: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(t.trusts(peer));
        assert_eq!(t.forwarded_for(peer, std::iter::empty()), "127.0.0.1");
    }

    #[test]
    fn no_trusted_proxies_trusts_no_one() {
        let t = Trust::default();
        assert!(!t.trusts("127.0.0.1".parse().unwrap()));
        assert!(!t.keeps_proto("127.0.0.1".parse().unwrap(), true));
    }
}
