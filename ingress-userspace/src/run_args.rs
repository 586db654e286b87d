//! The `run` subcommand's flags and how they become an `AgentConfig`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args};
use ingress_userspace::agent::{AgentConfig, SourceConfig};
use ingress_common::maps::CtTimeouts;
use ingress_userspace::dataplane::conntrack_gc::{ConntrackConfig, SnatPorts};
use ingress_common::maps;
use ingress_userspace::dataplane::ebpf::DEFAULT_PIN_DIR;
use ingress_userspace::dataplane::host_routing::HostRouting;
use ingress_userspace::dataplane::sizes::MapSizes;
use ingress_userspace::dataplane::uplink_hook::UplinkHookChoice;
use ingress_userspace::l7::L7Options;
use ingress_userspace::l7::options::ProxyOptions;
use ingress_userspace::l7::server::L7Config;
use ingress_userspace::l7::tls::certified_key_from_pem;
use ingress_userspace::k8s::node;
use ingress_userspace::model::NodeInfo;

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["manifests", "kubernetes"])))]
#[command(group(ArgGroup::new("tls").multiple(true).requires_all(["https_port", "default_cert", "default_key"])))]
pub struct RunArgs {
    /// Directory of Kubernetes YAML (multi-document files allowed).
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Watch the API server (in-cluster, or as KUBECONFIG says).
    #[arg(long)]
    kubernetes: bool,
    /// This node's name, as in EndpointSlices' `nodeName`.
    #[arg(long, env = "NODE_NAME", default_value = "")]
    node_name: String,
    /// Node addresses NodePorts are served on, IPv4 or IPv6 (repeatable;
    /// from the Node object when watching the API server).
    #[arg(long = "node-ip", value_parser = parse_node_ip)]
    node_ips: Vec<IpAddr>,
    /// Node uplink interfaces to attach to (repeatable).
    #[arg(long = "uplink")]
    uplinks: Vec<String>,
    /// What translates what comes in on the uplinks: `auto` picks TC ingress
    /// for a veth or another virtual device without native XDP (XDP_TX
    /// rejects would be lost on a veth) and XDP for a NIC; `xdp` or `tc`
    /// force one.
    #[arg(long, default_value_t = UplinkHookChoice::Auto, value_parser = parse_uplink_hook)]
    uplink_hook: UplinkHookChoice,
    /// Host-side pod veth interfaces to attach TC to (repeatable).
    #[arg(long = "pod-veth")]
    pod_veths: Vec<String>,
    /// Attach TC to every interface whose name starts with this, as pod
    /// veths appear (repeatable; e.g. "veth" for kindnet and bridge CNIs).
    #[arg(long = "pod-veth-prefix")]
    pod_veth_prefixes: Vec<String>,
    /// Route translated packets in the programs, as Cilium's BPF host
    /// routing: a client's packet goes from the uplink straight into the
    /// pod (and the pod's reply straight out of the uplink), skipping the
    /// node's routing and netfilter. Only with TC on the uplinks (a veth
    /// uplink, or `--uplink-hook tc`). `auto` routes only while the node's
    /// netfilter has no hook the flows would pass (no forward, prerouting
    /// or postrouting chain, e.g. a CNI's NetworkPolicy or masquerade), and
    /// takes routing back within a second of one appearing; `on` routes
    /// whatever netfilter holds; `--host-routing` alone means `on`.
    #[arg(long, value_enum, default_value_t = HostRouting::Auto, num_args = 0..=1, default_missing_value = "on")]
    host_routing: HostRouting,
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// How often the manifest directory is checked for changes, in
    /// milliseconds, besides inotify (which sees them at once where available).
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Serve L7 routes (Ingresses, annotated pods) over HTTP on this port of
    /// every node address.
    #[arg(long)]
    http_port: Option<u16>,
    /// Serve them over HTTPS too (SNI picks the Ingress certificate).
    #[arg(long, group = "tls")]
    https_port: Option<u16>,
    /// PEM certificate chain for clients whose SNI no Ingress names.
    #[arg(long, group = "tls")]
    default_cert: Option<PathBuf>,
    /// PEM private key of --default-cert.
    #[arg(long, group = "tls")]
    default_key: Option<PathBuf>,
    /// Close connections for hosts no rule serves instead of answering 404.
    #[arg(long)]
    close_unknown_hosts: bool,
    /// The L7 proxy's bytes to and from pods on this node go socket to
    /// socket (eBPF sockmap) instead of through TCP/IP and the pod's veth,
    /// so the node's netfilter and TC hooks do not see them, as with
    /// Cilium's socket acceleration. `off` keeps them on TCP.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    socket_shortcut: Switch,
    /// Where the cgroup v2 hierarchy's root is mounted, for the socket
    /// shortcut (default: found in /proc/self/mountinfo).
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    /// Seconds an established TCP flow may be idle before its conntrack
    /// entry expires (kube-proxy's conntrack.tcpEstablishedTimeout).
    #[arg(long, default_value_t = CtTimeouts::DEFAULT.tcp_established_ms / 1000, value_parser = clap::value_parser!(u32).range(1..=4_000_000))]
    ct_tcp_established_timeout: u32,
    /// Seconds a closing (FIN or RST seen) or half-open TCP flow may be idle.
    #[arg(long, default_value_t = CtTimeouts::DEFAULT.tcp_closing_ms / 1000, value_parser = clap::value_parser!(u32).range(1..=4_000_000))]
    ct_tcp_closing_timeout: u32,
    /// Seconds a UDP flow may be idle.
    #[arg(long, default_value_t = CtTimeouts::DEFAULT.udp_ms / 1000, value_parser = clap::value_parser!(u32).range(1..=4_000_000))]
    ct_udp_timeout: u32,
    /// Ports (MIN-MAX, inclusive) a flow from an uplink to a pod on another
    /// node is given when its source becomes this node's address
    /// (externalTrafficPolicy: Cluster). Keep it clear of the node's own
    /// ephemeral ports (net.ipv4.ip_local_port_range) and of the NodePorts.
    #[arg(long, default_value_t = SnatPorts::default(), value_parser = parse_snat_ports)]
    snat_ports: SnatPorts,
    /// How often expired conntrack entries are swept out of the map, in seconds.
    #[arg(long, default_value_t = ConntrackConfig::default().sweep_interval.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    ct_sweep_interval: u64,
    #[command(flatten)]
    map_sizes: MapSizeArgs,
}

