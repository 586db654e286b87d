//! An in-process stand-in for the Kubernetes API server: list (with pages),
//! watch (chunked JSON lines from a resourceVersion, 410 when it is too
//! old), get, create, replace and patch, over plain HTTP on a listener the
//! test binds (in the node namespace, so the agent reaches it on loopback).
//! Tests drive it to churn objects, cut every watch, expire resourceVersions
//! and go away altogether, as a real control plane does under load.

pub mod store;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::lab::ECHO_PORT;

use store::{Change, PatchError, Resource, Selectors, Store, expired_line};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Changes a slow watch may fall behind before it is ended (the client then
/// resumes from its last resourceVersion, as after any cut).
const WATCH_BACKLOG: usize = 65_536;

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch.
    cuts: watch::Sender<u64>,
    /// While set, connections are dropped as soon as they are accepted and
    /// requests on open ones fail: an API server that went away.
    down: AtomicBool,
    /// Creates, replaces and patches the agent sent (Events, Ingress status).
    writes: AtomicU64,
}

/// A ClusterIP Service on port 80 ("http") with one ready endpoint on
/// `pod_ip`'s echo server, and its EndpointSlice: objects to `apply`.
pub fn service_with_one_endpoint(namespace: &str, name: &str, cluster_ip: &str, pod_ip: &str) -> [Value; 2] {
    [
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": namespace },
            "spec": { "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [{ "name": "http", "protocol": "TCP", "port": 80, "targetPort": ECHO_PORT }] },
        }),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": format!("{name}-1"), "namespace": namespace, "labels": { "kubernetes.io/service-name": name } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "protocol": "TCP", "port": ECHO_PORT }],
            "endpoints": [{ "addresses": [pod_ip], "conditions": { "ready": true } }],
        }),
    ]
}

pub struct ApiStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ApiStandIn {
    /// Serves on `listener` (already bound, e.g. inside a lab namespace) and
    /// writes a kubeconfig that points at it. A cluster without the Gateway
    /// API CRDs: their URLs answer 404.
    pub fn serve(listener: std::net::TcpListener) -> Result<ApiStandIn> {
        Self::serve_store(listener, Store::default())
    }

    /// As `serve`, with the Gateway API CRDs installed.
    pub fn serve_with_gateway_api(listener: std::net::TcpListener) -> Result<ApiStandIn> {
        Self::serve_store(listener, Store::with_gateway_api())
    }

    fn serve_store(listener: std::net::TcpListener, store: Store) -> Result<ApiStandIn> {
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("api-stand-in")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changes: broadcast::channel(WATCH_BACKLOG).0,
            cuts: watch::channel(0).0,
            down: AtomicBool::new(false),
            writes: AtomicU64::new(0),
        });
        listener.set_nonblocking(true)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(accept_loop(listener, shared.clone()));
        let kubeconfig = std::env::temp_dir().join(format!("lb-api-stand-in-{}-{}.kubeconfig", std::process::id(), crate::pins::next_id()));
        std::fs::write(&kubeconfig, kubeconfig_text(addr)).with_context(|| format!("writing {}", kubeconfig.display()))?;
        Ok(ApiStandIn { shared, addr, kubeconfig, runtime: Some(runtime) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates or replaces an object (any type the stand-in serves).
    pub fn apply(&self, object: &impl serde::Serialize) -> Result<()> {
        let object = serde_json::to_value(object)?;
        apply_locked(&mut self.store(), &self.shared.changes, object).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// The stored object, as the agent would read it.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = store::resource_of_kind(kind)?;
        self.store().get(resource, namespace, name).cloned()
    }

    /// Every stored object of `kind`, in all namespaces (e.g. the Events
    /// the agent created).
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let Some(resource) = store::resource_of_kind(kind) else { return Vec::new() };
        let list = self.store().list(resource, None, &Selectors::parse(None, None), None, 0);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<()> {
        let resource = store::resource_of_kind(kind).with_context(|| format!("kind {kind}"))?;
        let mut store = self.store();
        let change = store.delete(resource, namespace, name).with_context(|| format!("no {kind} {namespace}/{name}"))?;
        let _ = self.shared.changes.send(change);
        Ok(())
    }

    /// Ends every open watch; clients resume from their last resourceVersion.
    pub fn cut_watches(&self) {
        self.shared.cuts.send_modify(|generation| *generation += 1);
    }

    /// Compacts the history and cuts every watch, so every client's resume
    /// gets 410 Gone and it has to list again.
    pub fn expire_watches(&self) {
        self.store().compact();
        self.cut_watches();
    }

    /// Takes the API server away (`true`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.cut_watches();
        }
    }

    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }
}

