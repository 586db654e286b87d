//! The interfaces the programs route translated packets to themselves
//! (`lb_host_iface_kinds`, an array indexed by interface index; see
//! `host_route` in the eBPF crate): an array, so the programs' lookup of
//! every routed packet's egress is an indexed load, not a hash. The agent
//! owns the whole map: its pin is removed before every load, so each start
//! gets it all zero (an agent started without host routing turns it off),
//! and one started with it lists exactly the interfaces it attached to and
//! sets the switch at index 0 (`HOST_ROUTING_SWITCH_INDEX`, no interface's
//! index), which it clears to take routing back.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use aya::maps::{Array, MapData};
use ingress_common::maps::{
    HOST_IFACE_INDEX_LIMIT, HOST_IFACE_POD, HOST_IFACE_UPLINK, HOST_IFACES_MAP, HOST_ROUTING_ON, HOST_ROUTING_SWITCH_INDEX, HostIface,
};

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

/// Removes the map's pin, so the next load creates it all zero. The
/// programs still attached keep the map they were loaded with until the new
/// ones replace them.
pub fn remove_pin(pin_dir: &Path) -> anyhow::Result<()> {
    let pin = pin_dir.join(HOST_IFACES_MAP);
    match std::fs::remove_file(&pin) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing the pin {} to start host routing afresh", pin.display()))
        }
        _ => Ok(()),
    }
}

pub struct HostIfaces {
    map: Array<MapData, HostIface>,
    /// The indices listed, so that unlisting reads no more of the map.
    listed: BTreeSet<u32>,
    enabled: bool,
}

impl HostIfaces {
    /// Opens the pinned map, all zero since `remove_pin`; `enabled` says
    /// whether `list` fills it, and sets the switch.
    pub fn open(pin_dir: &Path, enabled: bool) -> anyhow::Result<Self> {
        let pin = pin_dir.join(HOST_IFACES_MAP);
        let data = MapData::from_pin(&pin).with_context(|| format!("opening the pinned map {}", pin.display()))?;
        let map = Array::try_from(aya::maps::Map::Array(data))
            .with_context(|| format!("{} has an unexpected layout", pin.display()))?;
        let mut host_ifaces = HostIfaces { map, listed: BTreeSet::new(), enabled: false };
        if enabled {
            host_ifaces.set_switch(HOST_ROUTING_ON)?;
            host_ifaces.enabled = true;
        }
        Ok(host_ifaces)
    }

    /// Takes routing back from the programs: from their next packet on, the
    /// node routes every packet itself. For the rest of this agent's life:
    /// `list` no longer fills the map.
    pub fn stop_routing(&mut self) -> anyhow::Result<()> {
        self.set_switch(0)?;
        self.enabled = false;
        Ok(())
    }

    fn set_switch(&mut self, kind: u32) -> anyhow::Result<()> {
        self.map
            .set(HOST_ROUTING_SWITCH_INDEX, HostIface { kind }, 0)
            .map_err(|error| anyhow::anyhow!("host routing: writing its switch in {HOST_IFACES_MAP}: {error}"))
    }

    /// Lists `interface` (of the calling thread's network namespace) for
    /// host routing, when it is on. An index beyond the map is logged and
    /// left to the kernel's path: the interface works, without host routing.
    pub fn list(&mut self, interface: &str, kind: HostIfaceKind) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|error| anyhow::anyhow!("host routing: no interface {interface}: {error}"))?;
        if ifindex >= HOST_IFACE_INDEX_LIMIT {
            tracing::warn!(
                interface,
                ifindex,
                "host routing covers interface indices below {HOST_IFACE_INDEX_LIMIT}; this interface's packets take the kernel's path"
            );
            return Ok(());
        }
        self.map
            .set(ifindex, kind.abi(), 0)
            .map_err(|error| anyhow::anyhow!("host routing: listing {interface} (index {ifindex}) in {HOST_IFACES_MAP}: {error}"))?;
        self.listed.insert(ifindex);
        Ok(())
    }

    /// Unlists interfaces that no longer exist (pods gone), so their
    /// indices, once reused, are not taken for pod veths.
    pub fn forget_vanished(&mut self) -> anyhow::Result<()> {
        // nix answers an index with no interface with an empty name, not
        // an error.
        let vanished: Vec<u32> = self
            .listed
            .iter()
            .copied()
            .filter(|&ifindex| !nix::net::if_::if_indextoname(ifindex).is_ok_and(|name| !name.is_empty()))
            .collect();
        for ifindex in vanished {
            self.map
                .set(ifindex, HostIface::default(), 0)
                .map_err(|error| anyhow::anyhow!("host routing: unlisting interface index {ifindex}: {error}"))?;
            self.listed.remove(&ifindex);
        }
        Ok(())
    }
}
