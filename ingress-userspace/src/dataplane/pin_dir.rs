//! The bpffs directory the maps and links are pinned in: mounting the
//! standard bpffs when the host has not, and saying in one line why a pin
//! directory cannot be read (the first thing a person debugging a node
//! meets when `state` or `cleanup` points at the wrong place).

use std::path::Path;

use anyhow::bail;
use ingress_common::flow_filter::FLOW_FILTER_MAP;
use ingress_common::maps::{
    AFFINITY_MAP, BACKENDS_MAP, CONNTRACK_MAP, FRONTEND_STATS_MAP, MAGLEV_MAP, REV_NAT_MAP, SERVICES_MAP,
    SNAT_CONFIG_MAP, SNAT_MAP, SOURCE_RANGES_MAP, STATS_MAP,
};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const STANDARD_ROOT: &str = "/sys/fs/bpf";

/// The maps a reader of the pins (`state`, tests) opens: the ones every
/// agent of this layout pins.
pub const READ_MAPS: [&str; 12] = [
    SERVICES_MAP,
    BACKENDS_MAP,
    REV_NAT_MAP,
    CONNTRACK_MAP,
    STATS_MAP,
    FRONTEND_STATS_MAP,
    SOURCE_RANGES_MAP,
    MAGLEV_MAP,
    SNAT_MAP,
    SNAT_CONFIG_MAP,
    AFFINITY_MAP,
    FLOW_FILTER_MAP,
];

/// The bpffs mount a pin directory must be on: the standard one for
/// directories under it, else the directory's parent.
fn bpffs_root(pin_dir: &Path) -> &Path {
    let standard = Path::new(STANDARD_ROOT);
    if pin_dir.starts_with(standard) { standard } else { pin_dir.parent().unwrap_or(pin_dir) }
}

/// Pins need a bpffs. Like Cilium's agent, mount the standard one when the
/// host has not (a DaemonSet gets the host's mount through a hostPath), but
/// only where the mount outlives the agent.
pub fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
    // Two loads racing to mount would stack two bpffs instances.
    static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _mounting = MOUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = bpffs_root(pin_dir);
    if is_bpffs(root) {
        return Ok(());
    }
    if root == Path::new(STANDARD_ROOT) {
        if let Some(refusal) = refuse_mount_that_dies_with_us(&MountNamespaceFacts::gather()) {
            bail!(refusal);
        }
        tracing::info!("mounting bpffs at {STANDARD_ROOT}");
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in a constant");
        let (source, target, fstype) = (c("bpf"), c(STANDARD_ROOT), c("bpf"));
        // SAFETY: valid C strings; no data argument.
        let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
        if rc == 0 {
            return Ok(());
        }
        bail!("mounting bpffs at {STANDARD_ROOT} failed: {}", std::io::Error::last_os_error());
    }
    bail!(
        "{} is not on a bpffs mount, so maps could not be pinned there; use a directory under \
         {STANDARD_ROOT} or mount one with `mount -t bpf bpf DIR`",
        pin_dir.display()
    )
}

/// Where this process stands among namespaces, for deciding whether a bpffs
/// it mounts would outlive it (a mount lives as long as its mount namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountNamespaceFacts {
    /// In the kernel's initial PID namespace, i.e. not in a container of its own.
    pub host_pid_namespace: bool,
    /// In the same mount namespace as pid 1. Where pid 1's cannot be read
    /// (some sandboxes deny it even to root), whether ours is the kernel's
    /// initial one, which recent kernels give a fixed inode number; a process
    /// that cannot tell is treated as private: it needs a bpffs of its own
    /// only where none is mounted, and the refusal says how to mount one.
    pub pid1_mount_namespace: bool,
}

impl MountNamespaceFacts {
    pub fn gather() -> MountNamespaceFacts {
        use std::os::unix::fs::MetadataExt;
        // The kernel's fixed inode numbers of the initial PID and mount
        // namespaces (PROC_PID_INIT_INO, PROC_MNT_INIT_INO).
        const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;
        const INITIAL_MOUNT_NAMESPACE: u64 = 0xEFFF_FFF8;
        let namespace = |path: &str| std::fs::metadata(path).map(|meta| meta.ino());
        let host_pid_namespace = namespace("/proc/self/ns/pid").is_ok_and(|ino| ino == INITIAL_PID_NAMESPACE);
        let pid1_mount_namespace = match (namespace("/proc/self/ns/mnt"), namespace("/proc/1/ns/mnt")) {
            (Ok(ours), Ok(pid1s)) => ours == pid1s,
            (Ok(ours), Err(_)) => ours == INITIAL_MOUNT_NAMESPACE,
            (Err(_), _) => false,
        };
        MountNamespaceFacts { host_pid_namespace, pid1_mount_namespace }
    }
}

