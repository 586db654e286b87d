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
const MEASURED_FILE: &str = "zz-measured";

/// How the manifests are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// YAML documents, as people write them.
    Yaml,
    /// A JSON `List` per file, as `kubectl get -o json` prints: the syntax
    /// of what the API server sends an agent in a cluster.
    Json,
}

impl ManifestFormat {
    fn extension(self) -> &'static str {
        match self {
            ManifestFormat::Yaml => "yaml",
            ManifestFormat::Json => "json",
        }
    }

    /// A file's text holding these Services and their EndpointSlices, the
    /// endpoints on `node` where given.
    fn file(self, services: &[Service], target_port: u16, node: Option<&str>) -> String {
        match self {
            ManifestFormat::Yaml => services.iter().map(|service| yaml_on(service, target_port, node)).collect(),
            ManifestFormat::Json => {
                let items: Vec<String> = services.iter().map(|service| json_items(service, target_port, node)).collect();
                format!("{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n{}\n]}}\n", items.join(",\n"))
            }
        }
    }

    /// What the report says the agent read.
    pub fn describe(self) -> &'static str {
        match self {
            ManifestFormat::Yaml => "YAML manifests",
            ManifestFormat::Json => "JSON manifests (a List per file, as `kubectl get -o json` prints: the syntax the API server sends)",
        }
    }
}

pub struct ManifestSet {
    dir: PathBuf,
    /// The pods' port the Services target.
    target_port: u16,
    /// The node every endpoint names (`nodeName`), if any.
    node: Option<&'static str>,
    format: ManifestFormat,
}

impl ManifestSet {
    pub fn write(services: &[Service]) -> Result<ManifestSet> {
        ManifestSet::write_targeting(services, TARGET_PORT)
    }

    /// As [`ManifestSet::write`], for pods that serve on `target_port`.
    pub fn write_targeting(services: &[Service], target_port: u16) -> Result<ManifestSet> {
        ManifestSet::write_as(services, target_port, ManifestFormat::Yaml)
    }

    /// As [`ManifestSet::write_targeting`], in `format`; the endpoints name
    /// no node, so an agent takes them for other nodes' pods.
    pub fn write_as(services: &[Service], target_port: u16, format: ManifestFormat) -> Result<ManifestSet> {
        ManifestSet::write_with(services, target_port, format, None)
    }

    /// As [`ManifestSet::write_as`], every endpoint on `node`, as a
    /// cluster's EndpointSlices name the node of each pod.
    pub fn write_on_node(services: &[Service], target_port: u16, format: ManifestFormat, node: &'static str) -> Result<ManifestSet> {
        ManifestSet::write_with(services, target_port, format, Some(node))
    }

