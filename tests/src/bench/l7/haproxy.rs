//! HAProxy as a plain reverse proxy of the routes: one frontend whose
//! `use_backend` rules go longest path first, a backend per route target
//! with connection reuse, one thread; route changes are a rewritten file and
//! a reload (master-worker mode, SIGUSR2 to the master).

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;

use super::routes::RouteSet;

pub fn config(routes: &RouteSet, listen: SocketAddrV4, dir: &Path) -> String {
    let mut cfg = format!(
        "global\n  nbthread 1\n  maxconn 4096\n  pidfile {}/haproxy.pid\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  \
         option http-keep-alive\n  http-reuse always\n\
         frontend bench\n  bind {listen}\n",
        dir.display()
    );
    for route in routes.by_precedence() {
        let backend = &routes.backends[route.backend].name;
        let host = format!("{{ req.hdr(host) -m str {} }}", route.host);
        // A Prefix path matches itself and what lies below it at a `/`.
        let _ = match route.path.as_str() {
            "/" => writeln!(cfg, "  use_backend {backend} if {host}"),
            path => writeln!(cfg, "  use_backend {backend} if {host} {{ path -m str {path} }} || {host} {{ path_beg {path}/ }}"),
        };
    }
    cfg.push_str("  default_backend not_found\nbackend not_found\n  http-request return status 404\n");
    for backend in &routes.backends {
        let _ = writeln!(cfg, "backend {}\n  balance roundrobin", backend.name);
        for (index, endpoint) in backend.endpoints.iter().enumerate() {
            let _ = writeln!(cfg, "  server s{index} {endpoint}");
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::l7::routes::sample;

    #[test]
    fn rules_go_longest_path_first_and_backends_list_their_pods() {
        let cfg = config(&sample(), "198.51.100.1:8082".parse().unwrap(), Path::new("/tmp/x"));
        let position = |needle: &str| cfg.find(needle).unwrap_or_else(|| panic!("missing {needle:?} in\n{cfg}"));
        assert!(position("{ path -m str /churn-7 }") < position("{ path -m str /api }"));
        assert!(position("{ path_beg /api/ }") < position("use_backend web if { req.hdr(host) -m str shop.example }\n"));
        assert!(position("backend web\n  balance roundrobin\n  server s0 10.244.1.2:8080\n") > 0);
        assert!(cfg.contains("  server s9 10.244.10.2:8080\n"), "{cfg}");
        assert!(cfg.contains("  bind 198.51.100.1:8082\n"), "{cfg}");
    }
}
