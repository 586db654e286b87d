//! The agent (`--kubernetes`) against the API stand-in with the Gateway API
//! CRDs installed: an HTTPRoute on a Gateway of ours is served by the L7
//! proxy, and the status the agent writes back is what the spec asks; a
//! cross-namespace backendRef needs a ReferenceGrant, in traffic and in
//! status alike.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ingress_tests::agent::{AgentLog, AgentProcess, HTTP_PORT, NODE_NAME, agent_binary};
use ingress_tests::api_stand_in::{ApiStandIn, service_with_one_endpoint};
use ingress_tests::http;
use ingress_tests::lab::{Lab, LabSpec, NODE_IP};
use ingress_tests::netns::is_root;
use ingress_tests::pins::PinDir;
use ingress_userspace::gateway::GATEWAY_CONTROLLER;
use serde_json::{Value, json};

/// HTTPRoute apps/r on gw.test: `/` to apps/web, `/far` to backends/far.
fn route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "r", "namespace": "apps" },
        "spec": {
            "parentRefs": [{ "name": "gw", "namespace": "infra" }],
            "hostnames": ["gw.test"],
            "rules": [
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/far" } }], "backendRefs": [{ "name": "far", "namespace": "backends", "port": 80 }] },
                { "backendRefs": [{ "name": "web", "port": 80 }] },
            ],
        },
    })
}

/// `type=status/reason` of a condition list, in its order.
fn conditions(conditions: &Value) -> Vec<String> {
    let list = conditions.as_array().cloned().unwrap_or_default();
    list.iter().map(|c| format!("{}={}/{}", c["type"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or(""))).collect()
}

/// Retries `check` until it returns Ok, for up to 20 s; its last error otherwise.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() > Duration::from_secs(20) => bail!("{what}: {error:#}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn expect<T: PartialEq + std::fmt::Debug>(got: T, wanted: T) -> Result<()> {
    if got == wanted { Ok(()) } else { bail!("got {got:?}, wanted {wanted:?}") }
}

#[test]
fn an_http_route_is_served_and_its_status_written_back() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return Ok(());
    }
    let lab = Lab::build(LabSpec { pods: vec!["pod-a".into(), "pod-b".into()] })?;
    let pod_ip = |name: &str| lab.pod(name).map(|pod| pod.echo_addr().ip().to_string()).unwrap_or_default();
    let listener = lab.node().run(|| std::net::TcpListener::bind("127.0.0.1:0"))??;
    let api = ApiStandIn::serve_with_gateway_api(listener)?;
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE_NAME },
        "status": { "addresses": [{ "type": "InternalIP", "address": lab.node_ip().to_string() }] },
    }))?;
    for object in service_with_one_endpoint("apps", "web", "10.96.0.10", &pod_ip("pod-a"))
        .iter()
        .chain(&service_with_one_endpoint("backends", "far", "10.96.0.11", &pod_ip("pod-b"))) {
        api.apply(object)?;
    }
    api.apply(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": { "name": "ebpf-lb" }, "spec": { "controllerName": GATEWAY_CONTROLLER },
    }))?;
    api.apply(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": "gw", "namespace": "infra" },
        "spec": { "gatewayClassName": "ebpf-lb", "listeners": [{ "name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": { "namespaces": { "from": "All" } } }] },
    }))?;
    api.apply(&route())?;

    let pins = PinDir::unique("gateway-status");
    let log = std::env::temp_dir().join(format!("lb-gateway-status-{}.log", std::process::id()));
    let _agent = AgentProcess::spawn_watching(&agent_binary()?, &lab, api.kubeconfig(), pins.path(), &AgentLog::File(log.clone()))?;
    let proxy = SocketAddrV4::new(NODE_IP, HTTP_PORT);
    let get = |path: &str| http::get(lab.client(), proxy, "gw.test", path).map(|response| (response.status, response.body));
    let in_log = format!("the agent's log: {}", log.display());

    eventually(&format!("HTTP through the route ({in_log})"), || expect(get("/")?, (200, "pod-a\n".to_owned())))?;
    eventually(&format!("the Gateway's status ({in_log})"), || {
        let gateway = api.get("Gateway", "infra", "gw").unwrap_or_default();
        let listener = &gateway["status"]["listeners"][0];
        expect(conditions(&gateway["status"]["conditions"]), vec!["Accepted=True/Accepted".into(), "Programmed=True/Programmed".into()])?;
        expect((listener["name"].as_str(), listener["attachedRoutes"].as_i64()), (Some("http"), Some(1)))?;
        // The proxy listens on the node's addresses (the agent's --node-ip): the Gateway is reachable there.
        let addresses: Vec<Value> = lab.node_ips().iter().map(|ip| json!({ "type": "IPAddress", "value": ip.to_string() })).collect();
        expect(gateway["status"]["addresses"].clone(), Value::from(addresses))?;
        let class = api.get("GatewayClass", "", "ebpf-lb").unwrap_or_default();
        expect(conditions(&class["status"]["conditions"]), vec!["Accepted=True/Accepted".into()])
    })?;
    let route_status = |resolved: &str| {
        let route = api.get("HTTPRoute", "apps", "r").unwrap_or_default();
        let parent = &route["status"]["parents"][0];
        expect(parent["controllerName"].as_str(), Some(GATEWAY_CONTROLLER))?;
        expect(parent["parentRef"]["name"].as_str(), Some("gw"))?;
        expect(conditions(&parent["conditions"]), vec!["Accepted=True/Accepted".into(), format!("ResolvedRefs={resolved}")])
    };
    // backends/far without a ReferenceGrant: not permitted, 500 for its share.
    eventually(&format!("the route's status without a grant ({in_log})"), || route_status("False/RefNotPermitted"))?;
    expect(get("/far")?.0, 500)?;

    api.apply(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": { "name": "apps-routes", "namespace": "backends" },
        "spec": { "from": [{ "group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps" }], "to": [{ "group": "", "kind": "Service" }] },
    }))?;
    eventually(&format!("HTTP across namespaces with the grant ({in_log})"), || expect(get("/far")?, (200, "pod-b\n".to_owned())))?;
    eventually(&format!("the route's status with the grant ({in_log})"), || route_status("True/ResolvedRefs"))?;
    Ok(())
}
