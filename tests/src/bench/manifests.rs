//! The agent's input for one benchmark size: a directory of Service and
//! EndpointSlice manifests, removed on drop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::services::{SERVICE_PORT, Service, TARGET_PORT};

/// Services per file: the agent re-reads only the files that change, and
/// reads a whole directory on as many threads as there are cores.
const PER_FILE: usize = 500;
/// Sorted last, and small, so that an endpoint change rewrites one short file.
const MEASURED_FILE: &str = "zz-measured.yaml";

pub struct ManifestSet {
    dir: PathBuf,
    /// The pods' port the Services target.
    target_port: u16,
}

impl ManifestSet {
    pub fn write(services: &[Service]) -> Result<ManifestSet> {
        ManifestSet::write_targeting(services, TARGET_PORT)
    }

    /// As [`ManifestSet::write`], for pods that serve on `target_port`.
    pub fn write_targeting(services: &[Service], target_port: u16) -> Result<ManifestSet> {
        let dir = std::env::temp_dir().join(format!("lb-bench-{}-{}", std::process::id(), crate::pins::next_id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let set = ManifestSet { dir, target_port };
        let (measured, others) = services.split_last().context("no Services")?;
        for (index, chunk) in others.chunks(PER_FILE).enumerate() {
            let text: String = chunk.iter().map(|service| yaml(service, target_port)).collect();
            std::fs::write(set.dir.join(format!("svc-{index:05}.yaml")), text)?;
        }
        set.set_measured(measured)?;
        Ok(set)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Rewrites the measured Service atomically (write + rename), so the
    /// agent never reads half a file.
    pub fn set_measured(&self, service: &Service) -> Result<()> {
        let tmp = self.dir.join(".measured.tmp");
        std::fs::write(&tmp, yaml(service, self.target_port))?;
        std::fs::rename(&tmp, self.dir.join(MEASURED_FILE))?;
        Ok(())
    }
}

impl Drop for ManifestSet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Service and EndpointSlice of `service`, as YAML documents.
pub fn yaml(service: &Service, target_port: u16) -> String {
    let Service { name, cluster_ip, node_port, endpoints } = service;
    let (kind, node_port) = match node_port {
        Some(port) => ("NodePort", format!(", nodePort: {port}")),
        None => ("ClusterIP", String::new()),
    };
    let mut text = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: {kind}\n  \
         clusterIP: {cluster_ip}\n  clusterIPs: [{cluster_ip}]\n  ports:\n    \
         - {{name: tcp, protocol: TCP, port: {SERVICE_PORT}, targetPort: {target_port}{node_port}}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-abc\n  namespace: default\n  \
         labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\n\
         ports:\n  - {{name: tcp, protocol: TCP, port: {target_port}}}\nendpoints:\n"
    );
    for address in endpoints {
        let _ = writeln!(text, "  - {{addresses: [{address}], conditions: {{ready: true}}}}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::services::generate;
    use ingress_userspace::manifests::load_dir;
    use ingress_userspace::model::NodeInfo;
    use ingress_userspace::translate::translate;

    #[test]
    fn the_agent_reads_every_generated_service_without_problems() {
        let services = generate(1_200, &[std::net::Ipv4Addr::new(10, 244, 1, 2)], None).unwrap();
        let set = ManifestSet::write(&services).unwrap();
        let loaded = load_dir(set.path()).unwrap();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let node = NodeInfo { name: "n".into(), addresses: vec![std::net::Ipv4Addr::new(198, 51, 100, 1).into()] };
        let (desired, problems) = translate(&loaded.snapshot, &node);
        assert!(problems.is_empty(), "{problems:?}");
        // A ClusterIP frontend per Service and a NodePort one for each that has it.
        assert_eq!(desired.frontends.len(), 1_200 + 1_200);
    }
}
