//! An HTTPRoute rule's references to Services resolved: its backendRefs to
//! a weighted split, its RequestMirror filters' backendRefs to upstreams.
//! A backend that cannot be used keeps its weight and answers 500; a mirror
//! that cannot be used is dropped (the spec: not configured). Why either
//! cannot be used is the ResolvedRefs reason the spec names.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::ServiceBackendPort;

use super::grants::{self, Kind};
use super::types::{GROUP, HttpRoute, HttpRouteRule, ObjectReference, ReferenceGrant};
use crate::l7::balancer::{BackendSplit, Upstream};
use crate::l7::endpoints::ServiceIndex;

/// A reference that could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// `RefNotPermitted`, `BackendNotFound` or `InvalidKind`.
    pub reason: &'static str,
    pub message: String,
    /// Where in the rule: `backendRefs[1]`, `filters[0].requestMirror.backendRef`.
    pub field: String,
    /// What the proxy does about it.
    pub consequence: &'static str,
}

/// A rule's references, resolved.
#[derive(Debug)]
pub struct Resolved {
    pub split: BackendSplit,
    /// The upstream of each RequestMirror filter that could be resolved, by
    /// the filter's index in the rule.
    pub mirrors: BTreeMap<usize, Upstream>,
    pub unresolved: Vec<Unresolved>,
}

pub fn resolve(route: &HttpRoute, rule: &HttpRouteRule, index: &ServiceIndex, grants: &[ReferenceGrant]) -> Resolved {
    let route_namespace = route.metadata.namespace.as_deref().unwrap_or("default");
    let mut unresolved = Vec::new();
    let mut backends = Vec::new();
    for (position, backend) in rule.backend_refs.iter().enumerate() {
        let weight = u32::try_from(backend.weight.unwrap_or(1)).unwrap_or(0);
        match service(route_namespace, &backend.reference(), index, grants) {
            Ok(upstream) => backends.push((weight, Some(upstream))),
            Err((reason, message)) => {
                let field = format!("backendRefs[{position}]");
                unresolved.push(Unresolved { reason, message, field, consequence: "answering 500 for its share" });
                backends.push((weight, None));
            }
        }
    }
    let mut mirrors = BTreeMap::new();
    for (position, filter) in rule.filters.iter().enumerate() {
        let Some(mirror) = filter.request_mirror.as_ref().filter(|_| filter.type_ == "RequestMirror") else { continue };
        match service(route_namespace, &mirror.backend_ref, index, grants) {
            Ok(upstream) => {
                mirrors.insert(position, upstream);
            }
            Err((reason, message)) => {
                let field = format!("filters[{position}].requestMirror.backendRef");
                unresolved.push(Unresolved { reason, message, field, consequence: "not mirrored" });
            }
        }
    }
    Resolved { split: BackendSplit::new(backends), mirrors, unresolved }
}

/// The endpoints of the Service `reference` names from a route of
/// `route_namespace`, or the ResolvedRefs reason and why not.
fn service(route_namespace: &str, reference: &ObjectReference, index: &ServiceIndex, grants: &[ReferenceGrant]) -> Result<Upstream, (&'static str, String)> {
    let namespace = reference.namespace.as_deref().unwrap_or(route_namespace);
    let name = &reference.name;
    let group = reference.group.as_deref().unwrap_or("");
    let kind = reference.kind.as_deref().unwrap_or("Service");
    let from = Kind { group: GROUP, kind: "HTTPRoute", namespace: route_namespace };
    if !group.is_empty() || kind != "Service" {
        Err(("InvalidKind", format!("backendRef {name:?} is a {kind} of group {group:?}, only Services are served")))
    } else if !grants::allowed(grants, from, Kind { group, kind, namespace }, name) {
        Err(("RefNotPermitted", format!("no ReferenceGrant in namespace {namespace} lets HTTPRoutes of {route_namespace} refer to Service {name}")))
    } else if let Some(port) = reference.port {
        let port = ServiceBackendPort { number: Some(port), name: None };
        index.resolve(namespace, name, &port).map(Upstream::new).map_err(|error| ("BackendNotFound", error))
    } else {
        Err(("BackendNotFound", format!("backendRef to Service {namespace}/{name} has no port")))
    }
}
