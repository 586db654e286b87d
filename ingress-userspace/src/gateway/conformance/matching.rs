//! Which rule a request matches: path, headers, method, query parameters,
//! and the spec's precedence between rules and across routes.

use super::Expect::{Backend, Status};
use super::{Scenario, get};

/// Upstream `HTTPRouteSimpleSameNamespace`: a route and its backend in the
/// Gateway's namespace.
#[tokio::test]
async fn http_route_simple_same_namespace() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gateway-conformance-infra-test, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
",
    )
    .await;
    scenario.expect_all(&[(get("/"), Backend("infra-backend-v1"))]).await;
}

/// Upstream `HTTPRouteMatching`: matches of one rule are ORed, the longest
/// path prefix and then the match with more headers win.
#[tokio::test]
async fn http_route_matching() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
    )
    .await;
    let cases = [
        (get("/"), Backend("infra-backend-v1")),
        (get("/example"), Backend("infra-backend-v1")),
        (get("/").header("Version", "one"), Backend("infra-backend-v1")),
        (get("/v2"), Backend("infra-backend-v2")),
        (get("/v2/example"), Backend("infra-backend-v2")),
        (get("/").header("Version", "two"), Backend("infra-backend-v2")),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteMatchingAcrossRoutes`: the same precedence holds
/// between rules of two routes whose hostnames overlap (one exact, one
/// wildcard) on one listener.
#[tokio::test]
async fn http_route_matching_across_routes() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching-part1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [example.com, example.net]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching-part2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: ['*.com']
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
    )
    .await;
    let cases = [
        (get("/"), Backend("infra-backend-v1")),
        (get("/example"), Backend("infra-backend-v1")),
        (get("/example").host("example.net"), Backend("infra-backend-v1")),
        (get("/example").header("Version", "one"), Backend("infra-backend-v1")),
        (get("/v2"), Backend("infra-backend-v2")),
        // Only example.com falls under `*.com`.
        (get("/v2").host("example.net"), Backend("infra-backend-v1")),
        (get("/v2/example"), Backend("infra-backend-v2")),
        (get("/").header("Version", "two"), Backend("infra-backend-v2")),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteExactPathMatching`: Exact is the whole path, case
/// sensitive, a trailing slash included.
#[tokio::test]
async fn http_route_exact_path_matching() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
    )
    .await;
    let cases = [
        (get("/one"), Backend("infra-backend-v1")),
        (get("/two"), Backend("infra-backend-v2")),
        (get("/"), Status(404)),
        (get("/one/example"), Status(404)),
        (get("/two/"), Status(404)),
        (get("/Two"), Status(404)),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteHeaderMatching`: headers of a match are ANDed, its
/// matches ORed; the match with more headers wins.
#[tokio::test]
async fn http_route_header_matching() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: header-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
    )
    .await;
    let cases = [
        (get("/").header("Version", "one"), Backend("infra-backend-v1")),
        (get("/").header("Version", "two"), Backend("infra-backend-v2")),
        (get("/").header("Version", "two").header("Color", "orange"), Backend("infra-backend-v1")),
        (get("/").header("Version", "two").header("Color", "blue"), Backend("infra-backend-v2")),
        (get("/").header("Color", "orange"), Status(404)),
        (get("/").header("Some-Other-Header", "one"), Status(404)),
        (get("/").header("Color", "blue"), Backend("infra-backend-v1")),
        (get("/").header("Color", "green"), Backend("infra-backend-v1")),
        (get("/").header("Color", "red"), Backend("infra-backend-v2")),
        (get("/").header("Color", "yellow"), Backend("infra-backend-v2")),
        (get("/").header("Color", "purple"), Status(404)),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteMethodMatching`: the method alone and with paths and
/// headers; a method beats headers in precedence, a longer path beats both.
#[tokio::test]
async fn http_route_method_matching() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: method-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{method: POST}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{method: GET}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path1}, method: GET}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: one}], method: PUT}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], method: POST}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches:
    - {path: {type: PathPrefix, value: /path3}, method: PATCH}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], method: DELETE}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path5}, method: PATCH}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{method: PATCH}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: version, value: four}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
",
    )
    .await;
    let cases = [
        (get("/").method("POST"), Backend("infra-backend-v1")),
        (get("/"), Backend("infra-backend-v2")),
        (get("/").method("HEAD"), Status(404)),
        (get("/path1"), Backend("infra-backend-v1")),
        (get("/").method("PUT").header("version", "one"), Backend("infra-backend-v2")),
        (get("/path2").method("POST").header("version", "two"), Backend("infra-backend-v3")),
        (get("/path3").method("PATCH"), Backend("infra-backend-v1")),
        (get("/path4").method("DELETE").header("version", "three"), Backend("infra-backend-v1")),
        (get("/").method("PUT"), Status(404)),
        (get("/path4").method("DELETE"), Status(404)),
        (get("/path5").method("PATCH"), Backend("infra-backend-v1")),
        (get("/").method("PATCH").header("version", "four"), Backend("infra-backend-v2")),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteQueryParamMatching`: parameters are ANDed, their
/// names case sensitive; headers beat query parameters in precedence.
#[tokio::test]
async fn http_route_query_param_matching() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: query-param-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}, {queryParams: [{name: ANIMAL, value: Whale}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path1}, queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: one}], queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches:
    - {path: {type: PathPrefix, value: /path3}, queryParams: [{name: animal, value: shark}]}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], queryParams: [{name: animal, value: kraken}]}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path5}, queryParams: [{name: animal, value: hydra}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: hydra}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: version, value: four}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
",
    )
    .await;
    let cases = [
        (get("/?animal=whale"), Backend("infra-backend-v1")),
        (get("/?animal=dolphin"), Backend("infra-backend-v2")),
        (get("/?animal=dolphin&color=blue"), Backend("infra-backend-v3")),
        (get("/?ANIMAL=Whale"), Backend("infra-backend-v3")),
        (get("/?animal=whale&otherparam=irrelevant"), Backend("infra-backend-v1")),
        (get("/?animal=dolphin&color=yellow"), Backend("infra-backend-v2")),
        (get("/?color=blue"), Status(404)),
        (get("/?animal=dog"), Status(404)),
        (get("/?animal=whaledolphin"), Status(404)),
        (get("/"), Status(404)),
        (get("/path1?animal=whale"), Backend("infra-backend-v1")),
        (get("/?animal=whale").header("version", "one"), Backend("infra-backend-v2")),
        (get("/path2?animal=whale").header("version", "two"), Backend("infra-backend-v3")),
        (get("/path3?animal=shark"), Backend("infra-backend-v1")),
        (get("/path4?animal=kraken").header("version", "three"), Backend("infra-backend-v1")),
        (get("/?animal=shark"), Status(404)),
        (get("/path4?animal=kraken"), Status(404)),
        (get("/path5?animal=hydra"), Backend("infra-backend-v1")),
        (get("/?animal=hydra").header("version", "four"), Backend("infra-backend-v3")),
    ];
    scenario.expect_all(&cases).await;
}
