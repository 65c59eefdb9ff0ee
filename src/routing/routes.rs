//! Routes: which CApp a request path belongs to. Route 0 is every path no mapped CApp
//! serves; route `i` (1-based) is `capps[i - 1]`. The map is built once per configuration
//! into a trie of path segments, each level's segments found by their hashes, so matching
//! scans the path's bytes once, compares integers per segment, and allocates nothing.

use crate::config::{CappRoute, capp_of};
use bytes::Bytes;
use std::collections::HashMap;

/// A route: 0 for paths of no mapped CApp, `i` for `capps[i - 1]`.
pub type Route = usize;

/// The route of paths no mapped CApp serves.
pub const DEFAULT_ROUTE: Route = 0;

/// The CApp map, ready for the hot path.
#[derive(Debug, Default)]
pub struct RouteMap {
    capps: Vec<CappRoute>,
    by_name: HashMap<String, Route>,
    root: Segment,
    /// The 503 body of each mapped CApp's route, indexed like `capps`.
    unavailable: Vec<Bytes>,
}

/// One node of the trie: the route of the prefix ending here, and the next segments.
#[derive(Debug, Default)]
struct Segment {
    route: Option<Route>,
    /// The hashes of the next segments' names, sorted: searched as plain integers (names are
    /// compared only on a hit), in one contiguous array.
    hashes: Vec<u64>,
    /// The next segments, in the order of `hashes`.
    next: Vec<Child>,
}

/// A segment that may follow, by name.
#[derive(Debug)]
struct Child {
    name: Box<[u8]>,
    node: Segment,
}

/// Up to this many next segments, a linear scan of the hashes (no dependent loads, which
/// the compiler vectorises) beats a binary search.
const LINEAR_SEARCH_MAX: usize = 32;

/// A segment's hash, made a byte at a time while the segment is scanned: a rotate and an
/// xor per byte (no multiply in the loop's dependency chain). Collisions only cost a byte
/// comparison: a hit is confirmed by name.
fn hash_step(hash: u64, byte: u8) -> u64 {
    hash.rotate_left(7) ^ u64::from(byte)
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |h, &b| hash_step(h, b))
}

impl RouteMap {
    /// The map of `capps` (validated: names and paths unique, paths normalised).
    pub fn new(capps: &[CappRoute]) -> RouteMap {
        let mut root = Segment::default();
        for (i, capp) in capps.iter().enumerate() {
            for path in &capp.paths {
                root.insert(path.split('/').filter(|s| !s.is_empty()), i + 1);
            }
        }
        root.sort();
        let unavailable = capps
            .iter()
            .map(|c| {
                Bytes::from(format!(
                    "no Micro Integrator node can serve the {} integration now (CApp {} is \
                     faulty or no node is ready); retry shortly\n",
                    c.name, c.name
                ))
            })
            .collect();
        RouteMap {
            by_name: capps
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i + 1))
                .collect(),
            capps: capps.to_vec(),
            root,
            unavailable,
        }
    }

    /// Whether no CApp is mapped (every path is [`DEFAULT_ROUTE`]).
    pub fn is_empty(&self) -> bool {
        self.capps.is_empty()
    }

    /// Number of routes, the default one included.
    pub fn len(&self) -> usize {
        self.capps.len() + 1
    }

    /// The mapped CApps, route `i` being `capps()[i - 1]`.
    pub fn capps(&self) -> &[CappRoute] {
        &self.capps
    }

    /// Whether this map was built from `capps`.
    pub fn is_of(&self, capps: &[CappRoute]) -> bool {
        self.capps == capps
    }

    /// The route of a request target (`/orders/1?x=2`): the longest mapped prefix, matched
    /// on whole segments; the query is not part of it. One pass over the path's bytes,
    /// hashing each segment as it goes; no allocation.
    pub fn route(&self, target: &str) -> Route {
        let mut best = self.root.route.unwrap_or(DEFAULT_ROUTE);
        let Some((b'/', mut rest)) = target.as_bytes().split_first() else {
            return best;
        };
        let mut at = &self.root;
        while !at.next.is_empty() {
            // The segment runs to the next '/', or ends the path at '?', '#' or the end.
            let (mut hash, mut len, mut last) = (0, 0, true);
            for &b in rest {
                match b {
                    b'/' => {
                        last = false;
                        break;
                    }
                    b'?' | b'#' => break,
                    _ => {
                        hash = hash_step(hash, b);
                        len += 1;
                    }
                }
            }
            let Some(next) = at.child(hash, &rest[..len]) else {
                break;
            };
            at = next;
            if let Some(route) = at.route {
                best = route;
            }
            if last {
                break;
            }
            rest = &rest[len + 1..];
        }
        best
    }

    /// The route of the CApp a faulty CApp report names, if that CApp is mapped.
    pub fn route_of_faulty(&self, reported: &str) -> Option<Route> {
        self.by_name.get(capp_of(reported)).copied()
    }

    /// The CApp name of `route` (`None` for the default route).
    pub fn name(&self, route: Route) -> Option<&str> {
        route
            .checked_sub(1)
            .and_then(|i| self.capps.get(i))
            .map(|c| c.name.as_str())
    }

    /// The 503 body naming the integration, for a request of a mapped CApp's `route` that
    /// no node can serve (`None` for the default route: the contract's body says it).
    pub fn unavailable_body(&self, route: Route) -> Option<&Bytes> {
        self.unavailable.get(route.checked_sub(1)?)
    }
}

