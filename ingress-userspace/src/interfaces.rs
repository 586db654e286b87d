//! Which interfaces get which program. Pod veths come and go with pods, so
//! besides names given up front the agent attaches to every interface whose
//! name starts with a configured prefix, checking for new ones periodically.

use std::collections::BTreeSet;

use crate::dataplane::ebpf::Dataplane;

pub struct Interfaces {
    pod_veth_prefixes: Vec<String>,
    attached: BTreeSet<String>,
}

impl Interfaces {
    pub fn new(pod_veth_prefixes: Vec<String>) -> Self {
        Interfaces { pod_veth_prefixes, attached: BTreeSet::new() }
    }

    /// Attaches the named pod veths; an error names the interface.
    pub fn attach_named(&mut self, dataplane: &mut Dataplane, names: &[String]) -> anyhow::Result<()> {
        for name in names {
            dataplane.attach_pod_veth(name)?;
            self.attached.insert(name.clone());
        }
        Ok(())
    }

    /// Unlists the interfaces that are gone from host routing (named ones
    /// too), and attaches to interfaces matching a prefix that appeared
    /// since the last call. A failure (the veth vanished meanwhile) is
    /// logged and retried.
    pub fn attach_new(&mut self, dataplane: &mut Dataplane) {
        if let Err(error) = dataplane.forget_vanished_interfaces() {
            tracing::warn!("{error:#}");
        }
        if self.pod_veth_prefixes.is_empty() {
            return;
        }
        let present = current_interfaces();
        self.attached.retain(|name| present.contains(name));
        for name in present {
            if self.attached.contains(&name) || !matches_prefix(&name, &self.pod_veth_prefixes) {
                continue;
            }
            match dataplane.attach_pod_veth(&name) {
                Ok(()) => {
                    tracing::info!(interface = %name, "attached to a new pod veth");
                    self.attached.insert(name);
                }
                Err(error) => tracing::warn!(interface = %name, "{error:#}"),
            }
        }
    }
}

fn matches_prefix(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| name.starts_with(prefix.as_str()))
}

/// Interface names of the calling thread's network namespace (netlink, not
/// /sys, which shows the namespace it was mounted in).
fn current_interfaces() -> BTreeSet<String> {
    nix::net::if_::if_nameindex()
        .map(|list| list.iter().map(|i| i.name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_pod_veths_only() {
        let prefixes = vec!["veth".to_string(), "lxc".to_string()];
        for (name, expected) in [("veth1a2b", true), ("lxc_health", true), ("eth0", false), ("lo", false), ("cni0", false)] {
            assert_eq!(matches_prefix(name, &prefixes), expected, "{name}");
        }
        assert!(!matches_prefix("veth0", &[]));
    }
}
