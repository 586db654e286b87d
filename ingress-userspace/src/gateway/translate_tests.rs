//! HTTPRoutes through the whole table build, from manifests as a user
//! writes them: which rule of which route a request lands on.

use hyper::Request;

use crate::l7::{Decision, L7Options, RouteTable};
use crate::gateway::test_manifests::{CLASSES, gateway, service};
use crate::manifests::parse_documents;
use crate::problem::Problem;

/// Our GatewayClass's Gateway `gw` (HTTP, and HTTPS for `*.secure.test`)
/// and another controller's `other`, all listeners admitting any namespace.
fn base() -> String {
    let all = "allowedRoutes: {namespaces: {from: All}}";
    let ours = format!("[{{name: http, port: 80, protocol: HTTP, {all}}}, {{name: https, port: 443, protocol: HTTPS, hostname: \"*.secure.test\", {all}}}]");
    let theirs = format!("[{{name: http, port: 80, protocol: HTTP, {all}}}]");
    format!("{CLASSES}{}{}", gateway("infra", "gw", "", "ours", &ours), gateway("infra", "other", "", "theirs", &theirs))
}

/// An HTTPRoute in `apps` on `gw` (section `http` unless `parent` says
/// otherwise) with `rules` as YAML flow items.
fn route(name: &str, created: &str, parent: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: apps, creationTimestamp: \"{created}\"}}\n\
         spec:\n  parentRefs: [{parent}]\n  hostnames: {hostnames}\n  rules: {rules}\n"
    )
}

fn build(extra: &str) -> (RouteTable, Vec<Problem>) {
    let loaded = parse_documents("t.yaml", &format!("{}{}{extra}", base(), service("apps", "web", 80, "10.0.0.1", 8080)));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    RouteTable::build(&loaded.snapshot, &L7Options::default())
}

/// The route a request lands on, `500` for an unresolved backend, `404`
/// or `unknown` for the default backend.
fn land(table: &RouteTable, scheme: &str, method: &str, uri: &str, headers: &[(&str, &str)]) -> String {
    let authority = uri.split('/').next().unwrap_or_default();
    let mut request = Request::builder().method(method).uri(&uri[authority.len()..]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match table.lookup(authority, scheme, &request.body(()).unwrap()) {
        Decision::Forward { route, .. } => match route.pick_upstream() {
            Some(_) => route.name.trim_start_matches("httproute:apps/").to_owned(),
            None => "500".into(),
        },
        Decision::DefaultBackend { known_host: true } => "404".into(),
        Decision::DefaultBackend { known_host: false } => "unknown".into(),
    }
}

const WEB: &str = "{name: web, port: 80}";

#[test]
fn precedence_follows_the_http_route_rule_docs() {
    let rule = |matches: &str| format!("{{matches: [{matches}], backendRefs: [{WEB}]}}");
    let rules = |items: &[String]| format!("[{}]", items.join(", "));
    let parent = "{name: gw, namespace: infra, sectionName: http}";
    let a = route(
        "a",
        "2024-01-02T00:00:00Z",
        parent,
        "[p.test]",
        &rules(&[
            rule("{path: {type: PathPrefix, value: /}}"),
            rule("{path: {type: PathPrefix, value: /api}}"),
            rule("{path: {type: Exact, value: /api}}"),
            rule("{path: {type: PathPrefix, value: /api}, method: POST}"),
            rule("{path: {type: PathPrefix, value: /api}, headers: [{name: x-a, value: '1'}]}"),
            rule("{path: {type: PathPrefix, value: /api}, headers: [{name: x-a, value: '1'}, {name: x-b, value: '1'}]}"),
            rule("{path: {type: PathPrefix, value: /api}, queryParams: [{name: q, value: '1'}]}"),
            rule("{path: {type: PathPrefix, value: /api}, method: POST, queryParams: [{name: q, value: '1'}]}"),
        ]),
    );
    // Same matches as older and younger routes: the older wins, on a tie
    // of age the name decides.
    let older = route("z-older", "2024-01-01T00:00:00Z", parent, "[p.test]", &rules(&[rule("{path: {type: PathPrefix, value: /old}}")]));
    let younger = route("b-younger", "2024-01-03T00:00:00Z", parent, "[p.test]", &rules(&[rule("{path: {type: PathPrefix, value: /old}}"), rule("{path: {type: PathPrefix, value: /tie}}")]));
    let same_age = route("a-same", "2024-01-03T00:00:00Z", parent, "[p.test]", &rules(&[rule("{path: {type: PathPrefix, value: /tie}}")]));
    let (table, problems) = build(&format!("{a}{older}{younger}{same_age}"));
    assert!(problems.is_empty(), "{problems:?}");
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 11] = [
        ("GET", "p.test/", &[], "a:0"),
        ("GET", "p.test/api", &[], "a:2"),
        ("GET", "p.test/api/x", &[], "a:1"),
        ("POST", "p.test/api/x", &[], "a:3"),
        ("POST", "p.test/api/x?q=1", &[], "a:7"),
        ("GET", "p.test/api/x", &[("x-a", "1")], "a:4"),
        ("GET", "p.test/api/x", &[("x-a", "1"), ("x-b", "1")], "a:5"),
        ("GET", "p.test/api/x?q=1", &[("x-a", "1")], "a:4"),
        ("GET", "p.test/api/x?q=1", &[], "a:6"),
        ("GET", "p.test/old", &[], "z-older:0"),
        ("GET", "p.test/tie", &[], "a-same:0"),
    ];
    for (method, uri, headers, expected) in cases {
        assert_eq!(land(&table, "http", method, uri, headers), expected, "{method} {uri} {headers:?}");
    }
}

