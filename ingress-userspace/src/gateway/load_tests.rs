//! Gateway API objects from a manifest directory: read like every other
//! kind (unknown fields warned, a malformed object skipped, the rest kept).

use crate::manifests::parse_documents;
use crate::problem::{ProblemKind, Severity};

const OBJECTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ebpf}
spec: {controllerName: ebpf-lb.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: infra}
spec:
  gatewayClassName: ebpf
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.example.com"
    tls: {certificateRefs: [{name: web-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: apps}
spec:
  parentRefs: [{name: web, namespace: infra, sectionName: http}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-env, value: beta}], method: GET}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: b}]}}]
    backendRefs: [{name: api, port: 8080, weight: 3}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-apps, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}]
  to: [{group: "", kind: Service}]
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {team: shop}}
"#;

#[test]
fn every_gateway_kind_is_read_with_its_fields() {
    let loaded = parse_documents("gw.yaml", OBJECTS);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let snapshot = &loaded.snapshot;
    let counts = (
        snapshot.gateway_classes.len(),
        snapshot.gateways.len(),
        snapshot.http_routes.len(),
        snapshot.reference_grants.len(),
        snapshot.namespaces.len(),
    );
    assert_eq!(counts, (1, 1, 1, 1, 1));
    let listeners = &snapshot.gateways[0].spec.listeners;
    assert_eq!(listeners[1].tls.as_ref().unwrap().certificate_refs[0].name, "web-tls");
    let rule = &snapshot.http_routes[0].spec.rules[0];
    assert_eq!(rule.matches.as_ref().unwrap()[0].headers[0].value, "beta");
    assert_eq!(rule.backend_refs[0].weight, Some(3));
    let location = snapshot.location("HTTPRoute", &snapshot.http_routes[0].metadata);
    assert_eq!(location.to_string(), "gw.yaml doc 3 (HTTPRoute apps/shop)");
}

#[test]
fn unknown_fields_warn_and_malformed_objects_are_skipped_alone() {
    let text = OBJECTS
        .replace("sectionName: http}", "sectionName: http, sectionNmae: x}")
        .replace("port: 443", "port: https");
    let loaded = parse_documents("gw.yaml", &text);
    let found: Vec<_> = loaded
        .problems
        .iter()
        .map(|problem| (problem.kind, problem.severity, problem.field.clone().unwrap_or_default(), problem.to_string()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].0, found[0].1, found[0].2.as_str()), (ProblemKind::InvalidField, Severity::Error, "spec.listeners[1].port"));
    assert!(found[0].3.contains("gw.yaml doc 2 (Gateway infra/web)"), "{}", found[0].3);
    assert_eq!((found[1].0, found[1].1, found[1].2.as_str()), (ProblemKind::UnknownField, Severity::Warning, "spec.parentRefs[0].sectionNmae"));
    let snapshot = &loaded.snapshot;
    assert_eq!((snapshot.gateways.len(), snapshot.http_routes.len(), snapshot.gateway_classes.len()), (0, 1, 1));
}
