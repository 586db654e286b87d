//! Which requests a canary Ingress takes from the main route of the same
//! host+path (`canary-weight`, `canary-by-header`). Generic over the route so
//! that the route table, which holds canaries, is not imported back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use hyper::header::HeaderMap;

use super::nginx_annotations::Canary;

/// A canary route next to the main route of the same host+path.
#[derive(Debug)]
pub struct CanaryRoute<R> {
    pub route: Arc<R>,
    pub canary: Canary,
    /// Requests seen, to spread the weight evenly over every 100.
    requests: AtomicU32,
}

impl<R> CanaryRoute<R> {
    pub fn new(route: Arc<R>, canary: Canary) -> CanaryRoute<R> {
        CanaryRoute { route, canary, requests: AtomicU32::new(0) }
    }

    /// Whether this request goes to the canary: the header decides when it
    /// is present and says so, else the weight.
    pub fn takes(&self, headers: &HeaderMap) -> bool {
        let canary = &self.canary;
        let header = canary.header.as_deref().and_then(|name| headers.get(name)).and_then(|value| value.to_str().ok());
        match (header, canary.header_value.as_deref()) {
            (Some(value), Some(wanted)) if value == wanted => return true,
            (Some("always"), None) => return true,
            (Some("never"), None) => return false,
            _ => {}
        }
        // Request n of every 100 goes when the weight's running share crosses a whole request.
        let n = self.requests.fetch_add(1, Relaxed) % 100;
        (n + 1) * canary.weight / 100 > n * canary.weight / 100
    }
}
