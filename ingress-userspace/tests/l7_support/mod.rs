//! Loopback harness for the L7 proxy tests: echo backends, a route table
//! built from manifests written as JSON, the proxy on 127.0.0.1:0 and small
//! HTTP clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_userspace::l7::options::ProxyOptions;
use ingress_userspace::l7::proxy;
use ingress_userspace::l7::{L7Options, RouteTable, SharedRoutes, shared_routes};
use ingress_userspace::manifests::Snapshot;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const CLASS: &str = "ours";

/// An HTTP/1.1 backend answering every request with JSON describing it and
/// naming the backend. `/sleep` answers after 2 s; an `Upgrade` request is
/// switched and then echoes the bytes it receives.
pub async fn echo_backend(name: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let name = name.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| echo(name.clone(), request));
                let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let _ = connection.with_upgrades().await;
            });
        }
    });
    addr
}

async fn echo(name: String, mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/sleep" {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if request.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut upgraded = TokioIo::new(upgraded);
            let mut buffer = [0u8; 1024];
            while let Ok(count @ 1..) = upgraded.read(&mut buffer).await {
                if upgraded.write_all(&buffer[..count]).await.is_err() {
                    return;
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::default());
        return Ok(response.unwrap());
    }
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
        .collect();
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let body = request.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    let description = json!({
        "backend": name,
        "method": method,
        "path": path,
        "host": headers.get("host").cloned().unwrap_or(Value::Null),
        "headers": headers,
        "body_length": body.len(),
    });
    let response = Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(description.to_string())));
    Ok(response.unwrap())
}

/// A TCP port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A Service `name` (port 80, named `http`) whose endpoints are `endpoints`
/// (ready or not), one EndpointSlice per endpoint since their ports differ.
pub fn add_service(snapshot: &mut Snapshot, name: &str, endpoints: &[(SocketAddr, bool)]) {
    let service = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    });
    snapshot.services.push(std::sync::Arc::new(serde_json::from_value(service).unwrap()));
    for (index, (addr, ready)) in endpoints.iter().enumerate() {
        let slice = json!({
            "metadata": {
                "name": format!("{name}-{index}"),
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": addr.port()}],
            "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": ready}}],
        });
        snapshot.endpoint_slices.push(std::sync::Arc::new(serde_json::from_value(slice).unwrap()));
    }
}

/// An Ingress of our class; `paths` are (host, path, pathType, service).
pub fn add_ingress(snapshot: &mut Snapshot, name: &str, annotations: Value, paths: &[(&str, &str, &str, &str)]) {
    if snapshot.ingress_classes.is_empty() {
        let class = json!({"metadata": {"name": CLASS}, "spec": {"controller": ingress_userspace::l7::INGRESS_CONTROLLER}});
        snapshot.ingress_classes.push(serde_json::from_value(class).unwrap());
    }
    let rules: Vec<Value> = paths
        .iter()
        .map(|(host, path, path_type, service)| {
            json!({"host": host, "http": {"paths": [{
                "path": path,
                "pathType": path_type,
                "backend": {"service": {"name": service, "port": {"number": 80}}},
            }]}})
        })
        .collect();
    let ingress = json!({
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"ingressClassName": CLASS, "rules": rules},
    });
    snapshot.ingresses.push(serde_json::from_value(ingress).unwrap());
}

pub fn table(snapshot: &Snapshot) -> RouteTable {
    let (table, problems) = RouteTable::build(snapshot, &L7Options::default());
    assert!(problems.is_empty(), "{problems:?}");
    table
}

/// Starts the proxy on 127.0.0.1:0; it stops when the test's runtime does.
pub async fn start_proxy(routes: SharedRoutes, options: ProxyOptions) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy::serve(listener, routes, options));
    addr
}

pub fn routes(snapshot: &Snapshot) -> SharedRoutes {
    shared_routes(table(snapshot))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a new connection.
pub async fn send(proxy: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    read_reply(sender.send_request(request).await.unwrap()).await
}

/// One HTTP/2 request with prior knowledge (h2c) on a new connection.
pub async fn send_h2c(proxy: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    read_reply(sender.send_request(request).await.unwrap()).await
}

pub async fn read_reply(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    request("GET", host, path, "")
}

pub fn request(method: &str, host: &str, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// Writes raw bytes and reads until the proxy closes or 2 s pass.
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_until_closed(&mut stream).await
}

pub async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    // A timeout is not a failure here: the caller judges what was received.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}