impl Drop for ApiStandIn {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn kubeconfig_text(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster: {{server: \"http://{addr}\"}}\n\
         users:\n- name: agent\n  user: {{}}\ncontexts:\n- name: stand-in\n  context: {{cluster: stand-in, user: agent}}\n\
         current-context: stand-in\n"
    )
}

/// Applies under the store's lock and publishes under it too, so a watch that
/// reads the history and subscribes under the same lock misses nothing.
fn apply_locked(store: &mut Store, changes: &broadcast::Sender<Change>, object: Value) -> Result<Value, String> {
    let change = store.apply(object)?;
    let stored = change.object.clone();
    let _ = changes.send(change);
    Ok(stored)
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        if shared.down.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// What a request's path names.
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    /// `status` in `.../name/status`.
    subresource: Option<String>,
}

fn parse_target(store: &Store, path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix_len, rest) = match segments.first() {
        Some(&"api") => (2, segments.get(2..)?),
        Some(&"apis") => (3, segments.get(3..)?),
        _ => return None,
    };
    let prefix = segments[..prefix_len].join("/");
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(namespace.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, subresource] => (*plural, Some(name.to_string()), Some(subresource.to_string())),
        _ => return None,
    };
    let resource = store.served(&prefix, plural)?;
    Some(Target { resource, namespace, name, subresource })
}

fn query(request: &Request<Incoming>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed_unsync())
        .expect("a valid response")
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code.as_u16(), "message": message });
    json_response(code, &status)
}

/// Requests fail while the stand-in is down: hyper drops the connection.
#[derive(Debug)]
struct Away;

impl std::fmt::Display for Away {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the API server stand-in is down")
    }
}

impl std::error::Error for Away {}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Away> {
    if shared.down.load(Ordering::SeqCst) {
        return Err(Away);
    }
    let target = parse_target(&shared.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), request.uri().path());
    let Some(target) = target else {
        return Ok(status_response(StatusCode::NOT_FOUND, "NotFound", request.uri().path()));
    };
    let query = query(&request);
    let method = request.method().clone();
    if method == Method::GET {
        return Ok(read(&shared, &target, &query));
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Err(Away),
    };
    shared.writes.fetch_add(1, Ordering::Relaxed);
    Ok(write(&shared, &target, &method, &body))
}

fn read(shared: &Arc<Shared>, target: &Target, query: &HashMap<String, String>) -> Response<Body> {
    let store = shared.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let namespace = target.namespace.as_deref();
    if let Some(name) = &target.name {
        return match store.get(target.resource, namespace.unwrap_or(""), name) {
            Some(object) => json_response(StatusCode::OK, object),
            None => status_response(StatusCode::NOT_FOUND, "NotFound", &format!("{} {name} not found", target.resource.plural)),
        };
    }
    let selectors = Selectors::parse(query.get("labelSelector").map(String::as_str), query.get("fieldSelector").map(String::as_str));
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let since = query.get("resourceVersion").and_then(|rv| rv.parse().ok()).unwrap_or(store.revision());
        let timeout = query.get("timeoutSeconds").and_then(|s| s.parse().ok()).map_or(Duration::from_secs(300), Duration::from_secs);
        let backlog = store.changes_since(target.resource, since, &selectors);
        let live = shared.changes.subscribe();
        drop(store);
        let lines = match backlog {
            Ok(changes) => watch_lines(changes, live, shared.cuts.subscribe(), target.resource, selectors, timeout),
            Err(expired) => stream_body(futures::stream::iter([Ok(Frame::data(Bytes::from(expired_line(&expired) + "\n")))])),
        };
        return Response::builder().header("content-type", "application/json").body(lines).expect("a valid response");
    }
    let limit = query.get("limit").and_then(|l| l.parse().ok());
    let offset = query.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    json_response(StatusCode::OK, &store.list(target.resource, namespace, &selectors, limit, offset))
}