    fn write_with(services: &[Service], target_port: u16, format: ManifestFormat, node: Option<&'static str>) -> Result<ManifestSet> {
        let dir = std::env::temp_dir().join(format!("lb-bench-{}-{}", std::process::id(), crate::pins::next_id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let set = ManifestSet { dir, target_port, node, format };
        let (measured, others) = services.split_last().context("no Services")?;
        for (index, chunk) in others.chunks(PER_FILE).enumerate() {
            std::fs::write(set.dir.join(format!("svc-{index:05}.{}", format.extension())), format.file(chunk, target_port, node))?;
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
        std::fs::write(&tmp, self.format.file(std::slice::from_ref(service), self.target_port, self.node))?;
        std::fs::rename(&tmp, self.dir.join(format!("{MEASURED_FILE}.{}", self.format.extension())))?;
        Ok(())
    }
}

impl Drop for ManifestSet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Service and EndpointSlice of `service`, as YAML documents, the
/// endpoints on no node.
pub fn yaml(service: &Service, target_port: u16) -> String {
    yaml_on(service, target_port, None)
}

/// `nodeName` of an endpoint on `node`, with the separator before it.
fn node_field(node: Option<&str>, json: bool) -> String {
    match (node, json) {
        (Some(node), true) => format!(", \"nodeName\": \"{node}\""),
        (Some(node), false) => format!(", nodeName: {node}"),
        (None, _) => String::new(),
    }
}

fn yaml_on(service: &Service, target_port: u16, node: Option<&str>) -> String {
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
    let node = node_field(node, false);
    for address in endpoints {
        let _ = writeln!(text, "  - {{addresses: [{address}], conditions: {{ready: true}}{node}}}");
    }
    text
}

/// The Service and EndpointSlice of `service`, as two JSON objects (items
/// of a `List`), with the fields [`yaml`] writes.
fn json_items(service: &Service, target_port: u16, node: Option<&str>) -> String {
    let Service { name, cluster_ip, node_port, endpoints } = service;
    let (kind, node_port) = match node_port {
        Some(port) => ("NodePort", format!(", \"nodePort\": {port}")),
        None => ("ClusterIP", String::new()),
    };
    let node = node_field(node, true);
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|address| format!("{{\"addresses\": [\"{address}\"], \"conditions\": {{\"ready\": true}}{node}}}"))
        .collect();
    format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"default\"}}, \
         \"spec\": {{\"type\": \"{kind}\", \"clusterIP\": \"{cluster_ip}\", \"clusterIPs\": [\"{cluster_ip}\"], \
         \"ports\": [{{\"name\": \"tcp\", \"protocol\": \"TCP\", \"port\": {SERVICE_PORT}, \"targetPort\": {target_port}{node_port}}}]}}}},\n\
         {{\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\", \
         \"metadata\": {{\"name\": \"{name}-abc\", \"namespace\": \"default\", \"labels\": {{\"kubernetes.io/service-name\": \"{name}\"}}}}, \
         \"addressType\": \"IPv4\", \"ports\": [{{\"name\": \"tcp\", \"protocol\": \"TCP\", \"port\": {target_port}}}], \
         \"endpoints\": [{}]}}",
        endpoints.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::services::generate;
    use ingress_userspace::manifests::load_dir;
    use ingress_userspace::model::NodeInfo;
    use ingress_userspace::translate::translate;

    #[test]
    fn the_agent_reads_every_generated_service_the_same_in_either_format() {
        let services = generate(1_200, &[std::net::Ipv4Addr::new(10, 244, 1, 2)], None).unwrap();
        let node = NodeInfo { name: "n".into(), addresses: vec![std::net::Ipv4Addr::new(198, 51, 100, 1).into()] };
        let mut desired_states = Vec::new();
        for format in [ManifestFormat::Yaml, ManifestFormat::Json] {
            let set = ManifestSet::write_as(&services, TARGET_PORT, format).unwrap();
            let loaded = load_dir(set.path()).unwrap();
            assert!(loaded.problems.is_empty(), "{format:?}: {:?}", loaded.problems);
            let (desired, problems) = translate(&loaded.snapshot, &node);
            assert!(problems.is_empty(), "{format:?}: {problems:?}");
            // A ClusterIP frontend per Service and a NodePort one for each that has it.
            assert_eq!(desired.frontends.len(), 1_200 + 1_200, "{format:?}");
            // The measured Service rewritten in place reads the same too.
            set.set_measured(services.last().unwrap()).unwrap();
            assert_eq!(load_dir(set.path()).unwrap().snapshot.services.len(), 1_200, "{format:?}");
            desired_states.push(desired);
        }
        assert_eq!(desired_states[0], desired_states[1]);
    }

    #[test]
    fn endpoints_written_on_a_node_are_that_nodes_and_no_others() {
        let services = generate(3, &[std::net::Ipv4Addr::new(10, 244, 1, 2)], None).unwrap();
        for format in [ManifestFormat::Yaml, ManifestFormat::Json] {
            for (node_of_endpoints, local) in [(Some("n"), true), (None, false)] {
                let set = match node_of_endpoints {
                    Some(node) => ManifestSet::write_on_node(&services, TARGET_PORT, format, node),
                    None => ManifestSet::write_as(&services, TARGET_PORT, format),
                }
                .unwrap();
                let node = NodeInfo { name: "n".into(), addresses: vec![std::net::Ipv4Addr::new(198, 51, 100, 1).into()] };
                let (desired, problems) = translate(&load_dir(set.path()).unwrap().snapshot, &node);
                assert!(problems.is_empty(), "{format:?}: {problems:?}");
                let backends: Vec<_> = desired.frontends.values().flat_map(|state| &state.backends).collect();
                assert!(!backends.is_empty());
                assert!(backends.iter().all(|backend| backend.local == local), "{format:?}, {node_of_endpoints:?}: {backends:?}");
            }
        }
    }
}
