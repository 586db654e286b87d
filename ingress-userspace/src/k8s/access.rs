//! Every API access the agent makes, as (API group, resource, verbs). The
//! ClusterRole in deploy/ must grant exactly these (a test checks it), so a
//! new watch or write starts here.

pub struct Access {
    /// "" is the core group.
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

const WATCH: &[&str] = &["list", "watch"];
const GATEWAY_API: &str = crate::gateway::types::GROUP;

pub const API_ACCESS: &[Access] = &[
    Access { group: "", resource: "services", verbs: WATCH },
    Access { group: "discovery.k8s.io", resource: "endpointslices", verbs: WATCH },
    // Only this node's object (field selector metadata.name).
    Access { group: "", resource: "nodes", verbs: WATCH },
    // Only pods labelled microservice=true.
    Access { group: "", resource: "pods", verbs: WATCH },
    Access { group: "networking.k8s.io", resource: "ingresses", verbs: WATCH },
    Access { group: "networking.k8s.io", resource: "ingresses/status", verbs: &["update"] },
    Access { group: "networking.k8s.io", resource: "ingressclasses", verbs: WATCH },
    // Only Secrets of type kubernetes.io/tls (field selector).
    Access { group: "", resource: "secrets", verbs: WATCH },
    Access { group: "events.k8s.io", resource: "events", verbs: &["create", "patch"] },
    // Listeners that admit routes by namespace labels (allowedRoutes Selector).
    Access { group: "", resource: "namespaces", verbs: WATCH },
    // The Gateway API (CRDs a cluster may lack: see k8s/watch.rs).
    Access { group: GATEWAY_API, resource: "gatewayclasses", verbs: WATCH },
    Access { group: GATEWAY_API, resource: "gateways", verbs: WATCH },
    Access { group: GATEWAY_API, resource: "httproutes", verbs: WATCH },
    Access { group: GATEWAY_API, resource: "referencegrants", verbs: WATCH },
    // Status as the spec asks, by merge patch (k8s/gateway_status.rs).
    Access { group: GATEWAY_API, resource: "gatewayclasses/status", verbs: &["patch"] },
    Access { group: GATEWAY_API, resource: "gateways/status", verbs: &["patch"] },
    Access { group: GATEWAY_API, resource: "httproutes/status", verbs: &["patch"] },
];
