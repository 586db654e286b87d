//! Ingress backends (Service name + port number or name) to the ready pod
//! endpoints behind them, the way kube-proxy resolves a Service port: the
//! Service port's name selects the EndpointSlice port, whose number is the
//! pod's targetPort (so a named targetPort may differ per slice).

use foldhash::{HashMap, HashMapExt};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceBackendPort;

use crate::manifests::Snapshot;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

type Key<'a> = (&'a str, &'a str);

pub struct ServiceIndex<'a> {
    services: HashMap<Key<'a>, &'a Service>,
    slices: HashMap<Key<'a>, Vec<&'a EndpointSlice>>,
}

impl<'a> ServiceIndex<'a> {
    pub fn new(snapshot: &'a Snapshot) -> ServiceIndex<'a> {
        let services = snapshot
            .services
            .iter()
            .map(|service| ((namespace_of(&service.metadata), name_of(&service.metadata)), &**service))
            .collect();
        let mut slices: HashMap<Key, Vec<&EndpointSlice>> = HashMap::new();
        for slice in &snapshot.endpoint_slices {
            let labels = slice.metadata.labels.as_ref();
            if let Some(service) = labels.and_then(|labels| labels.get(SERVICE_NAME_LABEL)) {
                let key = (namespace_of(&slice.metadata), service.as_str());
                slices.entry(key).or_default().push(&**slice);
            }
        }
        ServiceIndex { services, slices }
    }

    /// The ready endpoints of a Service port, or why there are none to be had.
    pub fn resolve(&self, namespace: &str, name: &str, port: &ServiceBackendPort) -> Result<Vec<SocketAddr>, String> {
        let service = self
            .services
            .get(&(namespace, name))
            .ok_or_else(|| format!("no Service {namespace}/{name}"))?;
        let spec = service.spec.as_ref();
        let service_port = spec.and_then(|spec| spec.ports.as_ref()).into_iter().flatten().find(|candidate| {
            let tcp = candidate.protocol.as_deref().is_none_or(|protocol| protocol == "TCP");
            let same = match (&port.number, &port.name) {
                (Some(number), _) => candidate.port == *number,
                (None, Some(port_name)) => candidate.name.as_ref() == Some(port_name),
                (None, None) => false,
            };
            tcp && same
        });
        let Some(service_port) = service_port else {
            let wanted = port.number.map_or_else(|| format!("{:?}", port.name.as_deref().unwrap_or("")), |n| n.to_string());
            return Err(format!("Service {namespace}/{name} has no TCP port {wanted}"));
        };
        let port_name = service_port.name.as_deref().unwrap_or("");
        let mut endpoints = Vec::new();
        for slice in self.slices.get(&(namespace, name)).into_iter().flatten() {
            let slice_port = slice.ports.iter().flatten().find(|candidate| {
                let tcp = candidate.protocol.as_deref().is_none_or(|protocol| protocol == "TCP");
                tcp && candidate.name.as_deref().unwrap_or("") == port_name
            });
            let Some(number) = slice_port.and_then(|port| u16::try_from(port.port?).ok()) else {
                continue;
            };
            for endpoint in &slice.endpoints {
                // nil means ready, as in kube-proxy.
                let ready = endpoint.conditions.as_ref().and_then(|conditions| conditions.ready);
                if ready == Some(false) {
                    continue;
                }
                // All addresses of an endpoint are the same pod.
                if let Some(ip) = endpoint.addresses.first().and_then(|text| text.parse::<IpAddr>().ok()) {
                    endpoints.push(SocketAddr::new(ip, number));
                }
            }
        }
        Ok(endpoints)
    }
}

fn namespace_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or("default")
}

fn name_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or("")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

    use super::*;

    pub(crate) fn service(name: &str, ports: &[(&str, i32)]) -> Service {
        let mut service = Service::default();
        service.metadata.name = Some(name.into());
        service.metadata.namespace = Some("default".into());
        let ports = ports.iter().map(|(port_name, port)| ServicePort {
            name: (!port_name.is_empty()).then(|| (*port_name).into()),
            port: *port,
            ..ServicePort::default()
        });
        service.spec = Some(ServiceSpec {
            ports: Some(ports.collect()),
            ..ServiceSpec::default()
        });
        service
    }

    /// `endpoints` are (IP, ready).
    pub(crate) fn slice(service: &str, ports: &[(&str, i32)], endpoints: &[(&str, bool)]) -> EndpointSlice {
        let mut slice = EndpointSlice {
            address_type: "IPv4".into(),
            ..EndpointSlice::default()
        };
        slice.metadata.name = Some(format!("{service}-abc"));
        slice.metadata.namespace = Some("default".into());
        slice.metadata.labels = Some(BTreeMap::from([(SERVICE_NAME_LABEL.into(), service.into())]));
        let ports = ports.iter().map(|(port_name, port)| EndpointPort {
            name: Some((*port_name).into()),
            port: Some(*port),
            ..EndpointPort::default()
        });
        slice.ports = Some(ports.collect());
        slice.endpoints = endpoints
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![(*ip).into()],
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect();
        slice
    }

    fn port(number: Option<i32>, name: Option<&str>) -> ServiceBackendPort {
        ServiceBackendPort {
            number,
            name: name.map(Into::into),
        }
    }

    #[test]
    fn resolves_by_number_and_by_name_to_ready_target_ports() {
        let snapshot = Snapshot {
            services: vec![service("web", &[("http", 80), ("admin", 9000)]).into()],
            endpoint_slices: vec![
                slice("web", &[("http", 8080), ("admin", 9090)], &[("10.1.0.1", true), ("10.1.0.2", false)]).into(),
                // Another slice whose pods name the same targetPort differently.
                slice("web", &[("http", 8081)], &[("10.1.0.3", true)]).into(),
            ],
            ..Snapshot::default()
        };
        let index = ServiceIndex::new(&snapshot);
        let text = |result: Result<Vec<SocketAddr>, String>| match result {
            Ok(addrs) => addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            Err(error) => error,
        };
        let cases = [
            ("web", port(Some(80), None), "10.1.0.1:8080 10.1.0.3:8081"),
            ("web", port(None, Some("http")), "10.1.0.1:8080 10.1.0.3:8081"),
            ("web", port(Some(9000), None), "10.1.0.1:9090"),
            ("web", port(Some(81), None), "Service default/web has no TCP port 81"),
            ("web", port(None, Some("grpc")), "Service default/web has no TCP port \"grpc\""),
            ("api", port(Some(80), None), "no Service default/api"),
        ];
        for (name, port, expected) in cases {
            assert_eq!(text(index.resolve("default", name, &port)), expected, "{name} {port:?}");
        }
    }
}