/// Map capacities. A pinned map of another size is recreated at start (a
/// warning says so). A Service port that does not fit is left out whole.
#[derive(Args)]
struct MapSizeArgs {
    /// Entries of the services map: per frontend, a header and one per endpoint.
    #[arg(long, default_value_t = maps::SERVICES_MAX_ENTRIES)]
    services_map_size: u32,
    /// Distinct endpoints (pod address and port).
    #[arg(long, default_value_t = maps::BACKENDS_MAX_ENTRIES)]
    backends_map_size: u32,
    /// Distinct frontend addresses and ports.
    #[arg(long, default_value_t = maps::REV_NAT_MAX_ENTRIES)]
    rev_nat_map_size: u32,
    /// Tracked flows (both directions; the least recently used go first).
    #[arg(long, default_value_t = maps::CONNTRACK_MAX_ENTRIES)]
    conntrack_map_size: u32,
    /// ClientIP affinity entries (the least recently used go first).
    #[arg(long, default_value_t = maps::AFFINITY_MAX_ENTRIES)]
    affinity_map_size: u32,
    /// SNAT entries: two per flow to a pod on another node (the least
    /// recently used go first).
    #[arg(long, default_value_t = maps::SNAT_MAX_ENTRIES)]
    snat_map_size: u32,
    /// Maglev tables: one per frontend with endpoints. Their memory is
    /// taken when the map is made, whatever is in use: 2 KiB per table at
    /// the default table size (32 MiB for the default count).
    #[arg(long, default_value_t = maps::MAGLEV_MAX_TABLES)]
    maglev_tables: u32,
    /// Entries per Maglev table (a prime; see DEFAULT_MAGLEV_TABLE_SIZE for
    /// why 1021). More entries spread more evenly; a table takes rows of
    /// 1,024 entries, 2 KiB each.
    #[arg(long, default_value_t = maps::DEFAULT_MAGLEV_TABLE_SIZE)]
    maglev_table_size: u32,
}

impl MapSizeArgs {
    fn sizes(&self) -> anyhow::Result<MapSizes> {
        let sizes = MapSizes {
            services: self.services_map_size,
            backends: self.backends_map_size,
            rev_nat: self.rev_nat_map_size,
            conntrack: self.conntrack_map_size,
            affinity: self.affinity_map_size,
            snat: self.snat_map_size,
            maglev_tables: self.maglev_tables,
            maglev_table_size: self.maglev_table_size,
        };
        sizes.validate().context("--maglev-table-size or a --*-map-size flag")?;
        Ok(sizes)
    }
}

