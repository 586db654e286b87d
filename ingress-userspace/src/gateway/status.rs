//! The status the spec asks of this controller, computed purely from a
//! snapshot and the node's addresses: GatewayClasses of ours Accepted; our
//! Gateways Accepted and Programmed, reachable on the node's addresses, with
//! a status per listener (supported kinds, attached routes, Accepted,
//! Programmed, ResolvedRefs, Conflicted); per parentRef
//! of ours of each HTTPRoute, Accepted and ResolvedRefs. Only objects whose
//! status would change are returned, and a condition whose status stays
//! keeps its lastTransitionTime, so an unchanged cluster gets no writes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use super::GATEWAY_CONTROLLER;
use super::attach::{Admission, Attachment, admit, attach, scheme};
use super::backends;
use super::certificates::listener_certificate;
use super::conflicts::{Conflict, conflicts};
use super::translate::our_gateways;
use super::types::{
    GROUP, Gateway, GatewayClassStatus, GatewayStatus, GatewayStatusAddress, HttpRoute, Listener, ListenerStatus, RouteGroupKind, RouteParentStatus,
    RouteStatus,
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

/// The status writes `snapshot` calls for; `node_addresses` are where the
/// proxy listens (every Gateway is served on all of them); `now` stamps
/// conditions whose status changes.
pub fn updates(snapshot: &Snapshot, node_addresses: &[IpAddr], now: &Time) -> Updates {
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
    let addresses = gateway_addresses(node_addresses);
    for gateway in &gateways {
        let status = gateway_status(snapshot, gateway, &attached, &addresses, now);
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

/// The addresses a Gateway's status lists: every address of the node, as
/// the proxy's listeners take them all.
pub fn gateway_addresses(node_addresses: &[IpAddr]) -> Vec<GatewayStatusAddress> {
    node_addresses.iter().map(|address| GatewayStatusAddress { type_: Some("IPAddress".into()), value: address.to_string() }).collect()
}

fn gateway_status(
    snapshot: &Snapshot,
    gateway: &Gateway,
    attached: &BTreeMap<ListenerKey, BTreeSet<(String, String)>>,
    addresses: &[GatewayStatusAddress],
    now: &Time,
) -> GatewayStatus {
    let existing = gateway.status.clone().unwrap_or_default();
    let mut listeners = Vec::new();
    let (mut accepted, mut not_accepted, mut programmed) = (Vec::new(), Vec::new(), 0);
    for (listener, conflict) in gateway.spec.listeners.iter().zip(conflicts(&gateway.spec.listeners)) {
        let before = existing.listeners.iter().find(|status| status.name == listener.name);
        let routes = attached.get(&listener_key(gateway, listener)).map_or(0, BTreeSet::len);
        let (kinds, mut wanted) = listener_conditions(snapshot, gateway, listener);
        if let Some(conflict) = &conflict {
            mark_conflicted(&mut wanted, conflict);
        }
        if wanted[0].status {
            accepted.push(listener.name.clone());
        } else {
            not_accepted.push(format!("{} ({})", listener.name, wanted[0].reason));
        }
        programmed += usize::from(wanted[1].status);
        listeners.push(ListenerStatus {
            name: listener.name.clone(),
            supported_kinds: kinds,
            attached_routes: i32::try_from(routes).unwrap_or(i32::MAX),
            conditions: settle(wanted, &gateway.metadata, before.map(|status| &status.conditions[..]).unwrap_or_default(), now),
        });
    }
    // The spec: the message says which listeners are not accepted (conflicted, say), and which are.
    let accepted = match (not_accepted.is_empty(), accepted.is_empty()) {
        (true, _) => Wanted::met("Accepted", "Accepted"),
        (false, true) => Wanted::unmet("Accepted", "ListenersNotValid", format!("no listener is accepted: {}", not_accepted.join(", "))),
        (false, false) => {
            let message = format!("listeners not accepted: {}; accepted: {}", not_accepted.join(", "), accepted.join(", "));
            Wanted { message, ..Wanted::met("Accepted", "ListenersNotValid") }
        }
    };
    let programmed = if programmed > 0 {
        Wanted::met("Programmed", "Programmed")
    } else {
        Wanted::unmet("Programmed", "Invalid", "no listener is programmed".into())
    };
    let conditions = settle(vec![accepted, programmed], &gateway.metadata, &existing.conditions, now);
    GatewayStatus { addresses: addresses.to_vec(), conditions, listeners }
}

/// A conflicted listener is neither accepted (unless already refused for
/// another reason) nor programmed, whatever else holds of it.
fn mark_conflicted(wanted: &mut [Wanted], conflict: &Conflict) {
    for condition in wanted.iter_mut() {
        *condition = match condition.type_ {
            "Accepted" if condition.status => Wanted::unmet("Accepted", conflict.reason, conflict.message.clone()),
            "Programmed" => Wanted::unmet("Programmed", "Invalid", "the listener is conflicted".into()),
            "Conflicted" => Wanted { status: true, reason: conflict.reason, message: conflict.message.clone(), ..Wanted::met("Conflicted", "") },
            _ => continue,
        };
    }
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
        route.spec.rules.iter().flat_map(|rule| backends::resolve(route, rule, index, &snapshot.reference_grants).unresolved).collect();
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
