//! The kernel side of the seam: loads the embedded eBPF object with its maps
//! pinned under one bpffs directory, attaches the programs, and implements
//! `MapWriter` on the pinned maps.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, bail};
use aya::Pod;
use aya::maps::{Array, HashMap, IterableMap, LpmTrie, MapData, MapError, PerCpuArray, ProgramArray, lpm_trie};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::{Program, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use ingress_common::flow_filter::{FLOW_FILTER_MAP, FlowFilter};
use ingress_common::maps::*;
use ingress_common::sockets::PROXY_NETNS_GLOBAL;
use ingress_common::stats::{Counter, REASON_COUNT};

use super::batch::{self, BatchError};
use super::flow_filter::{FilterState, FilterWrites};
use super::host_ifaces::{self, HostIfaceKind, HostIfaces};
use super::pin_dir::ensure_bpffs;
use super::sizes::MapSizes;
use super::socket_shortcut;
use super::uplink_hook::{self, UplinkHook, UplinkHookChoice};
use super::{FlowsOfLeaving, MapContents, MapOp, MapWriter, conntrack_gc};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ingress-ebpf.o"));

pub const XDP_PROGRAM: &str = "lb_xdp";
/// The same translation as `XDP_PROGRAM` on an uplink's TC ingress.
pub const TC_UPLINK_PROGRAM: &str = "lb_tc_uplink";
/// Translates frontends to backends on the way in (pod veth ingress).
pub const TC_IN_PROGRAM: &str = "lb_tc_in";
/// Translates replies back on the way out (uplink and pod veth egress).
pub const TC_OUT_PROGRAM: &str = "lb_tc_out";
/// The programs the four above hand ICMP errors over to, in their order (a
/// tail call, see `TAIL_TC_MAP`): each is verified and put in its slot with
/// the program it serves.
pub const ICMP_PROGRAMS: [&str; 4] = ["lb_icmp_xdp", "lb_icmp_tc_uplink", "lb_icmp_tc_in", "lb_icmp_tc_out"];

/// The program `name` hands its ICMP errors over to, its table and slot.
fn icmp_program_of(name: &str) -> Option<(&'static str, &'static str, u32)> {
    let [xdp, uplink, pod, out] = ICMP_PROGRAMS;
    match name {
        XDP_PROGRAM => Some((xdp, TAIL_XDP_MAP, TAIL_ICMP_UPLINK)),
        TC_UPLINK_PROGRAM => Some((uplink, TAIL_TC_MAP, TAIL_ICMP_UPLINK)),
        TC_IN_PROGRAM => Some((pod, TAIL_TC_MAP, TAIL_ICMP_POD)),
        TC_OUT_PROGRAM => Some((out, TAIL_TC_MAP, TAIL_ICMP_OUT)),
        _ => None,
    }
}

/// Where the maps are pinned unless configured otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/k8s-ebpf-lb";

/// The loaded programs and the maps the agent owns.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    sizes: MapSizes,
    /// The interfaces attached, listed for host routing when it is on.
    host_ifaces: HostIfaces,
}

impl Dataplane {
    /// Loads the programs with the default map sizes.
    pub fn load(pin_dir: &Path) -> anyhow::Result<Self> {
        Self::load_sized(pin_dir, &MapSizes::default())
    }

    /// Loads the programs with maps of `sizes`. Maps already pinned in
    /// `pin_dir` (by an earlier run of the agent) are reused, so flows and
    /// state survive a restart, unless their size differs (see
    /// `drop_resized_pins`).
    pub fn load_sized(pin_dir: &Path, sizes: &MapSizes) -> anyhow::Result<Self> {
        let mut dataplane = Self::maps_only(pin_dir, sizes, false)?;
        dataplane.verify(&[XDP_PROGRAM, TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM])?;
        Ok(dataplane)
    }

