use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IngressBackend, IngressClassSpec, IngressRule, IngressServiceBackend,
    IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::l7::ServiceRef;
use crate::l7::nginx_annotations::PREFIX;
use crate::l7::annotations::tests::pod;
use crate::l7::endpoints::tests::{service, slice};

fn backend(service: &str) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.into(),
            port: Some(ServiceBackendPort {
                number: Some(80),
                name: None,
            }),
        }),
        resource: None,
    }
}

/// An Ingress of class `ours` created `created` seconds after a fixed instant.
/// `paths` are (host, path, pathType, service).
pub(crate) fn ingress(name: &str, created: i64, paths: &[(&str, &str, &str, &str)]) -> Ingress {
    let mut rules: Vec<IngressRule> = Vec::new();
    for (host, path, path_type, service) in paths {
        let http_path = HTTPIngressPath {
            path: Some((*path).into()),
            path_type: (*path_type).into(),
            backend: backend(service),
        };
        let host = (!host.is_empty()).then(|| (*host).to_owned());
        match rules.iter_mut().find(|rule| rule.host == host) {
            Some(rule) => rule.http.as_mut().unwrap().paths.push(http_path),
            None => rules.push(IngressRule {
                host,
                http: Some(HTTPIngressRuleValue { paths: vec![http_path] }),
            }),
        }
    }
    let mut ingress = Ingress::default();
    ingress.metadata.name = Some(name.into());
    ingress.metadata.namespace = Some("default".into());
    ingress.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created).unwrap()));
    ingress.spec = Some(IngressSpec {
        ingress_class_name: Some("ours".into()),
        rules: Some(rules),
        ..IngressSpec::default()
    });
    ingress
}

fn with_default_backend(mut ingress: Ingress, service: &str) -> Ingress {
    ingress.spec.as_mut().unwrap().default_backend = Some(backend(service));
    ingress
}

fn with_annotation(mut ingress: Ingress, key: &str, value: &str) -> Ingress {
    ingress.metadata.annotations.get_or_insert_default().insert(key.into(), value.into());
    ingress
}

pub(crate) fn class(name: &str, controller: &str, default: bool) -> IngressClass {
    let mut class = IngressClass::default();
    class.metadata.name = Some(name.into());
    if default {
        class.metadata.annotations = Some(BTreeMap::from([(DEFAULT_CLASS_ANNOTATION.into(), "true".into())]));
    }
    class.spec = Some(IngressClassSpec {
        controller: Some(controller.into()),
        parameters: None,
    });
    class
}

/// Each Service `svc-N` has one ready endpoint 10.0.0.N:8080, so a lookup
/// names its route by the endpoint it reaches.
fn snapshot(ingresses: Vec<Ingress>) -> Snapshot {
    let names = ["a", "b", "c", "d", "e", "f"];
    Snapshot {
        services: names.iter().map(|name| service(&format!("svc-{name}"), &[("http", 80)]).into()).collect(),
        endpoint_slices: names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let ip = format!("10.0.0.{}", index + 1);
                slice(&format!("svc-{name}"), &[("http", 8080)], &[(&ip, true)]).into()
            })
            .collect(),
        ingresses,
        ingress_classes: vec![class("ours", INGRESS_CONTROLLER, false), class("theirs", "k8s.io/ingress-nginx", true)],
        ..Snapshot::default()
    }
}

/// What a request reaches: the service letter, `404` (default backend on a
/// known host), `unknown` (default backend, unknown host) or `503`.
fn reach(table: &RouteTable, host: &str, path: &str) -> String {
    match table.lookup(host, "http", &get(path)) {
        Decision::Forward { route, .. } => match route.upstream.endpoints() {
            [] => "503".into(),
            [first, ..] => {
                let last_octet = match first.ip() {
                    std::net::IpAddr::V4(ip) => ip.octets()[3],
                    std::net::IpAddr::V6(_) => 0,
                };
                ["?", "a", "b", "c", "d", "e", "f"][usize::from(last_octet).min(6)].into()
            }
        },
        Decision::DefaultBackend { known_host: true } => "404".into(),
        Decision::DefaultBackend { known_host: false } => "unknown".into(),
    }
}

