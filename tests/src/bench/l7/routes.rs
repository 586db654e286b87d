//! The routes every contender serves, and the one route the route changes
//! rename: a handful of hosts and paths, plus `shop.example/` spread over
//! ten pods, which is the route the load is sent to.

use std::net::SocketAddrV4;

/// The pods of the lab: `web-0` .. `web-9`.
pub const PODS: usize = 10;
/// What the load asks for.
pub const MEASURED_HOST: &str = "shop.example";
pub const MEASURED_PATH: &str = "/";
/// The host of the route that the route changes rename; the load never asks for it.
pub const CHURN_HOST: &str = "churn.example";

pub fn pod_name(index: usize) -> String {
    format!("web-{index}")
}

/// Backends as (name, pod indexes); the first is the measured one.
const BACKENDS: [(&str, &[usize]); 5] = [
    ("web", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ("api", &[0, 1]),
    ("static", &[2]),
    ("admin", &[3, 4]),
    ("docs", &[5]),
];

/// (host, path prefix, backend index).
const ROUTES: [(&str, &str, usize); 6] = [
    (MEASURED_HOST, MEASURED_PATH, 0),
    (MEASURED_HOST, "/api", 1),
    (MEASURED_HOST, "/static", 2),
    ("admin.example", "/", 3),
    ("docs.example", "/v1", 4),
    ("docs.example", "/", 2),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub endpoints: Vec<SocketAddrV4>,
}

/// A Prefix route in the Ingress sense: `path` matches itself and anything
/// below it at a `/` boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub path: String,
    /// Index into [`RouteSet::backends`].
    pub backend: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSet {
    pub backends: Vec<Backend>,
    pub routes: Vec<Route>,
}

impl RouteSet {
    /// The routes with the `change`-th version of the renamed route, which
    /// also flips between two backends.
    pub fn new(pod_endpoints: &[SocketAddrV4], change: usize) -> RouteSet {
        let backends = BACKENDS
            .iter()
            .map(|(name, pods)| Backend { name: (*name).into(), endpoints: pods.iter().map(|&p| pod_endpoints[p]).collect() })
            .collect();
        let fixed = ROUTES.iter().map(|&(host, path, backend)| Route { host: host.into(), path: path.into(), backend });
        let renamed = Route { host: CHURN_HOST.into(), path: churn_path(change), backend: 1 + change % 2 };
        RouteSet { backends, routes: fixed.chain([renamed]).collect() }
    }

    /// The routes in matching order: longest path first, so that the
    /// first match is the longest prefix, as the Ingress spec wants.
    pub fn by_precedence(&self) -> Vec<&Route> {
        let mut routes: Vec<&Route> = self.routes.iter().collect();
        routes.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then_with(|| a.host.cmp(&b.host)));
        routes
    }

    /// Distinct hosts, in first-use order.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = Vec::new();
        for route in &self.routes {
            if !hosts.contains(&route.host.as_str()) {
                hosts.push(&route.host);
            }
        }
        hosts
    }
}

/// The path of the renamed route after `change` changes.
pub fn churn_path(change: usize) -> String {
    format!("/churn-{change}")
}

/// Backends as L4 Services for the agent's manifests (`ManifestSet`).
pub fn services(routes: &RouteSet) -> Vec<super::super::services::Service> {
    routes
        .backends
        .iter()
        .zip(1u8..)
        .map(|(backend, i)| super::super::services::Service {
            name: backend.name.clone(),
            cluster_ip: std::net::Ipv4Addr::new(10, 96, 7, i),
            node_port: None,
            endpoints: backend.endpoints.iter().map(|e| *e.ip()).collect(),
        })
        .collect()
}

#[cfg(test)]
pub(super) fn sample() -> RouteSet {
    let pods: Vec<SocketAddrV4> =
        (1..=PODS as u8).map(|i| SocketAddrV4::new(std::net::Ipv4Addr::new(10, 244, i, 2), 8080)).collect();
    RouteSet::new(&pods, 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_route_spreads_over_ten_pods_and_the_renamed_route_flips_backends() {
        let routes = sample();
        assert_eq!(routes.backends[0].endpoints.len(), PODS);
        let renamed = routes.routes.last().unwrap();
        assert_eq!((renamed.host.as_str(), renamed.path.as_str(), renamed.backend), (CHURN_HOST, "/churn-7", 2));
        let pods: Vec<SocketAddrV4> = routes.backends[0].endpoints.clone();
        assert_eq!(RouteSet::new(&pods, 8).routes.last().unwrap().backend, 1);
        assert_eq!(routes.hosts(), ["shop.example", "admin.example", "docs.example", CHURN_HOST]);
    }

    #[test]
    fn precedence_puts_longer_prefixes_first() {
        let routes = sample();
        let order: Vec<&str> = routes.by_precedence().iter().map(|r| r.path.as_str()).collect();
        assert_eq!(order.first(), Some(&"/churn-7"));
        assert!(order.iter().position(|p| *p == "/v1") < order.iter().position(|p| *p == "/"));
        assert_eq!(&order[order.len() - 3..], ["/", "/", "/"]);
    }
}