    /// The object with its maps created (or reused) and pinned, none of its
    /// programs verified yet: the maps can be written meanwhile (see
    /// [`Dataplane::verify`]). With `host_routing` the programs send
    /// translated packets on themselves to the interfaces attached (see
    /// `host_ifaces`), and the node's netfilter no longer sees the flows of
    /// Services (see `host_routing` for when the agent allows that).
    pub fn maps_only(pin_dir: &Path, sizes: &MapSizes, host_routing: bool) -> anyhow::Result<Self> {
        sizes.validate()?;
        if OBJECT.is_empty() {
            bail!(
                "this binary was built with INGRESS_EBPF_STUB and has no eBPF object; \
                 build it with `cargo xtask build`"
            );
        }
        ensure_bpffs(pin_dir)?;
        std::fs::create_dir_all(pin_dir)
            .with_context(|| format!("creating the pin directory {}", pin_dir.display()))?;
        remove_retired_pins(pin_dir);
        host_ifaces::remove_pin(pin_dir)?;
        drop_resized_pins(pin_dir, sizes)?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pin_dir);
        for (name, max_entries) in sizes.max_entries() {
            loader.map_max_entries(name, max_entries);
        }
        let ebpf = loader
            .override_global(MAGLEV_TABLE_SIZE_GLOBAL, &sizes.maglev_table_size, true)
            .override_global(HOST_ROUTING_GLOBAL, &u32::from(host_routing), true)
            .override_global(PROXY_NETNS_GLOBAL, &socket_shortcut::netns_cookie(), true)
            .load(OBJECT)
            .with_context(|| format!("loading the eBPF object with maps pinned in {}", pin_dir.display()))?;
        let host_ifaces = HostIfaces::open(pin_dir, host_routing)?;
        Ok(Dataplane { ebpf, pin_dir: pin_dir.to_owned(), sizes: *sizes, host_ifaces })
    }

    /// Host routing off from the programs' next packet on (see
    /// `host_routing`); the programs stay attached.
    pub fn stop_host_routing(&mut self) -> anyhow::Result<()> {
        self.host_ifaces.stop_routing()
    }

    /// Unlists the host-routed interfaces that are gone.
    pub fn forget_vanished_interfaces(&mut self) -> anyhow::Result<()> {
        self.host_ifaces.forget_vanished()
    }

    /// The programs a node with these interfaces attaches: the uplink
    /// ingress program each uplink gets (XDP or TC, never both on a node of
    /// one kind of uplink), `lb_tc_out`, and `lb_tc_in` where pod veths are
    /// expected. The verifier spends a third of a second on each of the big
    /// ones, so an agent start verifies only these.
    pub fn programs_for(uplinks: &[String], choice: UplinkHookChoice, pod_veths: bool) -> anyhow::Result<Vec<&'static str>> {
        let mut programs = vec![TC_OUT_PROGRAM];
        if pod_veths {
            programs.push(TC_IN_PROGRAM);
        }
        for uplink in uplinks {
            let program = match uplink_hook_for(uplink, choice)?.0 {
                UplinkHook::Xdp => XDP_PROGRAM,
                UplinkHook::Tc => TC_UPLINK_PROGRAM,
            };
            if !programs.contains(&program) {
                programs.push(program);
            }
        }
        Ok(programs)
    }

    /// The verifier's walk through each program is most of an agent's start
    /// (hundreds of thousands of instructions each), and the programs are
    /// independent of each other: they are verified side by side, one thread
    /// each, so a start takes the longest program's time where cores allow.
    ///
    /// Each program's ICMP error program is verified once all of them are,
    /// and put in its slot. Side by side with them, `lb_tc_uplink` came out
    /// about 100 ns per packet slower in the bench (A/B, the same object:
    /// 405-445 against 292-329 ns at N=1), for no reason found in the code:
    /// the JIT images' placement is the suspect.
    pub fn verify(&mut self, names: &[&str]) -> anyhow::Result<()> {
        self.verify_side_by_side(names)?;
        // A diagnostic only: a kernel that cannot report program info must not fail the start.
        if let Some(name) = names.first()
            && let Ok(false) = self.carries_btf(name)
        {
            tracing::warn!(
                "the kernel refused the eBPF object's BTF, so the programs were verified without it: \
                 the verifier walked lb_snat_prepare once per caller state, which makes a start slower"
            );
        }
        let icmp_programs: Vec<&str> = names.iter().filter_map(|name| icmp_program_of(name)).map(|(icmp, ..)| icmp).collect();
        self.verify_side_by_side(&icmp_programs)?;
        names.iter().try_for_each(|name| self.hand_icmp_errors_over(name))
    }

    /// Verifies `names` (those not verified yet), one thread each.
    fn verify_side_by_side(&mut self, names: &[&str]) -> anyhow::Result<()> {
        std::thread::scope(|scope| {
            let loads: Vec<_> = self
                .ebpf
                .programs_mut()
                .filter(|(name, program)| names.contains(name) && program.fd().is_err())
                .map(|(name, program)| (name.to_owned(), scope.spawn(move || load_program(program))))
                .collect();
            for (name, load) in loads {
                let loaded = load.join().map_err(|_| anyhow::anyhow!("loading {name} panicked"))?;
                loaded.with_context(|| format!("the verifier rejected {name}"))?;
            }
            Ok(())
        })
    }

    /// Puts `name`'s ICMP error program, verified, in its slot of the
    /// pinned table (a restarted agent's replaces the last one's).
    fn hand_icmp_errors_over(&mut self, name: &str) -> anyhow::Result<()> {
        let Some((icmp, table, slot)) = icmp_program_of(name) else { return Ok(()) };
        let program = self.ebpf.program_mut(icmp).with_context(|| format!("{icmp} missing from the object"))?;
        if program.fd().is_err() {
            load_program(program).with_context(|| format!("the verifier rejected {icmp}"))?;
        }
        let fd = program.fd()?.try_clone().with_context(|| format!("duplicating the descriptor of {icmp}"))?;
        let map = self.ebpf.map_mut(table).with_context(|| format!("{table} missing from the object"))?;
        let mut slots = ProgramArray::try_from(map)?;
        slots.set(slot, &fd, 0).with_context(|| format!("putting {icmp} in slot {slot} of {table}"))
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The L7 proxy's socket shortcut to local pods (see `socket_shortcut`),
    /// on the cgroup v2 root `cgroup`.
    pub fn attach_socket_shortcut(&mut self, cgroup: &Path) -> anyhow::Result<socket_shortcut::ShortcutCounters> {
        socket_shortcut::attach(&mut self.ebpf, cgroup)
    }

    /// `lb_xdp`, verified first if it was not yet.
    pub fn xdp(&mut self) -> anyhow::Result<&mut Xdp> {
        Ok(self.loaded(XDP_PROGRAM)?.try_into()?)
    }

    /// `TC_UPLINK_PROGRAM`, `TC_IN_PROGRAM` or `TC_OUT_PROGRAM`, verified
    /// first if it was not yet.
    pub fn tc(&mut self, name: &str) -> anyhow::Result<&mut SchedClassifier> {
        Ok(self.loaded(name)?.try_into()?)
    }

    /// The instructions the verifier processed to accept program `name`
    /// (verifying it first if it was not yet): the figure its limit of
    /// 1,000,000 applies to. `None` from a kernel that does not report it
    /// (before 5.16).
    pub fn verified_instructions(&mut self, name: &str) -> anyhow::Result<Option<u32>> {
        Ok(self.loaded(name)?.info()?.verified_instruction_count())
    }

    /// Whether program `name` was loaded with the object's BTF (its function
    /// records), which makes `lb_snat_prepare` a global function to the
    /// verifier; verifying it first if it was not yet.
    pub fn carries_btf(&mut self, name: &str) -> anyhow::Result<bool> {
        Ok(self.loaded(name)?.info()?.btf_id().is_some())
    }

    fn loaded(&mut self, name: &str) -> anyhow::Result<&mut Program> {
        let program = self.ebpf.program_mut(name).with_context(|| format!("{name} missing from the object"))?;
        if program.fd().is_err() {
            load_program(program).with_context(|| format!("the verifier rejected {name}"))?;
            self.hand_icmp_errors_over(name)?;
        }
        self.ebpf.program_mut(name).with_context(|| format!("{name} missing from the object"))
    }

    /// Where the link of a program on an interface's hook is pinned. bpffs
    /// refuses dots in names (EPERM), and VLAN interfaces have them.
    fn link_pin(&self, interface: &str, hook: Hook) -> PathBuf {
        link_pin(&self.pin_dir, interface, hook)
    }

    fn attach_tc(&mut self, name: &str, interface: &str, hook: Hook) -> anyhow::Result<()> {
        let pin = self.link_pin(interface, hook);
        attach_pinned(self.tc(name)?, interface, hook, &pin).with_context(|| format!("attaching {name} to {interface}"))
    }

    /// A node uplink: XDP or TC ingress (`choice`, see `uplink_hook`)
    /// translates what comes in, TC egress the replies that go out. The
    /// other ingress hook, left pinned by an agent that chose differently,
    /// is detached once the chosen one is in place (a moment with both is
    /// harmless: the second sees a backend, no frontend). In the calling
    /// thread's network namespace.
    pub fn attach_uplink(&mut self, interface: &str, choice: UplinkHookChoice) -> anyhow::Result<UplinkHook> {
        let (hook, why) = uplink_hook_for(interface, choice)?;
        let (chosen, other) = match hook {
            UplinkHook::Xdp => {
                let pin = self.link_pin(interface, Hook::Xdp);
                attach_pinned(self.xdp()?, interface, Hook::Xdp, &pin)
                    .with_context(|| format!("attaching XDP to {interface}"))?;
                (Hook::Xdp, Hook::TcUplink)
            }
            UplinkHook::Tc => {
                self.attach_tc(TC_UPLINK_PROGRAM, interface, Hook::TcUplink)?;
                (Hook::TcUplink, Hook::Xdp)
            }
        };
        unpin_link(&self.link_pin(interface, other))?;
        tracing::info!(uplink = interface, hook = %hook, "uplink ingress through {hook} ({why}); pinned as {}", chosen.label());
        self.attach_tc(TC_OUT_PROGRAM, interface, Hook::TcOut)?;
        self.host_ifaces.list(interface, HostIfaceKind::Uplink)?;
        Ok(hook)
    }

    /// The host side of a pod veth: TC ingress translates what the pod
    /// sends, TC egress the replies delivered to it.
    pub fn attach_pod_veth(&mut self, interface: &str) -> anyhow::Result<()> {
        self.attach_tc(TC_IN_PROGRAM, interface, Hook::TcIn)?;
        self.attach_tc(TC_OUT_PROGRAM, interface, Hook::TcOut)?;
        self.host_ifaces.list(interface, HostIfaceKind::Pod)
    }

    /// Opens the pinned maps for reading and writing, independently of the
    /// programs (what a second process, e.g. the state dump, also does).
    pub fn maps(&self) -> anyhow::Result<PinnedMaps> {
        Ok(PinnedMaps::open(&self.pin_dir)?.with_sizes(self.sizes))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Xdp,
    /// An uplink's TC ingress (`TC_UPLINK_PROGRAM`).
    TcUplink,
    TcIn,
    TcOut,
}

impl Hook {
    const ALL: [Hook; 4] = [Hook::Xdp, Hook::TcUplink, Hook::TcIn, Hook::TcOut];

    fn label(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcUplink => "tc-uplink",
            Hook::TcIn => "tc-in",
            Hook::TcOut => "tc-out",
        }
    }

    fn uplink_ingress(self) -> Option<UplinkHook> {
        match self {
            Hook::Xdp => Some(UplinkHook::Xdp),
            Hook::TcUplink => Some(UplinkHook::Tc),
            Hook::TcIn | Hook::TcOut => None,
        }
    }
}

