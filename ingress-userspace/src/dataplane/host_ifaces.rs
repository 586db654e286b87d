//! The interfaces the programs route translated packets to themselves
//! (`lb_host_ifaces`; see `host_route` in the eBPF crate). The agent owns
//! the whole map: it empties it at start, so an agent started without
//! `--host-routing` turns host routing off, and one started with it lists
//! exactly the interfaces it attached to.

use std::path::Path;

use anyhow::Context;
use aya::maps::{HashMap, MapData};
use ingress_common::maps::{HOST_IFACE_POD, HOST_IFACE_UPLINK, HOST_IFACES_MAP, HostIface};

/// What an interface is to host routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostIfaceKind {
    /// Packets routed here leave through its egress.
    Uplink,
    /// A pod veth's host side: packets routed here enter the pod.
    Pod,
}

impl HostIfaceKind {
    fn abi(self) -> HostIface {
        HostIface {
            kind: match self {
                HostIfaceKind::Uplink => HOST_IFACE_UPLINK,
                HostIfaceKind::Pod => HOST_IFACE_POD,
            },
        }
    }
}

pub struct HostIfaces {
    map: HashMap<MapData, u32, HostIface>,
    enabled: bool,
}

impl HostIfaces {
    /// Opens the pinned map and empties it; `enabled` says whether `list`
    /// fills it.
    pub fn open(pin_dir: &Path, enabled: bool) -> anyhow::Result<Self> {
        let pin = pin_dir.join(HOST_IFACES_MAP);
        let data = MapData::from_pin(&pin).with_context(|| format!("opening the pinned map {}", pin.display()))?;
        let map = HashMap::try_from(aya::maps::Map::HashMap(data))
            .with_context(|| format!("{} has an unexpected layout", pin.display()))?;
        let mut host_ifaces = HostIfaces { map, enabled };
        host_ifaces.retain(|_| false)?;
        Ok(host_ifaces)
    }

    /// Lists `interface` (of the calling thread's network namespace) for
    /// host routing, when it is on.
    pub fn list(&mut self, interface: &str, kind: HostIfaceKind) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|error| anyhow::anyhow!("host routing: no interface {interface}: {error}"))?;
        self.map
            .insert(ifindex, kind.abi(), 0)
            .map_err(|error| anyhow::anyhow!("host routing: listing {interface} (index {ifindex}) in {HOST_IFACES_MAP}: {error}"))
    }

    /// Unlists interfaces that no longer exist (pods gone), so their
    /// indices, once reused, are not taken for pod veths.
    pub fn forget_vanished(&mut self) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        // nix answers an index with no interface with an empty name, not
        // an error.
        self.retain(|ifindex| nix::net::if_::if_indextoname(ifindex).is_ok_and(|name| !name.is_empty()))
    }

    fn retain(&mut self, keep: impl Fn(u32) -> bool) -> anyhow::Result<()> {
        let listed: Vec<u32> = self.map.keys().collect::<Result<_, _>>()?;
        for ifindex in listed.into_iter().filter(|&ifindex| !keep(ifindex)) {
            match self.map.remove(&ifindex) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(error) => anyhow::bail!("host routing: unlisting interface index {ifindex}: {error}"),
            }
        }
        Ok(())
    }
}
