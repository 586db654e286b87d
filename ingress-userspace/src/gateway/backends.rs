//! An HTTPRoute rule's backendRefs to Services, resolved to a weighted
//! split. A backend that cannot be used keeps its weight and answers 500;
//! why it cannot be used is the ResolvedRefs reason the spec names.

use k8s_openapi::api::networking::v1::ServiceBackendPort;

use super::grants::{self, Kind};
use super::types::{GROUP, HttpRoute, HttpRouteRule, ReferenceGrant};
use crate::l7::balancer::{BackendSplit, Upstream};
use crate::l7::endpoints::ServiceIndex;

/// A backendRef that could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// `RefNotPermitted`, `BackendNotFound` or `InvalidKind`.
    pub reason: &'static str,
    pub message: String,
    /// Index into the rule's backendRefs.
    pub index: usize,
}

pub fn resolve(route: &HttpRoute, rule: &HttpRouteRule, index: &ServiceIndex, grants: &[ReferenceGrant]) -> (BackendSplit, Vec<Unresolved>) {
    let route_namespace = route.metadata.namespace.as_deref().unwrap_or("default");
    let mut unresolved = Vec::new();
    let mut backends = Vec::new();
    for (position, backend) in rule.backend_refs.iter().enumerate() {
        let weight = u32::try_from(backend.weight.unwrap_or(1)).unwrap_or(0);
        let namespace = backend.namespace.as_deref().unwrap_or(route_namespace);
        let name = &backend.name;
        let group = backend.group.as_deref().unwrap_or("");
        let kind = backend.kind.as_deref().unwrap_or("Service");
        let from = Kind { group: GROUP, kind: "HTTPRoute", namespace: route_namespace };
        let resolved = if !group.is_empty() || kind != "Service" {
            Err(("InvalidKind", format!("backendRef {name:?} is a {kind} of group {group:?}, only Services are served")))
        } else if !grants::allowed(grants, from, Kind { group, kind, namespace }, name) {
            Err(("RefNotPermitted", format!("no ReferenceGrant in namespace {namespace} lets HTTPRoutes of {route_namespace} refer to Service {name}")))
        } else if let Some(port) = backend.port {
            let port = ServiceBackendPort { number: Some(port), name: None };
            index.resolve(namespace, name, &port).map_err(|error| ("BackendNotFound", error))
        } else {
            Err(("BackendNotFound", format!("backendRef to Service {namespace}/{name} has no port")))
        };
        match resolved {
            Ok(endpoints) => backends.push((weight, Some(Upstream::new(endpoints)))),
            Err((reason, message)) => {
                unresolved.push(Unresolved { reason, message, index: position });
                backends.push((weight, None));
            }
        }
    }
    (BackendSplit::new(backends), unresolved)
}
