//! Table-driven tests of `translate`, written as the YAML an operator would apply.

use super::*;
use crate::dataplane::fake::render;
use crate::manifests::{load_dir, parse_documents};

mod dual_stack;
mod incremental;

fn svc(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n{body}\n---\n")
}

fn slice(name: &str, service: &str, body: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\n{body}\n---\n"
    )
}

/// An IPv6 slice: the same notation as `slice`.
fn slice6(name: &str, service: &str, body: &str) -> String {
    slice(name, service, body).replace("addressType: IPv4", "addressType: IPv6")
}

fn node_with(addresses: &[&str]) -> NodeInfo {
    NodeInfo { name: "lab-node".into(), addresses: addresses.iter().map(|a| a.parse().unwrap()).collect() }
}

fn node() -> NodeInfo {
    node_with(&["192.168.1.10", "192.168.1.11"])
}

/// A dual-stack node, its IPv6 address listed first.
fn dual_node() -> NodeInfo {
    node_with(&["fd00:1::10", "192.168.1.10"])
}

fn run(yaml: &str) -> (Vec<String>, Vec<Problem>) {
    run_on(yaml, &node())
}

fn run_on(yaml: &str, node: &NodeInfo) -> (Vec<String>, Vec<Problem>) {
    let loaded = parse_documents("t.yaml", yaml);
    assert!(loaded.problems.is_empty(), "test manifests: {:?}", loaded.problems);
    let (desired, problems) = translate(&loaded.snapshot, node);
    (render(&desired), problems)
}

/// `(kind, field)` of each problem, for table tests.
fn kinds_and_fields(problems: &[Problem]) -> Vec<(&'static str, &str)> {
    problems.iter().map(|p| (p.kind.label(), p.field.as_deref().unwrap_or(""))).collect()
}

const EP_8080: &str = "ports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.1], nodeName: lab-node}, {addresses: [10.1.0.2], nodeName: b}]";
const EP6_8080: &str =
    "ports: [{port: 8080}]\nendpoints: [{addresses: ['fd00:1::1'], nodeName: lab-node}, {addresses: ['fd00:1::2'], nodeName: b}]";

