//! Status from manifests as a user writes them: each condition as
//! `Type=Status/Reason`, so a table reads like `kubectl get -o yaml`.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::gateway::test_manifests::{self, CLASSES, service};
use crate::manifests::parse_documents;

/// Our and another controller's GatewayClass, Service apps/web with an
/// endpoint, and backends/far.
fn base() -> String {
    format!("{CLASSES}{}{}", service("apps", "web", 80, "10.0.0.1", 8080), service("backends", "far", 80, "10.0.0.2", 8080))
}

/// Gateway `gw` in `infra` (generation 3) with `listeners` as YAML flow items.
fn gateway(listeners: &str) -> String {
    test_manifests::gateway("infra", "gw", ", generation: 3", "ours", listeners)
}

/// HTTPRoute `name` in `apps` (generation 4).
fn route(name: &str, parents: &str, hostnames: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: apps, generation: 4}}\n\
         spec: {{parentRefs: {parents}, hostnames: {hostnames}, rules: [{{backendRefs: {backends}}}]}}\n"
    )
}

fn snapshot(manifests: &str) -> Snapshot {
    let loaded = parse_documents("t.yaml", &format!("{}{manifests}", base()));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.snapshot
}

fn now() -> Time {
    Time(Timestamp::from_second(1_700_000_000).unwrap())
}

fn show(conditions: &[Condition]) -> String {
    let shown: Vec<String> = conditions.iter().map(|c| format!("{}={}/{}", c.type_, c.status, c.reason)).collect();
    shown.join(" ")
}

const HTTP_ALL: &str = "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}";

#[test]
fn classes_of_ours_are_accepted_with_their_generation_and_others_are_left_alone() {
    let updates = updates(&snapshot(""), &[], &now());
    assert_eq!(updates.gateway_classes.len(), 1);
    let class = &updates.gateway_classes[0];
    assert_eq!(class.name, "ours");
    assert_eq!(show(&class.status.conditions), "Accepted=True/Accepted");
    assert_eq!(class.status.conditions[0].observed_generation, Some(2));
}

#[test]
fn listeners_report_protocol_certificate_and_route_kind_problems() {
    let secret = rcgen::generate_simple_self_signed(vec!["s.test".to_owned()]).unwrap();
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: good, namespace: infra}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {:?}, tls.key: {:?}}}\n",
        secret.cert.pem(),
        secret.key_pair.serialize_pem()
    );
    let https = |certificate: &str| format!("{{name: https, port: 443, protocol: HTTPS, hostname: s.test, tls: {{certificateRefs: [{certificate}]}}}}");
    let unresolved = |reason: &str| format!("Accepted=True/Accepted Programmed=False/Invalid ResolvedRefs=False/{reason} Conflicted=False/NoConflicts");
    let served = "Accepted=True/Accepted Programmed=True/Programmed ResolvedRefs=True/ResolvedRefs Conflicted=False/NoConflicts";
    let cases = [
        (HTTP_ALL.to_owned(), "HTTPRoute", served.to_owned()),
        (https("{name: good}"), "HTTPRoute", served.to_owned()),
        (https("{name: missing}"), "HTTPRoute", unresolved("InvalidCertificateRef")),
        (https("{name: good, kind: ConfigMap}"), "HTTPRoute", unresolved("InvalidCertificateRef")),
        (https("{name: good, namespace: elsewhere}"), "HTTPRoute", unresolved("RefNotPermitted")),
        ("{name: https, port: 443, protocol: HTTPS}".to_owned(), "HTTPRoute", unresolved("InvalidCertificateRef")),
        ("{name: h, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}".to_owned(), "", unresolved("InvalidRouteKinds")),
        (
            "{name: tcp, port: 9000, protocol: TCP}".to_owned(),
            "",
            "Accepted=False/UnsupportedProtocol Programmed=False/Invalid ResolvedRefs=True/ResolvedRefs Conflicted=False/NoConflicts".to_owned(),
        ),
    ];
    for (listener, kinds, expected) in cases {
        let updates = updates(&snapshot(&format!("{secret}{}", gateway(&format!("[{listener}]")))), &[], &now());
        let status = &updates.gateways[0].status.listeners[0];
        assert_eq!(show(&status.conditions), expected, "{listener}");
        let supported: Vec<&str> = status.supported_kinds.iter().map(|kind| kind.kind.as_str()).collect();
        assert_eq!(supported.join(","), kinds, "{listener}");
        assert!(status.conditions.iter().all(|condition| condition.observed_generation == Some(3)));
    }
}

