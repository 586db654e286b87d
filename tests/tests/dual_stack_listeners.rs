//! The agent's own listeners on a dual-stack node: healthCheckNodePorts and
//! the L7 proxy answer on the node's IPv6 address as on its IPv4 one, and
//! the proxy forwards every client under its own address, an IPv4 client
//! not as the IPv4-mapped address a dual-stack socket reports it with.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ingress_tests::agent::{HTTP_PORT, InProcessAgent, ManifestDir, NODE_NAME};
use ingress_tests::http;
use ingress_tests::lab::NODE_A_NAME;
use ingress_tests::{ECHO_PORT, Lab, LabSpec, NetNs, TwoNodeLab, TwoNodeSpec, is_root};
use ingress_userspace::l7::INGRESS_CONTROLLER;

/// Service `local`: dual-stack NodePort, externalTrafficPolicy: Local, its
/// endpoints a-1 and a-2 on node A only.
const LOCAL_VIP4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 90);
const LOCAL_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x5a);
const LOCAL_NODE_PORT: u16 = 30090;
const LOCAL_HEALTH_PORT: u16 = 32090;
/// The Ingress host routed to the pod `upstream`, which answers on this port.
const HOST: &str = "headers.example";
const UPSTREAM_POD: &str = "upstream";
const UPSTREAM_PORT: u16 = 8081;
const UPSTREAM_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x5b);
/// Bounds every wait of the header-reporting upstream.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

fn root() -> bool {
    let root = is_root();
    if !root {
        eprintln!("skipped: network namespaces and eBPF need root");
    }
    root
}

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
}

/// An EndpointSlice of `service`, `family` ("IPv4" or "IPv6"), with
/// `(address, node)` endpoints on TCP `port`.
fn slice(service: &str, family: &str, port: u16, endpoints: &[(IpAddr, &str)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(ip, node)| format!("{{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: {node}}}"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-{family}, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: {family}\n\
         ports: [{{port: {port}, protocol: TCP}}]\nendpoints: [{}]\n---\n",
        endpoints.join(", ")
    )
}

fn manifest_dir(yaml: &str) -> ManifestDir {
    let dir = ManifestDir::empty().unwrap();
    dir.write("manifests.yaml", yaml).unwrap();
    dir
}

/// `GET path` with `Host: host` to `to` from `ns`: the status and the body.
fn get(ns: &NetNs, to: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let response = http::get(ns, to, host, path).unwrap_or_else(|error| panic!("GET http://{to}{path}: {error:#}"));
    (response.status, response.body)
}

#[test]
fn health_check_node_ports_answer_on_both_node_addresses() {
    if !root() {
        return;
    }
    let lab = TwoNodeLab::build(TwoNodeSpec::default()).expect("building the two-node lab");
    let on_a = |pod: &str| lab.pod(pod).unwrap();
    let v4: Vec<(IpAddr, &str)> = ["a-1", "a-2"].iter().map(|pod| (on_a(pod).ip.into(), NODE_A_NAME)).collect();
    let v6: Vec<(IpAddr, &str)> = ["a-1", "a-2"].iter().map(|pod| (on_a(pod).ip6.into(), NODE_A_NAME)).collect();
    let spec = format!(
        "{{type: NodePort, externalTrafficPolicy: Local, healthCheckNodePort: {LOCAL_HEALTH_PORT}, \
         ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], clusterIP: \"{LOCAL_VIP4}\", \
         clusterIPs: [\"{LOCAL_VIP4}\", \"{LOCAL_VIP6}\"], \
         ports: [{{port: 80, targetPort: {ECHO_PORT}, nodePort: {LOCAL_NODE_PORT}}}]}}"
    );
    let yaml = [service("local", &spec), slice("local", "IPv4", ECHO_PORT, &v4), slice("local", "IPv6", ECHO_PORT, &v6)].concat();
    let manifests = manifest_dir(&yaml);
    let _agent_a = InProcessAgent::start_on(lab.node_a(), manifests.path()).unwrap();
    let _agent_b = InProcessAgent::start_on(lab.node_b(), manifests.path()).unwrap();

    // (node, status, local endpoints): node B has none of the Service's pods.
    for (node, status, local_endpoints) in [(lab.node_a(), 200, 2), (lab.node_b(), 503, 0)] {
        for ip in node.ips() {
            let (got, body) = get(lab.client(), SocketAddr::new(ip, LOCAL_HEALTH_PORT), "lb", "/healthz");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{ip}: {e}: {body:?}"));
            assert_eq!((got, json["localEndpoints"].as_u64()), (status, Some(local_endpoints)), "{} at {ip}: {body}", node.name());
            assert_eq!(json["service"]["name"], "local", "{ip}: {body}");
        }
    }
}

/// An HTTP server in a pod that answers every request with the
/// X-Forwarded-For header it was sent; stops on drop.
struct ForwardedForUpstream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ForwardedForUpstream {
    fn spawn(ns: &NetNs, port: u16) -> ForwardedForUpstream {
        let listener = ns.run(move || TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))).unwrap().unwrap();
        // Non-blocking, so that the accept loop sees the stop flag.
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(error) = answer_with_forwarded_for(stream) {
                            eprintln!("upstream: {error}");
                        }
                    }
                    Err(error) => {
                        if error.kind() != ErrorKind::WouldBlock {
                            eprintln!("upstream accept: {error}");
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        ForwardedForUpstream { stop, thread: Some(thread) }
    }
}

