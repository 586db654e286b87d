//! Per-request round robin over a route's ready endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Upstream {
    /// Sorted, without duplicates; empty means the proxy answers 503.
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(mut endpoints: Vec<SocketAddr>) -> Upstream {
        endpoints.sort();
        endpoints.dedup();
        Upstream {
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// Up to `attempts` distinct endpoints to try in order: the next in the
    /// rotation first, then its successors (for a retry elsewhere).
    pub fn pick(&self, attempts: usize) -> impl Iterator<Item = SocketAddr> + '_ {
        let count = self.endpoints.len();
        let start = if count == 0 { 0 } else { self.next.fetch_add(1, Relaxed) % count };
        (0..attempts.min(count)).map(move |offset| self.endpoints[(start + offset) % count])
    }
}

/// A Gateway API rule's backendRefs: each takes requests in proportion to
/// its weight. A backend that could not be resolved (`None`) keeps its share,
/// which is answered 500, as the spec asks.
#[derive(Debug)]
pub struct BackendSplit {
    /// Weights above 0 only.
    backends: Vec<(u32, Option<Upstream>)>,
    total: u32,
    requests: AtomicU32,
}

impl BackendSplit {
    pub fn new(backends: Vec<(u32, Option<Upstream>)>) -> BackendSplit {
        let backends: Vec<_> = backends.into_iter().filter(|(weight, _)| *weight > 0).collect();
        let total = backends.iter().fold(0u32, |total, (weight, _)| total.saturating_add(*weight));
        BackendSplit { backends, total, requests: AtomicU32::new(0) }
    }

    /// The next request's upstream; `None` for the share of an unresolved
    /// backend, and always when no backend weighs more than 0.
    pub fn pick(&self) -> Option<&Upstream> {
        if self.total == 0 {
            return None;
        }
        // Every `total` requests, each backend gets exactly its weight.
        let mut n = self.requests.fetch_add(1, Relaxed) % self.total;
        for (weight, upstream) in &self.backends {
            if n < *weight {
                return upstream.as_ref();
            }
            n -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    #[test]
    fn round_robin_and_retry_order() {
        let upstream = Upstream::new(vec![addr(3), addr(1), addr(2), addr(1)]);
        assert_eq!(upstream.endpoints(), [addr(1), addr(2), addr(3)]);
        let first: Vec<_> = (0..6).map(|_| upstream.pick(1).next().unwrap()).collect();
        assert_eq!(first, [addr(1), addr(2), addr(3), addr(1), addr(2), addr(3)]);
        let with_retry: Vec<_> = upstream.pick(2).collect();
        assert_eq!(with_retry, [addr(1), addr(2)]);
        assert_eq!(upstream.pick(5).count(), 3);
    }

    #[test]
    fn no_endpoints_no_picks() {
        let upstream = Upstream::new(Vec::new());
        assert_eq!(upstream.pick(2).count(), 0);
    }

    #[test]
    fn weighted_split_gives_each_backend_its_share_and_unresolved_ones_none() {
        let split = BackendSplit::new(vec![
            (3, Some(Upstream::new(vec![addr(1)]))),
            (0, Some(Upstream::new(vec![addr(2)]))),
            (1, None),
        ]);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..400 {
            let picked = split.pick().map(|upstream| upstream.endpoints()[0]);
            *counts.entry(picked).or_insert(0) += 1;
        }
        assert_eq!(counts, std::collections::BTreeMap::from([(None, 100), (Some(addr(1)), 300)]));
        assert!(BackendSplit::new(vec![(0, Some(Upstream::new(vec![addr(1)])))]).pick().is_none());
        assert!(BackendSplit::new(Vec::new()).pick().is_none());
    }
}
