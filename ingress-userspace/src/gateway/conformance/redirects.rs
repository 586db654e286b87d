//! RequestRedirect: the proxy answers with a Location built from the
//! request and the filter's scheme, hostname, port, path and status.

use super::Expect::Redirect;
use super::{Scenario, get, prefix_rules};

/// A `same-namespace` route whose rules each match a path prefix and
/// redirect with their RequestRedirect (YAML flow).
async fn redirects(name: &str, rules: &[(&str, &str)]) -> Scenario {
    let rules: Vec<(&str, String)> =
        rules.iter().map(|(prefix, redirect)| (*prefix, format!("[{{type: RequestRedirect, requestRedirect: {redirect}}}]"))).collect();
    prefix_rules(name, &rules, "").await
}

/// Upstream `HTTPRouteRedirectHostAndStatus`.
#[tokio::test]
async fn http_route_redirect_host_and_status() {
    let scenario =
        redirects("redirect-host-and-status", &[("/hostname-redirect", "{hostname: example.org}"), ("/host-and-status", "{hostname: example.org, statusCode: 301}")]).await;
    let cases = [
        (get("/hostname-redirect"), Redirect(302, "http://example.org/hostname-redirect")),
        (get("/host-and-status"), Redirect(301, "http://example.org/host-and-status")),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteRedirectScheme`: the new scheme's default port is
/// left out of Location.
#[tokio::test]
async fn http_route_redirect_scheme() {
    let rules = [
        ("/scheme-and-host-and-status", "{scheme: https, hostname: example.org, statusCode: 301}"),
        ("/scheme-and-host", "{scheme: https, hostname: example.org}"),
        ("/scheme-and-status", "{scheme: https, statusCode: 301}"),
        ("/scheme", "{scheme: https}"),
    ];
    let scenario = redirects("redirect-scheme", &rules).await;
    let cases = [
        (get("/scheme"), Redirect(302, "https://example.com/scheme")),
        (get("/scheme-and-host"), Redirect(302, "https://example.org/scheme-and-host")),
        (get("/scheme-and-status"), Redirect(301, "https://example.com/scheme-and-status")),
        (get("/scheme-and-host-and-status"), Redirect(301, "https://example.org/scheme-and-host-and-status")),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteRedirectPort`: a port that is the scheme's default
/// is left out of Location.
#[tokio::test]
async fn http_route_redirect_port() {
    let rules = [
        ("/port-and-host-and-status", "{port: 8083, hostname: example.org, statusCode: 301}"),
        ("/port-and-host", "{port: 8083, hostname: example.org}"),
        ("/port-and-status", "{port: 8083, statusCode: 301}"),
        ("/port-default", "{port: 80}"),
        ("/port-and-scheme-default", "{port: 443, scheme: https}"),
        ("/port", "{port: 8083}"),
    ];
    let scenario = redirects("redirect-port", &rules).await;
    let cases = [
        (get("/port"), Redirect(302, "http://example.com:8083/port")),
        (get("/port-and-host"), Redirect(302, "http://example.org:8083/port-and-host")),
        (get("/port-and-status"), Redirect(301, "http://example.com:8083/port-and-status")),
        (get("/port-and-host-and-status"), Redirect(301, "http://example.org:8083/port-and-host-and-status")),
        (get("/port-default"), Redirect(302, "http://example.com/port-default")),
        (get("/port-and-scheme-default"), Redirect(302, "https://example.com/port-and-scheme-default")),
    ];
    scenario.expect_all(&cases).await;
}

/// Upstream `HTTPRouteRedirectPath`: ReplacePrefixMatch keeps what follows
/// the matched prefix, ReplaceFullPath replaces all of it; the query stays.
#[tokio::test]
async fn http_route_redirect_path() {
    let rules = [
        ("/original-prefix", "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}"),
        ("/full", "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}"),
        ("/path-and-host", "{hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}"),
        ("/path-and-status", "{statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}"),
        ("/full-path-and-host", "{hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}"),
        ("/full-path-and-status", "{statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}"),
    ];
    let scenario = redirects("redirect-path", &rules).await;
    let cases = [
        (get("/original-prefix/lemon"), Redirect(302, "http://example.com/replacement-prefix/lemon")),
        (get("/original-prefix/lemon?fruit=sour"), Redirect(302, "http://example.com/replacement-prefix/lemon?fruit=sour")),
        (get("/full/path/original"), Redirect(302, "http://example.com/full-path-replacement")),
        (get("/path-and-host"), Redirect(302, "http://example.org/replacement-prefix")),
        (get("/path-and-status"), Redirect(301, "http://example.com/replacement-prefix")),
        (get("/full-path-and-host"), Redirect(302, "http://example.org/replacement-full")),
        (get("/full-path-and-status"), Redirect(301, "http://example.com/replacement-full")),
    ];
    scenario.expect_all(&cases).await;
}
