//! Hairpin: a pod calling its own Service and given itself as the backend
//! gets its answer. The rewrite of both directions in the kernel on crafted
//! frames (BPF_PROG_TEST_RUN: addresses, ports, MACs, checksums), then real
//! TCP and UDP from a pod of the lab to a Service whose only endpoint it is.

use std::net::{Ipv4Addr, SocketAddrV4};

use ingress_common::HAIRPIN_ADDR;
use ingress_common::stats::{FORWARD_TRANSLATED, HAIRPIN_REPLY_TRANSLATED, HAIRPIN_TRANSLATED, PASS_NOT_A_REPLY};
use ingress_tests::agent::{InProcessAgent, ManifestDir};
use ingress_tests::checks::{assert_checksums, assert_turned_around};
use ingress_tests::packet::{self, ACK, Frame, SYN};
use ingress_tests::prog_run::{Programmed, TC_ACT_OK, TC_ACT_REDIRECT, add_tcp_and_udp_service, local_backends};
use ingress_tests::{Lab, LabSpec, is_root, tcp_request, udp_request};
use ingress_userspace::model::DesiredState;

const HAIRPIN: Ipv4Addr = Ipv4Addr::new(HAIRPIN_ADDR[0], HAIRPIN_ADDR[1], HAIRPIN_ADDR[2], HAIRPIN_ADDR[3]);
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
/// A Service whose only endpoint is pod-a (the lab's first pod).
const SELF_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);

/// The programs, programmed with a Service (80/TCP, 53/UDP) whose only
/// endpoint is pod-a.
fn programmed() -> Option<Programmed> {
    let mut desired = DesiredState::default();
    add_tcp_and_udp_service(&mut desired, SELF_VIP, "self-a", &local_backends(&[POD_A], 8080));
    Programmed::load("hairpin", &desired)
}


#[test]
fn a_pods_tcp_to_its_own_service_is_rewritten_both_ways_and_sent_back() {
    let Some(mut h) = programmed() else { return };
    let syn = Frame::tcp(POD_A, 40000, SELF_VIP, 80, SYN).build();
    let (verdict, out) = h.tc_in(&syn);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_turned_around(&syn, &out);
    let seen = packet::read(&out);
    assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (HAIRPIN, 40000, POD_A, 8080));
    assert_checksums(&seen);

    let answer = Frame::tcp(POD_A, 8080, HAIRPIN, 40000, SYN | ACK).with_payload(b"pod-a\n").build();
    let (verdict, out) = h.tc_in(&answer);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_turned_around(&answer, &out);
    let seen = packet::read(&out);
    assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (SELF_VIP, 80, POD_A, 40000));
    assert_eq!(seen.payload, b"pod-a\n");
    assert_checksums(&seen);

    // The rest of the connection takes the same way in both directions.
    let data = Frame::tcp(POD_A, 40000, SELF_VIP, 80, ACK).with_payload(b"hello\n").build();
    let seen = packet::read(&h.tc_in(&data).1);
    assert_eq!((seen.src, seen.dst, seen.dport, seen.payload.as_slice()), (HAIRPIN, POD_A, 8080, &b"hello\n"[..]));
    assert_checksums(&seen);
    assert_eq!((h.packets(HAIRPIN_TRANSLATED), h.packets(HAIRPIN_REPLY_TRANSLATED)), (2, 1));
}

#[test]
fn a_pods_udp_to_its_own_service_keeps_valid_or_absent_checksums() {
    let Some(mut h) = programmed() else { return };
    for (sport, no_checksum) in [(5300, false), (5301, true)] {
        let query = Frame { udp_no_checksum: no_checksum, ..Frame::udp(POD_A, sport, SELF_VIP, 53).with_payload(b"q") }.build();
        let (verdict, out) = h.tc_in(&query);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let seen = packet::read(&out);
        assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (HAIRPIN, sport, POD_A, 8080));
        assert_checksums(&seen);
        assert_eq!(seen.l4_checksum == 0, no_checksum, "an absent UDP checksum stays absent, a present one present");

        let answer = Frame { udp_no_checksum: no_checksum, ..Frame::udp(POD_A, 8080, HAIRPIN, sport).with_payload(b"a") }.build();
        let (verdict, out) = h.tc_in(&answer);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let seen = packet::read(&out);
        assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (SELF_VIP, 53, POD_A, sport));
        assert_checksums(&seen);
        assert_eq!(seen.l4_checksum == 0, no_checksum);
    }
}

