//! YAML documents the gateway tests share, each after a `---`, so that
//! they concatenate: GatewayClasses, Gateways, and Services with their
//! EndpointSlice.

/// GatewayClass `ours` (this controller's, generation 2) and `theirs`
/// (another controller's).
pub const CLASSES: &str = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: ours, generation: 2}\n\
                           spec: {controllerName: ebpf-lb.dev/gateway-controller}\n\
                           ---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: theirs}\n\
                           spec: {controllerName: example.com/other}\n";

/// Gateway `namespace/name` (`metadata` more of its metadata, as YAML flow
/// fields, "" for none) of GatewayClass `class`, with `listeners` as a
/// YAML flow list.
pub fn gateway(namespace: &str, name: &str, metadata: &str, class: &str, listeners: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {namespace}{metadata}}}\n\
         spec: {{gatewayClassName: {class}, listeners: {listeners}}}\n"
    )
}

/// Service `namespace/name` on `port` (named `http`) whose one endpoint
/// is `ip`:`endpoint_port`.
pub fn service(namespace: &str, name: &str, port: u16, ip: &str, endpoint_port: u16) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{ports: [{{name: http, port: {port}}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {endpoint_port}}}]\nendpoints: [{{addresses: [{ip}]}}]\n"
    )
}
