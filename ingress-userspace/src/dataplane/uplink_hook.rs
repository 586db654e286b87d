//! Which hook translates what comes in on an uplink: XDP or TC ingress,
//! chosen by the uplink's driver unless the operator forces one.
//!
//! XDP answers a reject with XDP_TX. On a veth (every kind node's eth0) a
//! frame sent that way reaches the peer only when the peer runs XDP itself,
//! so RSTs and ICMP errors are lost and clients wait for a timeout; and
//! native XDP on a veth copies every packet the stack sends into an xdp_buff
//! and switches the veth to NAPI, a cost per packet TC does not pay. Other
//! virtual devices without native XDP would run it in generic mode, after
//! the skb exists anyway. Physical NICs keep XDP: it runs before the stack
//! allocates anything, and XDP_TX puts the frame on the NIC's own ring.

use std::fmt;
use std::str::FromStr;

/// The hook on an uplink's ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UplinkHook {
    Xdp,
    Tc,
}

impl fmt::Display for UplinkHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UplinkHook::Xdp => "XDP",
            UplinkHook::Tc => "TC ingress",
        })
    }
}

/// `--uplink-hook`: by the driver, or forced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UplinkHookChoice {
    #[default]
    Auto,
    Forced(UplinkHook),
}

impl FromStr for UplinkHookChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(UplinkHookChoice::Auto),
            "xdp" => Ok(UplinkHookChoice::Forced(UplinkHook::Xdp)),
            "tc" => Ok(UplinkHookChoice::Forced(UplinkHook::Tc)),
            _ => Err(format!("{text:?} is not one of auto, xdp, tc")),
        }
    }
}

impl fmt::Display for UplinkHookChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UplinkHookChoice::Auto => "auto",
            UplinkHookChoice::Forced(UplinkHook::Xdp) => "xdp",
            UplinkHookChoice::Forced(UplinkHook::Tc) => "tc",
        })
    }
}

/// What ETHTOOL_GDRVINFO says about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverInfo {
    pub driver: String,
    /// Empty (or "N/A", as the bridge says) for a device on no bus: a
    /// virtual one.
    pub bus_info: String,
}

impl DriverInfo {
    fn on_a_bus(&self) -> bool {
        !self.bus_info.is_empty() && self.bus_info != "N/A"
    }
}

/// Virtual drivers (no bus) with native XDP whose XDP_TX reaches the wire.
const VIRTUAL_WITH_NATIVE_XDP: [&str; 1] = ["bonding"];

/// The hook for an uplink and why, from its driver (`None`: the kernel
/// reports no driver, which only virtual devices do).
pub fn choose(choice: UplinkHookChoice, driver: Option<&DriverInfo>) -> (UplinkHook, String) {
    if let UplinkHookChoice::Forced(hook) = choice {
        return (hook, "forced by --uplink-hook".into());
    }
    match driver {
        None => (UplinkHook::Tc, "no driver reported (a virtual device)".into()),
        Some(info) if info.driver == "veth" => {
            (UplinkHook::Tc, "driver veth: XDP_TX reaches the peer only if the peer runs XDP".into())
        }
        Some(info) if !info.on_a_bus() && !VIRTUAL_WITH_NATIVE_XDP.contains(&info.driver.as_str()) => {
            (UplinkHook::Tc, format!("driver {}: a virtual device without native XDP", info.driver))
        }
        Some(info) if info.on_a_bus() => (UplinkHook::Xdp, format!("driver {} on bus {}", info.driver, info.bus_info)),
        Some(info) => (UplinkHook::Xdp, format!("driver {}: a virtual device with native XDP", info.driver)),
    }
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with its `ifr_data` member.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolDrvinfo,
    _rest: [u8; 16],
}

/// The driver of `interface` in the calling thread's network namespace
/// (an ioctl on a socket of that namespace; sysfs would show the namespace
/// it was mounted in). `Ok(None)` when the device has no driver to report.
pub fn driver_info(interface: &str) -> anyhow::Result<Option<DriverInfo>> {
    let name = interface.as_bytes();
    anyhow::ensure!(!name.is_empty() && name.len() < libc::IFNAMSIZ, "uplink {interface:?}: not an interface name");
    // SAFETY: zeroed plain-data structs; the kernel writes at most their size.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut request = IfreqData { name: [0; libc::IFNAMSIZ], data: &mut info, _rest: [0; 16] };
    request.name[..name.len()].copy_from_slice(name);
    // SAFETY: a plain socket call; the descriptor is closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    anyhow::ensure!(socket >= 0, "uplink {interface}: opening a socket for ethtool: {}", std::io::Error::last_os_error());
    // SAFETY: `request` and `info` outlive the call and have the kernel's layout.
    let result = unsafe { libc::ioctl(socket, SIOCETHTOOL as _, &mut request) };
    let error = std::io::Error::last_os_error();
    // SAFETY: closes the socket opened above.
    unsafe { libc::close(socket) };
    if result < 0 {
        return match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(None),
            Some(libc::ENODEV) => anyhow::bail!("uplink {interface}: no such interface in this network namespace"),
            _ => Err(anyhow::anyhow!("uplink {interface}: reading its driver (ETHTOOL_GDRVINFO): {error}")),
        };
    }
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    Ok(Some(DriverInfo { driver: text(&info.driver), bus_info: text(&info.bus_info) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(driver: &str, bus_info: &str) -> DriverInfo {
        DriverInfo { driver: driver.into(), bus_info: bus_info.into() }
    }

    #[test]
    fn virtual_uplinks_get_tc_physical_ones_xdp_and_a_forced_choice_wins() {
        use UplinkHook::{Tc, Xdp};
        let auto = UplinkHookChoice::Auto;
        let cases = [
            (auto, Some(info("veth", "")), Tc),
            (auto, Some(info("bridge", "N/A")), Tc),
            (auto, Some(info("802.1Q VLAN Support", "")), Tc),
            (auto, Some(info("dummy", "")), Tc),
            (auto, Some(info("bonding", "")), Xdp),
            (auto, Some(info("ixgbe", "0000:03:00.0")), Xdp),
            (auto, Some(info("virtio_net", "0000:00:03.0")), Xdp),
            (auto, Some(info("ena", "0000:00:05.0")), Xdp),
            (auto, None, Tc),
            (UplinkHookChoice::Forced(Xdp), Some(info("veth", "")), Xdp),
            (UplinkHookChoice::Forced(Tc), Some(info("ixgbe", "0000:03:00.0")), Tc),
        ];
        for (choice, driver, expected) in cases {
            assert_eq!(choose(choice, driver.as_ref()).0, expected, "{choice} on {driver:?}");
        }
    }

    #[test]
    fn the_flag_takes_auto_xdp_and_tc_and_names_them_back() {
        for text in ["auto", "xdp", "tc"] {
            assert_eq!(text.parse::<UplinkHookChoice>().unwrap().to_string(), text);
        }
        assert_eq!("XDP".parse::<UplinkHookChoice>(), Err("\"XDP\" is not one of auto, xdp, tc".into()));
    }
}
