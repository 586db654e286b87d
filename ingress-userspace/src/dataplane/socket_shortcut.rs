//! Attaching the socket shortcut between the L7 proxy and local pods (see
//! `ingress-ebpf/src/socket_shortcut.rs`): the sk_msg program on the
//! sockhash, the sock_ops program on the cgroup v2 root, so that the pods'
//! sockets, in cgroups below it, are seen too. Both attachments and both
//! maps belong to the agent's process and go with it.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, SockHash};
use aya::programs::{CgroupAttachMode, Program, SkMsg, SockOps};
use ingress_common::sockets::{SK_MSG_PROGRAM, SOCK_OPS_PROGRAM, SOCKET_PAIRS_MAP, SOCKET_STAT_COUNT, SOCKET_STATS_MAP, SocketKey};

/// The proxy's upstream connections by what became of them, by
/// `SOCKET_STAT_*` (see `metrics::socket_shortcut_connections`).
pub type ShortcutCounts = [u64; SOCKET_STAT_COUNT as usize];

/// The programs' per-CPU counters of the proxy's connections.
pub struct ShortcutCounters(PerCpuArray<MapData, u64>);

impl ShortcutCounters {
    /// Summed over CPUs; a slot the kernel would not read counts 0.
    pub fn read(&self) -> ShortcutCounts {
        let mut counts = ShortcutCounts::default();
        for (stat, count) in (0..).zip(counts.iter_mut()) {
            *count = self.0.get(&stat, 0).map_or(0, |per_cpu| per_cpu.iter().sum());
        }
        counts
    }
}

/// Verifies and attaches both programs of `object`; `cgroup` is the cgroup
/// v2 root directory (see `cgroup2_root`). Attached through a BPF link,
/// which leaves other programs on that cgroup in place (a link's mode must
/// be the default, `Single`: the kernel refuses flags on links).
pub(super) fn attach(object: &mut Ebpf, cgroup: &Path) -> anyhow::Result<ShortcutCounters> {
    let pairs = object.map(SOCKET_PAIRS_MAP).with_context(|| format!("{SOCKET_PAIRS_MAP} missing from the object"))?;
    let pairs: SockHash<_, SocketKey> = pairs.try_into()?;
    let pairs = pairs.fd().try_clone().context("duplicating the sockhash's descriptor")?;
    let sk_msg: &mut SkMsg = program(object, SK_MSG_PROGRAM)?.try_into()?;
    sk_msg.load().with_context(|| format!("the verifier rejected {SK_MSG_PROGRAM}"))?;
    sk_msg.attach(&pairs).with_context(|| format!("attaching {SK_MSG_PROGRAM} to {SOCKET_PAIRS_MAP}"))?;
    let root = std::fs::File::open(cgroup).with_context(|| format!("opening the cgroup {}", cgroup.display()))?;
    let sock_ops: &mut SockOps = program(object, SOCK_OPS_PROGRAM)?.try_into()?;
    sock_ops.load().with_context(|| format!("the verifier rejected {SOCK_OPS_PROGRAM}"))?;
    sock_ops
        .attach(root, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {SOCK_OPS_PROGRAM} to the cgroup {}", cgroup.display()))?;
    let stats = object.take_map(SOCKET_STATS_MAP).with_context(|| format!("{SOCKET_STATS_MAP} missing from the object"))?;
    Ok(ShortcutCounters(stats.try_into()?))
}

fn program<'a>(object: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Program> {
    object.program_mut(name).with_context(|| format!("{name} missing from the object"))
}

/// The calling thread's network namespace cookie, which the proxy's sockets
/// will carry; 0 (no socket paired) where the kernel cannot tell it.
pub(super) fn netns_cookie() -> u64 {
    let cookie = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).and_then(|probe| {
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and a buffer of the length given.
        let status = unsafe { libc::getsockopt(probe.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NETNS_COOKIE, (&raw mut cookie).cast(), &mut len) };
        if status == 0 { Ok(cookie) } else { Err(std::io::Error::last_os_error()) }
    });
    cookie.unwrap_or_else(|error| {
        tracing::debug!("no network namespace cookie ({error}): the socket shortcut will pair nothing");
        0
    })
}

/// The cgroup v2 hierarchy's root as this process sees it mounted.
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    match cgroup2_root_in(&mountinfo) {
        Some(path) => Ok(path),
        None => bail!("no cgroup v2 hierarchy mounted at its root (cgroup2 in /proc/self/mountinfo, root /)"),
    }
}

/// The mount point of the first cgroup2 mount of the hierarchy's root (a
/// container's own cgroup namespace mounts a subtree, root other than `/`,
/// where the pods' sockets would not be seen).
fn cgroup2_root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `id parent major:minor root mount-point options [optional...] - fstype source super-options`
        let (mount, filesystem) = line.split_once(" - ")?;
        let mut fields = mount.split(' ');
        let root = fields.nth(3)?;
        let point = fields.next()?;
        (filesystem.split(' ').next()? == "cgroup2" && root == "/").then(|| PathBuf::from(unescape(point)))
    })
}

/// Mount points escape space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_root_is_found_among_mounts() {
        let hybrid = "25 20 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      31 25 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
                      32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let container = "500 400 0:27 /kubepods/pod1/abc /sys/fs/cgroup ro - cgroup2 cgroup rw\n";
        let host_mounted = "500 400 0:27 /kubepods/pod1/abc /sys/fs/cgroup ro - cgroup2 cgroup rw\n\
                            501 400 0:27 / /host/cgroup\\040v2 rw - cgroup2 cgroup rw\n";
        let cases: [(&str, Option<&str>); 4] = [
            (hybrid, Some("/sys/fs/cgroup/unified")),
            (container, None),
            (host_mounted, Some("/host/cgroup v2")),
            ("", None),
        ];
        for (mountinfo, expected) in cases {
            assert_eq!(cgroup2_root_in(mountinfo), expected.map(PathBuf::from), "{mountinfo}");
        }
    }
}
