//! Gateway API (v1, standard channel) on the L7 proxy: Gateways of a
//! GatewayClass of ours, their listeners, and the HTTPRoutes attached to
//! them, translated purely into the same route table Ingresses use.

pub mod types;

/// The `spec.controllerName` of the GatewayClasses this agent serves: the
/// IngressClass controller's domain, so one name owns both.
pub const GATEWAY_CONTROLLER: &str = "ebpf-lb.dev/gateway-controller";

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod test_manifests;

pub mod attach;
pub mod backends;
pub mod certificates;
pub mod conflicts;
pub mod filters;
pub mod grants;
pub mod matches;
pub mod status;
pub mod translate;