impl RunArgs {
    pub fn into_config(self) -> anyhow::Result<AgentConfig> {
        let source = match self.manifests {
            Some(path) => {
                anyhow::ensure!(
                    path.is_dir(),
                    "--manifests {}: no such directory; pass the directory that holds the manifests to serve",
                    path.display()
                );
                SourceConfig::Directory { path, poll_interval: Duration::from_millis(self.poll_ms) }
            }
            None => {
                // Without it nothing is local to this node and NodePorts have no address.
                anyhow::ensure!(!self.node_name.is_empty(), "--kubernetes needs this node's name: NODE_NAME or --node-name");
                SourceConfig::Kubernetes
            }
        };
        let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
        let https = match (self.https_port, self.default_cert, self.default_key) {
            (Some(port), Some(cert), Some(key)) => {
                let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
                let certificate = certified_key_from_pem(&read(&cert)?, &read(&key)?)
                    .map_err(|error| anyhow::anyhow!("{}: {error}", cert.display()))?;
                Some((any(port), certificate))
            }
            _ => None,
        };
        let map_sizes = self.map_sizes.sizes()?;
        Ok(AgentConfig {
            source,
            node: NodeInfo { name: self.node_name, addresses: self.node_ips },
            uplinks: self.uplinks,
            uplink_hook: self.uplink_hook,
            pod_veths: self.pod_veths,
            pod_veth_prefixes: self.pod_veth_prefixes,
            host_routing: self.host_routing,
            pin_dir: self.pin_dir,
            map_sizes,
            admin: self.admin,
            l7: L7Config {
                http: self.http_port.map(any),
                https,
                proxy: ProxyOptions { close_unknown_hosts: self.close_unknown_hosts, ..ProxyOptions::default() },
                routes: L7Options::default(),
            },
            socket_shortcut: self.socket_shortcut == Switch::On,
            cgroup_root: self.cgroup_root,
            conntrack: ConntrackConfig {
                timeouts: CtTimeouts {
                    tcp_established_ms: self.ct_tcp_established_timeout * 1000,
                    tcp_closing_ms: self.ct_tcp_closing_timeout * 1000,
                    udp_ms: self.ct_udp_timeout * 1000,
                    _pad: 0,
                },
                sweep_interval: Duration::from_secs(self.ct_sweep_interval),
                snat_ports: self.snat_ports,
                ..ConntrackConfig::default()
            },
        })
    }
}

/// `--node-ip`: an address of either family that can serve NodePorts.
fn parse_node_ip(text: &str) -> Result<IpAddr, String> {
    let addr: IpAddr = text.parse().map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address"))?;
    match node::unusable_reason(&addr) {
        Some(reason) => Err(format!("{text} is {reason}, which cannot serve NodePorts")),
        None => Ok(addr),
    }
}

/// `--uplink-hook`: auto, xdp or tc.
fn parse_uplink_hook(text: &str) -> Result<UplinkHookChoice, String> {
    text.parse()
}

/// `--snat-ports`: "MIN-MAX", checked by `SnatPorts`'s parser.
fn parse_snat_ports(text: &str) -> Result<SnatPorts, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn config(extra: &[&str]) -> Result<AgentConfig, String> {
        let manifests = std::env::temp_dir();
        let base = ["ingress-userspace", "--manifests", manifests.to_str().unwrap()];
        let args = base.iter().chain(extra);
        let cli = Cli::try_parse_from(args).map_err(|error| error.to_string())?;
        cli.run.into_config().map_err(|error| format!("{error:#}"))
    }

    #[test]
    fn snat_ports_default_to_61000_65535_and_take_a_valid_range() {
        assert_eq!(config(&[]).unwrap().conntrack.snat_ports, SnatPorts { min: 61_000, max: 65_535 });
        let set = config(&["--snat-ports", "40000-40999"]).unwrap();
        assert_eq!(set.conntrack.snat_ports, SnatPorts { min: 40_000, max: 40_999 });
        assert_eq!(set.map_sizes.snat, maps::SNAT_MAX_ENTRIES);
        assert_eq!(config(&["--snat-map-size", "4096"]).unwrap().map_sizes.snat, 4096);
    }

    #[test]
    fn the_uplink_hook_defaults_to_auto_and_can_be_forced() {
        use ingress_userspace::dataplane::uplink_hook::UplinkHook;
        assert_eq!(config(&[]).unwrap().uplink_hook, UplinkHookChoice::Auto);
        assert_eq!(config(&["--uplink-hook", "tc"]).unwrap().uplink_hook, UplinkHookChoice::Forced(UplinkHook::Tc));
        let error = config(&["--uplink-hook", "skb"]).err().unwrap();
        assert!(error.contains("--uplink-hook") && error.contains("auto, xdp, tc"), "{error}");
    }

    #[test]
    fn node_ips_of_both_families_are_taken_and_unusable_ones_refused() {
        let set = config(&["--node-ip", "192.168.0.2", "--node-ip", "fd00::2"]).unwrap();
        assert_eq!(set.node.addresses, ["192.168.0.2".parse::<IpAddr>().unwrap(), "fd00::2".parse().unwrap()]);
        for (addr, reason) in [("fe80::1", "link-local"), ("::ffff:192.168.0.2", "IPv4-mapped"), ("node-a", "not an IPv4")] {
            let error = config(&["--node-ip", addr]).err().unwrap_or_else(|| panic!("{addr} accepted"));
            assert!(error.contains("--node-ip") && error.contains(reason), "{addr}: {error}");
        }
    }

    #[test]
    fn a_snat_range_that_cannot_work_is_refused_with_the_reason() {
        for (range, reason) in [("65000-61000", "MIN"), ("30000-30100", "NodePort"), ("100-200", "1024"), ("61000", "MIN-MAX")] {
            let error = config(&["--snat-ports", range]).err().unwrap_or_else(|| panic!("{range} accepted"));
            assert!(error.contains("--snat-ports") && error.contains(reason), "{range}: {error}");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}