#[test]
fn a_gateway_is_accepted_and_programmed_by_its_listeners() {
    let tcp = "{name: tcp, port: 9000, protocol: TCP}";
    let unresolved = "{name: https, port: 443, protocol: HTTPS}";
    let cases = [
        (format!("[{HTTP_ALL}]"), "Accepted=True/Accepted Programmed=True/Programmed"),
        (format!("[{HTTP_ALL}, {tcp}]"), "Accepted=True/ListenersNotValid Programmed=True/Programmed"),
        (format!("[{tcp}]"), "Accepted=False/ListenersNotValid Programmed=False/Invalid"),
        (format!("[{unresolved}]"), "Accepted=True/Accepted Programmed=False/Invalid"),
    ];
    for (listeners, expected) in cases {
        let updates = updates(&snapshot(&gateway(&listeners)), &[], &now());
        assert_eq!(updates.gateways.len(), 1);
        assert_eq!(show(&updates.gateways[0].status.conditions), expected, "{listeners}");
    }
}

#[test]
fn attached_routes_count_routes_admitted_whatever_their_hostnames_and_state() {
    let same = "{name: same, port: 8080, protocol: HTTP, hostname: only.test}";
    let manifests = [
        gateway(&format!("[{HTTP_ALL}, {same}]")),
        route("a", "[{name: gw, namespace: infra}]", "[a.test]", "[{name: web, port: 80}]"),
        // Twice on the same listener: counted once.
        route("b", "[{name: gw, namespace: infra, sectionName: http}, {name: gw, namespace: infra, port: 80}]", "[]", "[{name: missing, port: 80}]"),
        route("c", "[{name: gw, namespace: infra, sectionName: nope}]", "[]", "[]"),
    ];
    let updates = updates(&snapshot(&manifests.concat()), &[], &now());
    let counts: Vec<(&str, i32)> = updates.gateways[0].status.listeners.iter().map(|l| (l.name.as_str(), l.attached_routes)).collect();
    // `same` admits only routes of its own namespace, infra.
    assert_eq!(counts, [("http", 2), ("same", 0)]);
}

#[test]
fn route_parents_say_why_they_are_not_accepted_or_not_resolved() {
    let listeners = format!("[{HTTP_ALL}, {{name: same, port: 8080, protocol: HTTP}}, {{name: host, port: 81, protocol: HTTP, hostname: h.test, allowedRoutes: {{namespaces: {{from: All}}}}}}]");
    let web = "[{name: web, port: 80}]";
    let cases = [
        ("{name: gw, namespace: infra}", "[]", web, "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"),
        ("{name: gw, namespace: infra, sectionName: nope}", "[]", web, "Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs"),
        ("{name: gw, namespace: infra, port: 9}", "[]", web, "Accepted=False/NoMatchingParent ResolvedRefs=True/ResolvedRefs"),
        ("{name: gw, namespace: infra, sectionName: same}", "[]", web, "Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs"),
        ("{name: gw, namespace: infra, sectionName: host}", "[x.test]", web, "Accepted=False/NoMatchingListenerHostname ResolvedRefs=True/ResolvedRefs"),
        ("{name: gw, namespace: infra}", "[]", "[{name: missing, port: 80}]", "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound"),
        ("{name: gw, namespace: infra}", "[]", "[{name: web}]", "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound"),
        ("{name: gw, namespace: infra}", "[]", "[{name: far, namespace: backends, port: 80}]", "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted"),
        ("{name: gw, namespace: infra}", "[]", "[{name: web, kind: Bucket, group: example.com}]", "Accepted=True/Accepted ResolvedRefs=False/InvalidKind"),
    ];
    for (parent, hostnames, backends, expected) in cases {
        let manifests = format!("{}{}", gateway(&listeners), route("r", &format!("[{parent}]"), hostnames, backends));
        let updates = updates(&snapshot(&manifests), &[], &now());
        assert_eq!(updates.http_routes.len(), 1, "{parent}");
        let parents = &updates.http_routes[0].status.parents;
        assert_eq!(parents.len(), 1);
        assert_eq!(parents[0].controller_name, GATEWAY_CONTROLLER);
        assert_eq!(parents[0].parent_ref.name, "gw");
        assert_eq!(show(&parents[0].conditions), expected, "{parent} {hostnames} {backends}");
        assert!(parents[0].conditions.iter().all(|condition| condition.observed_generation == Some(4)));
    }
}