/// `name` as the state dump reads it: NUL-terminated, cut to fit.
fn frontend_name(name: &str) -> FrontendName {
    let mut value = FrontendName { bytes: [0; 64] };
    let len = name.len().min(value.bytes.len() - 1);
    value.bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
    value
}

/// The hook an uplink gets, and why (see `uplink_hook::choose`).
fn uplink_hook_for(interface: &str, choice: UplinkHookChoice) -> anyhow::Result<(UplinkHook, String)> {
    let driver = uplink_hook::driver_info(interface)?;
    Ok(uplink_hook::choose(choice, driver.as_ref()))
}

fn load_program(program: &mut Program) -> anyhow::Result<()> {
    match program {
        Program::Xdp(xdp) => xdp.load()?,
        Program::SchedClassifier(classifier) => classifier.load()?,
        other => bail!("a program of an unexpected kind: {:?}", other.prog_type()),
    }
    if let Ok(info) = program.info() {
        let name = info.name_as_str().unwrap_or("?");
        tracing::debug!(program = name, instructions = ?info.verified_instruction_count(), "verified");
    }
    Ok(())
}

/// Where the link of a program on an interface's hook is pinned. bpffs
/// refuses dots in names (EPERM), and VLAN interfaces have them.
fn link_pin(pin_dir: &Path, interface: &str, hook: Hook) -> PathBuf {
    pin_dir.join("links").join(format!("{}-{}", interface.replace('.', "_"), hook.label()))
}

