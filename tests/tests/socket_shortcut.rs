//! The L7 proxy's socket shortcut to pods on its node
//! (`ingress-ebpf/src/socket_shortcut.rs`): request and response bodies of
//! 1 MiB each way, several requests per client connection and several
//! clients at once, arrive whole and in order, over IPv4 and IPv6; with the
//! shortcut the bytes no longer cross the pod's veth (its counters stay put),
//! without it (`--socket-shortcut off`) they do. The agent counts the
//! upstream connections that went socket to socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ingress_tests::agent::{HTTP_PORT, InProcessAgent, ManifestDir, NODE_NAME, metric};
use ingress_tests::{Lab, LabSpec, NetNs, is_root};
use ingress_userspace::l7::INGRESS_CONTROLLER;

const HOST: &str = "shortcut.example";
const POD: &str = "bodies";
const POD_PORT: u16 = 8082;
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 120);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x78);
/// Each request's body, and each answer's.
const BODY: usize = 1 << 20;
const CLIENTS: usize = 3;
const REQUESTS_PER_CLIENT: usize = 3;
/// Bounds every read and write of the clients and the pod's server.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// What the pod's veth may carry with the shortcut: the handshakes and
/// closes of the upstream connections, far below one body.
const CONTROL_BYTES_LIMIT: u64 = 64 * 1024;

fn root() -> bool {
    let root = is_root();
    if !root {
        eprintln!("skipped: network namespaces and eBPF need root");
    }
    root
}

#[test]
fn bodies_arrive_whole_over_the_shortcut_and_skip_the_veth() {
    if !root() {
        return;
    }
    for family in [Family::V4, Family::V6] {
        let crossed = exchange(family, true);
        eprintln!("{family:?}, shortcut on: {crossed} bytes crossed the pod's veth");
        assert!(crossed < CONTROL_BYTES_LIMIT, "{family:?}: {crossed} bytes crossed the pod's veth with the shortcut");
    }
}

#[test]
fn without_the_shortcut_the_same_bodies_cross_the_veth() {
    if !root() {
        return;
    }
    let crossed = exchange(Family::V4, false);
    eprintln!("V4, shortcut off: {crossed} bytes crossed the pod's veth");
    let bodies = (2 * BODY * CLIENTS * REQUESTS_PER_CLIENT) as u64;
    assert!(crossed >= bodies, "{crossed} bytes crossed the pod's veth, below the {bodies} of the bodies");
}

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

