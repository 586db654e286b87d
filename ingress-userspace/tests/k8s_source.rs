//! The API server source end to end: a real kube client against an in-process
//! API stand-in, its snapshots translated and reconciled into `FakeMaps` the
//! way the agent does. No cluster, no root, no eBPF.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use ingress_userspace::agent;
use ingress_userspace::dataplane::fake::FakeMaps;
use ingress_userspace::dataplane::plan::describe;
use ingress_userspace::k8s::events::ProblemEvents;
use ingress_userspace::k8s::{node, status, watch};
use ingress_userspace::manifests::Loaded;
use ingress_userspace::metrics::Metrics;
use ingress_userspace::model::NodeInfo;
use ingress_userspace::problem::Problem;
use serde_json::{Value, json};
use support::{ApiServer, Seen};
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const NODE: &str = "node-a";
/// Long enough for a few of kube's backoff steps (0.8 s, then doubling).
const PATIENCE: Duration = Duration::from_secs(15);

struct Agent {
    updates: channel::Receiver<Option<Arc<Loaded>>>,
    metrics: Arc<Metrics>,
    maps: FakeMaps,
    source: JoinHandle<()>,
    last: Option<Arc<Loaded>>,
    /// What the last programmed snapshot had wrong.
    problems: Vec<Problem>,
}

impl Agent {
    fn start(server: &ApiServer) -> Agent {
        let (snapshots, updates) = channel::channel(None);
        let metrics = Arc::new(Metrics::default());
        let source = tokio::spawn(watch::watch_cluster(server.client(), NODE.into(), metrics.clone(), snapshots));
        Agent {
            updates,
            metrics,
            maps: FakeMaps::default(),
            source,
            last: None,
            problems: Vec::new(),
        }
    }

    /// Waits for the next snapshot and programs it as the agent's loop does.
    async fn next(&mut self) {
        bounded("a snapshot", self.updates.changed()).await.unwrap();
        let loaded = self.updates.borrow_and_update().clone().expect("sources publish complete snapshots only");
        let configured = NodeInfo { name: NODE.into(), addresses: Vec::new() };
        let node = node::node_info(&configured, &loaded.snapshot);
        self.problems = agent::sync(&loaded, &node, &mut self.maps, &self.metrics).unwrap().problems;
        self.last = Some(loaded);
    }

    /// Programs snapshots until the maps hold `expected`.
    async fn until(&mut self, expected: &[&str]) {
        let converged = async {
            while self.programmed() != expected {
                self.next().await;
            }
        };
        if timeout(PATIENCE, converged).await.is_err() {
            panic!("maps never held {expected:#?}, last {:#?}", self.programmed());
        }
    }

    /// One line per frontend: `10.96.0.10:80/TCP -> 10.244.1.2:8080*`, `*` local.
    fn programmed(&self) -> Vec<String> {
        describe(&self.maps.contents)
            .iter()
            .map(|programmed| {
                let backends: Vec<String> = programmed
                    .backends
                    .iter()
                    .map(|(_, backend)| {
                        let backend = backend.as_ref().expect("consistent maps");
                        format!("{}{}", backend.addr, if backend.local { "*" } else { "" })
                    })
                    .collect();
                format!("{} -> {}", programmed.frontend, backends.join(" "))
            })
            .collect()
    }

