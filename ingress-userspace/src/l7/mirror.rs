//! RequestMirror: a copy of a request goes to the mirror backend, fire and
//! forget. The client's answer comes from the primary backend alone; the
//! copy is sent by a task of its own, so a slow or dead mirror never delays
//! or fails the primary, and at most [`MIRRORS_IN_FLIGHT`] copies per proxy
//! are under way (one more is dropped, and counted).
//!
//! Only requests without a body are copied. A body can be copied only by
//! holding it (memory for every mirrored request in flight, for as long as
//! the slower of the two reads it) or by feeding both from one stream,
//! which would pace the primary by the mirror; a copy of the head alone
//! would be another request than the client's (its Content-Length a lie).
//! Requests with a body are counted as skipped instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::{Request, Uri, Version};

use super::filters::Mirror;
use super::forward::{Forwarded, add_forwarding_headers, strip_hop_by_hop, upgrade_protocol};
use super::metrics::{L7Metrics, MirrorOutcome};
use super::response::ProxyBody;
use super::upstream::{Pool, RequestHead};

/// Copies one proxy (one listener of one thread) may have under way: a mirror
/// that hangs holds that many connections at most, until the request
/// timeout ends each.
pub(crate) const MIRRORS_IN_FLIGHT: usize = 64;

pub(crate) struct Mirrors {
    pool: Arc<Pool>,
    in_flight: Arc<AtomicUsize>,
    timeout: Duration,
    metrics: Arc<L7Metrics>,
}

impl Mirrors {
    /// Copies go out on the primary's pool: a mirror is one more upstream.
    pub(crate) fn new(pool: Arc<Pool>, timeout: Duration, metrics: Arc<L7Metrics>) -> Mirrors {
        Mirrors { pool, in_flight: Arc::default(), timeout, metrics }
    }

    /// Sends a copy of `request` (as it will be forwarded) to each mirror
    /// whose share it falls in, without waiting for any.
    pub(crate) fn send<B: Body>(&self, mirrors: &[Mirror], request: &Request<B>, forwarded: &Forwarded) {
        for mirror in mirrors.iter().filter(|mirror| mirror.takes()) {
            // An upgrade would hand the mirror a connection to speak on.
            if !request.body().is_end_stream() || upgrade_protocol(request.headers()).is_some() {
                self.metrics.count_mirror(MirrorOutcome::SkippedBody);
                continue;
            }
            let Some(endpoint) = mirror.upstream.pick(1).next() else {
                self.metrics.count_mirror(MirrorOutcome::NoEndpoint);
                continue;
            };
            let Some(slot) = Slot::take(&self.in_flight) else {
                self.metrics.count_mirror(MirrorOutcome::DroppedInFlightLimit);
                continue;
            };
            let copy = copy_of(request, forwarded);
            let (pool, timeout, metrics) = (self.pool.clone(), self.timeout, self.metrics.clone());
            tokio::spawn(async move {
                let outcome = match tokio::time::timeout(timeout, exchange(&pool, endpoint, copy)).await {
                    Ok(Ok(())) => MirrorOutcome::Answered,
                    Ok(Err(error)) => {
                        tracing::debug!(%endpoint, %error, "mirrored request failed");
                        MirrorOutcome::Failed
                    }
                    Err(_elapsed) => MirrorOutcome::Failed,
                };
                metrics.count_mirror(outcome);
                drop(slot);
            });
        }
    }
}

/// Sends the copy and reads the answer to its end, which returns the
/// connection to the pool; the answer itself is dropped.
async fn exchange(pool: &Arc<Pool>, endpoint: SocketAddr, copy: Request<ProxyBody>) -> Result<(), super::response::BoxError> {
    let (parts, body) = copy.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |target| target.as_str());
    let response = pool.send(endpoint, &RequestHead { method: &parts.method, target, headers: &parts.headers, added: &[] }, body).await?;
    response.into_body().collect().await?;
    Ok(())
}

/// The request head as the primary backend gets it, without a body.
fn copy_of<B>(request: &Request<B>, forwarded: &Forwarded) -> Request<ProxyBody> {
    let mut headers = request.headers().clone();
    strip_hop_by_hop(&mut headers);
    add_forwarding_headers(&mut headers, forwarded, None);
    let mut copy = Request::new(Empty::new().map_err(|never| match never {}).boxed());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().path_and_query().cloned().map_or_else(|| Uri::from_static("/"), Uri::from);
    *copy.version_mut() = Version::HTTP_11;
    *copy.headers_mut() = headers;
    copy
}

/// One of the copies allowed in flight, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(in_flight: &Arc<AtomicUsize>) -> Option<Slot> {
        let taken = in_flight.fetch_update(Relaxed, Relaxed, |count| (count < MIRRORS_IN_FLIGHT).then_some(count + 1));
        taken.ok().map(|_| Slot(in_flight.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::forward::Client;

    #[test]
    fn slots_are_limited_and_given_back() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let slots: Vec<Slot> = (0..MIRRORS_IN_FLIGHT).map_while(|_| Slot::take(&in_flight)).collect();
        assert_eq!(slots.len(), MIRRORS_IN_FLIGHT);
        assert!(Slot::take(&in_flight).is_none());
        drop(slots);
        assert_eq!(in_flight.load(Relaxed), 0);
        assert!(Slot::take(&in_flight).is_some());
    }

    #[test]
    fn the_copy_is_the_forwarded_head() {
        let request = Request::get("http://a.test/p?q=1")
            .header("x-keep", "1")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .body(())
            .unwrap();
        let client = Client::new(SocketAddr::from(([192, 0, 2, 1], 5555)));
        let authority = hyper::header::HeaderValue::from_static("a.test");
        let forwarded = Forwarded { client: &client, scheme: "http", authority: &authority, rule: None, upstream_host: None };
        let copy = copy_of(&request, &forwarded);
        assert_eq!((copy.method().as_str(), copy.uri().to_string(), copy.version()), ("GET", "/p?q=1".to_owned(), Version::HTTP_11));
        let header = |name: &str| copy.headers().get(name).map(|value| value.to_str().unwrap().to_owned());
        assert_eq!((header("x-keep"), header("x-hop"), header("connection")), (Some("1".into()), None, None));
        assert_eq!((header("host"), header("x-forwarded-for")), (Some("a.test".into()), Some("192.0.2.1".into())));
        assert!(copy.body().is_end_stream());
    }
}