fn check(snapshot: &Snapshot, cases: &[(&str, &str, &str)]) -> Vec<Problem> {
    let (table, problems) = RouteTable::build(snapshot, &L7Options::default());
    for (host, path, expected) in cases {
        assert_eq!(reach(&table, host, path), *expected, "{host}{path}");
    }
    problems
}

#[test]
fn hosts_exact_wildcard_and_hostless() {
    let snapshot = snapshot(vec![ingress(
        "web",
        0,
        &[
            ("foo.bar.com", "/", "Prefix", "svc-a"),
            ("*.foo.com", "/", "Prefix", "svc-b"),
            ("", "/", "Prefix", "svc-c"),
            ("exact.foo.com", "/", "Prefix", "svc-d"),
        ],
    )]);
    let problems = check(
        &snapshot,
        &[
            ("foo.bar.com", "/x", "a"),
            ("FOO.bar.com.:8080", "/x", "a"),
            ("bar.foo.com", "/", "b"),
            ("baz.bar.foo.com", "/", "c"),
            ("foo.com", "/", "c"),
            // Exact host beats wildcard host.
            ("exact.foo.com", "/", "d"),
            ("anything.example", "/", "c"),
        ],
    );
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn paths_and_precedence() {
    let snapshot = snapshot(vec![ingress(
        "web",
        0,
        &[
            ("h", "/", "Prefix", "svc-a"),
            ("h", "/foo", "Exact", "svc-b"),
            ("h", "/foo", "Prefix", "svc-c"),
            ("h", "/aaa/bbb/", "Prefix", "svc-d"),
            ("h", "/aaa/bbb/ccc", "ImplementationSpecific", "svc-e"),
        ],
    )]);
    check(
        &snapshot,
        &[
            ("h", "/foo", "b"),
            ("h", "/foo/", "c"),
            ("h", "/foo/x", "c"),
            ("h", "/foobar", "a"),
            ("h", "/aaa/bbb", "d"),
            ("h", "/aaa/bbb/", "d"),
            ("h", "/aaa/bbb/ccd", "d"),
            ("h", "/aaa/bbbxyz", "a"),
            ("h", "/aaa/bbb/ccc/ddd", "e"),
            ("h", "/AAA/bbb", "a"),
        ],
    );
}

#[test]
fn unmatched_path_on_a_matched_host_never_falls_through() {
    let snapshot = snapshot(vec![
        ingress("api", 0, &[("api.example", "/v1", "Prefix", "svc-a"), ("", "/", "Prefix", "svc-b")]),
        with_default_backend(ingress("shop", 1, &[("shop.example", "/cart", "Prefix", "svc-c")]), "svc-d"),
        ingress("wild", 2, &[("*.example", "/w", "Prefix", "svc-e")]),
    ]);
    check(
        &snapshot,
        &[
            ("api.example", "/v1/x", "a"),
            ("api.example", "/v2", "404"),
            ("shop.example", "/cart", "c"),
            ("shop.example", "/other", "d"),
            ("x.example", "/w", "e"),
            ("x.example", "/", "404"),
            ("elsewhere.test", "/anything", "b"),
        ],
    );
}

#[test]
fn ingress_with_only_a_default_backend_catches_everything_unmatched() {
    let mut catch_all = ingress("catch-all", 5, &[]);
    catch_all.spec.as_mut().unwrap().rules = None;
    let snapshot = snapshot(vec![
        with_default_backend(catch_all, "svc-f"),
        ingress("api", 0, &[("api.example", "/v1", "Prefix", "svc-a")]),
    ]);
    check(&snapshot, &[("other.test", "/", "f"), ("api.example", "/v1", "a"), ("api.example", "/v2", "404")]);
}

#[test]
fn no_rules_means_unknown_hosts_get_the_default_backend() {
    let problems = check(&snapshot(Vec::new()), &[("foo.test", "/", "unknown"), ("foo.test", "/healthz", "unknown")]);
    assert!(problems.is_empty());
}

#[test]
fn class_selection() {
    let no_class = |name: &str| {
        let mut ingress = ingress(name, 0, &[(&format!("{name}.test"), "/", "Prefix", "svc-a")]);
        ingress.spec.as_mut().unwrap().ingress_class_name = None;
        ingress
    };
    let named = |name: &str, class: &str| {
        let mut ingress = no_class(name);
        ingress.spec.as_mut().unwrap().ingress_class_name = Some(class.into());
        ingress
    };
    let legacy = |name: &str, class: &str| with_annotation(no_class(name), LEGACY_CLASS_ANNOTATION, class);
    let cases = [
        (named("ours", "ours"), true, true),
        (named("theirs", "theirs"), false, false),
        (named("unknown", "missing"), false, false),
        (legacy("legacy-ours", "ours"), true, true),
        (legacy("legacy-theirs", "theirs"), false, false),
        // No class: served only if our class is the default one.
        (no_class("bare"), false, true),
    ];
    for (ingress, served, served_when_ours_is_default) in cases {
        let name = ingress.metadata.name.clone().unwrap();
        for (ours_is_default, expected) in [(false, served), (true, served_when_ours_is_default)] {
            let mut snapshot = snapshot(vec![ingress.clone()]);
            snapshot.ingress_classes = vec![
                class("ours", INGRESS_CONTROLLER, ours_is_default),
                class("theirs", "k8s.io/ingress-nginx", !ours_is_default),
            ];
            let (table, _) = RouteTable::build(&snapshot, &L7Options::default());
            let reached = reach(&table, &format!("{name}.test"), "/") == "a";
            assert_eq!(reached, expected, "{name}, ours default: {ours_is_default}");
            let status_targets = table.served_ingresses() == [format!("default/{name}")];
            assert_eq!(status_targets, expected, "{name}");
        }
    }
}

#[test]
fn oldest_ingress_wins_a_duplicate_and_the_loser_is_reported() {
    let young = ingress("young", 10, &[("h", "/x", "Prefix", "svc-a"), ("h", "/y", "Prefix", "svc-a")]);
    let old = ingress("old", 1, &[("h", "/x/", "Prefix", "svc-b")]);
    // Listed young first: the order of the source does not matter.
    let problems = check(&snapshot(vec![young, old]), &[("h", "/x", "b"), ("h", "/y", "a")]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::DuplicateRoute);
    assert_eq!(problems[0].location.object.as_deref(), Some("Ingress default/young"));
    assert!(problems[0].message.contains("older Ingress default/old"), "{}", problems[0].message);

    // Same timestamp: namespace/name decides.
    let problems = check(
        &snapshot(vec![
            ingress("b", 0, &[("h", "/", "Exact", "svc-b")]),
            ingress("a", 0, &[("h", "/", "Exact", "svc-a")]),
        ]),
        &[("h", "/", "a")],
    );
    assert_eq!(problems[0].location.object.as_deref(), Some("Ingress default/b"));
}

#[test]
fn backend_problems() {
    let mut by_name = ingress("named-port", 0, &[("h", "/named", "Prefix", "svc-a")]);
    let rule = &mut by_name.spec.as_mut().unwrap().rules.as_mut().unwrap()[0];
    let service = rule.http.as_mut().unwrap().paths[0].backend.service.as_mut().unwrap();
    service.port = Some(ServiceBackendPort {
        number: None,
        name: Some("http".into()),
    });
    let mut empty = snapshot(vec![
        by_name,
        ingress("missing", 0, &[("h", "/missing", "Prefix", "svc-zzz")]),
        ingress("not-ready", 0, &[("h", "/not-ready", "Prefix", "svc-b")]),
    ]);
    empty.endpoint_slices[1] = slice("svc-b", &[("http", 8080)], &[("10.0.0.2", false)]).into();
    let problems = check(&empty, &[("h", "/named", "a"), ("h", "/missing", "503"), ("h", "/not-ready", "503")]);
    let kinds: Vec<_> = problems.iter().map(|problem| problem.kind).collect();
    assert_eq!(kinds, [ProblemKind::UnknownService], "{problems:?}");
}

#[test]
fn invalid_paths_are_reported_and_skipped() {
    let snapshot = snapshot(vec![ingress(
        "web",
        0,
        &[("h", "relative", "Prefix", "svc-a"), ("h", "/x", "Fuzzy", "svc-a"), ("h", "/ok", "Prefix", "svc-b")],
    )]);
    let problems = check(&snapshot, &[("h", "/ok", "b"), ("h", "/x", "404")]);
    let fields: Vec<_> = problems.iter().map(|problem| problem.field.clone().unwrap()).collect();
    assert_eq!(fields, ["spec.rules[0].http.paths[0].path", "spec.rules[0].http.paths[1].path"]);
}

#[test]
fn regex_paths_and_rewrite_targets() {
    let regex = with_annotation(
        ingress("regex", 0, &[("h", "/one(/|$)(.*)", "ImplementationSpecific", "svc-a")]),
        &format!("{PREFIX}rewrite-target"),
        "/$2",
    );
    let use_regex = with_annotation(
        ingress("use-regex", 0, &[("g", "/v[0-9]+/items", "Prefix", "svc-b")]),
        &format!("{PREFIX}use-regex"),
        "true",
    );
    let prefix = with_annotation(ingress("prefix", 0, &[("p", "/foo", "Prefix", "svc-c")]), &format!("{PREFIX}rewrite-target"), "/xyz");
    let bad = with_annotation(ingress("bad", 0, &[("b", "/x(", "Prefix", "svc-d")]), &format!("{PREFIX}use-regex"), "true");
    let (table, problems) = RouteTable::build(&snapshot(vec![regex, use_regex, prefix, bad]), &L7Options::default());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("invalid regex"));
    let rewritten = |host: &str, path_and_query: &str| {
        let path = path_and_query.split('?').next().unwrap();
        let Decision::Forward { route, rule: Some(rule), .. } = table.lookup(host, "http", &get(path)) else {
            return None;
        };
        let rewritten = match &route.annotations.rewrite_target {
            Some(target) => crate::l7::rewrite::rewrite(rule, target, path_and_query)?,
            None => return Some((path_and_query.to_owned(), None)),
        };
        Some((rewritten.path_and_query, rewritten.forwarded_prefix))
    };
    let cases = [
        ("h", "/one", Some(("/", None))),
        ("h", "/one/aaa/bbb?k=v", Some(("/aaa/bbb?k=v", None))),
        ("h", "/two", None),
        ("g", "/v12/items/3", Some(("/v12/items/3", None))),
        ("p", "/foo/bar", Some(("/xyz/bar", Some("/foo")))),
    ];
    for (host, path, expected) in cases {
        let expected = expected.map(|(path, prefix)| (path.to_owned(), prefix.map(str::to_owned)));
        assert_eq!(rewritten(host, path), expected, "{host}{path}");
    }
}

