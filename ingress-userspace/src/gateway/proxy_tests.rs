//! HTTPRoute filters and backends through the real proxy on loopback: the
//! upstream answers with what it received (request line, Host, headers) and
//! a header of its own, so that both directions can be checked.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::test_manifests::{CLASSES, gateway, service};
use crate::l7::metrics::MirrorOutcome;
use crate::l7::mirror::MIRRORS_IN_FLIGHT;
use crate::l7::options::ProxyOptions;
use crate::l7::proxy::serve;
use crate::l7::proxy::tests::hyper_upstream;
use crate::l7::{L7Options, RouteTable, shared_routes};
use crate::manifests::parse_documents;

/// Answers `METHOD URI` and one `name: value` line per request header,
/// with `x-upstream: 1` and `x-drop: 1` in its answer.
async fn echo_upstream() -> SocketAddr {
    hyper_upstream(hyper::service::service_fn(|request: Request<Incoming>| async move {
        let mut text = format!("{} {}\n", request.method(), request.uri());
        for (name, value) in request.headers() {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
        }
        let response = Response::builder().header("x-upstream", "1").header("x-drop", "1").body(Full::new(Bytes::from(text)));
        Ok::<_, hyper::http::Error>(response.unwrap())
    }))
    .await
}

/// The proxy serving one HTTPRoute for host `f.test` on an HTTP listener,
/// whose `rules` (YAML flow) may name Service `echo` on port 80.
async fn proxy(rules: &str) -> SocketAddr {
    proxy_with(rules, "", ProxyOptions::default()).await
}

