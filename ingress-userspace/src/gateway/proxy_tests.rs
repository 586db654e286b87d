//! HTTPRoute filters and backends through the real proxy on loopback: the
//! upstream answers with what it received (request line, Host, headers) and
//! a header of its own, so that both directions can be checked.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::l7::options::ProxyOptions;
use crate::l7::proxy::serve;
use crate::l7::{L7Options, RouteTable, shared_routes};
use crate::manifests::parse_documents;

/// Answers `METHOD URI` and one `name: value` line per request header,
/// with `x-upstream: 1` and `x-drop: 1` in its answer.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let mut text = format!("{} {}\n", request.method(), request.uri());
                for (name, value) in request.headers() {
                    text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
                let response = Response::builder().header("x-upstream", "1").header("x-drop", "1").body(Full::new(Bytes::from(text)));
                Ok::<_, hyper::http::Error>(response.unwrap())
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

/// The proxy serving one HTTPRoute for host `f.test` on an HTTP listener,
/// whose `rules` (YAML flow) may name Service `echo` on port 80.
async fn proxy(rules: &str) -> SocketAddr {
    let port = echo_upstream().await.port();
    let manifests = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: ours}}\nspec: {{controllerName: ebpf-lb.dev/gateway-controller}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\n\
         spec: {{gatewayClassName: ours, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: echo}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: echo-1, labels: {{kubernetes.io/service-name: echo}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\n\
         spec: {{parentRefs: [{{name: gw}}], hostnames: [f.test], rules: {rules}}}\n"
    );
    let loaded = parse_documents("t.yaml", &manifests);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let (table, problems) = RouteTable::build(&loaded.snapshot, &L7Options::default());
    assert!(problems.is_empty(), "{problems:?}");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared_routes(table), ProxyOptions::default()));
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