#[test]
fn another_pod_is_translated_as_usual_and_a_stray_packet_to_the_hairpin_address_is_left_alone() {
    let Some(mut h) = programmed() else { return };
    let syn = Frame::tcp(POD_B, 40001, SELF_VIP, 80, SYN).build();
    let (verdict, out) = h.tc_in(&syn);
    assert_eq!(verdict, TC_ACT_OK, "not a hairpin: routed by the node");
    let seen = packet::read(&out);
    assert_eq!((seen.src, seen.dst, seen.dport), (POD_B, POD_A, 8080));
    assert_eq!(h.packets(FORWARD_TRANSLATED), 1);

    let stray = Frame::tcp(POD_A, 8080, HAIRPIN, 40999, SYN | ACK).build();
    assert_eq!(h.tc_in(&stray), (TC_ACT_OK, stray.clone()));
    assert_eq!(h.packets(PASS_NOT_A_REPLY), 1);
    assert_eq!(h.packets(HAIRPIN_TRANSLATED) + h.packets(HAIRPIN_REPLY_TRANSLATED), 0);
}

/// Service `self-a` (10.96.0.12, 80/TCP and 53/UDP) backed by pod-a alone.
const SELF_A_YAML: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: self-a
  namespace: default
spec:
  type: ClusterIP
  clusterIP: 10.96.0.12
  clusterIPs: [10.96.0.12]
  ports:
    - {name: tcp, protocol: TCP, port: 80, targetPort: 8080}
    - {name: udp, protocol: UDP, port: 53, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: self-a-1
  namespace: default
  labels:
    kubernetes.io/service-name: self-a
addressType: IPv4
ports:
  - {name: tcp, port: 8080, protocol: TCP}
  - {name: udp, port: 8080, protocol: UDP}
endpoints:
  - addresses: ["10.244.1.2"]
    conditions: {ready: true}
    nodeName: lab-node
    targetRef: {kind: Pod, name: pod-a, namespace: default}
"#;

#[test]
fn in_the_lab_a_pod_calling_its_own_service_gets_its_own_answer_over_tcp_and_udp() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    let lab = Lab::build(LabSpec { pods: ["pod-a", "pod-b"].map(String::from).to_vec() }).expect("building the lab");
    let pod_a = lab.pod("pod-a").unwrap();
    assert_eq!(pod_a.ip, POD_A, "the manifest names pod-a's address");
    let manifests = ManifestDir::examples().unwrap();
    manifests.write("self-a.yaml", SELF_A_YAML).unwrap();
    let _agent = InProcessAgent::start(&lab, manifests.path()).unwrap();

    for i in 0..20 {
        let tcp = tcp_request(&pod_a.ns, SocketAddrV4::new(SELF_VIP, 80)).unwrap_or_else(|e| panic!("TCP request {i}: {e:#}"));
        assert_eq!(tcp.pod, "pod-a");
        assert_eq!(tcp.peer.ip(), HAIRPIN, "pod-a saw the hairpin address as the caller");
        let udp = udp_request(&pod_a.ns, SocketAddrV4::new(SELF_VIP, 53)).unwrap_or_else(|e| panic!("UDP request {i}: {e:#}"));
        assert_eq!(udp.pod, "pod-a");
        assert_eq!(udp.peer.ip(), HAIRPIN);
    }
    // Another pod calling the same Service is answered as usual, with its own address seen.
    let pod_b = lab.pod("pod-b").unwrap();
    let from_b = tcp_request(&pod_b.ns, SocketAddrV4::new(SELF_VIP, 80)).unwrap();
    assert_eq!((from_b.pod.as_str(), from_b.peer.ip()), ("pod-a", pod_b.ip.into()));
}
