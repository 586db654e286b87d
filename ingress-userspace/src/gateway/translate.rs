//! The Gateway API objects of a snapshot, translated purely into route
//! table rules and listener certificates: Gateways of our GatewayClasses,
//! HTTPRoutes attached to their listeners, each match of each rule a rule
//! of the table for each hostname the route serves there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::GATEWAY_CONTROLLER;
use super::attach::{Attached, Attachment, attach, covers};
use super::backends;
use super::filters;
use super::certificates::listener_certificate;
use super::conflicts::conflicts;
use super::matches;
use super::types::{Gateway, HttpRoute, HttpRouteMatch};
use crate::l7::balancer::{BackendSplit, Upstream};
use crate::l7::filters::Filters;
use crate::l7::endpoints::ServiceIndex;
use crate::l7::host::HostPattern;
use crate::l7::route::Route;
use crate::l7::rule::{Rule, Seniority};
use crate::manifests::Snapshot;
use crate::problem::{Location, Problem, ProblemKind};

#[derive(Debug, Default)]
pub struct Translation {
    pub rules: Vec<(HostPattern, Rule)>,
    pub certificates: Vec<(HostPattern, Arc<CertifiedKey>)>,
    pub problems: Vec<Problem>,
}

/// The Gateways this controller serves: of a GatewayClass whose
/// controllerName is ours.
pub fn our_gateways(snapshot: &Snapshot) -> Vec<&Gateway> {
    let classes: BTreeSet<&str> = snapshot
        .gateway_classes
        .iter()
        .filter(|class| class.spec.controller_name == GATEWAY_CONTROLLER)
        .filter_map(|class| class.metadata.name.as_deref())
        .collect();
    snapshot.gateways.iter().filter(|gateway| classes.contains(gateway.spec.gateway_class_name.as_str())).collect()
}

pub fn translate(snapshot: &Snapshot, index: &ServiceIndex) -> Translation {
    let gateways = our_gateways(snapshot);
    let mut translation = Translation::default();
    for gateway in &gateways {
        add_certificates(snapshot, gateway, &mut translation);
    }
    let listener_hosts = listener_hosts(snapshot, &gateways);
    for route in &snapshot.http_routes {
        add_route(snapshot, index, &gateways, &listener_hosts, route, &mut translation);
    }
    translation
}

/// The hostnames the routes attached to each listener serve there, by
/// listener (`namespace/gateway`, listener name).
type ListenerHosts = BTreeMap<(String, String), BTreeSet<HostPattern>>;

fn listener_key(attached: &Attached) -> (String, String) {
    let gateway = &attached.gateway.metadata;
    let namespace = gateway.namespace.as_deref().unwrap_or("default");
    (format!("{namespace}/{}", gateway.name.as_deref().unwrap_or("")), attached.listener.name.clone())
}

fn listener_hosts(snapshot: &Snapshot, gateways: &[&Gateway]) -> ListenerHosts {
    let mut hosts = ListenerHosts::new();
    for route in &snapshot.http_routes {
        for parent in &route.spec.parent_refs {
            if let Attachment::Attached(listeners) = attach(route, parent, gateways, &snapshot.namespaces) {
                for listener in listeners {
                    hosts.entry(listener_key(&listener)).or_default().extend(listener.hostnames);
                }
            }
        }
    }
    hosts
}

/// The schemes a route is served with, per hostname, over every listener
/// it is attached to. Besides its own hostnames, those other routes of the
/// same listener serve that one of its own covers (`example.com` under
/// `*.com`): the table keeps one list of rules per hostname, and a request
/// must be matched against the rules of every route of its listener that
/// serves its host, by the match precedence alone (upstream conformance
/// test HTTPRouteMatchingAcrossRoutes).
fn served_hosts(
    snapshot: &Snapshot,
    gateways: &[&Gateway],
    listener_hosts: &ListenerHosts,
    route: &HttpRoute,
    location: &Location,
    problems: &mut Vec<Problem>,
) -> BTreeMap<HostPattern, BTreeSet<&'static str>> {
    let mut hosts: BTreeMap<HostPattern, BTreeSet<&'static str>> = BTreeMap::new();
    for (index, parent) in route.spec.parent_refs.iter().enumerate() {
        match attach(route, parent, gateways, &snapshot.namespaces) {
            Attachment::NotOurs => {}
            Attachment::Attached(listeners) => {
                for listener in listeners {
                    let shared = listener_hosts.get(&listener_key(&listener)).into_iter().flatten();
                    let narrower = shared.filter(|other| listener.hostnames.iter().any(|own| own != *other && covers(own, other)));
                    for host in listener.hostnames.iter().chain(narrower) {
                        hosts.entry(host.clone()).or_default().insert(listener.scheme);
                    }
                }
            }
            Attachment::Refused { reason, message } => {
                let problem = Problem::warning(ProblemKind::InvalidField, location.clone(), format!("{reason}: {message}, parent skipped"));
                problems.push(problem.at(format!("spec.parentRefs[{index}]")));
            }
        }
    }
    hosts
}

