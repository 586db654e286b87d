//! Path MTU discovery through a NodePort, end to end in the lab: the links
//! from the node to its pods get a smaller MTU on the node's side only, so
//! the pods still announce a full-size MSS and the client sends full-size
//! segments with DF. The node cannot forward them to the pod and answers
//! with fragmentation needed (ICMPv6 packet too big) quoting the segment as
//! it was after the DNAT; only translated back (`icmp_error`) does the
//! client's stack find its socket, lower its path MTU and get its upload
//! through. Without the translation the upload stalls (no MTU probing).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use ingress_common::stats::ICMP_ERROR_TRANSLATED;
use ingress_tests::agent::{InProcessAgent, ManifestDir, dataplane_packets};
use ingress_tests::{Lab, LabSpec, is_root};

/// The node's side of every pod link; the pods keep 1500.
const POD_LINK_MTU: &str = "1400";
const NODE_PORT: u16 = 30080;
/// Far more than one segment of any MTU, in one line the echo pod answers.
const UPLOAD: usize = 64 * 1024;
/// A stalled upload ends the test here instead of hanging it.
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

#[test]
fn an_upload_larger_than_the_pod_link_mtu_gets_through_a_node_port() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    let lab = Lab::build(LabSpec::default()).expect("building the lab");
    for pod in lab.pods() {
        lab.node().ip(&["link", "set", &pod.host_iface, "mtu", POD_LINK_MTU]).unwrap();
    }
    let manifests = ManifestDir::copy_of(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")).unwrap();
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();

    for node_ip in [IpAddr::V4(lab.node_ip()), IpAddr::V6(lab.node_ip6())] {
        let before = dataplane_packets(lab.node(), ICMP_ERROR_TRANSLATED);
        let to = SocketAddr::new(node_ip, NODE_PORT);
        let answer = upload(&lab, to);
        assert!(answer.starts_with("pod-"), "{to}: answered {answer:?}");
        let translated = dataplane_packets(lab.node(), ICMP_ERROR_TRANSLATED) - before;
        assert!(translated > 0, "{to}: the upload got through without a translated ICMP error: was the MTU smaller?");
        println!("{to}: {UPLOAD} bytes through a {POD_LINK_MTU}-byte pod link, {translated} ICMP error(s) translated; {}", answer.trim());
    }
}