#[test]
fn other_controllers_parents_stay_and_parents_of_theirs_get_none_of_ours() {
    let theirs = test_manifests::gateway("infra", "other", "", "theirs", "[{name: http, port: 80, protocol: HTTP}]");
    let mut snapshot = snapshot(&format!(
        "{}{theirs}{}",
        gateway(&format!("[{HTTP_ALL}]")),
        route("r", "[{name: other, namespace: infra}, {name: gw, namespace: infra}]", "[]", "[{name: web, port: 80}]")
    ));
    let their_status = RouteParentStatus {
        parent_ref: snapshot.http_routes[0].spec.parent_refs[0].clone(),
        controller_name: "example.com/other".into(),
        conditions: Vec::new(),
    };
    snapshot.http_routes[0].status = Some(RouteStatus { parents: vec![their_status.clone()] });
    let updates = updates(&snapshot, &[], &now());
    let parents = &updates.http_routes[0].status.parents;
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], their_status);
    assert_eq!((parents[1].controller_name.as_str(), parents[1].parent_ref.name.as_str()), (GATEWAY_CONTROLLER, "gw"));
}

#[test]
fn a_written_status_asks_for_no_write_and_keeps_its_transition_times() {
    let manifests = format!("{}{}", gateway(&format!("[{HTTP_ALL}]")), route("r", "[{name: gw, namespace: infra}]", "[]", "[{name: web, port: 80}]"));
    let mut snapshot = snapshot(&manifests);
    let first = updates(&snapshot, &[], &now());
    assert_eq!((first.gateway_classes.len(), first.gateways.len(), first.http_routes.len()), (1, 1, 1));
    snapshot.gateway_classes[0].status = Some(first.gateway_classes[0].status.clone());
    snapshot.gateways[0].status = Some(first.gateways[0].status.clone());
    snapshot.http_routes[0].status = Some(first.http_routes[0].status.clone());
    let later = Time(Timestamp::from_second(1_700_000_100).unwrap());
    assert_eq!(updates(&snapshot, &[], &later), Updates::default());

    // The backend goes away: ResolvedRefs flips and gets the new time,
    // Accepted keeps the time it had.
    snapshot.http_routes[0].spec.rules[0].backend_refs[0].name = "missing".into();
    let changed = updates(&snapshot, &[], &later);
    assert_eq!((changed.gateways.len(), changed.http_routes.len()), (0, 1));
    let conditions = &changed.http_routes[0].status.parents[0].conditions;
    assert_eq!(show(conditions), "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound");
    assert_eq!((conditions[0].last_transition_time.clone(), conditions[1].last_transition_time.clone()), (now(), later));
}

