//! The socket shortcut between the agent's L7 proxy and pods on this node.
//!
//! A request the proxy forwards to a local pod would otherwise cross TCP/IP
//! twice on the node (the proxy's send, the pod's receive) and the veth pair
//! with its TC programs, and so would the answer. Here the proxy's upstream
//! socket and the pod's socket are paired in a sockhash when their
//! connection is established (`lb_sock_ops`, on the cgroup v2 root), and
//! every send on either is put straight into the other's receive queue
//! (`lb_sk_msg`), as Cilium's and Merbridge's socket acceleration do. The
//! handshake and the close still go over TCP.
//!
//! Only the proxy's sockets (`PROXY_SOCKET_MARK`) and the pod sockets they
//! connect to are paired; loopback never is, since the same loopback
//! addresses exist in every network namespace. Each way is all shortcut or
//! all TCP, never both, so a receiver (which reads the shortcut's queue
//! first) cannot read bytes out of order: the pod's socket is paired before
//! the pod can send, and the proxy's socket decides once, at its first send
//! (`SHORTCUT_*`).

use core::ptr::read_volatile;

use aya_ebpf::bindings::{
    BPF_ANY, BPF_F_INGRESS, BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    bpf_sock, sk_action,
};
use aya_ebpf::helpers::generated::bpf_get_netns_cookie;
use aya_ebpf::macros::{map, sk_msg, sock_ops};
use aya_ebpf::maps::{LruHashMap, PerCpuArray, SockHash};
use aya_ebpf::programs::{SkMsgContext, SockOpsContext};
use ingress_common::addr::Addr;
use ingress_common::sockets::*;

/// Paired sockets by their own `SocketKey`: the proxy's upstream sockets
/// from their establishment, a pod's socket when its peer is one of them.
#[map(name = "lb_sock_pairs")]
static SOCKET_PAIRS: SockHash<SocketKey> = SockHash::with_max_entries(SOCKET_PAIRS_MAX_ENTRIES, 0);

/// The proxy's sockets by `SocketKey`: its choice (`SHORTCUT_*`).
#[map(name = "lb_proxy_socks")]
static PROXY_SOCKETS: LruHashMap<SocketKey, ProxySocket> = LruHashMap::with_max_entries(PROXY_SOCKETS_MAX_ENTRIES, 0);

/// The proxy's connections by what became of them (`SOCKET_STAT_*`).
#[map(name = "lb_sock_stats")]
static SOCKET_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SOCKET_STAT_COUNT, 0);

/// `PROXY_NETNS_GLOBAL`; read-only data.
#[unsafe(no_mangle)]
static PROXY_NETNS_COOKIE: u64 = 0;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
/// `sock_ops` programs answer 1 where an answer is asked for (none here).
const SOCK_OPS_OK: u32 = 1;

#[sock_ops]
pub fn lb_sock_ops(ctx: SockOpsContext) -> u32 {
    // SAFETY: the kernel hands a valid context for the program's run.
    let ops = unsafe { &mut *ctx.ops };
    // SAFETY: the union's only field the context has.
    let sk = unsafe { ops.__bindgen_anon_2.sk };
    match ops.op {
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB if is_proxy_socket(sk) && in_proxy_netns(&ctx) => {
            let Some(mut key) = socket_key(ops.family, ops.local_ip4, &ops.local_ip6, ops.remote_ip4, &ops.remote_ip6, ops.local_port, ops.remote_port) else {
                return SOCK_OPS_OK;
            };
            let undecided = ProxySocket { shortcut: SHORTCUT_UNDECIDED };
            // Without its entry the socket would count as a pod's: then it
            // is not paired at all.
            let stored = PROXY_SOCKETS.insert(&key, &undecided, BPF_ANY as u64).is_ok()
                && SOCKET_PAIRS.update(&mut key, &mut *ops, BPF_ANY as u64).is_ok();
            if !stored {
                count(SOCKET_STAT_NOT_STORED);
            }
        }
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => {
            let Some(mut key) = socket_key(ops.family, ops.local_ip4, &ops.local_ip6, ops.remote_ip4, &ops.remote_ip6, ops.local_port, ops.remote_port) else {
                return SOCK_OPS_OK;
            };
            // SAFETY: a map value read once, no reference kept.
            if unsafe { PROXY_SOCKETS.get(&key.peer()) }.is_some() && SOCKET_PAIRS.update(&mut key, &mut *ops, BPF_NOEXIST as u64).is_err() {
                count(SOCKET_STAT_NOT_STORED);
            }
        }
        _ => {}
    }
    SOCK_OPS_OK
}

