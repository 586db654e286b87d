use std::path::Path;

use super::*;
use crate::manifests::load_dir;

fn fixture_report() -> CheckReport {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/check");
    report(&load_dir(&dir).unwrap())
}

#[test]
fn each_ingress_says_what_is_served_and_what_is_ignored_and_why() {
    let report = fixture_report();
    let text = &report.text;
    let lines: Vec<&str> = text.lines().collect();
    let position = |wanted: &str| {
        let found = lines.iter().position(|line| line.ends_with(wanted) || line.starts_with(wanted));
        found.unwrap_or_else(|| panic!("missing {wanted:?} in\n{text}"))
    };
    // In namespace/name order, each Ingress's lines after its heading.
    let expected = [
        "(Ingress prod/elsewhere): not served (class \"nginx\" is not ours)",
        "(Ingress prod/legacy): served",
        "  route legacy.example Prefix / -> shop:80",
        "  skipped legacy.example Prefix relative -> shop:80",
        "  annotations: proxy-read-timeout=30s, allowlist-source-range=10.0.0.0/8",
        "  error: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: invalid value \"10Q\" \
         (expected a size such as 8m, 512k or 0 (no limit)), annotation ignored",
        "  error: metadata.annotations[nginx.ingress.kubernetes.io/whitelist-source-range]: invalid CIDR \"not-a-cidr\" \
         in \"10.0.0.0/8,not-a-cidr\", range skipped (the others still apply)",
        "  warning: metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]: not implemented by this \
         controller, annotation ignored",
        "(Ingress prod/shop): served",
        "  route shop.example Prefix /api -> shop:80",
        "  route shop.example Exact /login -> shop:http",
        "  annotations: force-ssl-redirect=true (308 to https), proxy-body-size=8388608 bytes, \
         allowlist-source-range=10.0.0.0/8",
        "other problems:",
        "3 Ingresses, 2 served; errors: 4, warnings: 1",
    ];
    let positions: Vec<usize> = expected.iter().map(|line| position(line)).collect();
    assert!(positions.is_sorted(), "out of order: {positions:?}\n{text}");
    assert!(text.contains("broken.yaml doc 1: did not find expected"), "{text}");
    assert!(text.contains("spec.rules[0].http.paths[1].path: path \"relative\" does not start with /"), "{text}");
    assert_eq!(report.errors, 4);
}

#[test]
fn a_clean_directory_has_no_errors() {
    let loaded = crate::manifests::parse_documents(
        "ok.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: ebpf}\n\
         spec: {controller: ebpf-lb.dev/ingress-controller}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: default}\n\
         spec:\n  ingressClassName: ebpf\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n",
    );
    let report = report(&loaded);
    assert_eq!(report.errors, 0, "{}", report.text);
    assert!(report.text.contains("(Ingress default/web): served\n  default backend -> web:80\n"), "{}", report.text);
}
