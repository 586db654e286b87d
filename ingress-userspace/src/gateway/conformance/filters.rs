//! The filters applied on the way: header modifiers both ways and URL
//! rewrites of the forwarded request.

use super::Expect::{self, Forwarded};
use super::{Answer, Req, Scenario, get, prefix_rules, to};

/// A `same-namespace` route whose rules each match a path prefix, apply
/// their filters (YAML flow list) and forward to infra-backend-v1.
async fn filtered(name: &str, rules: &[(&str, &str)]) -> Scenario {
    let rules: Vec<(&str, String)> = rules.iter().map(|(prefix, filters)| (*prefix, (*filters).to_owned())).collect();
    prefix_rules(name, &rules, &to("infra-backend-v1")).await
}

/// Expected header values (lower-case names) of one side of an exchange;
/// no values means the header must be absent.
type HeaderCase = (Req, &'static [(&'static str, &'static [&'static str])]);

/// Sends each request and compares the headers `side` reads from the answer.
async fn expect_headers(scenario: &Scenario, cases: &[HeaderCase], side: fn(&Answer, &str) -> Vec<String>) {
    let mut mismatches = Vec::new();
    for (request, expected) in cases {
        let answer = scenario.send(request).await;
        for (name, values) in *expected {
            let got = side(&answer, name);
            if answer.status != 200 || got != *values {
                mismatches.push(format!("{}: {} {name}: {got:?} instead of {values:?}", request.path, answer.status));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

fn upstream_request(answer: &Answer, name: &str) -> Vec<String> {
    answer.request_header(name).into_iter().map(Into::into).collect()
}

fn client_response(answer: &Answer, name: &str) -> Vec<String> {
    answer.header(name).into_iter().map(Into::into).collect()
}

/// Upstream `HTTPRouteRequestHeaderModifier`: set overwrites, add appends,
/// remove drops; header names compare case-insensitively.
#[tokio::test]
async fn http_route_request_header_modifier() {
    let rules = [
        ("/set", "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}]}}]"),
        ("/add", "[{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Header-Add, value: add-appends-values}]}}]"),
        ("/remove", "[{type: RequestHeaderModifier, requestHeaderModifier: {remove: [X-Header-Remove]}}]"),
        (
            "/multiple",
            "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], \
             add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}], remove: [X-Header-Remove-1, X-Header-Remove-2]}}]",
        ),
        (
            "/case-insensitivity",
            "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}}]",
        ),
    ];
    let scenario = filtered("request-header-modifier", &rules).await;
    let cases: [HeaderCase; 7] = [
        (get("/set").header("Some-Other-Header", "val"), &[("some-other-header", &["val"]), ("x-header-set", &["set-overwrites-values"])]),
        (get("/set").header("X-Header-Set", "some-other-value"), &[("x-header-set", &["set-overwrites-values"])]),
        (get("/add").header("Some-Other-Header", "val"), &[("some-other-header", &["val"]), ("x-header-add", &["add-appends-values"])]),
        (get("/add").header("X-Header-Add", "some-other-value"), &[("x-header-add", &["some-other-value", "add-appends-values"])]),
        (get("/remove").header("X-Header-Remove", "val").header("Some-Other-Header", "val"), &[("x-header-remove", &[]), ("some-other-header", &["val"])]),
        (
            get("/multiple").header("X-Header-Set-2", "old").header("X-Header-Add-2", "old").header("X-Header-Remove-2", "val"),
            &[("x-header-set-1", &["header-set-1"]), ("x-header-set-2", &["header-set-2"]), ("x-header-add-1", &["header-add-1"]), ("x-header-add-2", &["old", "header-add-2"]), ("x-header-remove-2", &[])],
        ),
        (
            get("/case-insensitivity").header("x-header-set", "old").header("x-header-add", "old").header("x-header-remove", "val"),
            &[("x-header-set", &["header-set"]), ("x-header-add", &["old", "header-add"]), ("x-header-remove", &[])],
        ),
    ];
    expect_headers(&scenario, &cases, upstream_request).await;
}

/// Upstream `HTTPRouteResponseHeaderModifier`: the same edits on the
/// backend's answer (which carries `x-backend` and `x-header-remove`).
#[tokio::test]
async fn http_route_response_header_modifier() {
    let rules = [
        ("/set", "[{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: set-overwrites-values}]}}]"),
        ("/add", "[{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Backend, value: add-appends-values}, {name: X-Header-Add, value: new}]}}]"),
        ("/remove", "[{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [X-Header-Remove]}}]"),
        (
            "/multiple",
            "[{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [x-header-remove]}}]",
        ),
    ];
    let scenario = filtered("response-header-modifier", &rules).await;
    let cases: [HeaderCase; 4] = [
        (get("/set"), &[("x-backend", &["set-overwrites-values"]), ("x-header-remove", &["present"])]),
        (get("/add"), &[("x-backend", &["infra-backend-v1", "add-appends-values"]), ("x-header-add", &["new"])]),
        (get("/remove"), &[("x-header-remove", &[]), ("x-backend", &["infra-backend-v1"])]),
        (get("/multiple"), &[("x-header-set", &["header-set"]), ("x-header-add", &["header-add"]), ("x-header-remove", &[])]),
    ];
    expect_headers(&scenario, &cases, client_response).await;
}

/// Upstream `HTTPRouteRewritePath`: ReplacePrefixMatch swaps the matched
/// prefix (a `/` replacement leaves no double slash), ReplaceFullPath the
/// whole path; the query is kept; header modifiers apply alongside.
#[tokio::test]
async fn http_route_rewrite_path() {
    let prefix = |to: &str| format!("[{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: {to}}}}}}}]");
    let full = |to: &str| format!("[{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: {to}}}}}}}]");
    let with_headers = "[{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /test}}}, \
                        {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}]}}]";
    let (prefix_one, full_one, strip) = (prefix("/one"), full("/one"), prefix("/"));
    let rules = [("/prefix/one", prefix_one.as_str()), ("/full/one", full_one.as_str()), ("/strip-prefix", strip.as_str()), ("/full/rewrite-path-and-modify-headers", with_headers)];
    let scenario = filtered("rewrite-path", &rules).await;
    let cases = [
        (get("/prefix/one/two"), Forwarded("infra-backend-v1", "GET /one/two")),
        (get("/prefix/one"), Forwarded("infra-backend-v1", "GET /one")),
        (get("/full/one/two"), Forwarded("infra-backend-v1", "GET /one")),
        (get("/full/one/two?q=1"), Forwarded("infra-backend-v1", "GET /one?q=1")),
        (get("/strip-prefix/three"), Forwarded("infra-backend-v1", "GET /three")),
        (get("/strip-prefix"), Forwarded("infra-backend-v1", "GET /")),
        (get("/full/rewrite-path-and-modify-headers/test"), Forwarded("infra-backend-v1", "GET /test")),
    ];
    scenario.expect_all(&cases).await;
    let answer = scenario.send(&get("/full/rewrite-path-and-modify-headers/x")).await;
    assert_eq!(answer.request_header("x-header-set"), ["set-overwrites-values"]);
}

/// Upstream `HTTPRouteRewriteHost`: the backend gets the rewritten Host.
#[tokio::test]
async fn http_route_rewrite_host() {
    let rules = [
        ("/one", "[{type: URLRewrite, urlRewrite: {hostname: one.example.org}}]"),
        ("/two", "[{type: URLRewrite, urlRewrite: {hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]"),
    ];
    let scenario = filtered("rewrite-host", &rules).await;
    let cases: [HeaderCase; 2] = [(get("/one"), &[("host", &["one.example.org"])]), (get("/two/x"), &[("host", &["example.org"])])];
    expect_headers(&scenario, &cases, upstream_request).await;
    scenario.expect_all(&[(get("/two/x"), Forwarded("infra-backend-v1", "GET /x"))]).await;
}

/// Upstream `HTTPRouteRequestMirror`: the backend answers, and the mirror
/// backend gets a copy of the request (after the rule's header edits, as
/// the backend gets it) whose answer is dropped.
#[tokio::test]
async fn http_route_request_mirror() {
    let mirror = "{type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}}";
    let modify = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-set, value: mirrored}]}}";
    let rules = [("/mirror", format!("[{mirror}]")), ("/modified", format!("[{modify}, {mirror}]"))];
    let rules: Vec<(&str, &str)> = rules.iter().map(|(prefix, filters)| (*prefix, filters.as_str())).collect();
    let scenario = filtered("request-mirror", &rules).await;
    scenario.expect_all(&[(get("/mirror"), Forwarded("infra-backend-v1", "GET /mirror"))]).await;
    let cases: [HeaderCase; 1] = [(get("/modified"), &[("x-set", &["mirrored"])])];
    expect_headers(&scenario, &cases, upstream_request).await;
    expect_mirrored(&scenario, &["infra-backend-v2 GET /mirror", "infra-backend-v2 GET /modified"]).await;
}