/// Why mounting a bpffs here would silently break the restart guarantee,
/// if it would: the mount, and with it every pin, goes when the last process
/// of this mount namespace does, and every program detaches then.
pub fn refuse_mount_that_dies_with_us(facts: &MountNamespaceFacts) -> Option<String> {
    if !facts.host_pid_namespace {
        Some(format!(
            "no bpffs at {STANDARD_ROOT} in this container, and one mounted here would die with the container and \
             detach every program: mount the host's {STANDARD_ROOT} into it (hostPath with mountPropagation: \
             Bidirectional, as deploy/daemonset.yaml does)"
        ))
    } else if !facts.pid1_mount_namespace {
        Some(format!(
            "no bpffs at {STANDARD_ROOT} in this mount namespace, which is not the host's (pid 1's), so one mounted \
             here would vanish with it and detach every program: run the agent in the host's mount namespace, or \
             `mount -t bpf bpf {STANDARD_ROOT}` here yourself if pins that die with this namespace are what you want"
        ))
    } else {
        None
    }
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a writable statfs.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// What can be seen of a pin directory from here, gathered by
/// [`PinDirFacts::gather`] and explained by [`explain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDirFacts {
    /// Whether this process runs as root (bpffs is root-only by default).
    pub root: bool,
    /// Whether the bpffs the directory belongs on is mounted in this mount
    /// namespace.
    pub bpffs_mounted: bool,
    pub exists: bool,
    pub is_dir: bool,
    /// Which of [`READ_MAPS`] are not pinned there.
    pub missing_maps: Vec<&'static str>,
}

impl PinDirFacts {
    pub fn gather(pin_dir: &Path) -> PinDirFacts {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        PinDirFacts {
            root,
            bpffs_mounted: is_bpffs(bpffs_root(pin_dir)),
            exists: pin_dir.exists(),
            is_dir: pin_dir.is_dir(),
            missing_maps: READ_MAPS.into_iter().filter(|name| !pin_dir.join(name).exists()).collect(),
        }
    }
}

/// Why the agent's maps cannot be read from `pin_dir`, and what to do, in
/// one line; `None` when the directory looks like a complete pin directory
/// (the error is then the kernel's, e.g. a map of another layout).
pub fn explain(pin_dir: &Path, facts: &PinDirFacts) -> Option<String> {
    let dir = pin_dir.display();
    let root = bpffs_root(pin_dir).display();
    Some(if !facts.root {
        format!("reading the pinned maps in {dir} needs root (bpffs and BPF_OBJ_GET): run it again with sudo")
    } else if !facts.bpffs_mounted {
        format!(
            "no bpffs is mounted at {root} in this mount namespace, so no agent's pins are visible here: run this \
             where the agent runs (`kubectl exec` into the agent's pod, or `nsenter --mount=/proc/<agent pid>/ns/mnt \
             -- ingress-userspace state`)"
        )
    } else if !facts.exists {
        format!(
            "{dir} does not exist: no agent has run with this --pin-dir; start one (`ingress-userspace run`) or pass \
             the --pin-dir the agent runs with"
        )
    } else if !facts.is_dir {
        format!("{dir} is a file, not a pin directory: pass the --pin-dir the agent runs with")
    } else if facts.missing_maps.len() == READ_MAPS.len() {
        format!(
            "{dir} holds none of the agent's maps ({}, ...): it is not an agent's pin directory; pass the --pin-dir \
             the agent runs with",
            READ_MAPS[0]
        )
    } else if !facts.missing_maps.is_empty() {
        format!(
            "{dir} lacks {}: an agent of another version pinned it, or one is still starting; run the `state` of \
             the agent's own version, or wait until the agent is ready",
            facts.missing_maps.join(", ")
        )
    } else {
        return None;
    })
}

/// `error` replaced by the one-line explanation of what is wrong with
/// `pin_dir`, when there is one.
pub fn explained(pin_dir: &Path, error: anyhow::Error) -> anyhow::Error {
    match explain(pin_dir, &PinDirFacts::gather(pin_dir)) {
        Some(explanation) => anyhow::anyhow!(explanation),
        None => error,
    }
}