#[test]
fn translate_table() {
    type Case = (
        &'static str,
        String,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );
    let cases: Vec<Case> = vec![
        (
            "ClusterIP; ready nil is ready; nodeName decides local",
            svc(
                "web",
                "spec: {clusterIP: 10.96.0.1, ports: [{port: 80, targetPort: 8080}]}",
            ) + &slice("web-1", "web", EP_8080),
            &["10.96.0.1:80/TCP default/web -> 10.1.0.1:8080* 10.1.0.2:8080"],
            &[],
        ),
        (
            "NodePort on every node address",
            svc(
                "np",
                "spec: {type: NodePort, clusterIP: 10.96.0.2, ports: [{port: 80, nodePort: 30080}]}",
            ),
            &[
                "10.96.0.2:80/TCP default/np -> none",
                "192.168.1.10:30080/TCP default/np -> none",
                "192.168.1.11:30080/TCP default/np -> none",
            ],
            &[],
        ),
        (
            "LoadBalancer: ingress IPs and NodePorts; hostname-only ingress ignored",
            svc(
                "lb",
                "spec: {type: LoadBalancer, clusterIP: 10.96.0.3, ports: [{port: 443, nodePort: 30443}]}\n\
                 status: {loadBalancer: {ingress: [{ip: 203.0.113.7}, {hostname: lb.example.com}]}}",
            ),
            &[
                "10.96.0.3:443/TCP default/lb -> none",
                "192.168.1.10:30443/TCP default/lb -> none",
                "192.168.1.11:30443/TCP default/lb -> none",
                "203.0.113.7:443/TCP default/lb -> none",
            ],
            &[],
        ),
        (
            "externalIPs; a bad one is skipped alone; cluster IPs of both families",
            svc(
                "ext",
                "spec: {clusterIPs: [10.96.0.4, 'fd00::4'], externalIPs: [198.51.100.1, nope], ports: [{port: 80}]}",
            ),
            &[
                "10.96.0.4:80/TCP default/ext -> none",
                "198.51.100.1:80/TCP default/ext -> none",
                "[fd00::4]:80/TCP default/ext -> none",
            ],
            &[("invalid_address", "spec.externalIPs[1]")],
        ),
        (
            "headless and ExternalName Services program nothing",
            svc("headless", "spec: {clusterIP: None, ports: [{port: 80}]}")
                + &svc(
                    "name",
                    "spec: {type: ExternalName, externalName: example.com, ports: [{port: 80}]}",
                )
                + &slice("headless-1", "headless", EP_8080),
            &[],
            &[],
        ),
        (
            "named ports resolve per slice",
            svc(
                "multi",
                "spec: {clusterIP: 10.96.0.6, ports: [{name: http, port: 80}, {name: metrics, port: 9090}]}",
            ) + &slice(
                "multi-1",
                "multi",
                "ports: [{name: metrics, port: 9100}, {name: http, port: 8080}]\nendpoints: [{addresses: [10.1.0.1]}]",
            ) + &slice(
                "multi-2",
                "multi",
                "ports: [{name: http, port: 8081}]\nendpoints: [{addresses: [10.1.0.2]}]",
            ),
            &[
                "10.96.0.6:80/TCP default/multi:http -> 10.1.0.1:8080 10.1.0.2:8081",
                "10.96.0.6:9090/TCP default/multi:metrics -> 10.1.0.1:9100",
            ],
            &[],
        ),
        (
            "TCP and UDP on one port are two frontends",
            svc(
                "dns",
                "spec: {clusterIP: 10.96.0.7, ports: [{name: u, port: 53, protocol: UDP}, {name: t, port: 53}]}",
            ) + &slice(
                "dns-1",
                "dns",
                "ports: [{name: u, port: 5353, protocol: UDP}, {name: t, port: 5354, protocol: TCP}]\nendpoints: [{addresses: [10.1.0.1]}]",
            ),
            &[
                "10.96.0.7:53/TCP default/dns:t -> 10.1.0.1:5354",
                "10.96.0.7:53/UDP default/dns:u -> 10.1.0.1:5353",
            ],
            &[],
        ),
        (
            "several slices, an endpoint in two of them counted once, IPv6 slices only for IPv6 frontends",
            svc("big", "spec: {clusterIP: 10.96.0.8, ports: [{port: 80}]}")
                + &slice(
                    "big-1",
                    "big",
                    "ports: [{port: 80}]\nendpoints: [{addresses: [10.1.0.3]}, {addresses: [10.1.0.1]}]",
                )
                + &slice(
                    "big-2",
                    "big",
                    "ports: [{port: 80}]\nendpoints: [{addresses: [10.1.0.2]}, {addresses: [10.1.0.3]}]",
                )
                + &slice(
                    "big-3",
                    "big",
                    "ports: [{port: 80}]\nendpoints: [{addresses: ['fd00::1']}]",
                )
                .replace("IPv4", "IPv6"),
            &["10.96.0.8:80/TCP default/big -> 10.1.0.1:80 10.1.0.2:80 10.1.0.3:80"],
            &[],
        ),
        (
            "terminating endpoints only when none is ready (KEP-1669)",
            svc("roll", "spec: {clusterIP: 10.96.0.9, ports: [{port: 80}]}")
                + &slice(
                    "roll-1",
                    "roll",
                    "ports: [{port: 8080}]\nendpoints: [\
                     {addresses: [10.1.0.1], conditions: {ready: false, serving: true, terminating: true}},\
                     {addresses: [10.1.0.2], conditions: {ready: false, serving: false, terminating: true}},\
                     {addresses: [10.1.0.3], conditions: {ready: false}}]",
                )
                + &svc("stable", "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}")
                + &slice(
                    "stable-1",
                    "stable",
                    "ports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.4], conditions: {ready: true}},\
                     {addresses: [10.1.0.5], conditions: {ready: false, serving: true, terminating: true}}]",
                ),
            &[
                "10.96.0.9:80/TCP default/roll -> 10.1.0.1:8080~",
                "10.96.0.10:80/TCP default/stable -> 10.1.0.4:8080",
            ],
            &[],
        ),
        (
            "slices of unknown Services are warnings",
            slice("orphan-1", "orphan", EP_8080),
            &[],
            &[("unknown_service", "")],
        ),
        (
            "bad ports skip only themselves",
            svc(
                "ports",
                "spec: {type: NodePort, clusterIP: 10.96.0.11, ports: [{name: a, port: 0}, {name: b, port: 81, nodePort: 70000},\
                 {name: c, port: 82, protocol: SCTP}]}",
            ) + &slice(
                "ports-1",
                "ports",
                "ports: [{name: b, port: 8081}, {name: x, port: 0}]\nendpoints: [{addresses: [10.1.0.1, 10.1.0.9]}, {addresses: [bad]}]",
            ),
            &["10.96.0.11:81/TCP default/ports:b -> 10.1.0.1:8081"],
            &[
                ("invalid_port", "ports[1].port"),
                ("invalid_address", "endpoints[1].addresses[0]"),
                ("invalid_port", "spec.ports[0].port"),
                ("invalid_port", "spec.ports[1].nodePort"),
                ("unsupported_protocol", "spec.ports[2].protocol"),
            ],
        ),
        (
            "two Services claiming one frontend: the first by namespace/name wins",
            svc("b-second", "spec: {clusterIP: 10.96.0.12, ports: [{port: 80}]}")
                + &svc(
                    "a-first",
                    "spec: {clusterIP: 10.96.0.12, externalIPs: [10.96.0.12], ports: [{port: 80}]}",
                ),
            &["10.96.0.12:80/TCP default/a-first -> none"],
            &[("duplicate_frontend", "spec.ports[0]")],
        ),
    ];
    for (name, yaml, frontends, expected) in cases {
        let (desired, problems) = run(&yaml);
        assert_eq!(desired, *frontends, "{name}");
        assert_eq!(kinds_and_fields(&problems), *expected, "{name}: {problems:#?}");
    }
}

