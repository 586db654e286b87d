//! Table-driven tests of IPv6 and dual-stack Services.

use super::*;

#[test]
fn dual_stack_table() {
    type Case = (&'static str, NodeInfo, String, &'static [&'static str], &'static [(&'static str, &'static str)]);
    let cases: Vec<Case> = vec![
        (
            "dual-stack ClusterIP: each family's frontend gets its own family's endpoints",
            node(),
            svc("web", "spec: {clusterIPs: [10.96.0.1, 'fd00:96::1'], ipFamilies: [IPv4, IPv6], ports: [{port: 80}]}")
                + &slice("web-v4", "web", "ports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.1], nodeName: lab-node}]")
                + &slice6(
                    "web-v6",
                    "web",
                    "ports: [{port: 8080}]\nendpoints: [{addresses: ['fd00:1::1'], nodeName: lab-node}, {addresses: ['fd00:1::2']}]",
                ),
            &[
                "10.96.0.1:80/TCP default/web -> 10.1.0.1:8080*",
                "[fd00:96::1]:80/TCP default/web -> [fd00:1::1]:8080* [fd00:1::2]:8080",
            ],
            &[],
        ),
        (
            "IPv6-only Service: NodePorts on the node's IPv6 addresses only",
            dual_node(),
            svc("v6", "spec: {type: NodePort, clusterIP: 'fd00:96::2', ipFamilies: [IPv6], ports: [{port: 80, nodePort: 30080}]}")
                + &slice6("v6-1", "v6", "ports: [{port: 8080}]\nendpoints: [{addresses: ['fd00:1::3']}]"),
            &[
                "[fd00:1::10]:30080/TCP default/v6 -> [fd00:1::3]:8080",
                "[fd00:96::2]:80/TCP default/v6 -> [fd00:1::3]:8080",
            ],
            &[],
        ),
        (
            "dual-stack NodePort on a dual-stack node: both families' node addresses",
            dual_node(),
            svc("np", "spec: {type: NodePort, clusterIPs: [10.96.0.3, 'fd00:96::3'], ports: [{port: 80, nodePort: 30081}]}")
                + &slice("np-v4", "np", "ports: [{port: 80}]\nendpoints: [{addresses: [10.1.0.1]}]")
                + &slice6("np-v6", "np", "ports: [{port: 80}]\nendpoints: [{addresses: ['fd00:1::1']}]"),
            &[
                "10.96.0.3:80/TCP default/np -> 10.1.0.1:80",
                "192.168.1.10:30081/TCP default/np -> 10.1.0.1:80",
                "[fd00:1::10]:30081/TCP default/np -> [fd00:1::1]:80",
                "[fd00:96::3]:80/TCP default/np -> [fd00:1::1]:80",
            ],
            &[],
        ),
        (
            "single-stack IPv4 NodePort on a dual-stack node: IPv4 node addresses only",
            dual_node(),
            svc("np4", "spec: {type: NodePort, clusterIP: 10.96.0.4, ports: [{port: 80, nodePort: 30082}]}"),
            &["10.96.0.4:80/TCP default/np4 -> none", "192.168.1.10:30082/TCP default/np4 -> none"],
            &[],
        ),
        (
            "a Service naming no family (no cluster IP yet): NodePorts on every node address",
            dual_node(),
            svc("bare", "spec: {type: NodePort, ports: [{port: 80, nodePort: 30083}]}"),
            &["192.168.1.10:30083/TCP default/bare -> none", "[fd00:1::10]:30083/TCP default/bare -> none"],
            &[],
        ),
        (
            "a family without a slice has no backend (its frontends reject)",
            node(),
            svc("half", "spec: {clusterIPs: [10.96.0.5, 'fd00:96::5'], ports: [{port: 80}]}")
                + &slice("half-v4", "half", "ports: [{port: 80}]\nendpoints: [{addresses: [10.1.0.5]}]"),
            &["10.96.0.5:80/TCP default/half -> 10.1.0.5:80", "[fd00:96::5]:80/TCP default/half -> none"],
            &[],
        ),
        (
            "externalIPs and load-balancer IPs of both families; hostname-only ingress ignored",
            dual_node(),
            svc(
                "lb",
                "spec: {type: LoadBalancer, clusterIPs: [10.96.0.7, 'fd00:96::7'], externalIPs: [198.51.100.7, '2001:db8::7'], \
                 ports: [{port: 443, nodePort: 30443}]}\n\
                 status: {loadBalancer: {ingress: [{ip: 203.0.113.7}, {ip: '2001:db8:1::7'}, {hostname: lb.example.com}]}}",
            ),
            &[
                "10.96.0.7:443/TCP default/lb -> none",
                "192.168.1.10:30443/TCP default/lb -> none",
                "198.51.100.7:443/TCP default/lb -> none",
                "203.0.113.7:443/TCP default/lb -> none",
                "[2001:db8::7]:443/TCP default/lb -> none",
                "[2001:db8:1::7]:443/TCP default/lb -> none",
                "[fd00:1::10]:30443/TCP default/lb -> none",
                "[fd00:96::7]:443/TCP default/lb -> none",
            ],
            &[],
        ),
        (
            "IPv4-mapped IPv6 addresses are refused wherever they appear",
            node(),
            svc(
                "mapped",
                "spec: {clusterIPs: [10.96.0.8, '::ffff:10.96.0.9'], externalIPs: ['::ffff:198.51.100.8'], ports: [{port: 80}]}\n\
                 status: {loadBalancer: {ingress: [{ip: '::ffff:203.0.113.8'}]}}",
            ) + &slice6(
                "mapped-v6",
                "mapped",
                "ports: [{port: 80}]\nendpoints: [{addresses: ['::ffff:10.1.0.8']}, {addresses: ['fd00:1::8']}]",
            ),
            &["10.96.0.8:80/TCP default/mapped -> none"],
            &[
                ("invalid_address", "endpoints[0].addresses[0]"),
                ("invalid_address", "spec.clusterIPs[1]"),
                ("invalid_address", "spec.externalIPs[0]"),
                ("invalid_address", "status.loadBalancer.ingress[0].ip"),
            ],
        ),
        (
            "an address of the other family in a slice is refused",
            node(),
            svc("wrong", "spec: {clusterIPs: [10.96.0.9, 'fd00:96::9'], ports: [{port: 80}]}")
                + &slice("wrong-v4", "wrong", "ports: [{port: 80}]\nendpoints: [{addresses: ['fd00:1::9']}, {addresses: [10.1.0.9]}]")
                + &slice6("wrong-v6", "wrong", "ports: [{port: 80}]\nendpoints: [{addresses: [10.1.0.10]}]"),
            &["10.96.0.9:80/TCP default/wrong -> 10.1.0.9:80", "[fd00:96::9]:80/TCP default/wrong -> none"],
            &[("invalid_address", "endpoints[0].addresses[0]"), ("invalid_address", "endpoints[0].addresses[0]")],
        ),
        (
            "FQDN slices are ignored without a problem",
            node(),
            svc("fqdn", "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}")
                + &slice("fqdn-1", "fqdn", "ports: [{port: 80}]\nendpoints: [{addresses: [example.com]}]")
                    .replace("addressType: IPv4", "addressType: FQDN"),
            &["10.96.0.10:80/TCP default/fqdn -> none"],
            &[],
        ),
    ];
    for (name, node, yaml, frontends, expected) in cases {
        let (desired, problems) = run_on(&yaml, &node);
        assert_eq!(desired, *frontends, "{name}");
        assert_eq!(kinds_and_fields(&problems), *expected, "{name}: {problems:#?}");
    }
}

#[test]
fn the_problem_of_an_ipv4_mapped_address_says_how_to_write_it() {
    let (_, problems) = run(&svc("m", "spec: {clusterIP: '::ffff:10.96.0.1', ports: [{port: 80}]}"));
    assert_eq!(
        problems[0].to_string(),
        "t.yaml doc 1 (Service default/m): spec.clusterIP: IPv4-mapped IPv6 address \"::ffff:10.96.0.1\", \
         address skipped (write it as IPv4)"
    );
}

#[test]
fn source_ranges_restrict_the_load_balancer_ips_of_their_own_family() {
    let lb = |ranges: &str| {
        svc(
            "lb",
            &format!(
                "spec: {{type: LoadBalancer, clusterIPs: [10.96.0.7, 'fd00:96::7'], ports: [{{port: 80, nodePort: 30007}}], \
                 loadBalancerSourceRanges: [{ranges}]}}\n\
                 status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.1}}, {{ip: '2001:db8:1::1'}}]}}}}"
            ),
        )
    };
    type Ranges = Option<&'static [&'static str]>;
    type Case = (&'static str, String, Ranges, Ranges, &'static [&'static str]);
    let cases: Vec<Case> = vec![
        (
            "both families: each load-balancer IP gets its own family's ranges",
            lb("10.0.0.0/8, '2001:db8::/32', 192.0.2.1"),
            Some(&["10.0.0.0/8", "192.0.2.1/32"]),
            Some(&["2001:db8::/32"]),
            &[],
        ),
        ("IPv4 ranges only: the IPv6 one is open", lb("10.0.0.0/8"), Some(&["10.0.0.0/8"]), None, &[]),
        ("IPv6 ranges only: the IPv4 one is open", lb("'2001:db8::5/32'"), None, Some(&["2001:db8::/32"]), &[]),
        (
            "a malformed range restricts both families",
            lb("nope, '2001:db8::/32'"),
            Some(&[]),
            Some(&["2001:db8::/32"]),
            &["spec.loadBalancerSourceRanges[0]"],
        ),
        (
            "an IPv4-mapped range is malformed",
            lb("'::ffff:10.0.0.0/104'"),
            Some(&[]),
            Some(&[]),
            &["spec.loadBalancerSourceRanges[0]"],
        ),
    ];
    for (name, yaml, v4, v6, expected_fields) in cases {
        let loaded = parse_documents("t.yaml", &yaml);
        let (desired, problems) = translate(&loaded.snapshot, &dual_node());
        let to_strings = |ranges: Ranges| ranges.map(|ranges| ranges.iter().map(ToString::to_string).collect::<Vec<_>>());
        for (frontend, state) in &desired.frontends {
            let found = state.source_ranges.as_ref().map(|ranges| ranges.iter().map(ToString::to_string).collect());
            let want = match frontend.addr.to_string().as_str() {
                "203.0.113.1" => to_strings(v4),
                "2001:db8:1::1" => to_strings(v6),
                _ => None,
            };
            assert_eq!(found, want, "{name}: {frontend}");
        }
        assert_eq!(desired.frontends.len(), 6, "{name}: two cluster IPs, two LB IPs, two NodePorts");
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_deref().unwrap_or("")).collect();
        assert_eq!(fields, expected_fields, "{name}: {problems:#?}");
    }
}

#[test]
fn health_checks_answer_with_the_larger_familys_local_endpoints() {
    let service = svc(
        "hc",
        "spec: {type: LoadBalancer, externalTrafficPolicy: Local, clusterIPs: [10.96.0.6, 'fd00:96::6'], \
         ports: [{port: 80, nodePort: 30080}], healthCheckNodePort: 32000}",
    );
    let v4 = |addresses: &str| slice("hc-v4", "hc", &format!("ports: [{{port: 80}}]\nendpoints: [{addresses}]"));
    let v6 = |addresses: &str| slice6("hc-v6", "hc", &format!("ports: [{{port: 80}}]\nendpoints: [{addresses}]"));
    let local = |addr: &str| format!("{{addresses: ['{addr}'], nodeName: lab-node}}");
    let cases = [
        ("no endpoint", String::new(), 0),
        (
            "dual-stack pods count once",
            v4(&[local("10.1.0.1"), local("10.1.0.2")].join(", ")) + &v6(&[local("fd00:1::1"), local("fd00:1::2")].join(", ")),
            2,
        ),
        ("IPv6 endpoints only", v6(&local("fd00:1::1")), 1),
        (
            "the family with more ready local endpoints",
            v4(&local("10.1.0.1")) + &v6(&[local("fd00:1::1"), local("fd00:1::2"), "{addresses: ['fd00:1::3']}".into()].join(", ")),
            2,
        ),
    ];
    for (name, slices, expected) in cases {
        let loaded = parse_documents("t.yaml", &(service.clone() + &slices));
        assert!(loaded.problems.is_empty(), "{name}: {:?}", loaded.problems);
        let (desired, problems) = translate(&loaded.snapshot, &dual_node());
        assert_eq!(problems, [], "{name}");
        let counts: Vec<usize> = desired.health_checks.values().map(|check| check.local_endpoints).collect();
        assert_eq!(counts, [expected], "{name}");
    }
}
