//! Path MTU discovery through a NodePort, end to end in the lab, both ways.
//!
//! Uploads: the links from the node to its pods get a smaller MTU on the
//! node's side only, so the pods still announce a full-size MSS and the
//! client sends full-size segments with DF. The node cannot forward them to
//! the pod and answers with fragmentation needed (ICMPv6 packet too big)
//! quoting the segment as it was after the DNAT; only translated back
//! (`icmp_error`) does the client's stack find its socket, lower its path
//! MTU and get its upload through.
//!
//! Downloads: a client far away, behind a router (the lab's client
//! namespace, forwarding) whose link to it has a smaller MTU on the
//! router's side only, so the far client announces a full-size MSS and the
//! pod sends full-size segments with DF. The router answers them with the
//! error, to the NodePort's address, quoting the segment as it left the
//! node (from the NodePort); only translated on the way in (to the pod,
//! quoting what the pod sent) does the pod's stack find its socket and get
//! the download through. Without the translation either transfer stalls
//! (no MTU probing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ingress_common::stats::ICMP_ERROR_TRANSLATED;
use ingress_tests::agent::{AgentProcess, InProcessAgent, ManifestDir, agent_binary, dataplane_packets};
use ingress_tests::pins::PinDir;
use ingress_userspace::dataplane::ebpf::PinnedMaps;
use ingress_tests::lab::{CLIENT_IP, CLIENT_IP6};
use ingress_tests::{Lab, LabSpec, NetNs, is_root};

/// The node's side of every pod link; the pods keep 1500.
const POD_LINK_MTU: &str = "1400";
const NODE_PORT: u16 = 30080;
/// Far more than one segment of any MTU, in one line the echo pod answers.
const UPLOAD: usize = 64 * 1024;
/// A stalled transfer ends the test here instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `UPLOAD` bytes and a newline to `to` from the lab's client and
/// returns the echo pod's one-line answer.
fn upload(lab: &Lab, to: SocketAddr) -> String {
    let mut stream = lab.client().run(move || TcpStream::connect_timeout(&to, TIMEOUT)).unwrap().unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let line = [vec![b'x'; UPLOAD], vec![b'\n']].concat();
    stream.write_all(&line).unwrap_or_else(|e| panic!("uploading {UPLOAD} bytes to {to}: {e}"));
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .unwrap_or_else(|e| panic!("no answer from {to} to an upload of {UPLOAD} bytes within {TIMEOUT:?}: {e}"));
    answer
}

/// The lab with the node's side of every pod link narrowed to
/// `POD_LINK_MTU`; `None`, with a note, when not root.
fn lab_with_narrow_pod_links() -> Option<Lab> {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return None;
    }
    let lab = Lab::build(LabSpec::default()).expect("building the lab");
    for pod in lab.pods() {
        lab.node().ip(&["link", "set", &pod.host_iface, "mtu", POD_LINK_MTU]).unwrap();
    }
    Some(lab)
}

/// Uploads through the NodePort of each family, each of which must get
/// through with ICMP errors translated (`translated`: the count so far).
fn uploads_get_through(lab: &Lab, translated: impl Fn() -> u64) {
    for node_ip in [IpAddr::V4(lab.node_ip()), IpAddr::V6(lab.node_ip6())] {
        let before = translated();
        let to = SocketAddr::new(node_ip, NODE_PORT);
        let answer = upload(lab, to);
        assert!(answer.starts_with("pod-"), "{to}: answered {answer:?}");
        let translated = translated() - before;
        assert!(translated > 0, "{to}: the upload got through without a translated ICMP error: was the MTU smaller?");
        println!("{to}: {UPLOAD} bytes through a {POD_LINK_MTU}-byte pod link, {translated} ICMP error(s) translated; {}", answer.trim());
    }
}

#[test]
fn an_upload_larger_than_the_pod_link_mtu_gets_through_a_node_port() {
    let Some(lab) = lab_with_narrow_pod_links() else { return };
    let manifests = ManifestDir::examples().unwrap();
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    uploads_get_through(&lab, || dataplane_packets(lab.node(), ICMP_ERROR_TRANSLATED));
}

/// The programs hand ICMP errors over to programs of their own through a
/// pinned table (`TAIL_TC_MAP`), which must keep them when the agent is
/// gone (killed: no clean-up), as the maps keep the flows.
#[test]
fn an_upload_larger_than_the_pod_link_mtu_gets_through_with_the_agent_killed() {
    let Some(lab) = lab_with_narrow_pod_links() else { return };
    let manifests = ManifestDir::examples().unwrap();
    let pins = PinDir::unique("pmtu-killed");
    let agent = AgentProcess::spawn(&agent_binary().unwrap(), &lab, manifests.path(), pins.path()).unwrap();
    agent.crash().unwrap();
    let stats = || PinnedMaps::open(pins.path()).and_then(|maps| maps.stats()).expect("the pinned stats");
    uploads_get_through(&lab, || stats()[ICMP_ERROR_TRANSLATED as usize].packets);
}

/// The router's side of its link to the far client; the far client keeps 1500.
const FAR_LINK_MTU: &str = "1400";
/// The far client and the router's address on their link, per family.
const FAR_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const FAR_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const FAR_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 2);
const FAR_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 1);
/// Where the download server listens in pod-a, and its NodePort.
const DOWNLOAD_PORT: u16 = 9000;
const DOWNLOAD_NODE_PORT: u16 = 30090;
/// Far more than one segment of any MTU.
const DOWNLOAD: usize = 256 * 1024;

