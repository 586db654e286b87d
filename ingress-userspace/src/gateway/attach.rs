//! Which listeners of our Gateways an HTTPRoute's parentRef attaches it to,
//! and for which hostnames: the parentRef's name, namespace, sectionName
//! and port; the listener's protocol, conflicts and allowedRoutes (kinds,
//! namespaces); the intersection of the listener's hostname with the route's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::conflicts::conflicts;
use super::types::{GROUP, Gateway, HttpRoute, Listener, ParentReference};
use crate::l7::host::HostPattern;

/// A listener an HTTPRoute is attached to.
#[derive(Debug)]
pub struct Attached<'a> {
    pub gateway: &'a Gateway,
    pub listener: &'a Listener,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The route's hostnames on this listener; `Wildcard` ones match any
    /// number of labels.
    pub hostnames: Vec<HostPattern>,
}

/// What one parentRef of a route comes to.
#[derive(Debug)]
pub enum Attachment<'a> {
    /// The parent is not a Gateway of ours: another controller reports it.
    NotOurs,
    Attached(Vec<Attached<'a>>),
    /// The spec's reason for `Accepted: False`, and why.
    Refused { reason: &'static str, message: String },
}

/// What one parentRef of a route comes to before hostnames: the listeners
/// whose allowedRoutes admit it, which is what `attachedRoutes` counts.
#[derive(Debug)]
pub enum Admission<'a> {
    NotOurs,
    Admitted { gateway: &'a Gateway, listeners: Vec<(&'a Listener, &'static str)> },
    Refused { reason: &'static str, message: String },
}

/// `gateways` are ours (of a GatewayClass of this controller).
pub fn attach<'a>(route: &HttpRoute, parent: &ParentReference, gateways: &[&'a Gateway], namespaces: &[Namespace]) -> Attachment<'a> {
    match admit(route, parent, gateways, namespaces) {
        Admission::NotOurs => Attachment::NotOurs,
        Admission::Refused { reason, message } => Attachment::Refused { reason, message },
        Admission::Admitted { gateway, listeners } => {
            let attached: Vec<Attached> = listeners
                .into_iter()
                .map(|(listener, scheme)| Attached { gateway, listener, scheme, hostnames: intersect(listener.hostname.as_deref(), &route.spec.hostnames) })
                .filter(|attached| !attached.hostnames.is_empty())
                .collect();
            if attached.is_empty() {
                let message = "no hostname of the route falls under a listener's hostname".to_owned();
                return Attachment::Refused { reason: "NoMatchingListenerHostname", message };
            }
            Attachment::Attached(attached)
        }
    }
}

/// The listeners of the parent that take this route by parentRef (name,
/// namespace, sectionName, port), protocol and allowedRoutes, whatever
/// the hostnames; a conflicted listener takes none.
pub fn admit<'a>(route: &HttpRoute, parent: &ParentReference, gateways: &[&'a Gateway], namespaces: &[Namespace]) -> Admission<'a> {
    let route_namespace = route.metadata.namespace.as_deref().unwrap_or("default");
    let is_gateway = parent.group.as_deref().unwrap_or(GROUP) == GROUP && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway";
    let namespace = parent.namespace.as_deref().unwrap_or(route_namespace);
    let gateway = gateways.iter().copied().find(|gateway| {
        gateway.metadata.namespace.as_deref().unwrap_or("default") == namespace && gateway.metadata.name.as_deref() == Some(&parent.name)
    });
    let Some(gateway) = gateway.filter(|_| is_gateway) else { return Admission::NotOurs };
    let gateway_namespace = namespace;
    let conflicts = conflicts(&gateway.spec.listeners);
    let listeners: Vec<(&Listener, bool)> = gateway
        .spec
        .listeners
        .iter()
        .zip(conflicts.iter().map(Option::is_some))
        .filter(|(listener, _)| parent.section_name.as_ref().is_none_or(|section| *section == listener.name))
        .filter(|(listener, _)| parent.port.is_none_or(|port| port == listener.port))
        .collect();
    if listeners.is_empty() {
        let message = format!("Gateway {namespace}/{} has no listener {}", parent.name, section_label(parent));
        return Admission::Refused { reason: "NoMatchingParent", message };
    }
    let labels = namespace_labels(route_namespace, namespaces);
    let allowed: Vec<(&Listener, &'static str)> = listeners
        .into_iter()
        .filter(|(_, conflicted)| !conflicted)
        .filter_map(|(listener, _)| Some((listener, scheme(listener)?)))
        .filter(|(listener, _)| takes_http_routes(listener) && admits_namespace(listener, gateway_namespace, route_namespace, &labels))
        .collect();
    if allowed.is_empty() {
        let message = format!("no listener of Gateway {namespace}/{} admits HTTPRoutes from namespace {route_namespace}", parent.name);
        return Admission::Refused { reason: "NotAllowedByListeners", message };
    }
    Admission::Admitted { gateway, listeners: allowed }
}

