//! The status the spec asks of this controller, computed purely from a
//! snapshot: GatewayClasses of ours Accepted; our Gateways Accepted and
//! Programmed, with a status per listener (supported kinds, attached
//! routes, Accepted, Programmed, ResolvedRefs, Conflicted); per parentRef
//! of ours of each HTTPRoute, Accepted and ResolvedRefs. Only objects whose
//! status would change are returned, and a condition whose status stays
//! keeps its lastTransitionTime, so an unchanged cluster gets no writes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use super::GATEWAY_CONTROLLER;
use super::attach::{Admission, Attachment, admit, attach, scheme};
use super::backends;
use super::certificates::listener_certificate;
use super::translate::our_gateways;
use super::types::{
    GROUP, Gateway, GatewayClassStatus, GatewayStatus, HttpRoute, Listener, ListenerStatus, RouteGroupKind, RouteParentStatus, RouteStatus,
};
use crate::l7::endpoints::ServiceIndex;
use crate::manifests::Snapshot;

/// An object's new status.
#[derive(Clone, Debug, PartialEq)]
pub struct Update<S> {
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    /// The object's resourceVersion the status was computed from.
    pub resource_version: Option<String>,
    pub status: S,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Updates {
    pub gateway_classes: Vec<Update<GatewayClassStatus>>,
    pub gateways: Vec<Update<GatewayStatus>>,
    pub http_routes: Vec<Update<RouteStatus>>,
}

/// The status writes `snapshot` calls for; `now` stamps conditions whose
/// status changes.
pub fn updates(snapshot: &Snapshot, now: &Time) -> Updates {
    let gateways = our_gateways(snapshot);
    let index = ServiceIndex::new(snapshot);
    let mut updates = Updates::default();
    for class in snapshot.gateway_classes.iter().filter(|class| class.spec.controller_name == GATEWAY_CONTROLLER) {
        let existing = class.status.as_ref().map(|status| &status.conditions[..]).unwrap_or_default();
        let accepted = Wanted::met("Accepted", "Accepted");
        let status = GatewayClassStatus { conditions: settle(vec![accepted], &class.metadata, existing, now) };
        push_changed(&mut updates.gateway_classes, &class.metadata, class.status.as_ref(), status);
    }
    let attached = attached_routes(snapshot, &gateways);
    for gateway in &gateways {
        let status = gateway_status(snapshot, gateway, &attached, now);
        push_changed(&mut updates.gateways, &gateway.metadata, gateway.status.as_ref(), status);
    }
    for route in &snapshot.http_routes {
        let status = route_status(snapshot, &index, &gateways, route, now);
        push_changed(&mut updates.http_routes, &route.metadata, route.status.as_ref(), status);
    }
    updates
}

fn push_changed<S: Default + PartialEq>(updates: &mut Vec<Update<S>>, metadata: &ObjectMeta, existing: Option<&S>, status: S) {
    if existing.map_or_else(|| status == S::default(), |existing| *existing == status) {
        return;
    }
    updates.push(Update {
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone().unwrap_or_default(),
        resource_version: metadata.resource_version.clone(),
        status,
    });
}

/// A condition as computed, before its time and generation.
struct Wanted {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

impl Wanted {
    fn met(type_: &'static str, reason: &'static str) -> Wanted {
        Wanted { type_, status: true, reason, message: String::new() }
    }

