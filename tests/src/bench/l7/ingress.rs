//! The routes as our IngressClass plus one Ingress per host, for the
//! agent's manifest directory.

use std::fmt::Write as _;

use super::routes::RouteSet;
use crate::bench::services::SERVICE_PORT;

/// IngressClass and Ingresses, as one multi-document YAML file.
pub fn yaml(routes: &RouteSet) -> String {
    let mut text = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: ebpf-lb}\n\
         spec: {controller: ebpf-lb.dev/ingress-controller}\n",
    );
    for (index, host) in routes.hosts().into_iter().enumerate() {
        let _ = write!(
            text,
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: bench-{index}, namespace: default}}\n\
             spec:\n  ingressClassName: ebpf-lb\n  rules:\n    - host: {host}\n      http:\n        paths:\n"
        );
        for route in routes.routes.iter().filter(|r| r.host == host) {
            let service = &routes.backends[route.backend].name;
            let _ = writeln!(
                text,
                "          - {{path: {}, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: {SERVICE_PORT}}}}}}}}}",
                route.path
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::l7::routes::{self, sample};
    use crate::bench::manifests::ManifestSet;
    use ingress_userspace::l7::{Decision, L7Options, RouteTable};
    use ingress_userspace::manifests::load_dir;

    #[test]
    fn the_agent_builds_every_route_without_problems() {
        let routes = sample();
        let set = ManifestSet::write(&routes::services(&routes)).unwrap();
        std::fs::write(set.path().join("ingresses.yaml"), yaml(&routes)).unwrap();
        let loaded = load_dir(set.path()).unwrap();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.snapshot.ingresses.len(), routes.hosts().len());
        let (table, problems) = RouteTable::build(&loaded.snapshot, &L7Options::default());
        assert!(problems.is_empty(), "{problems:?}");
        let forwarded = |host, path| {
            let request = hyper::Request::get(path).body(()).unwrap();
            matches!(table.lookup(host, "http", &request), Decision::Forward { .. })
        };
        assert!(forwarded(routes::MEASURED_HOST, "/anything"));
        assert!(forwarded(routes::CHURN_HOST, "/churn-7/x"));
        assert!(!forwarded(routes::CHURN_HOST, "/churn-6"), "only the current name of the renamed route is served");
    }
}
