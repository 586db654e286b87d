//! The core HTTPRoute scenarios of the upstream Gateway API conformance
//! suite (kubernetes-sigs/gateway-api, `conformance/tests/httproute-*.go`),
//! ported to run without a cluster: each test loads its scenario's objects
//! on top of the suite's base (namespaces, Gateways, one echo backend per
//! Service), starts the real proxy on loopback and sends it the upstream's
//! requests, expecting the upstream's answers. The YAML is ours, written to
//! the upstream scenarios' intent; test names are the upstream names.

mod backends;
mod filters;
mod hostnames;
mod matching;
mod redirects;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::test_manifests::{gateway, service};
use crate::l7::options::ProxyOptions;
use crate::l7::proxy::serve;
use crate::l7::{L7Options, RouteTable, shared_routes};
use crate::manifests::parse_documents;
use crate::problem::Problem;

/// The upstream suite's infrastructure namespace, where its Gateways and
/// `infra-backend-*` Services live.
const INFRA: &str = "gateway-conformance-infra";

/// Every backend Service of the base, by namespace: each gets its own echo
/// upstream, so an answer tells which one served it.
const BACKENDS: [(&str, &str); 6] = [
    (INFRA, "infra-backend-v1"),
    (INFRA, "infra-backend-v2"),
    (INFRA, "infra-backend-v3"),
    ("gateway-conformance-web-backend", "web-backend"),
    ("gateway-conformance-app-backend", "app-backend-v1"),
    ("gateway-conformance-app-backend", "app-backend-v2"),
];

/// The upstream base: a GatewayClass of ours, the namespaces (the backend
/// ones labelled `gateway-conformance: backend`) and the Gateways:
/// `same-namespace` takes routes of its own namespace, `all-namespaces` of
/// any, `backend-namespaces` of the labelled ones.
fn base() -> String {
    let mut text = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: conformance}\n\
                    spec: {controllerName: ebpf-lb.dev/gateway-controller}\n"
        .to_owned();
    let namespaces = [(INFRA, "{}"), ("gateway-conformance-web-backend", BACKEND_LABEL), ("gateway-conformance-app-backend", BACKEND_LABEL)];
    for (name, labels) in namespaces {
        text.push_str(&format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n"));
    }
    let selector = format!("{{from: Selector, selector: {{matchLabels: {BACKEND_LABEL}}}}}");
    for (name, from) in [("same-namespace", "{from: Same}"), ("all-namespaces", "{from: All}"), ("backend-namespaces", selector.as_str())] {
        let listeners = format!("[{{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {from}}}}}]");
        text.push_str(&gateway(INFRA, name, "", "conformance", &listeners));
    }
    text
}

const BACKEND_LABEL: &str = "{gateway-conformance: backend}";

/// The parentRefs of a route on the base's `same-namespace` Gateway.
const SAME_NAMESPACE: &str = "[{name: same-namespace}]";

/// An HTTPRoute of the infra namespace: `parents` and `hostnames` are YAML
/// flow lists (`hostnames` "" for none), `rules` made by [`rule`].
fn route(name: &str, parents: &str, hostnames: &str, rules: &[String]) -> String {
    let hostnames = if hostnames.is_empty() { String::new() } else { format!("  hostnames: {hostnames}\n") };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
         spec:\n  parentRefs: {parents}\n{hostnames}  rules:\n{}",
        rules.concat()
    )
}

/// One rule of [`route`]: its matches, filters and backendRefs as YAML flow
/// lists, "" for none.
fn rule(matches: &str, filters: &str, backends: &str) -> String {
    let fields = [("matches", matches), ("filters", filters), ("backendRefs", backends)];
    let fields: Vec<String> = fields.iter().filter(|(_, value)| !value.is_empty()).map(|(field, value)| format!("{field}: {value}")).collect();
    format!("  - {{{}}}\n", fields.join(", "))
}

/// The backendRefs of a rule to one Service of the base, on its port.
fn to(backend: &str) -> String {
    format!("[{{name: {backend}, port: 8080}}]")
}

/// A `same-namespace` route whose rules each match a path prefix and apply
/// `filters` (YAML flow list), then forward to `backends` ("" for none).
async fn prefix_rules(name: &str, rules: &[(&str, String)], backends: &str) -> Scenario {
    let rules: Vec<String> = rules.iter().map(|(prefix, filters)| rule(&format!("[{{path: {{type: PathPrefix, value: {prefix}}}}}]"), filters, backends)).collect();
    Scenario::start(&route(name, SAME_NAMESPACE, "", &rules)).await
}

/// `backend METHOD URI` of every request the echo backends received.
type Received = Arc<Mutex<Vec<String>>>;