#[test]
fn problems_point_at_the_manifest() {
    let (_, problems) = run(&svc("web", "spec: {clusterIP: 10.96.0.1, ports: [{port: 0}]}"));
    assert_eq!(
        problems[0].to_string(),
        "t.yaml doc 1 (Service default/web): spec.ports[0].port: invalid port 0, port skipped"
    );
}

#[test]
fn client_ip_affinity_timeouts() {
    let with = |extra: &str| format!("spec: {{clusterIP: 10.96.0.9, ports: [{{port: 80}}]{extra}}}");
    let cases = [
        ("no affinity", with(""), 0),
        ("sessionAffinity None", with(", sessionAffinity: None"), 0),
        ("ClientIP, default timeout", with(", sessionAffinity: ClientIP"), 10_800),
        (
            "ClientIP, 60 s",
            with(", sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}"),
            60,
        ),
        (
            "ClientIP, out of range falls back to the default",
            with(", sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}"),
            10_800,
        ),
    ];
    for (name, spec, expected) in cases {
        let loaded = parse_documents("t.yaml", &svc("sticky", &spec));
        let (desired, _) = translate(&loaded.snapshot, &node());
        let timeouts: Vec<u32> = desired.frontends.values().map(|f| f.affinity_timeout_s).collect();
        assert_eq!(timeouts, [expected], "{name}");
    }
}

