//! Real TCP and UDP through the real programs: a lab of network namespaces,
//! the agent programming it from a manifest directory, and edits to that
//! directory applied while traffic flows.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ingress_tests::agent::{InProcessAgent, ManifestDir, examples_lab, ipv4_backend_count, wait_for_maps};
use ingress_tests::{Lab, NetNs, Tally, TcpSession, tcp_request, udp_request};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ECHO_PODS: [&str; 3] = ["pod-a", "pod-b", "pod-c"];

fn toolbox(lab: &Lab) -> &NetNs {
    &lab.pod("toolbox").unwrap().ns
}

fn tcp_tally(from: &NetNs, to: SocketAddrV4, connections: usize) -> Tally {
    let mut tally = Tally::new();
    for _ in 0..connections {
        tally.record(&tcp_request(from, to));
    }
    tally
}

/// The example EndpointSlice with its endpoints replaced.
fn endpoint_slice(pods: &[(&str, Ipv4Addr)]) -> String {
    let mut yaml = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-abc\n  namespace: default\n  labels:\n    kubernetes.io/service-name: echo\naddressType: IPv4\nports:\n  - name: tcp\n    port: 8080\n    protocol: TCP\n  - name: udp\n    port: 8080\n    protocol: UDP\nendpoints:\n",
    );
    for (name, ip) in pods {
        yaml += &format!("  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}\n    nodeName: lab-node\n    targetRef: {{kind: Pod, name: {name}, namespace: default}}\n");
    }
    yaml
}

fn pod_ip(lab: &Lab, name: &str) -> Ipv4Addr {
    lab.pod(name).unwrap().ip
}

/// Finds the file in the examples that holds the IPv4 EndpointSlice, to replace it.
fn slice_file(dir: &ManifestDir) -> String {
    std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            text.contains("kind: EndpointSlice") && text.contains("addressType: IPv4")
        })
        .expect("an IPv4 EndpointSlice in deploy/examples")
        .file_name()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn clusterip_and_nodeport_spread_new_tcp_connections_over_all_pods() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();

    for (name, from, to) in [
        ("ClusterIP from a pod", toolbox(&lab), SocketAddrV4::new(CLUSTER_IP, 80)),
        ("NodePort from outside", lab.client(), SocketAddrV4::new(NODE_IP, 30080)),
    ] {
        let tally = tcp_tally(from, to, 300);
        println!("{name}:\n{tally}");
        assert_eq!(tally.failures(), 0, "{name}: failed connections");
        for pod in ECHO_PODS {
            assert!(tally.count(pod) > 0, "{name}: {pod} got none of 300 connections");
        }
        assert_eq!(tally.count("toolbox"), 0, "{name}: toolbox is no endpoint");
    }
}

#[test]
fn udp_through_clusterip_and_nodeport_is_answered_from_the_frontend() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();

    for (name, from, to) in [
        ("ClusterIP", toolbox(&lab), SocketAddrV4::new(CLUSTER_IP, 53)),
        ("NodePort", lab.client(), SocketAddrV4::new(NODE_IP, 30053)),
    ] {
        let mut tally = Tally::new();
        for _ in 0..60 {
            // A connected UDP socket only accepts datagrams from `to`: an
            // answer arriving at all proves the reply was reverse-translated.
            tally.record(&udp_request(from, to));
        }
        println!("UDP {name}:\n{tally}");
        assert_eq!(tally.failures(), 0, "UDP {name}");
        for pod in ECHO_PODS {
            assert!(tally.count(pod) > 0, "UDP {name}: {pod} got no datagram");
        }
    }
}

#[test]
fn the_pod_sees_the_clients_own_address_through_the_nodeport() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    let reply = tcp_request(lab.client(), SocketAddrV4::new(NODE_IP, 30080)).unwrap();
    assert_eq!(reply.peer.ip(), lab.client_ip());
}