/// Reads one request head (bounded by the read timeout) and answers it.
fn answer_with_forwarded_for(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    stream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut forwarded_for = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && !line.trim().is_empty() {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("x-forwarded-for")
        {
            forwarded_for = value.trim().to_owned();
        }
        line.clear();
    }
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{forwarded_for}", forwarded_for.len())
}

impl Drop for ForwardedForUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Returns within one request's timeouts.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn the_proxy_answers_on_both_node_addresses_and_forwards_each_client_as_itself() {
    if !root() {
        return;
    }
    let lab = Lab::build(LabSpec { pods: vec![UPSTREAM_POD.into()] }).expect("building the lab");
    let pod = lab.pod(UPSTREAM_POD).unwrap();
    let _upstream = ForwardedForUpstream::spawn(&pod.ns, UPSTREAM_PORT);
    // The pod is reached over IPv6, whatever family the client used.
    let yaml = [
        format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: lb}}\nspec: {{controller: {INGRESS_CONTROLLER}}}\n---\n"),
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: headers, namespace: default}}\nspec:\n  \
             ingressClassName: lb\n  rules: [{{host: {HOST}, http: {{paths: [{{path: /, pathType: Prefix, \
             backend: {{service: {{name: upstream, port: {{number: 80}}}}}}}}]}}}}]\n---\n"
        ),
        service(
            "upstream",
            &format!(
                "{{ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], clusterIP: \"{UPSTREAM_VIP6}\", \
                 clusterIPs: [\"{UPSTREAM_VIP6}\"], ports: [{{port: 80, targetPort: {UPSTREAM_PORT}}}]}}"
            ),
        ),
        slice("upstream", "IPv6", UPSTREAM_PORT, &[(pod.ip6.into(), NODE_NAME)]),
    ]
    .concat();
    let manifests = manifest_dir(&yaml);
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();

    let over_ipv6 = (IpAddr::from(lab.node_ip6()), IpAddr::from(lab.client_ip6()));
    let over_ipv4 = (IpAddr::from(lab.node_ip()), IpAddr::from(lab.client_ip()));
    for (node, client) in [over_ipv6, over_ipv4] {
        let (status, forwarded_for) = get(lab.client(), SocketAddr::new(node, HTTP_PORT), HOST, "/");
        assert_eq!((status, forwarded_for), (200, client.to_string()), "X-Forwarded-For of a request to {node}");
    }
}