/// Answers with `backend NAME`, the request line and one `name: value` line
/// per request header; its own answer carries `x-backend: NAME` and
/// `x-header-remove: present` (for ResponseHeaderModifier to remove).
async fn echo_backend(name: &'static str, received: Received) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                received.lock().unwrap().push(format!("{name} {} {}", request.method(), request.uri()));
                async move { Ok::<_, hyper::http::Error>(echo(name, &request)) }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

fn echo(name: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut text = format!("backend {name}\n{} {}\n", request.method(), request.uri());
    for (header, value) in request.headers() {
        text.push_str(&format!("{header}: {}\n", value.to_str().unwrap_or("?")));
    }
    let response = Response::builder().header("x-backend", name).header("x-header-remove", "present");
    response.body(Full::new(Bytes::from(text))).unwrap()
}

/// The base's Services, each with an EndpointSlice to its echo backend.
async fn backend_manifests(received: &Received) -> String {
    let mut text = String::new();
    for (namespace, name) in BACKENDS {
        let port = echo_backend(name, received.clone()).await.port();
        text.push_str(&service(namespace, name, 8080, "127.0.0.1", port));
    }
    text
}

/// A scenario served: the proxy's address and what the translation reported.
struct Scenario {
    proxy: SocketAddr,
    problems: Vec<Problem>,
    received: Received,
}

impl Scenario {
    /// The base plus `manifests` (the scenario's own objects), served.
    async fn start(manifests: &str) -> Scenario {
        let received = Received::default();
        let text = format!("{}{}---\n{manifests}", base(), backend_manifests(&received).await);
        let loaded = parse_documents("scenario.yaml", &text);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let (table, problems) = RouteTable::build(&loaded.snapshot, &L7Options::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, shared_routes(table), ProxyOptions::default()));
        Scenario { proxy, problems, received }
    }

    /// `backend METHOD URI` of every request the backends received so far.
    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// The problems reported, one line each.
    fn problem_lines(&self) -> Vec<String> {
        self.problems.iter().map(ToString::to_string).collect()
    }

    async fn send(&self, request: &Req) -> Answer {
        let mut builder = Request::builder().method(request.method).uri(request.path).header("host", request.host);
        for (name, value) in &request.headers {
            builder = builder.header(*name, *value);
        }
        let stream = TcpStream::connect(self.proxy).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(builder.body(Full::<Bytes>::default()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
        Answer { status: parts.status.as_u16(), headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// Sends every case and fails with every mismatch, one line each.
    async fn expect_all(&self, cases: &[(Req, Expect)]) {
        let mut mismatches = Vec::new();
        for (request, expected) in cases {
            let answer = self.send(request).await;
            if let Err(why) = expected.check(&answer) {
                mismatches.push(format!("{} {}{}: {why}", request.method, request.host, request.path));
            }
        }
        assert!(mismatches.is_empty(), "{} of {} cases failed:\n{}", mismatches.len(), cases.len(), mismatches.join("\n"));
    }
}

/// A request as the upstream suite describes one.
#[derive(Clone)]
struct Req {
    method: &'static str,
    host: &'static str,
    /// Path and query.
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

/// `GET path` for `example.com`, the upstream suite's default host.
fn get(path: &'static str) -> Req {
    Req { method: "GET", host: "example.com", path, headers: Vec::new() }
}

impl Req {
    fn host(self, host: &'static str) -> Req {
        Req { host, ..self }
    }

    fn method(self, method: &'static str) -> Req {
        Req { method, ..self }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.push((name, value));
        self
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The backend that answered, if one did.
    fn backend(&self) -> Option<&str> {
        self.body.lines().next().and_then(|line| line.strip_prefix("backend "))
    }

    /// The request line the backend received.
    fn request_line(&self) -> Option<&str> {
        self.backend().and(self.body.lines().nth(1))
    }

    /// The values of request header `name` (lower case) the backend received.
    fn request_header(&self, name: &str) -> Vec<&str> {
        self.body.lines().skip(2).filter_map(|line| line.strip_prefix(name)?.strip_prefix(": ")).collect()
    }

    /// The values of response header `name`.
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().map(|value| value.to_str().unwrap_or("?")).collect()
    }
}

/// What the upstream suite expects of an answer.
enum Expect {
    /// 200 from this backend.
    Backend(&'static str),
    /// This status from the proxy itself, no backend involved.
    Status(u16),
    /// A redirect with this status and Location, no backend involved.
    Redirect(u16, &'static str),
    /// 200 from this backend, which received this request line.
    Forwarded(&'static str, &'static str),
}

impl Expect {
    fn check(&self, answer: &Answer) -> Result<(), String> {
        let (status, backend, location, line) = match *self {
            Expect::Backend(backend) => (200, Some(backend), None, None),
            Expect::Status(status) => (status, None, None, None),
            Expect::Redirect(status, location) => (status, None, Some(location), None),
            Expect::Forwarded(backend, line) => (200, Some(backend), None, Some(line)),
        };
        let mut wrong = Vec::new();
        if answer.status != status {
            wrong.push(format!("status {} instead of {status}", answer.status));
        }
        if answer.backend() != backend {
            wrong.push(format!("backend {:?} instead of {backend:?}", answer.backend()));
        }
        if let Some(location) = location
            && answer.header("location") != [location]
        {
            wrong.push(format!("Location {:?} instead of {location:?}", answer.header("location")));
        }
        if let Some(line) = line
            && answer.request_line() != Some(line)
        {
            wrong.push(format!("backend got {:?} instead of {line:?}", answer.request_line()));
        }
        if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
    }
}
