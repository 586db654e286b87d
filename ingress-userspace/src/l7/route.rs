//! Where a matched request goes: the upstream (or, for a Gateway API rule,
//! the weighted split of its backendRefs) and what is done on the way.

use super::balancer::{BackendSplit, Upstream};
use super::filters::Filters;
use super::nginx_annotations::NginxAnnotations;

/// Where matched requests go.
#[derive(Debug)]
pub struct Route {
    /// Stable label for logs and metrics, e.g. `ingress:default/web:foo.com/api`.
    pub name: String,
    pub upstream: Upstream,
    /// Of the Ingress the route comes from; none for other routes.
    pub annotations: NginxAnnotations,
    /// Plain HTTP is redirected to HTTPS (`ssl-redirect` with TLS for the
    /// host, or `force-ssl-redirect`).
    pub https_redirect: bool,
    /// A Gateway API rule's backendRefs, in place of `upstream`.
    pub split: Option<BackendSplit>,
    /// A Gateway API rule's filters.
    pub filters: Filters,
}

impl Route {
    pub fn new(name: String, upstream: Upstream) -> Route {
        Route {
            name,
            upstream,
            annotations: NginxAnnotations::default(),
            https_redirect: false,
            split: None,
            filters: Filters::default(),
        }
    }

    /// The upstream this request goes to; `None` when it must be answered
    /// 500 (a Gateway API rule whose chosen backend could not be resolved,
    /// or whose backends all weigh 0).
    pub fn pick_upstream(&self) -> Option<&Upstream> {
        match &self.split {
            None => Some(&self.upstream),
            Some(split) => split.pick(),
        }
    }
}

