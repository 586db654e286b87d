use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

use super::*;
use crate::gateway::types::{AllowedRoutes, RouteGroupKind, RouteNamespaces};

fn listener(name: &str, port: i32, protocol: &str, hostname: Option<&str>, from: Option<&str>) -> Listener {
    let namespaces = from.map(|from| RouteNamespaces { from: Some(from.into()), selector: None });
    Listener {
        name: name.into(),
        hostname: hostname.map(Into::into),
        port,
        protocol: protocol.into(),
        tls: None,
        allowed_routes: Some(AllowedRoutes { namespaces, kinds: None }),
    }
}

fn gateway(listeners: Vec<Listener>) -> Gateway {
    let mut gateway = Gateway::default();
    gateway.metadata.name = Some("gw".into());
    gateway.metadata.namespace = Some("infra".into());
    gateway.spec.gateway_class_name = "ours".into();
    gateway.spec.listeners = listeners;
    gateway
}

fn route(namespace: &str, hostnames: &[&str]) -> HttpRoute {
    let mut route = HttpRoute::default();
    route.metadata.name = Some("r".into());
    route.metadata.namespace = Some(namespace.into());
    route.spec.hostnames = hostnames.iter().map(|host| (*host).to_owned()).collect();
    route
}

fn parent(namespace: Option<&str>, section: Option<&str>, port: Option<i32>) -> ParentReference {
    ParentReference {
        name: "gw".into(),
        namespace: namespace.map(Into::into),
        section_name: section.map(Into::into),
        port,
        ..ParentReference::default()
    }
}

/// The outcome as text: `listener:scheme:hosts` per attached listener, or the reason.
fn outcome(attachment: Attachment) -> String {
    match attachment {
        Attachment::NotOurs => "not ours".into(),
        Attachment::Refused { reason, .. } => reason.into(),
        Attachment::Attached(attached) => attached
            .iter()
            .map(|attached| {
                let hosts: Vec<String> = attached.hostnames.iter().map(ToString::to_string).collect();
                format!("{}:{}:{}", attached.listener.name, attached.scheme, hosts.join(","))
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[test]
fn parent_refs_pick_listeners_by_section_port_protocol_and_namespace() {
    let mut selected = listener("selected", 8080, "HTTP", None, Some("Selector"));
    let selector = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement { key: "team".into(), operator: "In".into(), values: Some(vec!["shop".into()]) }]),
        ..LabelSelector::default()
    };
    selected.allowed_routes.as_mut().unwrap().namespaces.as_mut().unwrap().selector = Some(selector);
    let mut grpc_only = listener("grpc-only", 9090, "HTTP", None, Some("All"));
    grpc_only.allowed_routes.as_mut().unwrap().kinds = Some(vec![RouteGroupKind { group: None, kind: "GRPCRoute".into() }]);
    let gw = gateway(vec![
        listener("same", 80, "HTTP", None, None),
        listener("all", 443, "HTTPS", Some("*.example.com"), Some("All")),
        listener("tcp", 5000, "TCP", None, Some("All")),
        selected,
        grpc_only,
    ]);
    let mut shop = Namespace::default();
    shop.metadata.name = Some("shop".into());
    shop.metadata.labels = Some(BTreeMap::from([("team".to_owned(), "shop".to_owned())]));
    let namespaces = [shop];
    let cases = [
        ("same namespace, no section: every admitting listener", route("infra", &[]), parent(None, None, None), "same:http:* all:https:*.example.com"),
        ("section picks one", route("infra", &["a.example.com"]), parent(None, Some("all"), None), "all:https:a.example.com"),
        ("port picks one", route("infra", &[]), parent(None, None, Some(80)), "same:http:*"),
        ("section and port disagree", route("infra", &[]), parent(None, Some("same"), Some(443)), "NoMatchingParent"),
        ("unknown section", route("infra", &[]), parent(None, Some("nope"), None), "NoMatchingParent"),
        ("other namespace: All and a matching Selector", route("shop", &[]), parent(Some("infra"), None, None), "all:https:*.example.com selected:http:*"),
        ("other namespace, Same only", route("apps", &[]), parent(Some("infra"), Some("same"), None), "NotAllowedByListeners"),
        ("TCP listener takes no HTTPRoute", route("infra", &[]), parent(None, Some("tcp"), None), "NotAllowedByListeners"),
        ("kinds without HTTPRoute", route("infra", &[]), parent(None, Some("grpc-only"), None), "NotAllowedByListeners"),
        ("hostname outside the listener's", route("infra", &["a.other.com"]), parent(None, Some("all"), None), "NoMatchingListenerHostname"),
        ("gateway in another namespace than named", route("apps", &[]), parent(None, None, None), "not ours"),
    ];
    let gateways = [&gw];
    for (name, route, parent, expected) in cases {
        assert_eq!(outcome(attach(&route, &parent, &gateways, &namespaces)), expected, "{name}");
    }
    let other_kind = ParentReference { kind: Some("Service".into()), ..parent(None, None, None) };
    assert_eq!(outcome(attach(&route("infra", &[]), &other_kind, &gateways, &namespaces)), "not ours");
}

#[test]
fn hostnames_intersect_as_the_spec_says() {
    let cases: [(Option<&str>, &[&str], &str); 11] = [
        (None, &[], "*"),
        (None, &["a.com", "*.b.com"], "a.com *.b.com"),
        (Some("a.com"), &[], "a.com"),
        (Some("a.com"), &["a.com", "b.com"], "a.com"),
        (Some("x.a.com"), &["*.a.com"], "x.a.com"),
        (Some("*.a.com"), &["x.a.com", "y.x.a.com", "a.com"], "x.a.com y.x.a.com"),
        (Some("*.a.com"), &["*.x.a.com"], "*.x.a.com"),
        (Some("*.x.a.com"), &["*.a.com"], "*.x.a.com"),
        (Some("*.a.com"), &["*.a.com"], "*.a.com"),
        (Some("*.a.com"), &["*.b.com", "b.com"], ""),
        (Some("a.com"), &["*.a.com"], ""),
    ];
    for (listener, route, expected) in cases {
        let route: Vec<String> = route.iter().map(|host| (*host).to_owned()).collect();
        let hosts: Vec<String> = intersect(listener, &route).iter().map(ToString::to_string).collect();
        assert_eq!(hosts.join(" "), expected, "{listener:?} {route:?}");
    }
}