fn add_route(snapshot: &Snapshot, index: &ServiceIndex, gateways: &[&Gateway], listener_hosts: &ListenerHosts, route: &HttpRoute, translation: &mut Translation) {
    let location = snapshot.location("HTTPRoute", &route.metadata);
    let hosts = served_hosts(snapshot, gateways, listener_hosts, route, &location, &mut translation.problems);
    if hosts.is_empty() {
        return;
    }
    let namespace = route.metadata.namespace.as_deref().unwrap_or("default");
    let name = route.metadata.name.as_deref().unwrap_or("");
    let every_path = [HttpRouteMatch::default()];
    for (rule_index, rule) in route.spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{rule_index}]");
        let resolved = backends::resolve(route, rule, index, &snapshot.reference_grants);
        for unresolved in resolved.unresolved {
            let message = format!("{}: {}, {}", unresolved.reason, unresolved.message, unresolved.consequence);
            let problem = Problem::warning(ProblemKind::UnknownService, location.clone(), message);
            translation.problems.push(problem.at(format!("{field}.{}", unresolved.field)));
        }
        let split = resolved.split;
        // A filter that cannot be applied must not be skipped: its requests get 500.
        let (filters, split) = match filters::build(&rule.filters, resolved.mirrors) {
            Ok(filters) => (filters, split),
            Err(message) => {
                let problem = Problem::error(ProblemKind::InvalidField, location.clone(), format!("{message}, answering 500"));
                translation.problems.push(problem.at(field.clone()));
                (Filters::default(), BackendSplit::new(Vec::new()))
            }
        };
        let route_name = format!("httproute:{namespace}/{name}:{rule_index}");
        let target = Route { split: Some(split), filters, ..Route::new(route_name, Upstream::default()) };
        let target = Arc::new(target);
        let rule_matches = rule.matches.as_deref().filter(|matches| !matches.is_empty()).unwrap_or(&every_path[..]);
        for (match_index, spec) in rule_matches.iter().enumerate() {
            let (path, conditions) = match matches::translate(spec) {
                Ok(translated) => translated,
                Err(message) => {
                    let problem = Problem::error(ProblemKind::InvalidField, location.clone(), format!("{message}, match skipped"));
                    translation.problems.push(problem.at(format!("{field}.matches[{match_index}]")));
                    continue;
                }
            };
            for (host, schemes) in &hosts {
                let mut conditions = conditions.clone();
                // Attached to listeners of one protocol only: not served on the other.
                conditions.scheme = if schemes.len() == 1 { schemes.first().copied() } else { None };
                let rule = Rule {
                    path: path.clone(),
                    conditions,
                    seniority: Seniority::of(&route.metadata, (rule_index, match_index)),
                    any_depth: matches!(host, HostPattern::Wildcard(_)),
                    route: target.clone(),
                    canary: None,
                };
                translation.rules.push((host.clone(), rule));
            }
        }
    }
}

/// The certificate of each HTTPS listener with a hostname that is not
/// conflicted (a conflicted listener is not served at all).
fn add_certificates(snapshot: &Snapshot, gateway: &Gateway, translation: &mut Translation) {
    let location = snapshot.location("Gateway", &gateway.metadata);
    let conflicts = conflicts(&gateway.spec.listeners);
    for (index, listener) in gateway.spec.listeners.iter().enumerate() {
        if conflicts[index].is_some() {
            continue;
        }
        let Some(key) = listener_certificate(snapshot, gateway, listener) else { continue };
        let field = format!("spec.listeners[{index}].tls.certificateRefs[0]");
        let host = HostPattern::parse(listener.hostname.as_deref().unwrap_or(""));
        let key = if host == HostPattern::Any {
            Err("a listener without hostname has no SNI name to serve it for".to_owned())
        } else {
            key.map_err(|unresolved| unresolved.message)
        };
        match key {
            Ok(key) => translation.certificates.push((host, key)),
            Err(error) => {
                let message = format!("{error}, the listener's hosts get the default certificate");
                translation.problems.push(Problem::error(ProblemKind::InvalidField, location.clone(), message).at(field));
            }
        }
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