#[sk_msg]
pub fn lb_sk_msg(ctx: SkMsgContext) -> u32 {
    // SAFETY: the kernel hands a valid context for the program's run.
    let md = unsafe { &*ctx.msg };
    let Some(key) = socket_key(md.family, md.local_ip4, &md.local_ip6, md.remote_ip4, &md.remote_ip6, md.local_port, md.remote_port) else {
        return sk_action::SK_PASS;
    };
    let mut peer = key.peer();
    // SAFETY: the union's only field the context has.
    if is_proxy_socket(unsafe { md.__bindgen_anon_3.sk }) {
        let Some(choice) = PROXY_SOCKETS.get_ptr_mut(&key) else { return sk_action::SK_PASS };
        // SAFETY: the entry is this socket's alone, and its sends are
        // serialised by the socket's lock.
        let choice = unsafe { &mut *choice };
        match choice.shortcut {
            SHORTCUT_TAKEN => {}
            SHORTCUT_UNDECIDED => {
                let taken = SOCKET_PAIRS.redirect_msg(&ctx, &mut peer, BPF_F_INGRESS as u64) == i64::from(sk_action::SK_PASS);
                choice.shortcut = if taken { SHORTCUT_TAKEN } else { SHORTCUT_REFUSED };
                count(if taken { SOCKET_STAT_TAKEN } else { SOCKET_STAT_REFUSED });
                return sk_action::SK_PASS;
            }
            _ => return sk_action::SK_PASS,
        }
    }
    // A verdict of SK_PASS after a redirect that found no peer (it closed)
    // sends the bytes over TCP, where the peer's close is already on its way.
    let _ = SOCKET_PAIRS.redirect_msg(&ctx, &mut peer, BPF_F_INGRESS as u64);
    sk_action::SK_PASS
}

#[inline(always)]
fn count(stat: u32) {
    if let Some(counter) = SOCKET_STATS.get_ptr_mut(stat) {
        // SAFETY: a per-CPU slot, touched only by programs on this CPU.
        unsafe { *counter += 1 };
    }
}

/// A socket of the proxy's: `sk` (null where the context has none) carries
/// its mark.
#[inline(always)]
fn is_proxy_socket(sk: *const bpf_sock) -> bool {
    // SAFETY: checked for null; the verifier allows reading the mark.
    !sk.is_null() && unsafe { read_volatile(&(*sk).mark) } == PROXY_SOCKET_MARK
}

#[inline(always)]
fn in_proxy_netns(ctx: &SockOpsContext) -> bool {
    // SAFETY: a global of read-only data; the helper takes the context.
    let proxy_netns = unsafe { read_volatile(&PROXY_NETNS_COOKIE) };
    proxy_netns != 0 && unsafe { bpf_get_netns_cookie(ctx.ops.cast()) } == proxy_netns
}

/// The socket's own key from its context's fields (the same names in both
/// contexts); `None` for loopback and families other than IP.
#[inline(always)]
fn socket_key(family: u32, local4: u32, local6: &[u32; 4], remote4: u32, remote6: &[u32; 4], local_port: u32, remote_port: u32) -> Option<SocketKey> {
    // Context fields must be read one 32-bit word at a time.
    let words = |ip6: &[u32; 4]| unsafe { [read_volatile(&ip6[0]), read_volatile(&ip6[1]), read_volatile(&ip6[2]), read_volatile(&ip6[3])] };
    let (local, remote) = match family {
        AF_INET => (Addr::from_v4(local4), Addr::from_v4(remote4)),
        AF_INET6 => (Addr { words: words(local6) }, Addr { words: words(remote6) }),
        _ => return None,
    };
    if is_loopback(&local) || is_loopback(&remote) {
        return None;
    }
    // `remote_port` holds the port in network order in its upper half.
    Some(SocketKey { local, remote, local_port, remote_port: u32::from_be(remote_port) })
}

#[inline(always)]
fn is_loopback(addr: &Addr) -> bool {
    const V6_LOOPBACK: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
    (addr.is_v4() && addr.v4().to_ne_bytes()[0] == 127) || addr.words == V6_LOOPBACK
}