#[test]
fn listeners_that_cannot_be_told_apart_are_conflicted_and_not_served() {
    let http = |name: &str, port: i32, hostname: &str| format!("{{name: {name}, port: {port}, protocol: HTTP, hostname: {hostname:?}}}");
    let https = |name: &str, port: i32| format!("{{name: {name}, port: {port}, protocol: HTTPS, hostname: s.test, tls: {{certificateRefs: [{{name: missing}}]}}}}");
    let served = "Accepted=True/Accepted Programmed=True/Programmed ResolvedRefs=True/ResolvedRefs Conflicted=False/NoConflicts";
    let conflicted = |reason: &str| format!("Accepted=False/{reason} Programmed=False/Invalid ResolvedRefs=True/ResolvedRefs Conflicted=True/{reason}");
    let unsupported_conflicted = "Accepted=False/UnsupportedProtocol Programmed=False/Invalid ResolvedRefs=True/ResolvedRefs Conflicted=True/ProtocolConflict";
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        // One hostname per listener of a port, or other ports: distinct.
        (vec![http("a", 80, "a.test"), http("b", 80, "b.test"), http("c", 8080, "a.test")], vec![served.into(), served.into(), served.into()]),
        // A listener without hostname beside one with: distinct.
        (vec![http("a", 80, ""), http("b", 80, "b.test")], vec![served.into(), served.into()]),
        // The same hostname twice on a port, case aside: both conflicted, no winner.
        (vec![http("a", 80, "a.test"), http("b", 80, "A.test"), http("c", 80, "c.test")], vec![conflicted("HostnameConflict"), conflicted("HostnameConflict"), served.into()]),
        (vec![http("a", 80, ""), http("b", 80, "")], vec![conflicted("HostnameConflict"), conflicted("HostnameConflict")]),
        // Plain HTTP and TLS on one port: whatever the hostnames.
        (vec![http("a", 443, "a.test"), https("b", 443)], vec![conflicted("ProtocolConflict"), "Accepted=False/ProtocolConflict Programmed=False/Invalid ResolvedRefs=False/InvalidCertificateRef Conflicted=True/ProtocolConflict".into()]),
        // TCP shares no port with HTTP; UDP is another transport.
        (vec![http("a", 80, ""), "{name: t, port: 80, protocol: TCP}".into()], vec![conflicted("ProtocolConflict"), unsupported_conflicted.into()]),
        (vec![http("a", 80, ""), "{name: u, port: 80, protocol: UDP}".into()], vec![served.into(), "Accepted=False/UnsupportedProtocol Programmed=False/Invalid ResolvedRefs=True/ResolvedRefs Conflicted=False/NoConflicts".into()]),
    ];
    for (listeners, expected) in cases {
        let listeners = format!("[{}]", listeners.join(", "));
        let updates = updates(&snapshot(&gateway(&listeners)), &[], &now());
        let shown: Vec<String> = updates.gateways[0].status.listeners.iter().map(|listener| show(&listener.conditions)).collect();
        assert_eq!(shown, expected, "{listeners}");
    }
}

#[test]
fn conflicted_listeners_take_no_route_and_the_gateway_names_them() {
    let listeners = "[{name: a, port: 80, protocol: HTTP, hostname: x.test, allowedRoutes: {namespaces: {from: All}}}, \
                     {name: b, port: 80, protocol: HTTP, hostname: x.test, allowedRoutes: {namespaces: {from: All}}}, \
                     {name: c, port: 81, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]";
    let manifests = format!(
        "{}{}{}",
        gateway(listeners),
        route("on-a", "[{name: gw, namespace: infra, sectionName: a}]", "[]", "[{name: web, port: 80}]"),
        route("on-c", "[{name: gw, namespace: infra, sectionName: c}]", "[]", "[{name: web, port: 80}]")
    );
    let updates = updates(&snapshot(&manifests), &[], &now());
    let gateway = &updates.gateways[0].status;
    assert_eq!(show(&gateway.conditions), "Accepted=True/ListenersNotValid Programmed=True/Programmed");
    assert_eq!(gateway.conditions[0].message, "listeners not accepted: a (HostnameConflict), b (HostnameConflict); accepted: c");
    let counts: Vec<i32> = gateway.listeners.iter().map(|listener| listener.attached_routes).collect();
    assert_eq!(counts, [0, 0, 1]);
    let parents: Vec<String> = updates.http_routes.iter().map(|route| show(&route.status.parents[0].conditions)).collect();
    assert_eq!(parents, ["Accepted=False/NotAllowedByListeners ResolvedRefs=True/ResolvedRefs", "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"]);
}

#[test]
fn gateways_list_every_node_address() {
    let node: [IpAddr; 2] = ["192.0.2.10".parse().unwrap(), "2001:db8::10".parse().unwrap()];
    assert!(gateway_addresses(&[]).is_empty());
    let updates = updates(&snapshot(&gateway(&format!("[{HTTP_ALL}]"))), &node, &now());
    let addresses: Vec<(Option<&str>, &str)> = updates.gateways[0].status.addresses.iter().map(|a| (a.type_.as_deref(), a.value.as_str())).collect();
    assert_eq!(addresses, [(Some("IPAddress"), "192.0.2.10"), (Some("IPAddress"), "2001:db8::10")]);
}

#[test]
fn an_unresolved_mirror_backend_is_a_resolved_refs_reason() {
    let mirrored = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: m, namespace: apps}\n\
                    spec: {parentRefs: [{name: gw, namespace: infra}], rules: [{backendRefs: [{name: web, port: 80}], \
                    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: far, namespace: backends, port: 80}}}]}]}\n";
    let updates = updates(&snapshot(&format!("{}{mirrored}", gateway(&format!("[{HTTP_ALL}]")))), &[], &now());
    assert_eq!(show(&updates.http_routes[0].status.parents[0].conditions), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted");
}