impl Segment {
    fn insert<'a>(&mut self, mut segments: impl Iterator<Item = &'a str>, route: Route) {
        match segments.next() {
            None => self.route = Some(route),
            Some(segment) => {
                let name = segment.as_bytes();
                let i = match self.next.iter().position(|c| &*c.name == name) {
                    Some(i) => i,
                    None => {
                        self.hashes.push(hash(name));
                        self.next.push(Child {
                            name: name.into(),
                            node: Segment::default(),
                        });
                        self.next.len() - 1
                    }
                };
                self.next[i].node.insert(segments, route);
            }
        }
    }

    /// Sort every level by hash, once the trie is complete.
    fn sort(&mut self) {
        let mut pairs: Vec<(u64, Child)> = self.hashes.drain(..).zip(self.next.drain(..)).collect();
        pairs.sort_by_key(|(h, _)| *h);
        for (h, mut child) in pairs {
            child.node.sort();
            self.hashes.push(h);
            self.next.push(child);
        }
    }

    /// The next segment named `name` (whose hash is `hash`).
    fn child(&self, hash: u64, name: &[u8]) -> Option<&Segment> {
        let from = match self.hashes.len() <= LINEAR_SEARCH_MAX {
            true => self.hashes.iter().position(|&h| h == hash)?,
            false => self.hashes.partition_point(|&h| h < hash),
        };
        self.hashes[from..]
            .iter()
            .zip(&self.next[from..])
            .take_while(|(h, _)| **h == hash)
            .find(|(_, c)| same_bytes(&c.name, name))
            .map(|(_, c)| &c.node)
    }
}

/// `a == b`, inline: segment names are short, and a call to `memcmp` cost more than the
/// comparison (measured: a third of a match).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(capps: &[(&str, &[&str])]) -> RouteMap {
        let capps: Vec<CappRoute> = capps
            .iter()
            .map(|(name, paths)| CappRoute {
                name: name.to_string(),
                paths: paths.iter().map(|p| p.to_string()).collect(),
            })
            .collect();
        RouteMap::new(&capps)
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let m = map(&[
            ("orders", &["/orders", "/api/orders/v2"]),
            ("billing", &["/billing"]),
            ("api", &["/api"]),
        ]);
        for (target, route) in [
            ("/orders", 1),
            ("/orders/", 1),
            ("/orders/42/items", 1),
            ("/orders?id=1", 1),
            ("/orders#top", 1),
            ("/ordersx", 0),
            ("/Orders", 0),
            ("/billing/x", 2),
            ("/api/orders/v2/x", 1),
            ("/api/orders/v3", 3),
            ("/api/orders", 3),
            ("/api", 3),
            ("/", 0),
            ("", 0),
            ("*", 0),
            ("//orders", 0),
            ("/health", 0),
        ] {
            assert_eq!(m.route(target), route, "{target}");
        }
    }

    #[test]
    fn a_root_prefix_takes_every_unmatched_path() {
        let m = map(&[("all", &["/"]), ("orders", &["/orders"])]);
        assert_eq!(m.route("/x"), 1);
        assert_eq!(m.route("/orders/1"), 2);
        assert_eq!(m.route(""), 1);
    }

    #[test]
    fn faulty_car_files_name_their_capp() {
        for (reported, name) in [
            ("orders_1.0.0.car", "orders"),
            ("my_api_2.1.0-SNAPSHOT.car", "my_api"),
            ("orders.car", "orders"),
            ("orders", "orders"),
            ("orders_beta.car", "orders_beta"),
            ("_1.0.0.car", "_1.0.0"),
            (" orders_1.0.0.car ", "orders"),
            ("we\"ird_1.0.car", "we\"ird"),
        ] {
            assert_eq!(capp_of(reported), name, "{reported}");
        }
        let m = map(&[("orders", &["/orders"])]);
        assert_eq!(m.route_of_faulty("orders_1.0.0.car"), Some(1));
        assert_eq!(m.route_of_faulty("billing_1.0.0.car"), None);
        assert_eq!(m.name(1), Some("orders"));
        assert_eq!(m.name(0), None);
        let body = m.unavailable_body(1).expect("a body");
        assert!(
            String::from_utf8_lossy(body).contains("orders integration"),
            "the 503 names the integration"
        );
        assert!(m.unavailable_body(0).is_none());
    }
}