/// The uplink and its ingress hook a link pin's file name stands for.
fn uplink_of_pin(file_name: &str) -> Option<(&str, UplinkHook)> {
    Hook::ALL.iter().find_map(|hook| {
        let interface = file_name.strip_suffix(hook.label())?.strip_suffix('-')?;
        Some((interface, hook.uplink_ingress()?))
    })
}

/// The uplinks attached under `pin_dir` and the hook on each one's ingress,
/// from the pinned links (what `state` shows; VLAN dots read as `_`).
pub fn uplink_hooks(pin_dir: &Path) -> anyhow::Result<Vec<(String, UplinkHook)>> {
    let dir = pin_dir.join("links");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("listing {}", dir.display())),
    };
    let mut uplinks = Vec::new();
    for entry in entries {
        let name = entry.with_context(|| format!("listing {}", dir.display()))?.file_name();
        if let Some((interface, hook)) = uplink_of_pin(&name.to_string_lossy()) {
            uplinks.push((interface.to_owned(), hook));
        }
    }
    uplinks.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(uplinks)
}

/// Removes a pinned link, which detaches its program once no process holds
/// the link open; no pin is nothing to do.
fn unpin_link(pin: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(pin) {
        Ok(()) => {
            tracing::info!(pin = %pin.display(), "detached the uplink hook an earlier run chose");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing the pinned link {}", pin.display())),
    }
}

/// A program attached through a bpf_link, which can be pinned and later
/// given a new program atomically.
trait LinkedProgram {
    fn relink(&mut self, old: FdLink) -> anyhow::Result<()>;
    fn attach_fresh(&mut self, interface: &str, hook: Hook) -> anyhow::Result<FdLink>;
}

impl LinkedProgram for Xdp {
    fn relink(&mut self, old: FdLink) -> anyhow::Result<()> {
        self.attach_to_link(old.try_into()?)?;
        Ok(())
    }

    fn attach_fresh(&mut self, interface: &str, _: Hook) -> anyhow::Result<FdLink> {
        let id = self.attach(interface, XdpMode::Default)?;
        Ok(self.take_link(id)?.try_into()?)
    }
}

impl LinkedProgram for SchedClassifier {
    fn relink(&mut self, old: FdLink) -> anyhow::Result<()> {
        self.attach_to_link(old.try_into()?)?;
        Ok(())
    }

    fn attach_fresh(&mut self, interface: &str, hook: Hook) -> anyhow::Result<FdLink> {
        let way = if matches!(hook, Hook::TcIn | Hook::TcUplink) { TcAttachType::Ingress } else { TcAttachType::Egress };
        let id = self.attach(interface, way)?;
        Ok(self.take_link(id)?.try_into()?)
    }
}

/// Attaches through a link pinned at `pin`, so the program stays attached
/// when the agent exits or crashes: traffic keeps being translated by the
/// last programs over the pinned maps. A restarted agent swaps its freshly
/// loaded program into the same link (no moment without a program); a link
/// whose interface is gone cannot take it, and is replaced.
fn attach_pinned(program: &mut impl LinkedProgram, interface: &str, hook: Hook, pin: &Path) -> anyhow::Result<()> {
    match PinnedLink::from_pin(pin) {
        Ok(old) => match program.relink(FdLink::from(old)) {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::info!(pin = %pin.display(), "the pinned link is stale ({error:#}); attaching anew");
                std::fs::remove_file(pin).with_context(|| format!("removing {}", pin.display()))?;
            }
        },
        Err(LinkError::SyscallError(error)) if error.io_error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("opening the pinned link {}", pin.display())),
    }
    let link = program.attach_fresh(interface, hook)?;
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    link.pin(pin).with_context(|| format!("pinning the link at {}", pin.display()))?;
    Ok(())
}

/// The kernel cannot resize a map, and the loader would silently reuse a
/// pinned one of the old size. A size flag that differs from the pinned map
/// is an explicit request for another size, so the pin is removed and the
/// map created anew, with a warning: the agent rewrites its own maps on its
/// first pass, and the flows the old conntrack held mostly land on the same
/// backend again through Maglev. Failing instead would leave the DaemonSet
/// crash-looping until someone removed the pins by hand.
fn drop_resized_pins(pin_dir: &Path, sizes: &MapSizes) -> anyhow::Result<()> {
    for (name, wanted) in sizes.max_entries() {
        let pin = pin_dir.join(name);
        let Ok(map) = MapData::from_pin(&pin) else { continue };
        let pinned = map.info().with_context(|| format!("reading the size of {}", pin.display()))?.max_entries();
        if pinned != wanted {
            tracing::warn!(
                map = name,
                pinned,
                wanted,
                "the pinned map {name} has {pinned} entries, the flags ask for {wanted}: recreating it \
                 (its current entries are lost; the agent reprograms its own maps)"
            );
            std::fs::remove_file(&pin).with_context(|| format!("removing {}", pin.display()))?;
        }
    }
    Ok(())
}

/// Pins of maps in layouts no program reads any more (`RETIRED_MAPS`, e.g.
/// the IPv4-only `lb4_*` maps) would hold kernel memory and mislead whoever
/// reads the pin directory. Removing them is housekeeping, never a reason
/// not to start.
fn remove_retired_pins(pin_dir: &Path) {
    for name in RETIRED_MAPS {
        let pin = pin_dir.join(name);
        match std::fs::remove_file(&pin) {
            Ok(()) => tracing::info!(map = name, "removed the pin of the retired map {name}"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(map = name, "removing the retired pin {} failed: {error}", pin.display()),
        }
    }
}

/// The agent-owned maps and the counters, opened from their pins.
pub struct PinnedMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
    rev_nat: HashMap<MapData, u32, RevNat>,
    /// An LRU hash in the kernel; aya reads it through the same HashMap type.
    conntrack: HashMap<MapData, CtKey, CtEntry>,
    stats: PerCpuArray<MapData, Counter>,
    frontend_stats: PerCpuArray<MapData, Counter>,
    frontend_names: HashMap<MapData, u32, FrontendName>,
    source_ranges: LpmTrie<MapData, SourceRangeKey, u32>,
    /// Rows at `maglev_row_index`: an array, so a removed row is zeroed,
    /// and an all-zero row is absent.
    maglev: Array<MapData, MaglevRow>,
    /// An LRU hash in the kernel, like `conntrack`.
    snat: HashMap<MapData, SnatKey, SnatEntry>,
    snat_config: Array<MapData, SnatConfig>,
    /// An LRU hash in the kernel, like `conntrack`.
    affinity: HashMap<MapData, AffinityKey, AffinityValue>,
    flow_filter: Array<MapData, FlowFilter>,
    /// The filter of what the maps hold, from the last `read` on, kept with
    /// every write; unknown after a failed one.
    filter_state: Mutex<Option<FilterState>>,
    sizes: MapSizes,
}