fn section_label(parent: &ParentReference) -> String {
    match (&parent.section_name, parent.port) {
        (Some(section), Some(port)) => format!("{section:?} on port {port}"),
        (Some(section), None) => format!("{section:?}"),
        (None, Some(port)) => format!("on port {port}"),
        (None, None) => "at all".to_owned(),
    }
}

/// The scheme an HTTPRoute is served with on this listener, if it serves them.
pub fn scheme(listener: &Listener) -> Option<&'static str> {
    let terminates = listener.tls.as_ref().and_then(|tls| tls.mode.as_deref()).is_none_or(|mode| mode == "Terminate");
    match listener.protocol.as_str() {
        "HTTP" => Some("http"),
        "HTTPS" if terminates => Some("https"),
        _ => None,
    }
}

pub fn takes_http_routes(listener: &Listener) -> bool {
    let kinds = listener.allowed_routes.as_ref().and_then(|allowed| allowed.kinds.as_ref());
    kinds.is_none_or(|kinds| {
        kinds.is_empty() || kinds.iter().any(|kind| kind.kind == "HTTPRoute" && kind.group.as_deref().unwrap_or(GROUP) == GROUP)
    })
}

fn admits_namespace(listener: &Listener, gateway_namespace: &str, route_namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    let namespaces = listener.allowed_routes.as_ref().and_then(|allowed| allowed.namespaces.as_ref());
    match namespaces.and_then(|namespaces| namespaces.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => gateway_namespace == route_namespace,
        "Selector" => namespaces.and_then(|namespaces| namespaces.selector.as_ref()).is_some_and(|selector| selects(selector, labels)),
        _ => false,
    }
}

/// A namespace's labels; every namespace carries its own name as
/// `kubernetes.io/metadata.name`, even when its object is not known.
fn namespace_labels(name: &str, namespaces: &[Namespace]) -> BTreeMap<String, String> {
    let namespace = namespaces.iter().find(|namespace| namespace.metadata.name.as_deref() == Some(name));
    let mut labels = namespace.and_then(|namespace| namespace.metadata.labels.clone()).unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    labels
}

/// Label selector semantics: every matchLabels pair and every expression holds.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    let expressions = selector.match_expressions.iter().flatten().all(|expression| {
        let value = labels.get(&expression.key);
        let listed = || value.is_some_and(|value| expression.values.iter().flatten().any(|listed| listed == value));
        match expression.operator.as_str() {
            "In" => listed(),
            "NotIn" => !listed(),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

/// The hostnames a route serves on a listener: the listener's hostname
/// intersected with the route's (the more specific of two that overlap),
/// either side's when the other has none; `Any` when neither has any.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<HostPattern> {
    let route: Vec<HostPattern> = route.iter().map(|host| HostPattern::parse(host)).collect();
    let Some(listener) = listener.map(HostPattern::parse).filter(|host| *host != HostPattern::Any) else {
        return if route.is_empty() { vec![HostPattern::Any] } else { route };
    };
    if route.is_empty() {
        return vec![listener];
    }
    let mut hosts: Vec<HostPattern> = route
        .into_iter()
        .filter_map(|host| {
            if covers(&listener, &host) {
                Some(host)
            } else if covers(&host, &listener) {
                Some(listener.clone())
            } else {
                None
            }
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Whether every host `inner` matches is matched by `outer` (Gateway API
/// wildcards: `*.foo.com` matches any number of labels before `.foo.com`).
pub fn covers(outer: &HostPattern, inner: &HostPattern) -> bool {
    let under = |host: &str, suffix: &str| host.strip_suffix(suffix).is_some_and(|head| head.len() > 1 && head.ends_with('.'));
    match (outer, inner) {
        (HostPattern::Any, _) => true,
        (HostPattern::Exact(outer), HostPattern::Exact(inner)) => outer == inner,
        (HostPattern::Wildcard(suffix), HostPattern::Exact(host)) => under(host, suffix),
        (HostPattern::Wildcard(outer), HostPattern::Wildcard(inner)) => outer == inner || under(inner, outer),
        _ => false,
    }
}

#[cfg(test)]
#[path = "attach_tests.rs"]
mod tests;
