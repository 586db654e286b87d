//! Property tests over the pure parsers the proxy runs on what clients and
//! manifests send: no input makes them panic, and the properties the
//! Ingress semantics promise hold for generated inputs. Bounded case counts
//! keep the whole file to seconds.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::annotations::tests::pod;
use super::annotations::pod_routes;
use super::host::{HostPattern, normalize_host};
use super::nginx_annotations::{self, PREFIX};
use super::path::PathMatch;
use super::rewrite::rewrite;
use super::{Decision, L7Options, RouteTable};
use crate::manifests::Snapshot;
use crate::problem::Location;

/// Path segments as rules and requests write them (no `?`, which starts the
/// query, nor whitespace, which separates `publicPaths` entries); the
/// never-panics properties take arbitrary strings instead.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._~%!$&'()*+,;=:@-]{1,8}"
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..5).prop_map(|segments| format!("/{}", segments.join("/")))
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_exact_rule_matches_only_its_own_path(rule in path(), other in path()) {
        let exact = PathMatch::exact(&rule);
        prop_assert!(exact.matches(&rule));
        prop_assert_eq!(exact.matches(&other), other == rule);
    }

    #[test]
    fn a_prefix_rule_matches_every_path_under_it_on_a_segment_boundary(rule in path(), below in path(), glued in "[a-z]{1,4}") {
        let prefix = PathMatch::prefix(&rule);
        let base = rule.trim_end_matches('/');
        prop_assert!(prefix.matches(&rule));
        prop_assert!(prefix.matches(&format!("{base}{below}")), "{} under {}", below, rule);
        // `/foo` never matches `/foobar`.
        if !base.is_empty() {
            let glued = format!("{base}{glued}");
            prop_assert!(!prefix.matches(&glued), "{} matched {}", rule, glued);
        }
    }

    #[test]
    fn path_matching_never_panics(rule in ".{0,16}", request in ".{0,32}") {
        for rule in [PathMatch::exact(&rule), PathMatch::prefix(&rule)].into_iter().chain(PathMatch::regex(&rule).ok()) {
            if let Some(length) = rule.matched_len(&request) {
                prop_assert!(length <= request.len());
            }
        }
    }

    #[test]
    fn host_normalisation_never_panics(authority in ".{0,24}") {
        let once = normalize_host(&authority).into_owned();
        let _ = HostPattern::parse(&authority).matches(&once);
    }

    /// On host names only: an unbracketed `a:b:c` loses one "port" per
    /// pass, `a..` one dot, and an IPv6 literal its brackets.
    #[test]
    fn host_normalisation_is_idempotent_on_host_names(authority in "[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z0-9-]{1,8}){0,3}\\.?(:[0-9]{1,5})?") {
        let once = normalize_host(&authority).into_owned();
        prop_assert_eq!(normalize_host(&once).into_owned(), once.clone());
    }

    #[test]
    fn normalised_names_ignore_case_port_and_one_trailing_dot(name in "[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z0-9-]{1,8}){0,3}", port in 1u16..) {
        let lower = name.to_ascii_lowercase();
        let with_port = format!("{name}.:{port}");
        prop_assert_eq!(normalize_host(&with_port).into_owned(), lower.clone());
        prop_assert_eq!(normalize_host(&name).into_owned(), lower);
    }

    #[test]
    fn rewrite_never_panics_and_a_prefix_rewrite_keeps_the_rest(rule in path(), below in path(), target in ".{0,16}", query in proptest::option::of("[a-z=&]{0,8}")) {
        let prefix = PathMatch::prefix(&rule);
        let base = rule.trim_end_matches('/');
        let query = query.map(|query| format!("?{query}")).unwrap_or_default();
        let request = format!("{base}{below}{query}");
        let rewritten = rewrite(&prefix, &target, &request);
        prop_assert!(rewritten.is_some(), "{} did not match {}", request, rule);
        if below.len() > 1 {
            let rewritten = rewritten.unwrap().path_and_query;
            prop_assert!(rewritten.ends_with(&format!("{below}{query}")), "{} lost the rest of {}", rewritten, request);
        }
        for rule in [PathMatch::exact(&rule)].into_iter().chain(PathMatch::regex(&rule).ok()) {
            let _ = rewrite(&rule, &target, &request);
        }
    }

    #[test]
    fn the_pod_annotation_parser_never_panics(hosts in ".{0,24}", paths in ".{0,32}") {
        let location = Location::object("Pod default/prop");
        let mut problems = Vec::new();
        for route in pod_routes(&pod("prop", "10.0.0.1", true, &hosts, &paths), &location, &mut problems) {
            prop_assert!(route.path.starts_with('/'));
        }
    }

    #[test]
    fn the_nginx_annotation_parser_never_panics(entries in prop::collection::btree_map(annotation_name(), ".{0,16}", 0..8)) {
        let annotations: BTreeMap<String, String> = entries.into_iter().map(|(name, value)| (format!("{PREFIX}{name}"), value)).collect();
        let mut problems = Vec::new();
        let _ = nginx_annotations::parse(&annotations, &Location::object("Ingress default/prop"), &mut problems);
    }

    #[test]
    fn route_lookup_never_panics_and_finds_every_path_under_a_prefix(rule in path(), below in path(), authority in ".{0,24}", request in ".{0,32}") {
        let table = table_with_prefix("shop.example", &rule);
        // hyper hands the table only requests whose target parsed.
        if let Ok(request) = hyper::Request::get(request.as_str()).body(()) {
            let _ = table.lookup(&authority, "http", &request);
        }
        let base = rule.trim_end_matches('/');
        let under = hyper::Request::get(format!("{base}{below}")).body(()).expect("a generated path is a valid target");
        let found = table.lookup("Shop.Example.:8080", "http", &under);
        prop_assert!(matches!(found, Decision::Forward { .. }), "{}{} not routed by {}", base, below, rule);
    }
}

/// The annotations the parser knows, and some it does not.
fn annotation_name() -> impl Strategy<Value = String> {
    const KNOWN: &[&str] = &[
        "rewrite-target", "use-regex", "ssl-redirect", "force-ssl-redirect", "proxy-body-size", "proxy-read-timeout",
        "whitelist-source-range", "canary", "canary-weight", "canary-by-header", "canary-by-header-value",
        "enable-cors", "cors-allow-origin", "cors-allow-methods", "cors-allow-headers", "cors-allow-credentials",
        "cors-max-age", "permanent-redirect", "temporal-redirect", "app-root", "backend-protocol",
    ];
    prop_oneof![3 => prop::sample::select(KNOWN).prop_map(str::to_owned), 1 => "[a-z-]{1,12}"]
}

/// A table with one pod routing `host` + `rule` (a Prefix, as pod routes are).
fn table_with_prefix(host: &str, rule: &str) -> RouteTable {
    let snapshot = Snapshot { pods: vec![pod("web", "10.0.0.1", true, host, &format!("8080:{rule}"))], ..Snapshot::default() };
    RouteTable::build(&snapshot, &L7Options::default()).0
}
