//! nginx as a plain reverse proxy of the routes: one `server` per host, an
//! `upstream` with keep-alive per backend, one worker; route changes are a
//! rewritten file and `nginx -s reload`.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;

use super::routes::RouteSet;

/// Idle upstream connections each worker keeps per backend.
const UPSTREAM_KEEPALIVE: usize = 32;

/// The whole `nginx.conf`; `dir` holds the pid file, logs and temp files.
pub fn config(routes: &RouteSet, listen: SocketAddrV4, dir: &Path) -> String {
    let dir = dir.display();
    let mut conf = format!(
        "worker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  \
         uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  keepalive_requests 1000000;\n"
    );
    for backend in &routes.backends {
        let _ = writeln!(conf, "  upstream {} {{", backend.name);
        for endpoint in &backend.endpoints {
            let _ = writeln!(conf, "    server {endpoint};");
        }
        let _ = writeln!(conf, "    keepalive {UPSTREAM_KEEPALIVE};\n  }}");
    }
    for host in routes.hosts() {
        let _ = writeln!(conf, "  server {{\n    listen {listen};\n    server_name {host};");
        for route in routes.routes.iter().filter(|r| r.host == host) {
            let upstream = &routes.backends[route.backend].name;
            // A Prefix path matches itself and what lies below it at a `/`.
            let locations = match route.path.as_str() {
                "/" => vec!["/".to_owned()],
                path => vec![format!("= {path}"), format!("{path}/")],
            };
            for location in locations {
                let _ = writeln!(
                    conf,
                    "    location {location} {{\n      proxy_pass http://{upstream};\n      \
                     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}"
                );
            }
        }
        conf.push_str("  }\n");
    }
    // Unknown hosts get a 404, as the Ingress default backend answers.
    let _ = writeln!(conf, "  server {{\n    listen {listen} default_server;\n    return 404;\n  }}\n}}");
    conf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::l7::routes::sample;

    #[test]
    fn prefix_paths_become_an_exact_and_a_subtree_location() {
        let conf = config(&sample(), "198.51.100.1:8081".parse().unwrap(), Path::new("/tmp/x"));
        for line in [
            "    location = /api {",
            "    location /api/ {",
            "    server 10.244.10.2:8080;",
            "    keepalive 32;",
            "    server_name churn.example;",
            "    listen 198.51.100.1:8081 default_server;",
            "pid /tmp/x/nginx.pid;",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?} in\n{conf}");
        }
        assert_eq!(conf.matches("upstream web {").count(), 1);
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }
}