/// [`proxy`], with more objects (`manifests`, each document after a `---`)
/// and these options.
async fn proxy_with(rules: &str, manifests: &str, options: ProxyOptions) -> SocketAddr {
    let port = echo_upstream().await.port();
    let route = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n";
    let manifests = format!(
        "{CLASSES}{}{}{route}spec: {{parentRefs: [{{name: gw}}], hostnames: [f.test], rules: {rules}}}\n{manifests}",
        gateway("default", "gw", "", "ours", "[{name: http, port: 80, protocol: HTTP}]"),
        service("default", "echo", 80, "127.0.0.1", port),
    );
    let loaded = parse_documents("t.yaml", &manifests);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let (table, problems) = RouteTable::build(&loaded.snapshot, &L7Options::default());
    assert!(problems.is_empty(), "{problems:?}");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared_routes(table), options));
    addr
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn get(proxy: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(uri).header("host", "f.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request.body(Full::<Bytes>::default()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn lines_starting<'a>(answer: &'a Answer, prefix: &str) -> Vec<&'a str> {
    answer.body.lines().filter(|line| line.starts_with(prefix)).collect()
}

#[tokio::test]
async fn request_header_modifier_sets_adds_and_removes() {
    let proxy = proxy(
        "[{filters: [{type: RequestHeaderModifier, requestHeaderModifier: \
         {set: [{name: x-set, value: new}], add: [{name: x-add, value: two}], remove: [x-gone]}}], backendRefs: [{name: echo, port: 80}]}]",
    )
    .await;
    let answer = get(proxy, "/", &[("x-set", "old"), ("x-add", "one"), ("x-gone", "bye")]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(lines_starting(&answer, "x-set"), ["x-set: new"]);
    assert_eq!(lines_starting(&answer, "x-add"), ["x-add: one", "x-add: two"]);
    assert!(lines_starting(&answer, "x-gone").is_empty(), "{}", answer.body);
}

#[tokio::test]
async fn response_header_modifier_edits_the_upstreams_answer() {
    let proxy = proxy(
        "[{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: \
         {set: [{name: x-upstream, value: edited}], add: [{name: x-extra, value: '1'}], remove: [x-drop]}}], backendRefs: [{name: echo, port: 80}]}]",
    )
    .await;
    let answer = get(proxy, "/", &[]).await;
    let header = |name: &str| answer.headers.get(name).map(|value| value.to_str().unwrap().to_owned());
    assert_eq!((header("x-upstream"), header("x-extra"), header("x-drop")), (Some("edited".into()), Some("1".into()), None));
}

#[tokio::test]
async fn request_redirect_answers_without_forwarding() {
    let proxy = proxy(
        "[{matches: [{path: {type: PathPrefix, value: /old}}], filters: [{type: RequestRedirect, requestRedirect: \
         {scheme: https, hostname: new.test, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]},\
         {matches: [{path: {type: PathPrefix, value: /moved}}], filters: [{type: RequestRedirect, requestRedirect: \
         {port: 8080, path: {type: ReplaceFullPath, replaceFullPath: /here}}}]}]",
    )
    .await;
    let cases = [("/old/x?q=1", 301, "https://new.test/new/x?q=1"), ("/moved/a/b", 302, "http://f.test:8080/here")];
    for (uri, status, location) in cases {
        let answer = get(proxy, uri, &[]).await;
        assert_eq!(answer.status.as_u16(), status, "{uri}");
        assert_eq!(answer.headers["location"], location, "{uri}");
        assert!(answer.body.is_empty(), "{uri}: forwarded: {}", answer.body);
    }
}

#[tokio::test]
async fn url_rewrite_changes_host_and_path_upstream() {
    let proxy = proxy(
        "[{matches: [{path: {type: PathPrefix, value: /api}}], filters: [{type: URLRewrite, urlRewrite: \
         {hostname: internal.test, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}], backendRefs: [{name: echo, port: 80}]},\
         {matches: [{path: {type: PathPrefix, value: /full}}], filters: [{type: URLRewrite, urlRewrite: \
         {path: {type: ReplaceFullPath, replaceFullPath: /static}}}], backendRefs: [{name: echo, port: 80}]}]",
    )
    .await;
    let cases = [
        ("/api/users?id=7", "GET /v2/users?id=7", "host: internal.test"),
        ("/api", "GET /v2", "host: internal.test"),
        ("/full/a/b?x=1", "GET /static?x=1", "host: f.test"),
    ];
    for (uri, request_line, host) in cases {
        let answer = get(proxy, uri, &[]).await;
        assert_eq!(answer.body.lines().next(), Some(request_line), "{uri}");
        assert_eq!(lines_starting(&answer, "host:"), [host], "{uri}");
        assert_eq!(lines_starting(&answer, "x-forwarded-host:"), ["x-forwarded-host: f.test"], "{uri}");
    }
}

#[tokio::test]
async fn unusable_backends_answer_500_and_the_rest_is_served() {
    let proxy = proxy(
        "[{matches: [{path: {type: Exact, value: /ok}}], backendRefs: [{name: echo, port: 80}]},\
         {matches: [{path: {type: Exact, value: /none}}], backendRefs: [{name: echo, port: 80, weight: 0}]}]",
    )
    .await;
    assert_eq!(get(proxy, "/ok", &[]).await.status, StatusCode::OK);
    assert_eq!(get(proxy, "/none", &[]).await.status, StatusCode::INTERNAL_SERVER_ERROR);
}

/// Service `name` on port 80 whose one endpoint is 127.0.0.1:`port`.
fn loopback_service(name: &str, port: u16) -> String {
    service("default", name, 80, "127.0.0.1", port)
}

#[tokio::test]
async fn a_hanging_or_dead_mirror_neither_delays_nor_fails_the_primary() {
    // Connections to it complete in the kernel's backlog; nothing ever answers.
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let manifests = format!("{}{}", loopback_service("hanging", hanging.local_addr().unwrap().port()), loopback_service("dead", dead));
    let mirror = |name: &str| format!("{{type: RequestMirror, requestMirror: {{backendRef: {{name: {name}, port: 80}}}}}}");
    let rules = format!("[{{filters: [{}, {}], backendRefs: [{{name: echo, port: 80}}]}}]", mirror("hanging"), mirror("dead"));
    let options = ProxyOptions::default();
    let metrics = options.metrics.clone();
    let proxy = proxy_with(&rules, &manifests, options).await;
    let requests = MIRRORS_IN_FLIGHT + 8;
    for index in 0..requests {
        let answer = tokio::time::timeout(Duration::from_secs(2), get(proxy, "/x", &[])).await;
        let answer = answer.unwrap_or_else(|_| panic!("request {index}: the primary's answer took over 2 s"));
        assert_eq!(answer.status, StatusCode::OK, "request {index}: {}", answer.body);
        assert_eq!(answer.body.lines().next(), Some("GET /x"), "request {index}");
    }
    // Every copy to the hanging mirror holds its slot: once they are all
    // taken, the rest of both mirrors' copies are dropped, and counted.
    let dropped = metrics.mirrors(MirrorOutcome::DroppedInFlightLimit);
    assert!(dropped >= 8, "{dropped} copies dropped");
    for _ in 0..200 {
        if metrics.mirrors(MirrorOutcome::Failed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(metrics.mirrors(MirrorOutcome::Failed) > 0, "the dead mirror's refused copies are counted as failed");
    assert_eq!(metrics.mirrors(MirrorOutcome::Answered), 0);
    drop(hanging);
}

#[tokio::test]
async fn requests_with_a_body_are_forwarded_but_not_mirrored() {
    let copies = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let manifests = loopback_service("copies", copies.local_addr().unwrap().port());
    let rules = "[{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: copies, port: 80}}}], backendRefs: [{name: echo, port: 80}]}]";
    let options = ProxyOptions::default();
    let metrics = options.metrics.clone();
    let proxy = proxy_with(rules, &manifests, options).await;
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::post("/form").header("host", "f.test").body(Full::new(Bytes::from_static(b"a=1"))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(metrics.mirrors(MirrorOutcome::SkippedBody), 1);
    let nothing = tokio::time::timeout(Duration::from_millis(100), copies.accept()).await;
    assert!(nothing.is_err(), "a copy of a request with a body reached the mirror");
}
