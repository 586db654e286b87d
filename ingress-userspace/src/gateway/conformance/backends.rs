//! Where a matched request goes: weighted backendRefs, routes and backends
//! in other namespaces, with and without a ReferenceGrant.

use std::collections::BTreeMap;

use super::Expect::{Backend, Status};
use super::{SAME_NAMESPACE, Scenario, get, route, rule, to};

/// A `same-namespace` route of one rule to `backends` (YAML flow list).
async fn one_rule(name: &str, backends: &str) -> Scenario {
    Scenario::start(&route(name, SAME_NAMESPACE, "", &[rule("", "", backends)])).await
}

/// Upstream `HTTPRouteWeight`: backends weighted 70/30/0 take those shares.
///
/// 300 requests; each backend's count must be within 5 standard deviations
/// of the binomial spread `sqrt(n p (1 - p))` around `n p` (7.9 requests for
/// p = 0.7: ±40), which a fair random split misses about once in two
/// million runs, while a split that ignores weights (100 each) or swaps them
/// (90/210) fails it. A weight of 0 must get none.
#[tokio::test]
async fn http_route_weight() {
    let backends = "[{name: infra-backend-v1, port: 8080, weight: 70}, {name: infra-backend-v2, port: 8080, weight: 30}, \
                    {name: infra-backend-v3, port: 8080, weight: 0}]";
    let scenario = one_rule("weighted-backends", backends).await;
    const REQUESTS: u32 = 300;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let answer = scenario.send(&get("/")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        *counts.entry(answer.backend().unwrap_or("none").to_owned()).or_default() += 1;
    }
    for (backend, weight) in [("infra-backend-v1", 70), ("infra-backend-v2", 30), ("infra-backend-v3", 0)] {
        let share = f64::from(weight) / 100.0;
        let expected = f64::from(REQUESTS) * share;
        let tolerance = 5.0 * (f64::from(REQUESTS) * share * (1.0 - share)).sqrt();
        let got = f64::from(counts.get(backend).copied().unwrap_or(0));
        assert!((got - expected).abs() <= tolerance, "{backend}: {got} of {REQUESTS}, expected {expected} ± {tolerance:.0}; all: {counts:?}");
    }
}

/// Upstream `HTTPRouteCrossNamespace`: a route in a backend namespace
/// attaches to a Gateway in the infra namespace whose listener selects
/// namespaces by label.
#[tokio::test]
async fn http_route_cross_namespace() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-namespace, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: backend-namespaces, namespace: gateway-conformance-infra}]
  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]
",
    )
    .await;
    scenario.expect_all(&[(get("/"), Backend("web-backend"))]).await;
}

/// Upstream `HTTPRouteReferenceGrant`: a ReferenceGrant naming one Service
/// lets the route use that Service of another namespace, and only that one.
#[tokio::test]
async fn http_route_reference_grant() {
    let in_app_backend = |name: &str| format!("[{{name: {name}, namespace: gateway-conformance-app-backend, port: 8080}}]");
    let rules = [
        rule("[{path: {type: PathPrefix, value: /v1}}]", "", &in_app_backend("app-backend-v1")),
        rule("[{path: {type: PathPrefix, value: /v2}}]", "", &in_app_backend("app-backend-v2")),
    ];
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: reference-grant, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: '', kind: Service, name: app-backend-v1}]
";
    let scenario = Scenario::start(&format!("{}---\n{grant}", route("reference-grant", SAME_NAMESPACE, "", &rules))).await;
    scenario.expect_all(&[(get("/v1"), Backend("app-backend-v1")), (get("/v2"), Status(500))]).await;
}

/// Upstream `HTTPRouteInvalidCrossNamespaceBackendRef`: without a
/// ReferenceGrant the backend in another namespace is not used: its
/// requests get 500, and ResolvedRefs is False with RefNotPermitted.
#[tokio::test]
async fn http_route_invalid_cross_namespace_backend_ref() {
    let backends = "[{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}]";
    let scenario = one_rule("invalid-cross-namespace-backend-ref", backends).await;
    scenario.expect_all(&[(get("/"), Status(500))]).await;
    let lines = scenario.problem_lines();
    assert!(lines.len() == 1 && lines[0].contains("RefNotPermitted"), "{lines:?}");
}

/// Upstream `HTTPRouteInvalidNonExistentBackendRef`: a backendRef to a
/// Service that does not exist answers 500 (BackendNotFound).
#[tokio::test]
async fn http_route_invalid_non_existent_backend_ref() {
    let scenario = one_rule("invalid-nonexistent-backend-ref", &to("nonexistent-backend")).await;
    scenario.expect_all(&[(get("/"), Status(500))]).await;
    let lines = scenario.problem_lines();
    assert!(lines.len() == 1 && lines[0].contains("BackendNotFound"), "{lines:?}");
}