fn write(shared: &Arc<Shared>, target: &Target, method: &Method, body: &Bytes) -> Response<Body> {
    let mut store = shared.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let namespace = target.namespace.clone().unwrap_or_default();
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status_response(StatusCode::BAD_REQUEST, "BadRequest", "the body is not JSON");
    };
    if *method == Method::PATCH {
        // Every patch is taken as a merge patch: the agent sends no other kind.
        let name = target.name.clone().unwrap_or_default();
        return match store.patch(target.resource, &namespace, &name, &object, target.subresource.as_deref()) {
            Ok(change) => {
                let stored = change.object.clone();
                let _ = shared.changes.send(change);
                json_response(StatusCode::OK, &stored)
            }
            Err(PatchError::NotFound) => status_response(StatusCode::NOT_FOUND, "NotFound", &name),
            Err(PatchError::Invalid(error)) => status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &error),
        };
    }
    object["kind"] = json!(target.resource.kind);
    if target.resource.namespaced && object["metadata"]["namespace"].is_null() {
        object["metadata"]["namespace"] = json!(namespace);
    }
    if object["metadata"]["name"].is_null() {
        let generated = format!("{}{}", object["metadata"]["generateName"].as_str().unwrap_or("generated-"), store.revision() + 1);
        object["metadata"]["name"] = json!(generated);
    }
    let created = *method == Method::POST;
    match apply_locked(&mut store, &shared.changes, object) {
        Ok(stored) => json_response(if created { StatusCode::CREATED } else { StatusCode::OK }, &stored),
        Err(error) => status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &error),
    }
}

type FrameResult = Result<Frame<Bytes>, Infallible>;

fn stream_body(frames: impl futures::Stream<Item = FrameResult> + Send + 'static) -> Body {
    StreamBody::new(frames).boxed_unsync()
}

/// The backlog, then live changes, until the watch is cut, times out or
/// falls too far behind.
fn watch_lines(
    backlog: Vec<Change>,
    live: broadcast::Receiver<Change>,
    cuts: watch::Receiver<u64>,
    resource: Resource,
    selectors: Selectors,
    timeout: Duration,
) -> Body {
    use futures::StreamExt;
    let line = |change: &Change| -> FrameResult { Ok(Frame::data(Bytes::from(change.watch_line() + "\n"))) };
    let backlog = futures::stream::iter(backlog.iter().map(line).collect::<Vec<_>>());
    let deadline = tokio::time::Instant::now() + timeout;
    let live = futures::stream::unfold((live, cuts), move |(mut live, mut cuts)| {
        let selectors = selectors.clone();
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = cuts.changed() => return None,
                    change = live.recv() => match change {
                        Ok(change) if change.resource == resource && selectors.matches(&change.object) => {
                            return Some((line(&change), (live, cuts)));
                        }
                        Ok(_) => continue,
                        Err(_) => return None,
                    },
                }
            }
        }
    });
    stream_body(backlog.chain(live))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources_namespaces_and_objects() {
        let cases = [
            ("/api/v1/services", Some(("services", None, None))),
            ("/api/v1/namespaces/default/services/web", Some(("services", Some("default"), Some("web")))),
            ("/apis/discovery.k8s.io/v1/endpointslices", Some(("endpointslices", None, None))),
            ("/apis/networking.k8s.io/v1/namespaces/ns/ingresses/site/status", Some(("ingresses", Some("ns"), Some("site")))),
            ("/apis/events.k8s.io/v1/namespaces/ns/events", Some(("events", Some("ns"), None))),
            ("/api/v1/nodes/lab-node", Some(("nodes", None, Some("lab-node")))),
            ("/apis/gateway.networking.k8s.io/v1/namespaces/ns/httproutes/r/status", Some(("httproutes", Some("ns"), Some("r")))),
            ("/api/v1/namespaces", Some(("namespaces", None, None))),
            ("/apis/apps/v1/deployments", None),
            ("/healthz", None),
        ];
        for (path, expected) in cases {
            let parsed = parse_target(&Store::with_gateway_api(), path).map(|t| (t.resource.plural, t.namespace, t.name));
            let expected = expected.map(|(plural, ns, name): (&str, Option<&str>, Option<&str>)| (plural, ns.map(String::from), name.map(String::from)));
            assert_eq!(parsed, expected, "{path}");
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("metadata.name%3Dlab-node"), "metadata.name=lab-node");
        assert_eq!(percent_decode("a%2Cb+c%zz"), "a,b c%zz");
    }
}