#[test]
fn annotated_pods_pool_per_host_and_path() {
    let mut snapshot = snapshot(vec![ingress("web", 0, &[("h1", "/taken", "Prefix", "svc-a")])]);
    snapshot.pods = vec![
        pod("p1", "10.2.0.1", true, "h1 h2", "80:/ 3000:/nodejs 80:/taken"),
        pod("p2", "10.2.0.2", true, "h1", "80:/ bad-entry"),
        pod("p3", "10.2.0.3", false, "h1", "80:/"),
    ];
    let (table, problems) = RouteTable::build(&snapshot, &L7Options::default());
    let endpoints = |host: &str, path: &str| match table.lookup(host, "http", &get(path)) {
        Decision::Forward { route, .. } => route.upstream.endpoints().iter().map(ToString::to_string).collect(),
        Decision::DefaultBackend { .. } => Vec::<String>::new(),
    };
    assert_eq!(endpoints("h1", "/"), ["10.2.0.1:80", "10.2.0.2:80"]);
    assert_eq!(endpoints("h2", "/x"), ["10.2.0.1:80"]);
    assert_eq!(endpoints("h1", "/nodejs/app"), ["10.2.0.1:3000"]);
    assert_eq!(endpoints("h2", "/nodejs"), ["10.2.0.1:3000"]);
    assert_eq!(endpoints("h1", "/nodejsx"), ["10.2.0.1:80", "10.2.0.2:80"]);
    assert_eq!(endpoints("h1", "/taken"), ["10.0.0.1:8080"]);
    let kinds: Vec<_> = problems.iter().map(|problem| problem.kind).collect();
    assert_eq!(kinds, [ProblemKind::InvalidAnnotation, ProblemKind::DuplicateRoute], "{problems:?}");
}

