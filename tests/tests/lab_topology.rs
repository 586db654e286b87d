//! The lab itself, without any load balancer: plain routing through the node.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use ingress_tests::netns::list_namespaces;
use ingress_tests::{Lab, LabSpec, TcpSession, is_root, tcp_request, udp_request};

fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root to create network namespaces");
    }
    is_root()
}

fn lab_namespaces(lab: &Lab) -> Vec<String> {
    lab.namespaces().into_iter().map(str::to_owned).collect()
}

fn assert_gone(names: &[String]) {
    let existing = list_namespaces().unwrap();
    let left: Vec<_> = names.iter().filter(|n| existing.contains(n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn client_reaches_every_pod_and_is_seen_with_its_own_address() {
    if !root_or_skip("client_reaches_every_pod") {
        return;
    }
    let lab = Lab::build(LabSpec::default()).unwrap();
    assert_eq!(lab.pods().len(), 3);
    assert_eq!(lab.pod_ifaces(), ["veth-pod-a", "veth-pod-b", "veth-pod-c"]);
    for pod in lab.pods() {
        let tcp = tcp_request(lab.client(), pod.echo_addr()).unwrap();
        assert_eq!(tcp.pod, pod.name);
        assert_eq!(tcp.peer.ip(), lab.client_ip());

        let udp = udp_request(lab.client(), pod.echo_addr()).unwrap();
        assert_eq!(udp.pod, pod.name);
        assert_eq!(udp.peer.ip(), lab.client_ip());
    }
}

#[test]
fn persistent_session_and_http() {
    if !root_or_skip("persistent_session_and_http") {
        return;
    }
    let lab = Lab::build(LabSpec::default()).unwrap();
    let pod = lab.pod("pod-b").unwrap();

    let mut session = TcpSession::open(lab.client(), pod.echo_addr()).unwrap();
    let local = session.local_addr().unwrap();
    for _ in 0..3 {
        let reply = session.request().unwrap();
        assert_eq!(reply.pod, "pod-b");
        assert_eq!(reply.peer, local);
    }

    let to = pod.echo_addr();
    let mut stream = lab
        .client()
        .run(move || TcpStream::connect_timeout(&to.into(), Duration::from_secs(2)))
        .unwrap()
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: pod\r\nUser-Agent: test\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK\r\n"), "{response:?}");
    assert!(response.ends_with("\r\n\r\npod-b\n"), "{response:?}");
}

#[test]
fn pod_reaches_another_pod_directly() {
    if !root_or_skip("pod_reaches_another_pod_directly") {
        return;
    }
    let lab = Lab::build(LabSpec::default()).unwrap();
    let (a, b) = (lab.pod("pod-a").unwrap(), lab.pod("pod-b").unwrap());
    assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 2));
    for reply in [
        tcp_request(&a.ns, b.echo_addr()).unwrap(),
        udp_request(&a.ns, b.echo_addr()).unwrap(),
    ] {
        assert_eq!(reply.pod, "pod-b");
        assert_eq!(reply.peer.ip(), a.ip);
    }
}

#[test]
fn drop_removes_namespaces_promptly_even_with_open_connections() {
    if !root_or_skip("drop_removes_namespaces") {
        return;
    }
    let lab = Lab::build(LabSpec::default()).unwrap();
    let names = lab_namespaces(&lab);
    let existing = list_namespaces().unwrap();
    assert!(
        names.iter().all(|n| existing.contains(n)),
        "{names:?} not in {existing:?}"
    );

    // An idle connection must not keep the echo server (and so the lab) alive.
    let mut session = TcpSession::open(lab.client(), lab.pods()[0].echo_addr()).unwrap();
    session.request().unwrap();
    let started = Instant::now();
    drop(lab);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );
    assert_gone(&names);
    assert!(
        session.request().is_err(),
        "the echo server outlived the lab"
    );
}

#[test]
fn panic_in_test_body_still_removes_namespaces() {
    if !root_or_skip("panic_in_test_body_still_removes_namespaces") {
        return;
    }
    let mut names = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::build(LabSpec::default()).unwrap();
        names = lab_namespaces(&lab);
        let unreachable = SocketAddrV4::new(Ipv4Addr::new(10, 244, 1, 2), 9);
        tcp_request(lab.client(), unreachable).expect("intended failure");
    }));
    assert!(outcome.is_err(), "the body should have panicked");
    assert_eq!(names.len(), 5);
    assert_gone(&names);
}