/// Upstream `HTTPRouteRequestMultipleMirrors`: every mirror gets its copy.
#[tokio::test]
async fn http_route_request_multiple_mirrors() {
    let mirror = |backend: &str| format!("{{type: RequestMirror, requestMirror: {{backendRef: {{name: {backend}, port: 8080}}}}}}");
    let filters = format!("[{}, {}]", mirror("infra-backend-v2"), mirror("infra-backend-v3"));
    let scenario = filtered("request-multiple-mirrors", &[("/multi-mirror", filters.as_str())]).await;
    scenario.expect_all(&[(get("/multi-mirror"), Forwarded("infra-backend-v1", "GET /multi-mirror"))]).await;
    expect_mirrored(&scenario, &["infra-backend-v2 GET /multi-mirror", "infra-backend-v3 GET /multi-mirror"]).await;
}

/// Upstream `HTTPRouteRequestPercentageMirror`: `percent` and `fraction`
/// mirror that share of the requests; 0 percent none.
#[tokio::test]
async fn http_route_request_percentage_mirror() {
    let mirror = |backend: &str, share: &str| format!("[{{type: RequestMirror, requestMirror: {{backendRef: {{name: {backend}, port: 8080}}, {share}}}}}]");
    let (percent, fraction, none) = (mirror("infra-backend-v2", "percent: 20"), mirror("infra-backend-v3", "fraction: {numerator: 1, denominator: 2}"), mirror("infra-backend-v2", "percent: 0"));
    let rules = [("/percent", percent.as_str()), ("/fraction", fraction.as_str()), ("/none", none.as_str())];
    let scenario = filtered("request-percentage-mirror", &rules).await;
    for path in ["/percent", "/fraction", "/none"] {
        let requests: Vec<(Req, Expect)> = (0..10).map(|_| (get(path), Expect::Backend("infra-backend-v1"))).collect();
        scenario.expect_all(&requests).await;
    }
    let mut expected = vec!["infra-backend-v2 GET /percent"; 2];
    expected.extend(["infra-backend-v3 GET /fraction"; 5]);
    expect_mirrored(&scenario, &expected).await;
}

/// Waits for the mirrors to have received exactly `expected` (in any
/// order): copies may still be on their way when the answers are in.
async fn expect_mirrored(scenario: &Scenario, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|line| (*line).to_owned()).collect();
    expected.sort();
    let mirrored = || {
        let mut mirrored: Vec<String> = scenario.received().into_iter().filter(|line| !line.starts_with("infra-backend-v1 ")).collect();
        mirrored.sort();
        mirrored
    };
    for _ in 0..200 {
        if mirrored() == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(mirrored(), expected);
}