/// Removes the pins in `pin_dir` (the last reference to a link detaches its
/// program) and says what happened. A directory that is already gone is
/// nothing to do, unless it is only invisible from this mount namespace.
pub fn remove_pins(pin_dir: &Path) -> anyhow::Result<String> {
    let facts = PinDirFacts::gather(pin_dir);
    if facts.root && facts.bpffs_mounted && !facts.exists {
        return Ok(format!("nothing to remove: {} does not exist", pin_dir.display()));
    }
    if !facts.root || !facts.bpffs_mounted || !facts.is_dir {
        return Err(explained(pin_dir, anyhow::anyhow!("{} cannot be removed", pin_dir.display())));
    }
    std::fs::remove_dir_all(pin_dir).map_err(|error| anyhow::anyhow!("removing {}: {error}", pin_dir.display()))?;
    Ok(format!("removed {}: programs detached, maps released", pin_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> PinDirFacts {
        PinDirFacts { root: true, bpffs_mounted: true, exists: true, is_dir: true, missing_maps: Vec::new() }
    }

    #[test]
    fn each_fault_is_named_with_its_fix() {
        let dir = Path::new("/sys/fs/bpf/k8s-ebpf-lb");
        let cases: [(PinDirFacts, &[&str]); 6] = [
            (PinDirFacts { root: false, ..complete() }, &["needs root", "sudo"]),
            (
                PinDirFacts { bpffs_mounted: false, exists: false, is_dir: false, ..complete() },
                &["no bpffs is mounted at /sys/fs/bpf in this mount namespace", "nsenter --mount=/proc/"],
            ),
            (
                PinDirFacts { exists: false, is_dir: false, missing_maps: READ_MAPS.to_vec(), ..complete() },
                &["/sys/fs/bpf/k8s-ebpf-lb does not exist", "no agent has run with this --pin-dir"],
            ),
            (PinDirFacts { is_dir: false, ..complete() }, &["is a file, not a pin directory"]),
            (
                PinDirFacts { missing_maps: READ_MAPS.to_vec(), ..complete() },
                &["holds none of the agent's maps (lb_services, ...)", "not an agent's pin directory"],
            ),
            (
                PinDirFacts { missing_maps: vec![SNAT_MAP, MAGLEV_MAP], ..complete() },
                &["lacks lb_snat, lb_maglev_v4", "another version"],
            ),
        ];
        for (facts, expected) in cases {
            let line = explain(dir, &facts).unwrap_or_else(|| panic!("{facts:?} explained"));
            assert!(!line.contains('\n'), "one line: {line}");
            for part in expected {
                assert!(line.contains(part), "{facts:?}: {line:?} should say {part:?}");
            }
        }
    }

    #[test]
    fn a_bpffs_is_mounted_only_where_it_outlives_the_agent() {
        let host = MountNamespaceFacts { host_pid_namespace: true, pid1_mount_namespace: true };
        let cases: [(MountNamespaceFacts, Option<&[&str]>); 4] = [
            (host, None),
            (
                MountNamespaceFacts { pid1_mount_namespace: false, ..host },
                Some(&["not the host's (pid 1's)", "detach every program", "mount -t bpf bpf /sys/fs/bpf"]),
            ),
            (
                MountNamespaceFacts { host_pid_namespace: false, ..host },
                Some(&["in this container", "hostPath with mountPropagation: Bidirectional"]),
            ),
            (
                MountNamespaceFacts { host_pid_namespace: false, pid1_mount_namespace: false },
                Some(&["in this container"]),
            ),
        ];
        for (facts, expected) in cases {
            let refusal = refuse_mount_that_dies_with_us(&facts);
            match expected {
                None => assert_eq!(refusal, None, "{facts:?}"),
                Some(parts) => {
                    let line = refusal.unwrap_or_else(|| panic!("{facts:?} refused"));
                    assert!(!line.contains('\n'), "one line: {line}");
                    for part in parts {
                        assert!(line.contains(part), "{facts:?}: {line:?} should say {part:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_complete_pin_directory_needs_no_explanation() {
        assert_eq!(explain(Path::new("/sys/fs/bpf/x"), &complete()), None);
    }

    #[test]
    fn a_directory_outside_the_standard_mount_must_sit_on_a_bpffs_itself() {
        assert_eq!(bpffs_root(Path::new("/sys/fs/bpf/a/b")), Path::new("/sys/fs/bpf"));
        assert_eq!(bpffs_root(Path::new("/run/lb/pins")), Path::new("/run/lb"));
        let line = explain(Path::new("/run/lb/pins"), &PinDirFacts { bpffs_mounted: false, ..complete() }).unwrap();
        assert!(line.starts_with("no bpffs is mounted at /run/lb in this mount namespace"), "{line}");
    }
}