/// The names map is the agent's own (the programs never read it), so it is
/// created here rather than in the object, and pinned beside the others,
/// with one entry per possible rev-NAT id.
fn open_or_create_names(dir: &Path, capacity: u32) -> anyhow::Result<HashMap<MapData, u32, FrontendName>> {
    let path = dir.join(FRONTEND_NAMES_MAP);
    if path.exists() {
        return open_pinned(dir, FRONTEND_NAMES_MAP);
    }
    let map: HashMap<MapData, u32, FrontendName> = HashMap::create(capacity, 0)?;
    map.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
    open_pinned(dir, FRONTEND_NAMES_MAP)
}

/// A hash map lookup's value, `None` for a key that is not there.
fn lookup<V>(result: Result<V, MapError>) -> anyhow::Result<Option<V>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The capacity (max_entries) the map pinned in `dir` as `name` was created with.
pub fn pinned_capacity(dir: &Path, name: &str) -> anyhow::Result<u32> {
    let pin = dir.join(name);
    Ok(MapData::from_pin(&pin).and_then(|map| map.info()).with_context(|| format!("reading the size of {}", pin.display()))?.max_entries())
}

fn open_pinned<T>(dir: &Path, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| format!("opening the pinned map {}", path.display()))?;
    let map = aya::maps::Map::from_map_data(data).with_context(|| format!("reading {}", path.display()))?;
    T::try_from(map).with_context(|| format!("{} has an unexpected layout", path.display()))
}

impl PinnedMaps {
    /// The maps pinned in `dir`, planned for with the default sizes (see
    /// `with_sizes`).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let rev_nat_capacity = pinned_capacity(dir, REV_NAT_MAP)?;
        Ok(PinnedMaps {
            services: open_pinned(dir, SERVICES_MAP)?,
            backends: open_pinned(dir, BACKENDS_MAP)?,
            rev_nat: open_pinned(dir, REV_NAT_MAP)?,
            conntrack: open_pinned(dir, CONNTRACK_MAP)?,
            stats: open_pinned(dir, STATS_MAP)?,
            frontend_stats: open_pinned(dir, FRONTEND_STATS_MAP)?,
            frontend_names: open_or_create_names(dir, rev_nat_capacity)?,
            source_ranges: open_pinned(dir, SOURCE_RANGES_MAP)?,
            maglev: open_pinned(dir, MAGLEV_MAP)?,
            snat: open_pinned(dir, SNAT_MAP)?,
            snat_config: open_pinned(dir, SNAT_CONFIG_MAP)?,
            affinity: open_pinned(dir, AFFINITY_MAP)?,
            flow_filter: open_pinned(dir, FLOW_FILTER_MAP)?,
            filter_state: Mutex::new(None),
            sizes: MapSizes::default(),
        })
    }

    /// Plans writes for programs loaded with `sizes` (their Maglev table
    /// size and capacities).
    pub fn with_sizes(self, sizes: MapSizes) -> Self {
        PinnedMaps { sizes, ..self }
    }

    /// Packets and bytes addressed to the frontend with this reverse-NAT id.
    pub fn frontend_counter(&self, rev_nat_id: u32) -> anyhow::Result<Counter> {
        Ok(sum(&self.frontend_stats.get(&rev_nat_id, 0)?))
    }

    /// The Service port name of each frontend, by reverse-NAT id.
    pub fn frontend_names(&self) -> anyhow::Result<BTreeMap<u32, String>> {
        self.frontend_names
            .iter()
            .map(|entry| {
                let (id, name) = entry?;
                let end = name.bytes.iter().position(|b| *b == 0).unwrap_or(name.bytes.len());
                Ok((id, String::from_utf8_lossy(&name.bytes[..end]).into_owned()))
            })
            .collect()
    }

    /// Makes the names map say `names`, writing only what differs.
    pub fn set_frontend_names(&mut self, names: &BTreeMap<u32, String>) -> anyhow::Result<()> {
        let current = self.frontend_names()?;
        for id in current.keys().filter(|id| !names.contains_key(id)) {
            self.frontend_names.remove(id)?;
        }
        let changed = names.iter().filter(|(id, name)| current.get(id) != Some(name));
        let (ids, values): (Vec<u32>, Vec<FrontendName>) = changed.map(|(id, name)| (*id, frontend_name(name))).unzip();
        // A first pass labels every frontend: one call, not one per frontend.
        match batch::update(self.frontend_names.map().fd().as_fd(), &ids, &values) {
            Ok(()) => Ok(()),
            Err(BatchError::Failed { done, error }) => Err(anyhow::Error::new(error).context(format!("labelling frontend {}", ids[done]))),
            Err(BatchError::Unsupported) => {
                ids.iter().zip(&values).try_for_each(|(id, value)| Ok(self.frontend_names.insert(id, value, 0)?))
            }
        }
    }

    /// Packets and bytes by reason, summed over CPUs.
    pub fn stats(&self) -> anyhow::Result<Vec<Counter>> {
        (0..REASON_COUNT)
            .map(|reason| {
                Ok(sum(&self.stats.get(&reason, 0)?))
            })
            .collect()
    }

    /// Every conntrack entry (for tests and the state dump).
    pub fn conntrack(&self) -> anyhow::Result<Vec<(CtKey, CtEntry)>> {
        Ok(self.conntrack.iter().collect::<Result<_, _>>()?)
    }

    /// The conntrack entry under `key`, if any (one lookup, for tests).
    pub fn conntrack_entry(&self, key: &CtKey) -> anyhow::Result<Option<CtEntry>> {
        lookup(self.conntrack.get(key, 0))
    }

    /// The SNAT entry under `key`, if any (one lookup, for tests).
    pub fn snat_entry(&self, key: &SnatKey) -> anyhow::Result<Option<SnatEntry>> {
        lookup(self.snat.get(key, 0))
    }

    /// Every SNAT entry, both directions (for tests and the state dump).
    pub fn snat(&self) -> anyhow::Result<Vec<(SnatKey, SnatEntry)>> {
        Ok(self.snat.iter().collect::<Result<_, _>>()?)
    }

    /// The node addresses and port range SNAT uses.
    pub fn snat_config(&self) -> anyhow::Result<SnatConfig> {
        Ok(self.snat_config.get(&0, 0)?)
    }

    /// How many clients are pinned to a backend by ClientIP affinity.
    pub fn affinity_entries(&self) -> usize {
        self.affinity.keys().filter(Result::is_ok).count()
    }

}