    fn unmet(type_: &'static str, reason: &'static str, message: String) -> Wanted {
        Wanted { type_, status: false, reason, message }
    }
}

/// The conditions, each with the object's generation, and the existing
/// condition's lastTransitionTime when its status did not change.
fn settle(wanted: Vec<Wanted>, metadata: &ObjectMeta, existing: &[Condition], now: &Time) -> Vec<Condition> {
    wanted
        .into_iter()
        .map(|wanted| {
            let status = if wanted.status { "True" } else { "False" };
            let before = existing.iter().find(|condition| condition.type_ == wanted.type_ && condition.status == status);
            Condition {
                type_: wanted.type_.into(),
                status: status.into(),
                reason: wanted.reason.into(),
                message: wanted.message,
                observed_generation: metadata.generation,
                last_transition_time: before.map_or_else(|| now.clone(), |before| before.last_transition_time.clone()),
            }
        })
        .collect()
}

type ListenerKey = (String, String, String);

fn listener_key(gateway: &Gateway, listener: &Listener) -> ListenerKey {
    let metadata = &gateway.metadata;
    (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default(), listener.name.clone())
}

/// The routes each listener admits by parentRef and allowedRoutes, whether
/// or not their hostnames meet (the spec's `attachedRoutes`).
fn attached_routes(snapshot: &Snapshot, gateways: &[&Gateway]) -> BTreeMap<ListenerKey, BTreeSet<(String, String)>> {
    let mut attached: BTreeMap<ListenerKey, BTreeSet<(String, String)>> = BTreeMap::new();
    for route in &snapshot.http_routes {
        let route_key = (route.metadata.namespace.clone().unwrap_or_default(), route.metadata.name.clone().unwrap_or_default());
        for parent in &route.spec.parent_refs {
            if let Admission::Admitted { gateway, listeners } = admit(route, parent, gateways, &snapshot.namespaces) {
                for (listener, _) in listeners {
                    attached.entry(listener_key(gateway, listener)).or_default().insert(route_key.clone());
                }
            }
        }
    }
    attached
}

fn gateway_status(snapshot: &Snapshot, gateway: &Gateway, attached: &BTreeMap<ListenerKey, BTreeSet<(String, String)>>, now: &Time) -> GatewayStatus {
    let existing = gateway.status.clone().unwrap_or_default();
    let mut listeners = Vec::new();
    let (mut accepted, mut programmed) = (0, 0);
    for listener in &gateway.spec.listeners {
        let before = existing.listeners.iter().find(|status| status.name == listener.name);
        let routes = attached.get(&listener_key(gateway, listener)).map_or(0, BTreeSet::len);
        let (kinds, wanted) = listener_conditions(snapshot, gateway, listener);
        accepted += usize::from(wanted[0].status);
        programmed += usize::from(wanted[1].status);
        listeners.push(ListenerStatus {
            name: listener.name.clone(),
            supported_kinds: kinds,
            attached_routes: i32::try_from(routes).unwrap_or(i32::MAX),
            conditions: settle(wanted, &gateway.metadata, before.map(|status| &status.conditions[..]).unwrap_or_default(), now),
        });
    }
    let invalid = listeners.len() - accepted;
    let accepted = match (invalid, accepted) {
        (0, _) => Wanted::met("Accepted", "Accepted"),
        (_, 0) => Wanted::unmet("Accepted", "ListenersNotValid", "no listener is valid".into()),
        (invalid, _) => Wanted { message: format!("{invalid} listener(s) not valid"), ..Wanted::met("Accepted", "ListenersNotValid") },
    };
    let programmed = if programmed > 0 {
        Wanted::met("Programmed", "Programmed")
    } else {
        Wanted::unmet("Programmed", "Invalid", "no listener is programmed".into())
    };
    GatewayStatus { conditions: settle(vec![accepted, programmed], &gateway.metadata, &existing.conditions, now), listeners }
}

/// The listener's supported route kinds and its conditions: Accepted and
/// Programmed first (the Gateway's conditions count them), then
/// ResolvedRefs and Conflicted.
fn listener_conditions(snapshot: &Snapshot, gateway: &Gateway, listener: &Listener) -> (Vec<RouteGroupKind>, Vec<Wanted>) {
    let http_route = RouteGroupKind { group: Some(GROUP.into()), kind: "HTTPRoute".into() };
    let Some(scheme) = scheme(listener) else {
        let message = format!("protocol {} is not served: HTTP, and HTTPS with TLS mode Terminate, are", listener.protocol);
        let wanted = vec![
            Wanted::unmet("Accepted", "UnsupportedProtocol", message),
            Wanted::unmet("Programmed", "Invalid", "the listener is not accepted".into()),
            Wanted::met("ResolvedRefs", "ResolvedRefs"),
            Wanted::unmet("Conflicted", "NoConflicts", String::new()),
        ];
        return (Vec::new(), wanted);
    };
    let asked = listener.allowed_routes.as_ref().and_then(|allowed| allowed.kinds.clone()).filter(|kinds| !kinds.is_empty());
    let is_http_route = |kind: &RouteGroupKind| kind.kind == "HTTPRoute" && kind.group.as_deref().unwrap_or(GROUP) == GROUP;
    let (kinds, unsupported) = match &asked {
        Some(asked) => (
            if asked.iter().any(is_http_route) { vec![http_route] } else { Vec::new() },
            asked.iter().filter(|kind| !is_http_route(kind)).map(|kind| kind.kind.as_str()).collect::<Vec<_>>(),
        ),
        None => (vec![http_route], Vec::new()),
    };
    let certificate = match listener_certificate(snapshot, gateway, listener) {
        Some(Err(unresolved)) => Err((unresolved.reason, unresolved.message)),
        None if scheme == "https" => Err(("InvalidCertificateRef", "an HTTPS listener needs a certificateRef".to_owned())),
        _ => Ok(()),
    };
    let resolved = if !unsupported.is_empty() {
        Wanted::unmet("ResolvedRefs", "InvalidRouteKinds", format!("route kinds not served: {}", unsupported.join(", ")))
    } else {
        match certificate {
            Ok(()) => Wanted::met("ResolvedRefs", "ResolvedRefs"),
            Err((reason, message)) => Wanted::unmet("ResolvedRefs", reason, message),
        }
    };
    let programmed = if resolved.status {
        Wanted::met("Programmed", "Programmed")
    } else {
        Wanted::unmet("Programmed", "Invalid", "the listener has unresolved references".into())
    };
    let wanted = vec![Wanted::met("Accepted", "Accepted"), programmed, resolved, Wanted::unmet("Conflicted", "NoConflicts", String::new())];
    (kinds, wanted)
}

/// The route's status: other controllers' parents as they are, then ours,
/// one per parentRef of a Gateway of ours, in parentRef order.
fn route_status(snapshot: &Snapshot, index: &ServiceIndex, gateways: &[&Gateway], route: &HttpRoute, now: &Time) -> RouteStatus {
    let existing = route.status.clone().unwrap_or_default();
    let mut parents: Vec<RouteParentStatus> = existing.parents.iter().filter(|parent| parent.controller_name != GATEWAY_CONTROLLER).cloned().collect();
    let mut resolved = None;
    for parent in &route.spec.parent_refs {
        let accepted = match attach(route, parent, gateways, &snapshot.namespaces) {
            Attachment::NotOurs => continue,
            Attachment::Attached(_) => Wanted::met("Accepted", "Accepted"),
            Attachment::Refused { reason, message } => Wanted::unmet("Accepted", reason, message),
        };
        let resolved = resolved.get_or_insert_with(|| resolved_refs(snapshot, index, route));
        let before = existing.parents.iter().find(|status| status.controller_name == GATEWAY_CONTROLLER && status.parent_ref == *parent);
        let wanted = vec![accepted, Wanted { message: resolved.message.clone(), ..*resolved }];
        parents.push(RouteParentStatus {
            parent_ref: parent.clone(),
            controller_name: GATEWAY_CONTROLLER.into(),
            conditions: settle(wanted, &route.metadata, before.map(|status| &status.conditions[..]).unwrap_or_default(), now),
        });
    }
    RouteStatus { parents }
}

/// ResolvedRefs over every backendRef of every rule: the first unresolved
/// one's reason, and every unresolved one's message.
fn resolved_refs(snapshot: &Snapshot, index: &ServiceIndex, route: &HttpRoute) -> Wanted {
    let unresolved: Vec<backends::Unresolved> =
        route.spec.rules.iter().flat_map(|rule| backends::resolve(route, rule, index, &snapshot.reference_grants).1).collect();
    match unresolved.first() {
        None => Wanted::met("ResolvedRefs", "ResolvedRefs"),
        Some(first) => {
            let messages: Vec<&str> = unresolved.iter().map(|unresolved| unresolved.message.as_str()).collect();
            Wanted::unmet("ResolvedRefs", first.reason, messages.join("; "))
        }
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
