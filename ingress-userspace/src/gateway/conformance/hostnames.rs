//! Which hostnames a route serves: the intersection of its hostnames with
//! its listener's, and the most specific listener hostname winning.

use super::Expect::{Backend, Status};
use super::{Scenario, get};

/// Upstream `HTTPRouteHostnameIntersection`: exact and wildcard hostnames
/// on both sides; a route that intersects no listener is not served (and
/// not Accepted, reason NoMatchingListenerHostname); the port of Host is
/// ignored; a wildcard matches one label or more, never the bare suffix.
#[tokio::test]
async fn http_route_hostname_intersection() {
    let route = |name: &str, hosts: &str, prefix: &str, backend: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: gateway-conformance-infra}}\n\
             spec:\n  parentRefs: [{{name: httproute-hostname-intersection}}]\n  hostnames: {hosts}\n\
             \x20 rules: [{{matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}], backendRefs: [{{name: {backend}, port: 8080}}]}}]\n"
        )
    };
    let manifests = [
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-hostname-intersection, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: conformance
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: '*.wildcard.io'}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.anotherwildcard.io'}
"
        .to_owned(),
        route("specific-host-matches-listener-specific-host", "[non.matching.com, '*.nonmatchingwildcard.io', very.specific.com]", "/s1", "infra-backend-v1"),
        route("specific-host-matches-listener-wildcard-host", "[non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]", "/s2", "infra-backend-v2"),
        route("wildcard-host-matches-listener-specific-host", "[non.matching.com, '*.specific.com']", "/s3", "infra-backend-v3"),
        route("wildcard-host-matches-listener-wildcard-host", "['*.anotherwildcard.io']", "/s4", "infra-backend-v1"),
        route("no-intersecting-hosts", "[specific.but.wrong.com, wildcard.io]", "/s5", "infra-backend-v2"),
    ];
    let scenario = Scenario::start(&manifests.concat()).await;
    let cases = [
        (get("/s1").host("very.specific.com"), Backend("infra-backend-v1")),
        (get("/s1").host("very.specific.com:1234"), Backend("infra-backend-v1")),
        (get("/s1").host("non.matching.com"), Status(404)),
        (get("/s1").host("foo.nonmatchingwildcard.io"), Status(404)),
        (get("/s1").host("foo.wildcard.io"), Status(404)),
        (get("/non-matching-prefix").host("very.specific.com"), Status(404)),
        (get("/s2").host("foo.wildcard.io"), Backend("infra-backend-v2")),
        (get("/s2").host("bar.wildcard.io"), Backend("infra-backend-v2")),
        (get("/s2").host("foo.bar.wildcard.io"), Backend("infra-backend-v2")),
        (get("/s2").host("non.matching.com"), Status(404)),
        (get("/s2").host("wildcard.io"), Status(404)),
        (get("/s2").host("very.specific.com"), Status(404)),
        (get("/non-matching-prefix").host("foo.wildcard.io"), Status(404)),
        (get("/s3").host("very.specific.com"), Backend("infra-backend-v3")),
        (get("/s3").host("non.matching.com"), Status(404)),
        (get("/s3").host("foo.specific.com"), Status(404)),
        (get("/s3").host("foo.wildcard.io"), Status(404)),
        (get("/s4").host("foo.anotherwildcard.io"), Backend("infra-backend-v1")),
        (get("/s4").host("bar.anotherwildcard.io"), Backend("infra-backend-v1")),
        (get("/s4").host("foo.bar.anotherwildcard.io"), Backend("infra-backend-v1")),
        (get("/s4").host("anotherwildcard.io"), Status(404)),
        (get("/s4").host("foo.wildcard.io"), Status(404)),
        (get("/s4").host("very.specific.com"), Status(404)),
        (get("/s5").host("specific.but.wrong.com"), Status(404)),
        (get("/s5").host("wildcard.io"), Status(404)),
    ];
    scenario.expect_all(&cases).await;
    let refused: Vec<String> = scenario.problem_lines().into_iter().filter(|line| line.contains("no-intersecting-hosts")).collect();
    assert!(refused.len() == 1 && refused[0].contains("NoMatchingListenerHostname"), "{refused:?}");
}

/// Upstream `HTTPRouteListenerHostnameMatching`: routes attached by
/// sectionName to listeners for `bar.com`, `foo.bar.com`, `*.bar.com` and
/// `*.foo.com`; the most specific listener hostname takes the request.
#[tokio::test]
async fn http_route_listener_hostname_matching() {
    let scenario = Scenario::start(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: conformance
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: bar.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.bar.com'}
  - {name: listener-4, port: 80, protocol: HTTP, hostname: '*.foo.com'}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-hostname-matching, sectionName: listener-1}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-hostname-matching, sectionName: listener-2}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v3, namespace: gateway-conformance-infra}
spec:
  parentRefs:
  - {name: httproute-listener-hostname-matching, sectionName: listener-3}
  - {name: httproute-listener-hostname-matching, sectionName: listener-4}
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
",
    )
    .await;
    let cases = [
        (get("/").host("bar.com"), Backend("infra-backend-v1")),
        (get("/").host("foo.bar.com"), Backend("infra-backend-v2")),
        (get("/").host("baz.bar.com"), Backend("infra-backend-v3")),
        (get("/").host("boo.bar.com"), Backend("infra-backend-v3")),
        (get("/").host("multiple.prefixes.bar.com"), Backend("infra-backend-v3")),
        (get("/").host("multiple.prefixes.foo.com"), Backend("infra-backend-v3")),
        (get("/").host("foo.com"), Status(404)),
        (get("/").host("no.matching.host"), Status(404)),
    ];
    scenario.expect_all(&cases).await;
}
