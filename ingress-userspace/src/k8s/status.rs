//! `status.loadBalancer.ingress` of served Ingresses: where clients reach them.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::metrics::Metrics;

/// The Ingress with this node's addresses (of either family) added to its
/// status; `None` when none is missing. Other entries stay: every node's agent
/// serves the Ingress and adds its own, and agents writing exactly their own
/// addresses would overwrite each other forever.
pub fn with_addresses(ingress: &Ingress, addresses: &[IpAddr]) -> Option<Ingress> {
    let mut updated = ingress.clone();
    let status = updated.status.get_or_insert_with(IngressStatus::default);
    let listed = status
        .load_balancer
        .get_or_insert_with(IngressLoadBalancerStatus::default)
        .ingress
        .get_or_insert_with(Vec::new);
    let mut changed = false;
    for addr in addresses {
        // Compared as addresses: an IPv6 one has many spellings.
        let is_listed = |entry: &IngressLoadBalancerIngress| entry.ip.as_deref().and_then(|ip| ip.parse().ok()) == Some(*addr);
        if !listed.iter().any(is_listed) {
            listed.push(IngressLoadBalancerIngress {
                ip: Some(addr.to_string()),
                ..IngressLoadBalancerIngress::default()
            });
            changed = true;
        }
    }
    changed.then_some(updated)
}

/// Writes the status of those `ingresses` that miss one of `addresses`.
/// A failed write (a conflict with another node's agent, say) is logged and
/// tried again on the next snapshot, which any status write causes.
pub async fn publish(client: Client, ingresses: Vec<Ingress>, addresses: Vec<IpAddr>, metrics: Arc<Metrics>) {
    for ingress in &ingresses {
        let Some(updated) = with_addresses(ingress, &addresses) else { continue };
        let namespace = ingress.namespace().unwrap_or_default();
        let api: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
        let name = ingress.name_any();
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => tracing::info!(ingress = %format!("{namespace}/{name}"), ?addresses, "Ingress status updated"),
            Err(error) => {
                metrics.count_api_error("ingresses/status");
                tracing::warn!(ingress = %format!("{namespace}/{name}"), "updating the Ingress status failed: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(ips: &[&str]) -> Ingress {
        let entries = ips
            .iter()
            .map(|ip| IngressLoadBalancerIngress {
                ip: Some((*ip).into()),
                ..IngressLoadBalancerIngress::default()
            })
            .collect();
        Ingress {
            status: Some(IngressStatus {
                load_balancer: Some(IngressLoadBalancerStatus { ingress: Some(entries) }),
            }),
            ..Ingress::default()
        }
    }

    #[test]
    fn adds_missing_addresses_and_keeps_other_nodes() {
        let ours: Vec<IpAddr> = vec!["192.168.0.2".parse().unwrap(), "203.0.113.7".parse().unwrap()];
        assert_eq!(with_addresses(&Ingress::default(), &ours), Some(ingress(&["192.168.0.2", "203.0.113.7"])));
        assert_eq!(
            with_addresses(&ingress(&["192.168.0.3", "203.0.113.7"]), &ours),
            Some(ingress(&["192.168.0.3", "203.0.113.7", "192.168.0.2"]))
        );
        assert_eq!(with_addresses(&ingress(&["203.0.113.7", "192.168.0.2"]), &ours), None);
        assert_eq!(with_addresses(&Ingress::default(), &[]), None);
    }

    #[test]
    fn adds_ipv6_addresses_beside_ipv4_ones_however_another_agent_spelled_them() {
        let ours: Vec<IpAddr> = vec!["192.168.0.2".parse().unwrap(), "2001:db8::2".parse().unwrap()];
        assert_eq!(with_addresses(&Ingress::default(), &ours), Some(ingress(&["192.168.0.2", "2001:db8::2"])));
        assert_eq!(
            with_addresses(&ingress(&["192.168.0.2", "2001:db8::3"]), &ours),
            Some(ingress(&["192.168.0.2", "2001:db8::3", "2001:db8::2"]))
        );
        assert_eq!(with_addresses(&ingress(&["2001:DB8:0:0::2", "192.168.0.2"]), &ours), None);
    }
}