#[test]
fn an_open_connection_keeps_its_pod_when_an_endpoint_is_added() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    let mut sessions: Vec<TcpSession> =
        (0..12).map(|_| TcpSession::open(lab.client(), SocketAddrV4::new(NODE_IP, 30080)).unwrap()).collect();
    let pods: Vec<String> = sessions.iter_mut().map(|s| s.request().unwrap().pod).collect();

    let mut endpoints: Vec<(&str, Ipv4Addr)> = ECHO_PODS.iter().map(|p| (*p, pod_ip(&lab, p))).collect();
    endpoints.push(("toolbox", pod_ip(&lab, "toolbox")));
    manifests.write(&slice_file(&manifests), &endpoint_slice(&endpoints)).unwrap();
    wait_for_maps(agent.pins(), Duration::from_secs(5), |m| ipv4_backend_count(m) == 4).unwrap();

    for (session, pod) in sessions.iter_mut().zip(&pods) {
        for _ in 0..5 {
            assert_eq!(&session.request().unwrap().pod, pod, "an open connection changed pods");
        }
    }
    let tally = tcp_tally(lab.client(), SocketAddrV4::new(NODE_IP, 30080), 100);
    assert!(tally.count("toolbox") > 0, "the added endpoint gets no new connections:\n{tally}");
}

#[test]
fn removing_an_endpoint_from_the_manifests_stops_new_connections_to_it() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    let endpoints: Vec<(&str, Ipv4Addr)> = ["pod-a", "pod-b"].iter().map(|p| (*p, pod_ip(&lab, p))).collect();
    manifests.write(&slice_file(&manifests), &endpoint_slice(&endpoints)).unwrap();
    wait_for_maps(agent.pins(), Duration::from_secs(5), |m| ipv4_backend_count(m) == 2).unwrap();

    for (from, to) in [(toolbox(&lab), SocketAddrV4::new(CLUSTER_IP, 80)), (lab.client(), SocketAddrV4::new(NODE_IP, 30080))] {
        let tally = tcp_tally(from, to, 100);
        assert_eq!(tally.failures(), 0);
        assert_eq!(tally.count("pod-c"), 0, "pod-c was removed but still answers:\n{tally}");
        assert!(tally.count("pod-a") > 0 && tally.count("pod-b") > 0, "{tally}");
    }
}

#[test]
fn a_malformed_manifest_is_reported_and_everything_else_keeps_serving() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    manifests.write("zz-broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: broken\n").unwrap();
    manifests
        .write(
            "zz-bad-port.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: default}\nspec:\n  clusterIP: 10.96.0.20\n  ports: [{port: 0}, {port: 81, name: ok}]\n",
        )
        .unwrap();
    // The bad-port Service's valid port is programmed beside the example's.
    wait_for_maps(agent.pins(), Duration::from_secs(5), |m| {
        use ingress_userspace::dataplane::MapWriter;
        let bad_port_vip = ingress_common::addr::Addr::from(std::net::IpAddr::V4(Ipv4Addr::new(10, 96, 0, 20)));
        m.read().is_ok_and(|c| c.services.keys().any(|k| k.addr == bad_port_vip))
    })
    .unwrap();
    let metrics = ingress_tests::agent::admin_get(lab.node(), "/metrics").unwrap();
    assert!(metrics.contains("lb_input_problems_total{kind=\"yaml_syntax\"}"), "{metrics}");
    assert!(metrics.contains("lb_input_problems_total{kind=\"invalid_port\"}"), "{metrics}");
    let tally = tcp_tally(lab.client(), SocketAddrV4::new(NODE_IP, 30080), 30);
    assert_eq!(tally.failures(), 0, "the valid Service stopped serving:\n{tally}");
}

#[test]
fn the_proxy_routes_ingress_paths_annotated_pods_and_unknown_hosts() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    let proxy = SocketAddrV4::new(NODE_IP, ingress_tests::agent::HTTP_PORT);
    let get = |host: &str, path: &str| ingress_tests::http::get(lab.client(), proxy, host, path).unwrap();

    for _ in 0..10 {
        assert_eq!(get("echo.example", "/a/deeper").body, "pod-a\n", "path /a goes to Service echo-a only");
        assert_eq!(get("api.example", "/").body, "pod-c\n", "the annotated pod serves api.example");
    }
    let spread: std::collections::BTreeSet<String> = (0..30).map(|_| get("echo.example", "/other").body).collect();
    assert_eq!(spread.len(), 3, "path / should be balanced over the three echo pods: {spread:?}");
    let unknown = get("unknown.example", "/");
    assert_eq!((unknown.status, unknown.body.as_str()), (404, "default backend - 404"));
    let health = get("unknown.example", "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
}