/// Runs the clients through the agent's proxy to the pod and checks every
/// answer; returns the bytes the pod's veth counted meanwhile (both ways).
fn exchange(family: Family, shortcut: bool) -> u64 {
    let lab = Lab::build(LabSpec { pods: vec![POD.into()] }).expect("building the lab");
    let pod = lab.pod(POD).unwrap();
    let _upstream = BodyServer::spawn(&pod.ns, POD_PORT);
    let manifests = ManifestDir::empty().unwrap();
    let (endpoint, vip, family_name) = match family {
        Family::V4 => (IpAddr::from(pod.ip), IpAddr::from(VIP4), "IPv4"),
        Family::V6 => (IpAddr::from(pod.ip6), IpAddr::from(VIP6), "IPv6"),
    };
    manifests.write("manifests.yaml", &manifests_yaml(endpoint, vip, family_name)).unwrap();
    let _agent = InProcessAgent::start_configured(&lab, manifests.path(), |config| config.socket_shortcut = shortcut).unwrap();
    let proxy = SocketAddr::new(IpAddr::from(lab.node_ip()), HTTP_PORT);
    let attached = metric_when_served(lab.node(), "lb_l7_socket_shortcut");
    assert_eq!(attached, u64::from(shortcut), "lb_l7_socket_shortcut of an agent with the shortcut {}", if shortcut { "on" } else { "off" });

    let before = veth_bytes(lab.node(), &pod.host_iface);
    let clients: Vec<_> = (0..CLIENTS).map(|client| lab.client().spawn(move || run_client(proxy, client)).unwrap()).collect();
    for client in clients {
        if let Err(panic) = client.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let crossed = veth_bytes(lab.node(), &pod.host_iface) - before;
    if shortcut {
        // The pod is local: every upstream connection took the shortcut.
        let connections = |way: &str| metric(lab.node(), &format!("lb_l7_socket_shortcut_connections_total{{way=\"{way}\"}}")).unwrap();
        let (socket, tcp) = (connections("socket"), connections("tcp"));
        let not_stored = metric(lab.node(), "lb_l7_socket_shortcut_not_stored_total").unwrap();
        eprintln!("{family:?}: upstream connections socket to socket {socket}, over TCP {tcp}, not stored {not_stored}");
        assert!(socket >= 1, "{family:?}: no upstream connection counted as paired");
        assert_eq!((tcp, not_stored), (0, 0), "{family:?}: upstream connections to a local pod counted on TCP or not stored");
    } else {
        let metrics = ingress_tests::agent::admin_get(lab.node(), "/metrics").unwrap();
        assert!(!metrics.contains("lb_l7_socket_shortcut_connections_total"), "connections counted without the shortcut:\n{metrics}");
    }
    crossed
}

fn manifests_yaml(endpoint: IpAddr, vip: IpAddr, family: &str) -> String {
    [
        format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: lb}}\nspec: {{controller: {INGRESS_CONTROLLER}}}\n---\n"),
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: bodies, namespace: default}}\nspec:\n  \
             ingressClassName: lb\n  rules: [{{host: {HOST}, http: {{paths: [{{path: /, pathType: Prefix, \
             backend: {{service: {{name: bodies, port: {{number: 80}}}}}}}}]}}}}]\n---\n"
        ),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: bodies, namespace: default}}\nspec: {{ipFamilyPolicy: SingleStack, \
             ipFamilies: [{family}], clusterIP: \"{vip}\", clusterIPs: [\"{vip}\"], ports: [{{port: 80, targetPort: {POD_PORT}}}]}}\n---\n"
        ),
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: bodies-{family}, namespace: default, \
             labels: {{kubernetes.io/service-name: bodies}}}}\naddressType: {family}\n\
             ports: [{{port: {POD_PORT}, protocol: TCP}}]\nendpoints: [{{addresses: [\"{endpoint}\"], conditions: {{ready: true}}, nodeName: {NODE_NAME}}}]\n"
        ),
    ]
    .concat()
}

/// `series` from the agent's admin endpoint, once it answers.
fn metric_when_served(node: &NetNs, series: &str) -> u64 {
    for _ in 0..100 {
        if let Ok(value) = metric(node, series) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{series} was not served");
}

/// Requests on one connection, each a body of its own pattern, each answered
/// with the pattern of another and the hash of what the pod received.
fn run_client(proxy: SocketAddr, client: usize) {
    let stream = connect_when_served(proxy);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for request in 0..REQUESTS_PER_CLIENT {
        let (sent_seed, asked_seed) = ((client * 100 + request) as u8, (client * 100 + request + 50) as u8);
        let body = pattern(sent_seed, BODY);
        let head = format!("POST /answer/{asked_seed} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {BODY}\r\n\r\n");
        writer.write_all(head.as_bytes()).unwrap();
        writer.write_all(&body).unwrap();
        let (status, headers, answer) = read_response(&mut reader);
        let what = format!("client {client}, request {request}");
        assert_eq!(status, 200, "{what}: {headers:?}");
        let received = headers.iter().find(|(name, _)| name == "x-received-hash").map(|(_, value)| value.as_str());
        assert_eq!(received, Some(format!("{:016x}", fnv1a(&body)).as_str()), "{what}: the pod received another body");
        assert!(answer == pattern(asked_seed, BODY), "{what}: the answer's {} bytes are not the pod's", answer.len());
    }
}

/// The agent serves the route once it has read the manifests.
fn connect_when_served(proxy: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect_timeout(&proxy, IO_TIMEOUT) {
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut probe = stream.try_clone().unwrap();
            write!(probe, "GET /ready HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
            let (status, _, _) = read_response(&mut BufReader::new(probe));
            if status == 200 {
                return stream;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{HOST} was not served through {proxy}");
}

/// Status, lower-cased headers and the body (by Content-Length) of one answer.
fn read_response(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("status line {line:?}"));
    let headers = read_head(reader);
    let length: usize = headers.iter().find(|(name, _)| name == "content-length").map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn read_head(reader: &mut impl BufRead) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
            return headers;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
}

/// `len` bytes that differ by `seed` and by position.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Received plus sent bytes of `iface` in `ns` (`/proc/net/dev` as seen
/// from a thread in that namespace).
fn veth_bytes(ns: &NetNs, iface: &str) -> u64 {
    let table = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev")).unwrap().unwrap();
    let line = table.lines().find_map(|line| line.trim_start().strip_prefix(iface)?.strip_prefix(':')).unwrap_or_else(|| panic!("{iface} not in\n{table}"));
    let fields: Vec<u64> = line.split_whitespace().map(|field| field.parse().unwrap()).collect();
    fields[0] + fields[8]
}

/// A keep-alive HTTP/1.1 server in a pod: `POST /answer/<seed>` with a body
/// is answered with `BODY` bytes of `pattern(seed)` and the hash of the body
/// received; any other request with an empty 200. Stops on drop.
struct BodyServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BodyServer {
    fn spawn(ns: &NetNs, port: u16) -> BodyServer {
        let listener = ns.run(move || TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))).unwrap().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => connections.push(std::thread::spawn(move || serve(stream))),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // Each ends within a read timeout once its client is gone.
            for connection in connections {
                let _ = connection.join();
            }
        });
        BodyServer { stop, thread: Some(thread) }
    }
}

fn serve(stream: TcpStream) {
    let answered = (|| -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line)? == 0 {
                return Ok(());
            }
            let headers = read_head(&mut reader);
            let length: usize = headers.iter().find(|(name, _)| name == "content-length").map_or(0, |(_, value)| value.parse().unwrap_or(0));
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            let seed = request_line.split(' ').nth(1).and_then(|path| path.strip_prefix("/answer/")).and_then(|seed| seed.parse::<u8>().ok());
            let answer = seed.map_or_else(Vec::new, |seed| pattern(seed, BODY));
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Received-Hash: {:016x}\r\n\r\n", answer.len(), fnv1a(&body));
            writer.write_all(head.as_bytes())?;
            writer.write_all(&answer)?;
        }
    })();
    if let Err(error) = answered {
        eprintln!("pod server: {error}");
    }
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