/// What a removed Maglev row is set to: an array entry cannot be deleted.
/// No planned row is all zero (entries name slots from 1).
const ABSENT_ROW: MaglevRow = MaglevRow { slots: [0; MAGLEV_ROW_LEN] };

impl PinnedMaps {
    /// The array index of a Maglev row, for tables of the loaded size.
    fn maglev_index(&self, key: &MaglevKey) -> u32 {
        maglev_row_index(key.table, key.row, self.sizes.rows_per_table())
    }

    /// The rows of the tables `services`' headers name: the whole array is
    /// every table the flags allow, mostly unused. Rows of consecutive
    /// indices (tables of consecutive ids) are read in batch calls.
    fn tables_rows(&self, services: &BTreeMap<ServiceKey, ServiceValue>) -> anyhow::Result<BTreeMap<MaglevKey, Arc<MaglevRow>>> {
        let rows_per_table = self.sizes.rows_per_table();
        let named = services.iter().filter(|(key, header)| key.slot == 0 && header.backend_id != 0);
        let tables: BTreeSet<u32> = named.map(|(_, header)| header.backend_id).collect();
        let keys = tables.into_iter().flat_map(|table| (0..rows_per_table).map(move |row| MaglevKey { table, row }));
        let by_index: BTreeMap<u32, MaglevKey> = keys.map(|key| (self.maglev_index(&key), key)).collect();
        let mut rows = BTreeMap::new();
        for (first, count) in index_runs(by_index.keys().copied()) {
            for (index, row) in self.maglev_rows(first, count)? {
                // A table id past the array (maps written with other sizes)
                // is not read; an all-zero row is absent.
                if let Some(key) = by_index.get(&index)
                    && row != ABSENT_ROW
                {
                    rows.insert(*key, Arc::new(row));
                }
            }
        }
        Ok(rows)
    }

    /// Rows `first .. first + count` of the Maglev array (fewer past its
    /// end), in one batch call per `BATCH_ENTRIES`, or one by one where the
    /// kernel has no batch reads.
    fn maglev_rows(&self, first: u32, count: usize) -> anyhow::Result<Vec<(u32, MaglevRow)>> {
        match batch::read_array(self.maglev.map().fd().as_fd(), first, count) {
            Ok(rows) => Ok(rows),
            Err(BatchError::Failed { error, .. }) => Err(anyhow::Error::new(error).context(format!("reading {MAGLEV_MAP}"))),
            Err(BatchError::Unsupported) => {
                let mut rows = Vec::with_capacity(count);
                for index in (first..).take(count) {
                    match self.maglev.get(&index, 0) {
                        Ok(row) => rows.push((index, row)),
                        Err(MapError::OutOfBounds { .. }) => break,
                        Err(error) => return Err(error.into()),
                    }
                }
                Ok(rows)
            }
        }
    }

    /// What the agent-owned maps hold.
    fn read_contents(&self) -> anyhow::Result<MapContents> {
        let services = read_hash_map(&self.services).with_context(|| format!("reading {SERVICES_MAP}"))?;
        Ok(MapContents {
            backends: read_hash_map(&self.backends).with_context(|| format!("reading {BACKENDS_MAP}"))?,
            rev_nat: read_hash_map(&self.rev_nat).with_context(|| format!("reading {REV_NAT_MAP}"))?,
            source_ranges: self
                .source_ranges
                .keys()
                .map(|key| key.map(|key| (key.prefix_len(), key.data())))
                .collect::<Result<_, _>>()?,
            maglev: self.tables_rows(&services)?,
            services,
        })
    }

    /// The filter writes around `ops`, from what the maps hold (read now
    /// when not known).
    fn filter_writes(&self, ops: &[MapOp]) -> anyhow::Result<FilterWrites> {
        let mut state = self.filter_state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = match state.as_mut() {
            Some(state) => state,
            None => state.insert(FilterState::of(&self.read_contents()?)),
        };
        Ok(state.take(ops))
    }

    fn write_filter(&mut self, filter: &FlowFilter) -> anyhow::Result<()> {
        self.flow_filter.set(0, filter, 0).with_context(|| format!("writing {FLOW_FILTER_MAP}"))
    }