/// A NodePort Service over pod-a's download server, both families.
const DOWNLOAD_MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: download, namespace: default}
spec:
  type: NodePort
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIP: 10.96.0.90
  clusterIPs: [10.96.0.90, "fd00:10:96::90"]
  ports:
    - {name: tcp, protocol: TCP, port: 80, targetPort: 9000, nodePort: 30090}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: download-ipv4
  namespace: default
  labels: {kubernetes.io/service-name: download}
addressType: IPv4
ports: [{name: tcp, protocol: TCP, port: 9000}]
endpoints:
  - {addresses: ["10.244.1.2"], conditions: {ready: true}, nodeName: lab-node, targetRef: {kind: Pod, namespace: default, name: pod-a}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: download-ipv6
  namespace: default
  labels: {kubernetes.io/service-name: download}
addressType: IPv6
ports: [{name: tcp, protocol: TCP, port: 9000}]
endpoints:
  - {addresses: ["fd00:10:244:1::2"], conditions: {ready: true}, nodeName: lab-node, targetRef: {kind: Pod, namespace: default, name: pod-a}}
"#;

/// A namespace behind the lab's client namespace, which becomes its router:
/// their link has `FAR_LINK_MTU` on the router's side, the node routes the
/// far client's prefixes to the router.
fn far_client(lab: &Lab) -> NetNs {
    let far = NetNs::create("far").unwrap();
    let router = lab.client();
    router.ip(&["link", "add", "far0", "type", "veth", "peer", "name", "eth0", "netns", far.name()]).unwrap();
    router.ip(&["link", "set", "far0", "mtu", FAR_LINK_MTU]).unwrap();
    router.ip(&["addr", "add", &format!("{FAR_GATEWAY}/24"), "dev", "far0"]).unwrap();
    router.ip(&["-6", "addr", "add", &format!("{FAR_GATEWAY6}/64"), "dev", "far0", "nodad"]).unwrap();
    router.ip(&["link", "set", "far0", "up"]).unwrap();
    router.sysctl("net.ipv4.ip_forward", "1").unwrap();
    router.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    far.ip(&["link", "set", "lo", "up"]).unwrap();
    far.ip(&["addr", "add", &format!("{FAR_IP}/24"), "dev", "eth0"]).unwrap();
    far.ip(&["-6", "addr", "add", &format!("{FAR_IP6}/64"), "dev", "eth0", "nodad"]).unwrap();
    far.ip(&["link", "set", "eth0", "up"]).unwrap();
    far.ip(&["route", "add", "default", "via", &FAR_GATEWAY.to_string()]).unwrap();
    far.ip(&["-6", "route", "add", "default", "via", &FAR_GATEWAY6.to_string()]).unwrap();
    lab.node().ip(&["route", "add", "203.0.113.0/24", "via", &CLIENT_IP.to_string()]).unwrap();
    lab.node().ip(&["-6", "route", "add", "2001:db8:f::/64", "via", &CLIENT_IP6.to_string()]).unwrap();
    far
}

/// Serves `DOWNLOAD` bytes to each of the next `connections` clients of
/// pod-a's `DOWNLOAD_PORT` (both families), then closes.
fn serve_downloads(lab: &Lab, connections: usize) {
    let pod = lab.pod("pod-a").expect("the lab's pod-a");
    let listener = pod.ns.run(|| TcpListener::bind(("::", DOWNLOAD_PORT))).unwrap().unwrap();
    std::thread::spawn(move || {
        let data = b"y".repeat(DOWNLOAD);
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_write_timeout(Some(TIMEOUT));
            let _ = stream.write_all(&data);
        }
    });
}

/// Downloads from `to` in `far` until the server closes: how many bytes came.
fn download(far: &NetNs, to: SocketAddr) -> usize {
    let mut stream = far.run(move || TcpStream::connect_timeout(&to, TIMEOUT)).unwrap().unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("the download from {to} stalled after {} of {DOWNLOAD} bytes within {TIMEOUT:?}: {e}", got.len()));
    got.len()
}

#[test]
fn a_download_larger_than_the_clients_path_mtu_gets_through_a_node_port() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    let lab = Lab::build(LabSpec::default()).expect("building the lab");
    let far = far_client(&lab);
    let manifests = ManifestDir::empty().unwrap();
    manifests.write("download.yaml", DOWNLOAD_MANIFESTS).unwrap();
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    serve_downloads(&lab, 2);

    for node_ip in [IpAddr::V4(lab.node_ip()), IpAddr::V6(lab.node_ip6())] {
        let before = dataplane_packets(lab.node(), ICMP_ERROR_TRANSLATED);
        let from = SocketAddr::new(node_ip, DOWNLOAD_NODE_PORT);
        assert_eq!(download(&far, from), DOWNLOAD, "{from}: the whole download");
        let translated = dataplane_packets(lab.node(), ICMP_ERROR_TRANSLATED) - before;
        assert!(translated > 0, "{from}: the download got through without a translated ICMP error: was the MTU smaller?");
        println!("{from}: {DOWNLOAD} bytes through a {FAR_LINK_MTU}-byte link to the client, {translated} ICMP error(s) translated");
    }
}