#[test]
fn hostnames_listeners_and_classes_decide_where_a_route_is_served() {
    let any = "{matches: [{path: {type: PathPrefix, value: /}}], backendRefs: [{name: web, port: 80}]}";
    let routes = [
        route("wild", "2024-01-01T00:00:00Z", "{name: gw, namespace: infra, sectionName: http}", "['*.w.test']", &format!("[{any}]")),
        route("exact", "2024-01-01T00:00:00Z", "{name: gw, namespace: infra, sectionName: http}", "[a.w.test]", &format!("[{any}]")),
        route("tls", "2024-01-01T00:00:00Z", "{name: gw, namespace: infra, sectionName: https}", "[]", &format!("[{any}]")),
        route("foreign", "2024-01-01T00:00:00Z", "{name: other, namespace: infra}", "[f.test]", &format!("[{any}]")),
    ]
    .concat();
    let (table, problems) = build(&routes);
    assert!(problems.is_empty(), "{problems:?}");
    let cases = [
        ("http", "a.w.test/", "exact:0"),
        ("http", "b.w.test/", "wild:0"),
        ("http", "c.b.w.test/", "wild:0"),
        ("http", "w.test/", "unknown"),
        // The https listener's hostname is the route's; its scheme too.
        ("https", "x.secure.test/", "tls:0"),
        ("https", "y.x.secure.test/", "tls:0"),
        ("http", "x.secure.test/", "404"),
        ("http", "f.test/", "unknown"),
    ];
    for (scheme, uri, expected) in cases {
        assert_eq!(land(&table, scheme, "GET", uri, &[]), expected, "{scheme} {uri}");
    }
}

#[test]
fn backends_split_by_weight_and_cross_namespace_needs_a_reference_grant() {
    let parent = "{name: gw, namespace: infra, sectionName: http}";
    let rules = "[{matches: [{path: {type: Exact, value: /split}}], backendRefs: [{name: web, port: 80, weight: 1}, {name: web, port: 80, weight: 0}, {name: missing, port: 80, weight: 1}]},\
                 {matches: [{path: {type: Exact, value: /zero}}], backendRefs: [{name: web, port: 80, weight: 0}]},\
                 {matches: [{path: {type: Exact, value: /none}}]},\
                 {matches: [{path: {type: Exact, value: /far}}], backendRefs: [{name: far, namespace: backends, port: 80}]},\
                 {matches: [{path: {type: Exact, value: /mirror}}], backendRefs: [{name: web, port: 80}], \
                  filters: [{type: RequestMirror, requestMirror: {backendRef: {name: far, namespace: backends, port: 80}}}]}]";
    let manifests = format!("{}{}", service("backends", "far", 80, "10.0.0.9", 8080), route("r", "2024-01-01T00:00:00Z", parent, "[b.test]", rules));
    let (table, problems) = build(&manifests);
    let reasons: Vec<String> = problems.iter().map(|problem| format!("{} {}", problem.field.as_deref().unwrap_or(""), problem.message)).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("spec.rules[0].backendRefs[2] BackendNotFound: no Service apps/missing"), "{}", reasons[0]);
    assert!(reasons[1].starts_with("spec.rules[3].backendRefs[0] RefNotPermitted: no ReferenceGrant in namespace backends"), "{}", reasons[1]);
    let mirror = "spec.rules[4].filters[0].requestMirror.backendRef RefNotPermitted: no ReferenceGrant in namespace backends";
    assert!(reasons[2].starts_with(mirror) && reasons[2].ends_with(", not mirrored"), "{}", reasons[2]);
    // The mirror is dropped, the rule served.
    assert_eq!(land(&table, "http", "GET", "b.test/mirror", &[]), "r:4");
    let split: Vec<String> = (0..4).map(|_| land(&table, "http", "GET", "b.test/split", &[])).collect();
    assert_eq!(split, ["r:0", "500", "r:0", "500"]);
    for path in ["/zero", "/none", "/far"] {
        assert_eq!(land(&table, "http", "GET", &format!("b.test{path}"), &[]), "500", "{path}");
    }

    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: backends}\n\
                 spec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}], to: [{group: '', kind: Service}]}\n";
    let (table, problems) = build(&format!("{manifests}{grant}"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(land(&table, "http", "GET", "b.test/far", &[]), "r:3");
}

#[test]
fn ingress_and_http_route_rules_share_a_host() {
    let parent = "{name: gw, namespace: infra, sectionName: http}";
    let rules = "[{matches: [{path: {type: PathPrefix, value: /gw}}], backendRefs: [{name: web, port: 80}]}]";
    let ingress = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: ebpf-lb.dev/ingress-controller}\n\
                   ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing, namespace: apps}\n\
                   spec: {ingressClassName: nginx, rules: [{host: s.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]}\n";
    let (table, problems) = build(&format!("{ingress}{}", route("r", "2024-01-01T00:00:00Z", parent, "[s.test]", rules)));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(land(&table, "http", "GET", "s.test/gw/x", &[]), "r:0");
    assert_eq!(land(&table, "http", "GET", "s.test/other", &[]), "ingress:apps/ing:s.test/");
}

#[test]
fn the_gateway_controller_shares_the_ingress_controllers_domain() {
    let domain = |name: &'static str| name.split_once('/').map(|(domain, _)| domain);
    assert_eq!(domain(super::super::GATEWAY_CONTROLLER), domain(crate::l7::INGRESS_CONTROLLER));
}
