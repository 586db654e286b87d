//! The nginx annotations' behaviours through the real proxy on loopback:
//! an Ingress with the annotations, a Service whose endpoint is a loopback
//! upstream that says who it is, what it got and how much body it read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::networking::v1::Ingress;
use tokio::net::{TcpListener, TcpStream};

use crate::l7::endpoints::tests::{service, slice};
use crate::l7::options::ProxyOptions;
use crate::l7::proxy::serve;
use crate::l7::table::tests::{class, ingress, with_annotations};
use crate::l7::{INGRESS_CONTROLLER, L7Options, RouteTable, shared_routes};
use crate::manifests::Snapshot;

/// Answers `NAME METHOD PATH_AND_QUERY BODY_BYTES`; a path starting with
/// `/slow` is answered after 3 s.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| async move {
                if request.uri().path().starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let line = format!("{name} {} {}", request.method(), request.uri());
                let body = request.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(format!("{line} {}", body.len())))))
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

/// The proxy serving `ingresses`, whose backends are `svc-main` and
/// `svc-canary` (loopback upstreams answering as "main" and "canary").
async fn proxy(ingresses: Vec<Ingress>) -> SocketAddr {
    let mut snapshot = Snapshot {
        ingresses,
        ingress_classes: vec![class("ours", INGRESS_CONTROLLER, false)],
        ..Snapshot::default()
    };
    for name in ["main", "canary"] {
        let port = i32::from(upstream(name).await.port());
        snapshot.services.push(service(&format!("svc-{name}"), &[("http", 80)]).into());
        snapshot.endpoint_slices.push(slice(&format!("svc-{name}"), &[("http", port)], &[("127.0.0.1", true)]).into());
    }
    let (table, problems) = RouteTable::build(&snapshot, &L7Options::default());
    assert!(problems.is_empty(), "{problems:?}");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared_routes(table), ProxyOptions::default()));
    addr
}

fn web(annotations: &[(&str, &str)]) -> Ingress {
    with_annotations(ingress("web", 0, &[("h", "/", "Prefix", "svc-main")]), annotations)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send<B>(proxy: SocketAddr, request: Request<B>) -> Answer
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::builder().uri(uri).header("host", "h").body(Full::default()).unwrap()
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn redirects_like_nginx() {
    type Annotations = &'static [(&'static str, &'static str)];
    // (annotations, request, status, Location)
    let cases: &[(Annotations, &str, u16, Option<&str>)] = &[
        (&[("force-ssl-redirect", "true")], "/cart?id=7", 308, Some("https://h/cart?id=7")),
        (&[("permanent-redirect", "https://new.example/")], "/anything", 301, Some("https://new.example/")),
        (&[("temporal-redirect", "/maintenance")], "/anything", 302, Some("/maintenance")),
        (&[("app-root", "/app1")], "/", 302, Some("http://h/app1")),
        (&[("app-root", "/app1")], "/other", 200, None),
        (&[("ssl-redirect", "true")], "/no-tls-for-h", 200, None),
    ];
    for (annotations, uri, status, location) in cases {
        let proxy = proxy(vec![web(annotations)]).await;
        let answer = send(proxy, get(uri)).await;
        assert_eq!(answer.status.as_u16(), *status, "{annotations:?} {uri}: {}", answer.body);
        assert_eq!(header(&answer, "location"), *location, "{annotations:?} {uri}");
    }
}

#[tokio::test]
async fn proxy_body_size_refuses_a_declared_and_a_streamed_body_over_it() {
    let proxy = proxy(vec![web(&[("proxy-body-size", "1k")])]).await;
    let post = |body: Vec<u8>| Request::post("/upload").header("host", "h").body(Full::new(Bytes::from(body))).unwrap();
    assert_eq!(send(proxy, post(vec![b'x'; 1024])).await.body, "main POST /upload 1024");
    assert_eq!(send(proxy, post(vec![b'x'; 1025])).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked: no length to judge up front, refused once 1k has gone by.
    let chunks = (0..4).map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; 512]))));
    let streamed = Request::post("/upload").header("host", "h").body(StreamBody::new(futures::stream::iter(chunks))).unwrap();
    assert_eq!(send(proxy, streamed).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn proxy_read_timeout_answers_504_when_the_upstream_is_slower() {
    let proxy = proxy(vec![web(&[("proxy-read-timeout", "1")])]).await;
    let started = Instant::now();
    let answer = send(proxy, get("/slow")).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test]
async fn source_ranges_refuse_clients_outside_with_403() {
    for (ranges, status) in [("10.0.0.0/8", StatusCode::FORBIDDEN), ("10.0.0.0/8, 127.0.0.0/8", StatusCode::OK)] {
        for annotation in ["whitelist-source-range", "allowlist-source-range"] {
            let proxy = proxy(vec![web(&[(annotation, ranges)])]).await;
            assert_eq!(send(proxy, get("/")).await.status, status, "{annotation}: {ranges}");
        }
    }
}

#[tokio::test]
async fn a_canary_ingress_takes_its_weight_and_the_requests_its_header_names() {
    let canary = with_annotations(
        ingress("web-canary", 0, &[("h", "/", "Prefix", "svc-canary")]),
        &[("canary", "true"), ("canary-weight", "20"), ("canary-by-header", "x-canary")],
    );
    let proxy = proxy(vec![web(&[]), canary]).await;
    let mut canary_answers = 0;
    for _ in 0..50 {
        let body = send(proxy, get("/")).await.body;
        canary_answers += usize::from(body.starts_with("canary "));
    }
    assert_eq!(canary_answers, 10);
    for (value, expected) in [("always", "canary GET / 0"), ("never", "main GET / 0")] {
        let request = Request::get("/").header("host", "h").header("x-canary", value).body(Full::<Bytes>::default()).unwrap();
        assert_eq!(send(proxy, request).await.body, expected, "x-canary: {value}");
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_and_forwarded_answers_carry_the_headers() {
    let proxy = proxy(vec![web(&[("enable-cors", "true"), ("cors-allow-origin", "https://app.example")])]).await;
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api")
        .header("host", "h")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .body(Full::<Bytes>::default())
        .unwrap();
    let answer = send(proxy, preflight).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(header(&answer, "access-control-allow-methods"), Some("GET, PUT, POST, DELETE, PATCH, OPTIONS"));
    assert_eq!(header(&answer, "access-control-max-age"), Some("1728000"));
    let request = Request::get("/api").header("host", "h").header("origin", "https://app.example").body(Full::<Bytes>::default()).unwrap();
    let answer = send(proxy, request).await;
    assert_eq!(answer.body, "main GET /api 0");
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(header(&answer, "access-control-allow-credentials"), Some("true"));
    let stranger = Request::get("/api").header("host", "h").header("origin", "https://evil.example").body(Full::<Bytes>::default()).unwrap();
    assert_eq!(header(&send(proxy, stranger).await, "access-control-allow-origin"), None);
}