#[test]
fn default_backend_service_option() {
    let options = L7Options {
        default_backend_service: Some(ServiceRef {
            namespace: "default".into(),
            name: "svc-e".into(),
            port: ServiceBackendPort {
                number: Some(80),
                name: None,
            },
        }),
    };
    let snapshot = snapshot(vec![ingress("web", 0, &[("h", "/x", "Prefix", "svc-a")])]);
    let (table, problems) = RouteTable::build(&snapshot, &options);
    assert!(problems.is_empty());
    for (host, path, expected) in [("h", "/x", "a"), ("h", "/y", "e"), ("other", "/", "e")] {
        assert_eq!(reach(&table, host, path), expected, "{host}{path}");
    }
}

pub(crate) fn with_annotations(ingress: Ingress, pairs: &[(&str, &str)]) -> Ingress {
    pairs.iter().fold(ingress, |ingress, (name, value)| with_annotation(ingress, &format!("{PREFIX}{name}"), value))
}

#[test]
fn a_canary_ingress_joins_the_route_of_the_same_host_and_path() {
    let main = ingress("main", 5, &[("h", "/", "Prefix", "svc-a"), ("h", "/only-main", "Prefix", "svc-a")]);
    // Older than the main Ingress: a canary never takes a path over.
    let canary = with_annotations(ingress("canary", 0, &[("h", "/", "Prefix", "svc-b"), ("h", "/nobody", "Prefix", "svc-b")]), &[("canary", "true"), ("canary-weight", "25")]);
    let second = with_annotations(ingress("second", 9, &[("h", "/", "Prefix", "svc-c")]), &[("canary", "true")]);
    let (table, problems) = RouteTable::build(&snapshot(vec![second, canary, main]), &L7Options::default());
    let Decision::Forward { route, canary: Some(canary), .. } = table.lookup("h", "http", &get("/x")) else { panic!("no canary on h/") };
    assert_eq!(route.upstream.endpoints()[0].to_string(), "10.0.0.1:8080");
    assert_eq!(canary.route.upstream.endpoints()[0].to_string(), "10.0.0.2:8080");
    assert_eq!(canary.canary.weight, 25);
    assert!(matches!(table.lookup("h", "http", &get("/only-main")), Decision::Forward { canary: None, .. }));
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("Ingress default/canary: spec.rules[0].http.paths[1]: is a canary but no Ingress routes h path Prefix /nobody"), "{messages:?}");
    assert!(messages[1].starts_with("Ingress default/second: spec.rules[0].http.paths[0]: h path Prefix / of Ingress default/main already has an older canary"), "{messages:?}");
}