    /// One op, as a single map write.
    fn write_op(&mut self, op: &MapOp) -> anyhow::Result<()> {
        match op {
            MapOp::PutBackend(id, b) => self.backends.insert(id, b, 0),
            MapOp::PutRevNat(id, r) => self.rev_nat.insert(id, r, 0),
            MapOp::PutService(k, v) => self.services.insert(k, v, 0),
            MapOp::DeleteService(k) => self.services.remove(k),
            MapOp::DeleteBackend(id) => self.backends.remove(id),
            MapOp::DeleteRevNat(id) => self.rev_nat.remove(id),
            // The value is unused: a hit is what allows the client.
            MapOp::PutSourceRange((len, data)) => self.source_ranges.insert(&lpm_trie::Key::new(*len, *data), 1, 0),
            MapOp::DeleteSourceRange((len, data)) => self.source_ranges.remove(&lpm_trie::Key::new(*len, *data)),
            MapOp::PutMaglevRow(key, row) => self.maglev.set(self.maglev_index(key), **row, 0),
            MapOp::DeleteMaglevRow(key) => self.maglev.set(self.maglev_index(key), ABSENT_ROW, 0),
        }
        .with_context(|| format!("{op:?}"))
    }

    /// Ops of one kind: batch calls, or single writes where the kernel has
    /// no batch op for the map. On a failure, the index in `run`.
    fn apply_run(&mut self, run: &[MapOp]) -> Result<(), (usize, anyhow::Error)> {
        use MapOp::*;
        let batched = match &run[0] {
            _ if run.len() == 1 => Err((0, BatchError::Unsupported)),
            PutBackend(..) => put(&self.backends, run, |op| if let PutBackend(id, v) = op { Some((*id, *v)) } else { None }),
            PutRevNat(..) => put(&self.rev_nat, run, |op| if let PutRevNat(id, v) = op { Some((*id, *v)) } else { None }),
            PutService(..) => put(&self.services, run, |op| if let PutService(k, v) = op { Some((*k, *v)) } else { None }),
            PutMaglevRow(..) => put(&self.maglev, run, |op| if let PutMaglevRow(k, row) = op { Some((self.maglev_index(k), **row)) } else { None }),
            // The value is unused: a hit is what allows the client.
            PutSourceRange(..) => put(&self.source_ranges, run, |op| match op {
                PutSourceRange((len, data)) => Some((lpm_trie::Key::new(*len, *data), 1)),
                _ => None,
            }),
            DeleteBackend(..) => remove(&self.backends, run, |op| if let DeleteBackend(id) = op { Some(*id) } else { None }),
            DeleteRevNat(..) => remove(&self.rev_nat, run, |op| if let DeleteRevNat(id) = op { Some(*id) } else { None }),
            DeleteService(..) => remove(&self.services, run, |op| if let DeleteService(k) = op { Some(*k) } else { None }),
            DeleteMaglevRow(..) => put(&self.maglev, run, |op| if let DeleteMaglevRow(k) = op { Some((self.maglev_index(k), ABSENT_ROW)) } else { None }),
            DeleteSourceRange(..) => remove(&self.source_ranges, run, |op| match op {
                DeleteSourceRange((len, data)) => Some(lpm_trie::Key::new(*len, *data)),
                _ => None,
            }),
        };
        match batched {
            Ok(()) => Ok(()),
            Err((start, BatchError::Failed { done, error })) => {
                Err((start + done, anyhow::Error::new(error).context(format!("{:?}", run[start + done]))))
            }
            Err((start, BatchError::Unsupported)) => run[start..]
                .iter()
                .enumerate()
                .try_for_each(|(index, op)| self.write_op(op).map_err(|error| (start + index, error))),
        }
    }
}

/// Entries per batch call. The buffers a call reads are built for it and
/// reused: one buffer for a whole run was 60 MB of Maglev rows at 10,000
/// Services, and filling it (page faults, regrowth) cost more than the
/// calls saved by fewer of them.
pub const BATCH_ENTRIES: usize = 1024;

/// Batch updates of the entries `entry` takes out of `run`'s ops. On a
/// failure, where in `run` the failing batch started.
/// Every entry of a hash map, in batch calls, or through aya's iterator (a
/// call for each key and one for each value) where the kernel has no batch
/// reads: an agent adopting the maps of 30,000 Services reads about 220,000
/// entries at start.
fn read_hash_map<K: Pod + Ord, V: Pod>(map: &HashMap<MapData, K, V>) -> anyhow::Result<BTreeMap<K, V>> {
    match batch::read_all(map.map().fd().as_fd()) {
        Ok(entries) => Ok(entries.into_iter().collect()),
        Err(BatchError::Failed { error, .. }) => Err(error.into()),
        Err(BatchError::Unsupported) => Ok(map.iter().collect::<Result<_, _>>()?),
    }
}

