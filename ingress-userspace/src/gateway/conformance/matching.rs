//! Which rule a request matches: path, headers, method, query parameters,
//! and the spec's precedence between rules and across routes.

use super::Expect::{Backend, Status};
use super::{SAME_NAMESPACE, Scenario, get, route, rule, to};

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

/// A `same-namespace` route of rules (matches, backend), served.
async fn routed(name: &str, rules: &[(&str, &str)]) -> Scenario {
    let rules: Vec<String> = rules.iter().map(|(matches, backend)| rule(matches, "", &to(backend))).collect();
    Scenario::start(&route(name, SAME_NAMESPACE, "", &rules)).await
}

/// Upstream `HTTPRouteSimpleSameNamespace`: a route and its backend in the
/// Gateway's namespace.
#[tokio::test]
async fn http_route_simple_same_namespace() {
    let scenario = routed("gateway-conformance-infra-test", &[("", V1)]).await;
    scenario.expect_all(&[(get("/"), Backend(V1))]).await;
}

/// Matches of one rule are ORed: `/` or `version: one` to v1, `/v2` or
/// `version: two` to v2 (upstream's `matching` route).
const PATH_OR_HEADER: [(&str, &str); 2] = [
    ("[{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]", V1),
    ("[{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]", V2),
];

/// Upstream `HTTPRouteMatching`: the longest path prefix, then the match
/// with more headers, wins.
#[tokio::test]
async fn http_route_matching() {
    let scenario = routed("matching", &PATH_OR_HEADER).await;
    let cases = [
        (get("/"), Backend(V1)),
        (get("/example"), Backend(V1)),
        (get("/").header("Version", "one"), Backend(V1)),
        (get("/v2"), Backend(V2)),
        (get("/v2/example"), Backend(V2)),
        (get("/").header("Version", "two"), Backend(V2)),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteMatchingAcrossRoutes`: the same precedence holds
/// between rules of two routes whose hostnames overlap (one exact, one
/// wildcard) on one listener.
#[tokio::test]
async fn http_route_matching_across_routes() {
    let [(v1_matches, _), (v2_matches, _)] = PATH_OR_HEADER;
    let part1 = route("matching-part1", SAME_NAMESPACE, "[example.com, example.net]", &[rule(v1_matches, "", &to(V1))]);
    let part2 = route("matching-part2", SAME_NAMESPACE, "['*.com']", &[rule(v2_matches, "", &to(V2))]);
    let scenario = Scenario::start(&format!("{part1}---\n{part2}")).await;
    let cases = [
        (get("/"), Backend(V1)),
        (get("/example"), Backend(V1)),
        (get("/example").host("example.net"), Backend(V1)),
        (get("/example").header("Version", "one"), Backend(V1)),
        (get("/v2"), Backend(V2)),
        // Only example.com falls under `*.com`.
        (get("/v2").host("example.net"), Backend(V1)),
        (get("/v2/example"), Backend(V2)),
        (get("/").header("Version", "two"), Backend(V2)),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteExactPathMatching`: Exact is the whole path, case
/// sensitive, a trailing slash included.
#[tokio::test]
async fn http_route_exact_path_matching() {
    let rules = [("[{path: {type: Exact, value: /one}}]", V1), ("[{path: {type: Exact, value: /two}}]", V2)];
    let scenario = routed("exact-matching", &rules).await;
    let cases = [
        (get("/one"), Backend(V1)),
        (get("/two"), Backend(V2)),
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
    let rules = [
        ("[{headers: [{name: version, value: one}]}]", V1),
        ("[{headers: [{name: version, value: two}]}]", V2),
        ("[{headers: [{name: version, value: two}, {name: color, value: orange}]}]", V1),
        ("[{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]", V1),
        ("[{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]", V2),
    ];
    let scenario = routed("header-matching", &rules).await;
    let cases = [
        (get("/").header("Version", "one"), Backend(V1)),
        (get("/").header("Version", "two"), Backend(V2)),
        (get("/").header("Version", "two").header("Color", "orange"), Backend(V1)),
        (get("/").header("Version", "two").header("Color", "blue"), Backend(V2)),
        (get("/").header("Color", "orange"), Status(404)),
        (get("/").header("Some-Other-Header", "one"), Status(404)),
        (get("/").header("Color", "blue"), Backend(V1)),
        (get("/").header("Color", "green"), Backend(V1)),
        (get("/").header("Color", "red"), Backend(V2)),
        (get("/").header("Color", "yellow"), Backend(V2)),
        (get("/").header("Color", "purple"), Status(404)),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteMethodMatching`: the method alone and with paths and
/// headers; a method beats headers in precedence, a longer path beats both.
#[tokio::test]
async fn http_route_method_matching() {
    let rules = [
        ("[{method: POST}]", V1),
        ("[{method: GET}]", V2),
        ("[{path: {type: PathPrefix, value: /path1}, method: GET}]", V1),
        ("[{headers: [{name: version, value: one}], method: PUT}]", V2),
        ("[{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], method: POST}]", V3),
        (
            "[{path: {type: PathPrefix, value: /path3}, method: PATCH}, \
             {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], method: DELETE}]",
            V1,
        ),
        ("[{path: {type: PathPrefix, value: /path5}, method: PATCH}]", V1),
        ("[{method: PATCH}]", V2),
        ("[{headers: [{name: version, value: four}]}]", V3),
    ];
    let scenario = routed("method-matching", &rules).await;
    let cases = [
        (get("/").method("POST"), Backend(V1)),
        (get("/"), Backend(V2)),
        (get("/").method("HEAD"), Status(404)),
        (get("/path1"), Backend(V1)),
        (get("/").method("PUT").header("version", "one"), Backend(V2)),
        (get("/path2").method("POST").header("version", "two"), Backend(V3)),
        (get("/path3").method("PATCH"), Backend(V1)),
        (get("/path4").method("DELETE").header("version", "three"), Backend(V1)),
        (get("/").method("PUT"), Status(404)),
        (get("/path4").method("DELETE"), Status(404)),
        (get("/path5").method("PATCH"), Backend(V1)),
        (get("/").method("PATCH").header("version", "four"), Backend(V2)),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteQueryParamMatching`: parameters are ANDed, their
/// names case sensitive; headers beat query parameters in precedence.
#[tokio::test]
async fn http_route_query_param_matching() {
    let rules = [
        ("[{queryParams: [{name: animal, value: whale}]}]", V1),
        ("[{queryParams: [{name: animal, value: dolphin}]}]", V2),
        ("[{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}, {queryParams: [{name: ANIMAL, value: Whale}]}]", V3),
        ("[{path: {type: PathPrefix, value: /path1}, queryParams: [{name: animal, value: whale}]}]", V1),
        ("[{headers: [{name: version, value: one}], queryParams: [{name: animal, value: whale}]}]", V2),
        ("[{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], queryParams: [{name: animal, value: whale}]}]", V3),
        (
            "[{path: {type: PathPrefix, value: /path3}, queryParams: [{name: animal, value: shark}]}, \
             {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], queryParams: [{name: animal, value: kraken}]}]",
            V1,
        ),
        ("[{path: {type: PathPrefix, value: /path5}, queryParams: [{name: animal, value: hydra}]}]", V1),
        ("[{queryParams: [{name: animal, value: hydra}]}]", V2),
        ("[{headers: [{name: version, value: four}]}]", V3),
    ];
    let scenario = routed("query-param-matching", &rules).await;
    let cases = [
        (get("/?animal=whale"), Backend(V1)),
        (get("/?animal=dolphin"), Backend(V2)),
        (get("/?animal=dolphin&color=blue"), Backend(V3)),
        (get("/?ANIMAL=Whale"), Backend(V3)),
        (get("/?animal=whale&otherparam=irrelevant"), Backend(V1)),
        (get("/?animal=dolphin&color=yellow"), Backend(V2)),
        (get("/?color=blue"), Status(404)),
        (get("/?animal=dog"), Status(404)),
        (get("/?animal=whaledolphin"), Status(404)),
        (get("/"), Status(404)),
        (get("/path1?animal=whale"), Backend(V1)),
        (get("/?animal=whale").header("version", "one"), Backend(V2)),
        (get("/path2?animal=whale").header("version", "two"), Backend(V3)),
        (get("/path3?animal=shark"), Backend(V1)),
        (get("/path4?animal=kraken").header("version", "three"), Backend(V1)),
        (get("/?animal=shark"), Status(404)),
        (get("/path4?animal=kraken"), Status(404)),
        (get("/path5?animal=hydra"), Backend(V1)),
        (get("/?animal=hydra").header("version", "four"), Backend(V3)),
    ];
    scenario.expect_all(&cases).await;
}