    fn snapshot(&self) -> &ingress_userspace::manifests::Snapshot {
        &self.last.as_ref().expect("a snapshot was programmed").snapshot
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.source.abort();
    }
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(PATIENCE, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls a condition nothing announces (a metric, a request seen).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    bounded(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn lists(seen: &[Seen], path: &str) -> usize {
    seen.iter()
        .filter(|request| request.method == Method::GET && request.path == path && !request.query.contains_key("watch"))
        .count()
}

fn service(name: &str, cluster_ip: &str, port: i64, node_port: Option<i64>) -> Value {
    let mut port = json!({"name": "http", "port": port, "protocol": "TCP"});
    let mut spec = json!({"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip]});
    if let Some(node_port) = node_port {
        port["nodePort"] = json!(node_port);
        spec["type"] = json!("NodePort");
    }
    spec["ports"] = json!([port]);
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// `endpoints`: (pod IP, node name).
fn slice(name: &str, service: &str, endpoints: &[(&str, &str)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": node}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

fn node(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}})
}

fn pod(name: &str, labels: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "labels": labels, "annotations": annotations},
           "status": {"podIP": "10.244.1.9", "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn secret(name: &str, type_: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "type": type_,
           "data": {"tls.crt": "", "tls.key": ""}})
}

fn ingress(name: &str, tls_secret: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": "default"},
           "spec": {"ingressClassName": "ebpf-lb", "tls": [{"hosts": ["web.example"], "secretName": tls_secret}],
                    "rules": [{"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

/// A cluster with one Service on two nodes, and objects the selectors and
/// the Secret filter must keep out.
async fn cluster() -> ApiServer {
    let server = ApiServer::start().await;
    server.apply(node(NODE, "192.168.0.2"));
    server.apply(node("node-b", "192.168.0.3"));
    server.apply(service("web", "10.96.0.10", 80, Some(30080)));
    server.apply(slice("web-1", "web", &[("10.244.1.2", NODE), ("10.244.2.2", "node-b")]));
    server.apply(pod("routed", json!({"microservice": "true"}), json!({})));
    server.apply(pod("plain", json!({"app": "x"}), json!({})));
    server.apply(ingress("web", "web-tls"));
    server.apply(secret("web-tls", "kubernetes.io/tls"));
    server.apply(secret("other-tls", "kubernetes.io/tls"));
    server.apply(secret("web-tls-opaque", "Opaque"));
    server
}

const WEB: [&str; 2] = [
    "10.96.0.10:80/TCP -> 10.244.1.2:8080* 10.244.2.2:8080",
    "192.168.0.2:30080/TCP -> 10.244.1.2:8080* 10.244.2.2:8080",
];

#[tokio::test]
async fn create_modify_and_delete_change_the_maps() {
    let server = cluster().await;
    let mut agent = Agent::start(&server);
    agent.until(&WEB).await;
    assert!(agent.metrics.is_ready());

    // Only this node, pods labelled microservice=true, and TLS Secrets an Ingress names.
    let snapshot = agent.snapshot();
    let names = |objects: Vec<&Option<String>>| objects.into_iter().flatten().cloned().collect::<Vec<_>>();
    assert_eq!(names(snapshot.nodes.iter().map(|n| &n.metadata.name).collect()), [NODE]);
    assert_eq!(names(snapshot.pods.iter().map(|p| &p.metadata.name).collect()), ["routed"]);
    assert_eq!(names(snapshot.secrets.iter().map(|s| &s.metadata.name).collect()), ["web-tls"]);
    assert_eq!(snapshot.ingresses.len(), 1);

    server.bookmark();
    server.apply(slice("web-1", "web", &[("10.244.1.2", NODE), ("10.244.3.2", NODE)]));
    agent
        .until(&[
            "10.96.0.10:80/TCP -> 10.244.1.2:8080* 10.244.3.2:8080*",
            "192.168.0.2:30080/TCP -> 10.244.1.2:8080* 10.244.3.2:8080*",
        ])
        .await;

    server.apply(service("api", "10.96.0.11", 81, None));
    server.apply(slice("api-1", "api", &[("10.244.2.7", "node-b")]));
    server.apply(service("web", "10.96.0.10", 8000, None));
    agent
        .until(&[
            "10.96.0.10:8000/TCP -> 10.244.1.2:8080* 10.244.3.2:8080*",
            "10.96.0.11:81/TCP -> 10.244.2.7:8080",
        ])
        .await;

    server.bookmark();
    server.delete("EndpointSlice", "default", "web-1");
    agent.until(&["10.96.0.10:8000/TCP -> ", "10.96.0.11:81/TCP -> 10.244.2.7:8080"]).await;
    server.delete("Service", "default", "web");
    agent.until(&["10.96.0.11:81/TCP -> 10.244.2.7:8080"]).await;

    // Bookmarks included, every watch event was understood.
    assert!(!agent.metrics.render(&[]).contains("lb_api_errors_total{"), "{}", agent.metrics.render(&[]));
    agent.maps.check_consistent().unwrap();
}

#[tokio::test]
async fn nothing_is_published_until_every_resource_is_listed() {
    let server = cluster().await;
    server.fail("ingressclasses", true);
    let mut agent = Agent::start(&server);
    let metrics = agent.metrics.clone();
    eventually("a failed IngressClass list", || metrics.api_errors("ingressclasses") > 0).await;
    assert!(agent.updates.borrow().is_none());
    assert!(!agent.metrics.is_ready());

    server.fail("ingressclasses", false);
    agent.until(&WEB).await;
    assert!(agent.metrics.is_ready());
    assert!(
        agent.metrics.render(&[]).lines().any(|line| line.starts_with("lb_api_errors_total{resource=\"ingressclasses\"} ")),
        "{}",
        agent.metrics.render(&[])
    );
}

#[tokio::test]
async fn a_disconnect_keeps_the_programmed_state_and_converges_on_return() {
    let server = cluster().await;
    let mut agent = Agent::start(&server);
    agent.until(&WEB).await;

    server.go_away().await;
    let metrics = agent.metrics.clone();
    eventually("the watches to fail", || metrics.api_errors("services") > 0).await;
    // Changed while the agent cannot see it.
    server.apply(slice("web-1", "web", &[("10.244.1.2", NODE)]));
    assert!(!agent.updates.has_changed().unwrap(), "nothing new is published while the server is away");
    assert_eq!(agent.programmed(), WEB);

    server.come_back().await;
    agent
        .until(&["10.96.0.10:80/TCP -> 10.244.1.2:8080*", "192.168.0.2:30080/TCP -> 10.244.1.2:8080*"])
        .await;
}

#[tokio::test]
async fn a_410_relists_and_converges() {
    let server = cluster().await;
    let mut agent = Agent::start(&server);
    agent.until(&WEB).await;
    let listed = lists(&server.seen(), "/api/v1/services");

    // An expired watch on a live connection: the same contents, listed again.
    server.expire();
    eventually("a re-list", || lists(&server.seen(), "/api/v1/services") > listed).await;
    assert_eq!(agent.programmed(), WEB);

    // Deleted while the watch was gone, with the history compacted meanwhile:
    // only a re-list can tell.
    let listed = lists(&server.seen(), "/api/v1/services");
    server.go_away().await;
    server.delete("EndpointSlice", "default", "web-1");
    server.delete("Service", "default", "web");
    server.apply(service("api", "10.96.0.11", 81, None));
    server.compact();
    server.come_back().await;
    agent.until(&["10.96.0.11:81/TCP -> "]).await;
    assert!(lists(&server.seen(), "/api/v1/services") > listed);
    assert!(agent.metrics.api_errors("services") > 0);
}

#[tokio::test]
async fn malformed_objects_are_reported_and_the_rest_is_programmed() {
    let server = cluster().await;
    let mut zero = service("zero", "10.96.0.12", 0, None);
    zero["spec"]["ports"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "tls", "port": 443, "protocol": "TCP"}));
    server.apply(zero);
    server.apply(slice("orphan-1", "orphan", &[("10.244.2.8", "node-b")]));
    server.apply(pod("garbled", json!({"microservice": "true"}), json!({"publicPaths": "not a PORT:PATH list,,:"})));
    let mut agent = Agent::start(&server);
    let expected = [
        "10.96.0.10:80/TCP -> 10.244.1.2:8080* 10.244.2.2:8080",
        "10.96.0.12:443/TCP -> ",
        "192.168.0.2:30080/TCP -> 10.244.1.2:8080* 10.244.2.2:8080",
    ];
    agent.until(&expected).await;

    let problems = agent.problems.clone();
    let kinds: Vec<&str> = problems.iter().map(|problem| problem.kind.label()).collect();
    assert_eq!(kinds, ["unknown_service", "invalid_port"], "{problems:#?}");
    assert!(agent.metrics.problems("invalid_port") > 0);
    assert!(agent.metrics.problems("unknown_service") > 0);
    let pods = &agent.snapshot().pods;
    assert!(pods.iter().any(|pod| pod.metadata.name.as_deref() == Some("garbled")));

    // One Warning Event per problem, on the object (uid included), not repeated.
    let mut events = ProblemEvents::new(server.client(), NODE, agent.metrics.clone());
    bounded("events", events.publish(agent.snapshot(), &problems)).await.unwrap();
    bounded("events again", events.publish(agent.snapshot(), &problems)).await.unwrap();
    let posted: Vec<Value> = server
        .seen()
        .into_iter()
        .filter(|request| request.method == Method::POST && request.path.ends_with("/events"))
        .filter_map(|request| request.body)
        .collect();
    let regarding: Vec<(&str, &str, &str)> = posted
        .iter()
        .map(|event| {
            let field = |name: &str| event["regarding"][name].as_str().unwrap_or("");
            (field("kind"), field("uid"), event["reason"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        regarding,
        [("EndpointSlice", "uid-default-orphan-1", "UnknownService"), ("Service", "uid-default-zero", "InvalidPort")]
    );
    assert_eq!(agent.metrics.api_errors("events"), 0);
}

#[tokio::test]
async fn ingress_status_gets_the_node_addresses_once() {
    let server = cluster().await;
    let mut agent = Agent::start(&server);
    agent.until(&WEB).await;
    let addresses = vec!["192.168.0.2".parse().unwrap()];
    let ingresses = agent.snapshot().ingresses.clone();
    bounded("a status write", status::publish(server.client(), ingresses, addresses.clone(), agent.metrics.clone())).await;

    let writes = |server: &ApiServer| -> Vec<Value> {
        let seen = server.seen().into_iter();
        let puts = seen.filter(|request| request.method == Method::PUT);
        puts.map(|request| (request.path, request.body.unwrap()["status"].clone()))
            .inspect(|(path, _)| assert_eq!(path, "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web/status"))
            .map(|(_, status)| status)
            .collect()
    };
    assert_eq!(writes(&server), [json!({"loadBalancer": {"ingress": [{"ip": "192.168.0.2"}]}})]);

    // The write comes back through the watch; with it, nothing is left to write.
    bounded("the status in a snapshot", async {
        while agent.snapshot().ingresses[0].status.is_none() {
            agent.next().await;
        }
    })
    .await;
    let ingresses = agent.snapshot().ingresses.clone();
    bounded("no status write", status::publish(server.client(), ingresses, addresses, agent.metrics.clone())).await;
    assert_eq!(writes(&server).len(), 1);
    assert_eq!(agent.metrics.api_errors("ingresses/status"), 0);
}
