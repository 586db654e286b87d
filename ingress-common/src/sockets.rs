//! The socket shortcut's ABI: the agent's L7 proxy and a pod on the same
//! node exchange bytes socket to socket (sockmap), skipping TCP/IP, the
//! veth pair and the TC programs on both ways (see
//! `ingress-ebpf/src/socket_shortcut.rs`). Both maps live and die with the
//! agent, unpinned: a socket leaves them when it closes, and a stopped agent
//! leaves no socket programs behind.

use crate::addr::Addr;

/// The sockhash of the proxy's sockets and their peers in local pods.
pub const SOCKET_PAIRS_MAP: &str = "lb_sock_pairs";
/// The proxy's sockets and whether each took the shortcut.
pub const PROXY_SOCKETS_MAP: &str = "lb_proxy_socks";
pub const SOCKET_PAIRS_MAX_ENTRIES: u32 = 65_536;
/// Sized above the sockhash: an entry is evicted only long after its
/// socket closed, and a proxy socket without one is left on TCP.
pub const PROXY_SOCKETS_MAX_ENTRIES: u32 = 131_072;
/// Per-CPU counters of the proxy's upstream connections, by `SOCKET_STAT_*`.
pub const SOCKET_STATS_MAP: &str = "lb_sock_stats";
/// The sock_ops program (attached to the cgroup v2 root) and the sk_msg
/// program (attached to `SOCKET_PAIRS_MAP`).
pub const SOCK_OPS_PROGRAM: &str = "lb_sock_ops";
pub const SK_MSG_PROGRAM: &str = "lb_sk_msg";

/// `SO_MARK` of the proxy's upstream sockets, how the sock_ops program tells
/// them from every other socket of the node. Its bits stay clear of the
/// marks Kubernetes networking uses: kube-proxy's 0x4000 and 0x8000,
/// Cilium's 0x0f00 nibble, Calico's upper 16 bits.
pub const PROXY_SOCKET_MARK: u32 = 0x20eb;

/// The eBPF object's global with the network namespace cookie of the
/// proxy's sockets, set at load time: of the marked sockets, only those are
/// paired, so two agents on one kernel (a lab of two nodes) keep to their
/// own. Zero pairs none.
pub const PROXY_NETNS_GLOBAL: &str = "PROXY_NETNS_COOKIE";

/// Not decided yet: the proxy has sent nothing on the socket.
pub const SHORTCUT_UNDECIDED: u32 = 0;
/// The peer was in the sockhash at the first send: every send goes to it.
pub const SHORTCUT_TAKEN: u32 = 1;
/// The peer was not (a pod on another node, or its socket not yet
/// established): the socket stays on TCP for good, so its bytes are never
/// split between the two ways, which the receiver could read out of order.
pub const SHORTCUT_REFUSED: u32 = 2;

/// A proxy connection whose first send found its peer paired: all its
/// sends go socket to socket.
pub const SOCKET_STAT_TAKEN: u32 = 0;
/// A proxy connection whose first send found no paired peer (a pod on
/// another node): it stays on TCP.
pub const SOCKET_STAT_REFUSED: u32 = 1;
/// A socket the proxy-socket map or the sockhash could not store (full):
/// its connection stays on TCP.
pub const SOCKET_STAT_NOT_STORED: u32 = 2;
pub const SOCKET_STAT_COUNT: u32 = 3;

/// One end of a TCP connection as that end's socket sees it. The peer's key
/// is the same with the two ends swapped (`peer`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketKey {
    pub local: Addr,
    pub remote: Addr,
    /// Host byte order, both.
    pub local_port: u32,
    pub remote_port: u32,
}

impl SocketKey {
    #[inline(always)]
    pub fn peer(&self) -> SocketKey {
        SocketKey { local: self.remote, remote: self.local, local_port: self.remote_port, remote_port: self.local_port }
    }
}

/// A proxy socket's choice (`SHORTCUT_*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxySocket {
    pub shortcut: u32,
}

const _: () = assert!(core::mem::size_of::<SocketKey>() == 40);
const _: () = assert!(core::mem::size_of::<ProxySocket>() == 4);

#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProxySocket {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_key_swaps_the_ends_and_swaps_back() {
        let key = SocketKey {
            local: Addr::from_v4(u32::from_ne_bytes([10, 0, 0, 1])),
            remote: Addr::from_v4(u32::from_ne_bytes([10, 244, 1, 2])),
            local_port: 41_000,
            remote_port: 8080,
        };
        let peer = key.peer();
        assert_eq!((peer.local, peer.local_port), (key.remote, 8080));
        assert_eq!((peer.remote, peer.remote_port), (key.local, 41_000));
        assert_eq!(peer.peer(), key);
    }
}