#[test]
fn load_balancer_source_ranges_apply_to_ingress_ips_only() {
    let lb = |ranges: &str| {
        svc(
            "lb",
            &format!(
                "spec: {{type: LoadBalancer, clusterIP: 10.96.0.7, externalIPs: [203.0.113.9], \
                 ports: [{{port: 80, nodePort: 30007}}]{ranges}}}\n\
                 status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.1}}]}}}}"
            ),
        )
    };
    type Case = (&'static str, String, Option<&'static [&'static str]>, &'static [&'static str]);
    let cases: Vec<Case> = vec![
        ("unset: everyone", lb(""), None, &[]),
        ("empty list: everyone", lb(", loadBalancerSourceRanges: []"), None, &[]),
        (
            "host bits cleared, sorted, deduplicated; a bare address is a /32",
            lb(", loadBalancerSourceRanges: [192.0.2.77/24, 10.0.0.0/8, 192.0.2.0/24, 198.51.100.2]"),
            Some(&["10.0.0.0/8", "192.0.2.0/24", "198.51.100.2/32"]),
            &[],
        ),
        ("IPv6 ranges only: no IPv4 restriction", lb(", loadBalancerSourceRanges: [\"2001:db8::/32\"]"), None, &[]),
        (
            "a malformed range is reported and narrows the set",
            lb(", loadBalancerSourceRanges: [10.0.0.0/33, 192.0.2.0/24]"),
            Some(&["192.0.2.0/24"]),
            &["spec.loadBalancerSourceRanges[0]"],
        ),
        (
            "only malformed ranges: nobody (never silently open)",
            lb(", loadBalancerSourceRanges: [not-a-cidr]"),
            Some(&[]),
            &["spec.loadBalancerSourceRanges[0]"],
        ),
    ];
    for (name, yaml, expected, expected_fields) in cases {
        let loaded = parse_documents("t.yaml", &yaml);
        let (desired, problems) = translate(&loaded.snapshot, &node());
        for (frontend, state) in &desired.frontends {
            let ranges = state
                .source_ranges
                .as_ref()
                .map(|ranges| ranges.iter().map(ToString::to_string).collect::<Vec<_>>());
            let want = if frontend.addr == IpAddr::from([203, 0, 113, 1]) {
                expected.map(|ranges| ranges.iter().map(ToString::to_string).collect())
            } else {
                None
            };
            assert_eq!(ranges, want, "{name}: {frontend}");
        }
        assert_eq!(desired.frontends.len(), 5, "{name}: ClusterIP, externalIP, LB IP, two NodePorts");
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_deref().unwrap_or("")).collect();
        assert_eq!(fields, expected_fields, "{name}: {problems:#?}");
    }
}

#[test]
fn traffic_policies_per_frontend_kind() {
    let with = |extra: &str| {
        svc(
            "pol",
            &format!(
                "spec: {{clusterIP: 10.96.0.5, externalIPs: [198.51.100.9], ports: [{{port: 80, nodePort: 30080}}]{extra}}}\n\
                 status: {{loadBalancer: {{ingress: [{{ip: 203.0.113.5}}]}}}}"
            ),
        )
    };
    let all = |cluster_ip: &str, external: &str| {
        vec![
            format!("10.96.0.5:80/TCP {cluster_ip}"),
            format!("192.168.1.10:30080/TCP {external}"),
            format!("192.168.1.11:30080/TCP {external}"),
            format!("198.51.100.9:80/TCP {external}"),
            format!("203.0.113.5:80/TCP {external}"),
        ]
    };
    let cases = [
        ("defaults are Cluster", with(", type: LoadBalancer"), all("Nobody", "Nobody")),
        (
            "externalTrafficPolicy Local: every external frontend, not the ClusterIP",
            with(", type: LoadBalancer, externalTrafficPolicy: Local"),
            all("Nobody", "ExternalClients"),
        ),
        (
            "internalTrafficPolicy Local: the ClusterIP only",
            with(", type: NodePort, internalTrafficPolicy: Local"),
            all("AllClients", "Nobody"),
        ),
        (
            "both Local",
            with(", type: NodePort, internalTrafficPolicy: Local, externalTrafficPolicy: Local"),
            all("AllClients", "ExternalClients"),
        ),
        (
            "explicit Cluster",
            with(", type: NodePort, internalTrafficPolicy: Cluster, externalTrafficPolicy: Cluster"),
            all("Nobody", "Nobody"),
        ),
        (
            // As kube-proxy: only NodePort and LoadBalancer Services have an
            // external policy, even for their external IPs.
            "externalTrafficPolicy on a ClusterIP Service has no effect",
            with(", type: ClusterIP, externalTrafficPolicy: Local"),
            ["10.96.0.5:80/TCP Nobody", "198.51.100.9:80/TCP Nobody", "203.0.113.5:80/TCP Nobody"]
                .map(String::from)
                .to_vec(),
        ),
    ];
    for (name, yaml, expected) in cases {
        let loaded = parse_documents("t.yaml", &yaml);
        assert!(loaded.problems.is_empty(), "{name}: {:?}", loaded.problems);
        let (desired, problems) = translate(&loaded.snapshot, &node());
        assert_eq!(problems, [], "{name}");
        let found: Vec<String> = desired
            .frontends
            .iter()
            .map(|(frontend, state)| format!("{frontend} {:?}", state.local_only))
            .collect();
        assert_eq!(found, expected, "{name}");
    }
}

#[test]
fn health_check_node_ports_count_ready_local_endpoints() {
    let local_policy = "type: LoadBalancer, externalTrafficPolicy: Local, clusterIP: 10.96.0.6, ports: [{port: 80, nodePort: 30080}]";
    let endpoints = "ports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.1], nodeName: lab-node}, \
                     {addresses: [10.1.0.2], nodeName: lab-node, conditions: {ready: false}}, \
                     {addresses: [10.1.0.3], nodeName: b}]";
    let cases = [
        (
            "one ready local endpoint (not ready and remote ones do not count)",
            svc("hc", &format!("spec: {{{local_policy}, healthCheckNodePort: 32000}}")) + &slice("hc-1", "hc", endpoints),
            vec!["32000 default/hc 1"],
            vec![],
        ),
        (
            "no local endpoint: still served (it answers 503)",
            svc("hc", &format!("spec: {{{local_policy}, healthCheckNodePort: 32000}}")),
            vec!["32000 default/hc 0"],
            vec![],
        ),
        (
            "Cluster policy: no health check",
            svc("hc", "spec: {type: LoadBalancer, clusterIP: 10.96.0.6, ports: [{port: 80}], healthCheckNodePort: 32000}"),
            vec![],
            vec![],
        ),
        (
            "a port used twice and an invalid one are reported",
            svc("hc", &format!("spec: {{{local_policy}, healthCheckNodePort: 32000}}"))
                + &svc(
                    "hd",
                    "spec: {type: NodePort, externalTrafficPolicy: Local, clusterIP: 10.96.0.7, ports: [{port: 80}], healthCheckNodePort: 32000}",
                )
                + &svc(
                    "he",
                    "spec: {type: NodePort, externalTrafficPolicy: Local, clusterIP: 10.96.0.8, ports: [{port: 80}], healthCheckNodePort: 70000}",
                ),
            vec!["32000 default/hc 0"],
            vec![("duplicate_frontend", "spec.healthCheckNodePort"), ("invalid_port", "spec.healthCheckNodePort")],
        ),
    ];
    for (name, yaml, expected, expected_problems) in cases {
        let loaded = parse_documents("t.yaml", &yaml);
        assert!(loaded.problems.is_empty(), "{name}: {:?}", loaded.problems);
        let (desired, problems) = translate(&loaded.snapshot, &node());
        let found: Vec<String> = desired
            .health_checks
            .iter()
            .map(|(port, check)| format!("{port} {}/{} {}", check.namespace, check.name, check.local_endpoints))
            .collect();
        assert_eq!(found, expected, "{name}");
        let problems: Vec<_> = problems.iter().map(|p| (p.kind.label(), p.field.as_deref().unwrap_or(""))).collect();
        assert_eq!(problems, expected_problems, "{name}");
    }
}

/// What `translator` makes of `snapshot`, as `translate` gives it.
fn translated(translator: &mut Translator, snapshot: &Snapshot, node: &NodeInfo) -> (DesiredState, Vec<Problem>) {
    translator.translate(snapshot, node);
    (translator.desired().clone(), translator.problems().to_vec())
}

/// A `Translator` fed snapshot after snapshot gives what `translate` gives
/// from scratch each time: frontends, health checks and problems in order,
/// including conflicts between Services that did and did not change.
#[test]
fn a_translator_follows_changes_like_a_fresh_translation() {
    let web = |ip: &str| {
        let field = if ip.starts_with('[') { "clusterIPs" } else { "clusterIP" };
        svc("web", &format!("spec: {{{field}: {ip}, ports: [{{port: 80, targetPort: 8080}}]}}"))
    };
    let local = svc(
        "loc",
        "spec: {type: NodePort, clusterIP: 10.96.0.9, externalTrafficPolicy: Local, healthCheckNodePort: 31000, \
         ports: [{port: 80, nodePort: 30080}]}",
    );
    let steps: Vec<(&str, String)> = vec![
        ("first", web("10.96.0.1") + &slice("web-1", "web", EP_8080) + &local + &slice("loc-1", "loc", EP_8080)),
        ("same", web("10.96.0.1") + &slice("web-1", "web", EP_8080) + &local + &slice("loc-1", "loc", EP_8080)),
        (
            "an endpoint changes",
            web("10.96.0.1") + &slice("web-1", "web", "ports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.3]}]") + &local
                + &slice("loc-1", "loc", EP_8080),
        ),
        (
            "a bad address in a slice, an unknown Service",
            web("10.96.0.1") + &slice("web-1", "web", "ports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.999]}]")
                + &local + &slice("loc-1", "loc", EP_8080) + &slice("x-1", "nobody", EP_8080),
        ),
        (
            "a new Service takes web's address: the earlier name wins",
            svc("aaa", "spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}") + &web("10.96.0.1")
                + &slice("web-1", "web", EP_8080) + &local + &slice("loc-1", "loc", EP_8080),
        ),
        (
            "and gives it back; loc's health check port is taken by another",
            web("10.96.0.1") + &slice("web-1", "web", EP_8080) + &local + &slice("loc-1", "loc", EP_8080)
                + &svc(
                    "ahc",
                    "spec: {type: NodePort, clusterIP: 10.96.0.8, externalTrafficPolicy: Local, healthCheckNodePort: 31000, \
                     ports: [{port: 80, nodePort: 30081}]}",
                ),
        ),
        ("web moves", web("10.96.0.2") + &slice("web-1", "web", EP_8080)),
        (
            "web becomes dual-stack",
            web("[10.96.0.2, 'fd00:96::2']") + &slice("web-1", "web", EP_8080) + &slice6("web-2", "web", EP6_8080) + &local,
        ),
        (
            "an IPv6 endpoint changes",
            web("[10.96.0.2, 'fd00:96::2']") + &slice("web-1", "web", EP_8080)
                + &slice6("web-2", "web", "ports: [{port: 8080}]\nendpoints: [{addresses: ['fd00:1::3']}]") + &local,
        ),
        ("the IPv6 slice goes", web("[10.96.0.2, 'fd00:96::2']") + &slice("web-1", "web", EP_8080) + &local),
        ("nothing", String::new()),
    ];
    // Documents parsed once each, as the directory source keeps unchanged
    // files: their versions say they did not change.
    let mut parsed: std::collections::HashMap<String, crate::manifests::ParsedFile> = Default::default();
    let mut by_versions = Translator::default();
    let mut by_objects = Translator::default();
    for (name, yaml) in steps {
        let mut loaded = crate::manifests::Loaded::default();
        for (index, document) in yaml.split("---\n").filter(|d| !d.is_empty()).enumerate() {
            let file = format!("t{index}.yaml");
            let file = parsed.entry(document.to_owned()).or_insert_with(|| crate::manifests::parse_file(&file, document));
            loaded.add_file(file);
        }
        assert!(loaded.problems.is_empty(), "{name}: {:?}", loaded.problems);
        let fresh = translate(&loaded.snapshot, &dual_node());
        assert_eq!(translated(&mut by_versions, &loaded.snapshot, &dual_node()), fresh, "{name}: by versions");
        loaded.snapshot.versions = Default::default();
        assert_eq!(translated(&mut by_objects, &loaded.snapshot, &dual_node()), fresh, "{name}: by objects");
    }
    let mut translator = by_versions;
    // Another node's view: local endpoints differ, nothing stale is kept.
    let loaded = parse_documents("t.yaml", &(web("10.96.0.1") + &slice("web-1", "web", EP_8080)));
    let other = NodeInfo { name: "b".into(), ..dual_node() };
    assert_eq!(translated(&mut translator, &loaded.snapshot, &other), translate(&loaded.snapshot, &other));
    // The same objects from another document: problems name the new place.
    let moved = parse_documents("u.yaml", &(web("10.96.0.1") + &slice("web-1", "web", "ports: [{port: 8080}]\nendpoints: [{addresses: [bad]}]")));
    let (_, problems) = translated(&mut translator, &moved.snapshot, &other);
    assert_eq!(problems, translate(&moved.snapshot, &other).1);
    assert!(problems[0].to_string().starts_with("u.yaml"), "{}", problems[0]);
}

#[test]
fn the_lab_examples_load_cleanly() {
    let loaded = load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")).unwrap();
    assert_eq!(loaded.problems, []);
    // The L7 routes too: the Ingress, the pod annotations, the HTTPRoute.
    let (_, l7_problems) = crate::l7::RouteTable::build(&loaded.snapshot, &crate::l7::L7Options::default());
    assert_eq!(l7_problems, []);
    let node = NodeInfo {
        name: "lab-node".into(),
        addresses: vec!["192.168.100.2".parse().unwrap(), "2001:db8::1".parse().unwrap()],
    };
    let (desired, problems) = translate(&loaded.snapshot, &node);
    assert_eq!(problems, []);
    let backends = "10.244.1.2:8080* 10.244.2.2:8080* 10.244.3.2:8080*";
    let backends6 = "[fd00:10:244:1::2]:8080* [fd00:10:244:2::2]:8080* [fd00:10:244:3::2]:8080*";
    // echo is dual-stack, each family over its own EndpointSlice; echo-a
    // is IPv4 only, so it has no IPv6 frontend.
    assert_eq!(
        render(&desired),
        [
            format!("10.96.0.10:53/UDP default/echo:udp -> {backends}"),
            format!("10.96.0.10:80/TCP default/echo:tcp -> {backends}"),
            "10.96.0.11:80/TCP default/echo-a:tcp -> 10.244.1.2:8080*".to_string(),
            format!("192.168.100.2:30053/UDP default/echo:udp -> {backends}"),
            format!("192.168.100.2:30080/TCP default/echo:tcp -> {backends}"),
            format!("[2001:db8::1]:30053/UDP default/echo:udp -> {backends6}"),
            format!("[2001:db8::1]:30080/TCP default/echo:tcp -> {backends6}"),
            format!("[fd00:10:96::10]:53/UDP default/echo:udp -> {backends6}"),
            format!("[fd00:10:96::10]:80/TCP default/echo:tcp -> {backends6}"),
        ]
    );
}