/// Consecutive runs of `indices` (ascending) as (first, length), each at
/// most `BATCH_ENTRIES` long.
fn index_runs(indices: impl IntoIterator<Item = u32>) -> Vec<(u32, usize)> {
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for index in indices {
        match runs.last_mut() {
            Some((first, length)) if *length < BATCH_ENTRIES && first.checked_add(*length as u32) == Some(index) => *length += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

fn put<K: Pod, V: Pod>(
    map: &impl IterableMap<K, V>,
    run: &[MapOp],
    entry: impl Fn(&MapOp) -> Option<(K, V)>,
) -> Result<(), (usize, BatchError)> {
    let capacity = run.len().min(BATCH_ENTRIES);
    let (mut keys, mut values) = (Vec::with_capacity(capacity), Vec::with_capacity(capacity));
    for (start, chunk) in (0..).step_by(BATCH_ENTRIES).zip(run.chunks(BATCH_ENTRIES)) {
        keys.clear();
        values.clear();
        for (key, value) in chunk.iter().filter_map(&entry) {
            keys.push(key);
            values.push(value);
        }
        debug_assert_eq!(keys.len(), chunk.len(), "a run holds ops of one kind");
        batch::update(map.map().fd().as_fd(), &keys, &values).map_err(|error| (start, error))?;
    }
    Ok(())
}

/// Batch deletes of the keys `key` takes out of `run`'s ops, as [`put`].
fn remove<K: Pod, V: Pod>(
    map: &impl IterableMap<K, V>,
    run: &[MapOp],
    key: impl Fn(&MapOp) -> Option<K>,
) -> Result<(), (usize, BatchError)> {
    let mut keys = Vec::with_capacity(run.len().min(BATCH_ENTRIES));
    for (start, chunk) in (0..).step_by(BATCH_ENTRIES).zip(run.chunks(BATCH_ENTRIES)) {
        keys.clear();
        keys.extend(chunk.iter().filter_map(&key));
        debug_assert_eq!(keys.len(), chunk.len(), "a run holds ops of one kind");
        batch::delete(map.map().fd().as_fd(), &keys).map_err(|error| (start, error))?;
    }
    Ok(())
}

fn sum(per_cpu: &[Counter]) -> Counter {
    per_cpu.iter().fold(Counter::default(), |sum, c| Counter { packets: sum.packets + c.packets, bytes: sum.bytes + c.bytes })
}

impl MapWriter for PinnedMaps {
    fn read(&self) -> anyhow::Result<MapContents> {
        let contents = self.read_contents()?;
        *self.filter_state.lock().unwrap_or_else(PoisonError::into_inner) = Some(FilterState::of(&contents));
        Ok(contents)
    }

    fn sizes(&self) -> MapSizes {
        self.sizes
    }

    fn apply(&mut self, op: &MapOp) -> anyhow::Result<()> {
        self.apply_all(std::slice::from_ref(op)).map_err(|(_, error)| error)
    }

    /// Each run of consecutive ops of one kind (so on one map) is written
    /// in batch calls: the kernel applies their entries in order, so packets
    /// see the same states as with single writes, and a failure names its op.
    /// The flow filter gains the ops' new bits before them and loses the
    /// bits they free after them; after a failure it keeps both (a "maybe"
    /// too many costs a lookup, never a translation) until the next `read`.
    fn apply_all(&mut self, ops: &[MapOp]) -> Result<(), (usize, anyhow::Error)> {
        let writes = self.filter_writes(ops).map_err(|error| (0, error))?;
        if let Some(before) = &writes.before
            && let Err(error) = self.write_filter(before)
        {
            *self.filter_state.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Err((0, error));
        }
        let mut start = 0;
        for run in ops.chunk_by(|a, b| std::mem::discriminant(a) == std::mem::discriminant(b)) {
            if let Err((done, error)) = self.apply_run(run) {
                *self.filter_state.lock().unwrap_or_else(PoisonError::into_inner) = None;
                return Err((start + done, error));
            }
            start += run.len();
        }
        if let Some(after) = &writes.after
            && let Err(error) = self.write_filter(after)
        {
            // Every op is written; the filter holds a bit too many at worst.
            tracing::warn!("{error:#}");
        }
        Ok(())
    }

    fn label_frontends(&mut self, names: &BTreeMap<u32, String>) -> anyhow::Result<()> {
        self.set_frontend_names(names)
    }

    fn release_backends(&mut self, leaving: &BTreeSet<u32>) -> anyhow::Result<FlowsOfLeaving> {
        let entries = self.conntrack()?;
        let doomed = conntrack_gc::udp_flows_to_flush(&entries, leaving);
        // An entry gone meanwhile (evicted, expired) is as good as deleted.
        let udp_flushed = doomed.iter().filter(|key| self.conntrack.remove(key).is_ok()).count();
        Ok(FlowsOfLeaving { held: conntrack_gc::tcp_flows_hold(&entries, leaving), udp_flushed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_runs_are_consecutive_and_at_most_one_batch_long() {
        let long = BATCH_ENTRIES as u32 + 5;
        type Runs = &'static [(u32, usize)];
        let cases: &[(&[u32], Runs)] = &[
            (&[], &[]),
            (&[7], &[(7, 1)]),
            (&[0, 1, 2, 5, 6, 9], &[(0, 3), (5, 2), (9, 1)]),
            (&[u32::MAX - 1, u32::MAX], &[(u32::MAX - 1, 2)]),
        ];
        for (indices, runs) in cases {
            assert_eq!(index_runs(indices.iter().copied()), *runs, "{indices:?}");
        }
        assert_eq!(index_runs(3..3 + long), [(3, BATCH_ENTRIES), (3 + BATCH_ENTRIES as u32, 5)]);
    }

    #[test]
    fn retired_pins_are_removed_and_current_ones_kept() {
        let dir = std::env::temp_dir().join(format!("lb-retired-pins-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [RETIRED_MAPS[0], RETIRED_MAPS[RETIRED_MAPS.len() - 1], SERVICES_MAP] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        remove_retired_pins(&dir);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [SERVICES_MAP], "the missing retired pins are no error");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn link_pins_name_the_uplinks_ingress_hook_and_nothing_else() {
        let dir = Path::new("/pins");
        let cases = [
            (Hook::Xdp, "eth0", Some(("eth0", UplinkHook::Xdp))),
            (Hook::TcUplink, "eth0.100", Some(("eth0_100", UplinkHook::Tc))),
            (Hook::TcIn, "veth-a", None),
            (Hook::TcOut, "eth0", None),
        ];
        for (hook, interface, expected) in cases {
            let pin = link_pin(dir, interface, hook);
            let name = pin.file_name().unwrap().to_str().unwrap();
            assert_eq!(uplink_of_pin(name), expected, "{name}");
        }
        assert_eq!(uplink_of_pin("xdp"), None, "no interface name");
    }
}