#[test]
fn ssl_redirect_needs_tls_for_the_host_and_force_ssl_redirect_does_not() {
    let mut tls = with_annotations(ingress("tls", 0, &[("secure", "/", "Prefix", "svc-a"), ("plain", "/", "Prefix", "svc-a")]), &[("ssl-redirect", "true")]);
    tls.spec.as_mut().unwrap().tls = Some(vec![k8s_openapi::api::networking::v1::IngressTLS { hosts: Some(vec!["secure".into()]), secret_name: None }]);
    let forced = with_annotations(ingress("forced", 0, &[("forced", "/", "Prefix", "svc-b")]), &[("force-ssl-redirect", "true")]);
    let (table, _) = RouteTable::build(&snapshot(vec![tls, forced]), &L7Options::default());
    for (host, expected) in [("secure", true), ("plain", false), ("forced", true)] {
        let Decision::Forward { route, .. } = table.lookup(host, "http", &get("/")) else { panic!("{host} not routed") };
        assert_eq!(route.https_redirect, expected, "{host}");
    }
}

#[test]
fn a_malformed_annotation_is_reported_and_the_ingress_still_serves() {
    let web = with_annotations(ingress("web", 0, &[("h", "/", "Prefix", "svc-a")]), &[("proxy-body-size", "10Q"), ("proxy-read-timeout", "5")]);
    let (table, problems) = RouteTable::build(&snapshot(vec![web]), &L7Options::default());
    assert_eq!(reach(&table, "h", "/"), "a");
    let Decision::Forward { route, .. } = table.lookup("h", "http", &get("/")) else { unreachable!() };
    assert_eq!((route.annotations.max_body_bytes, route.annotations.read_timeout), (None, Some(std::time::Duration::from_secs(5))));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        "Ingress default/web: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: invalid value \"10Q\" \
         (expected a size such as 8m, 512k or 0 (no limit)), annotation ignored"
    );
}

/// A GET of `path` (the host comes separately, as the proxy passes it).
fn get(path: &str) -> hyper::Request<()> {
    hyper::Request::get(path).body(()).unwrap()
}
