//! L7 host/path routing: Ingress v1 and annotated pods to one route table,
//! served by a proxy that reads the table through an atomic swap (no
//! reload, no dropped connection when routes change). Plain HTTP/1.1
//! requests are served by the proxy's own server (`client_conn`), the rest
//! (HTTP/2, request bodies, upgrades) by hyper's.

pub mod annotations;
pub mod balancer;
pub mod canary;
mod body_out;
mod client_body;
mod client_conn;
mod client_wire;
pub mod conditions;
pub mod endpoints;
pub mod filters;
mod forward;
mod h1_wire;
pub mod host;
pub mod metrics;
mod misdirected;
pub(crate) mod mirror;
pub mod nginx_annotations;
pub mod options;
pub mod path;
pub mod policy;
pub mod proxy;
mod request_timer;
pub mod response;
pub mod rewrite;
pub mod route;
pub mod rule;
pub mod server;
pub mod table;
pub mod tls;
mod upstream;

#[cfg(test)]
mod parser_props;

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::networking::v1::ServiceBackendPort;

pub use table::{Decision, Route, RouteTable};

/// The `spec.controller` of the IngressClasses this agent serves.
pub const INGRESS_CONTROLLER: &str = "ebpf-lb.dev/ingress-controller";

/// How the route table is built (as opposed to how the proxy serves it).
#[derive(Clone, Debug, Default)]
pub struct L7Options {
    /// Unmatched traffic goes to this Service instead of the built-in 404.
    pub default_backend_service: Option<ServiceRef>,
}

#[derive(Clone, Debug)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: ServiceBackendPort,
}

/// The route table as the proxy and the agent share it: the agent stores a
/// new table, requests already routed keep the one they loaded.
pub type SharedRoutes = Arc<ArcSwap<RouteTable>>;

pub fn shared_routes(table: RouteTable) -> SharedRoutes {
    Arc::new(ArcSwap::from_pointee(table))
}
