//! Running the programs once on a crafted frame (BPF_PROG_TEST_RUN) and
//! reading back the verdict and the frame as the program left it; and
//! [`Programmed`], the programs loaded into pins of their own and
//! programmed with a desired state, which every kernel test starts from.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use aya::programs::{TestRun, TestRunOptions, TestRunResult};
use ingress_userspace::dataplane::ebpf::{
    Dataplane, PinnedMaps, TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM, XDP_PROGRAM,
};
use ingress_userspace::dataplane::sizes::MapSizes;
use ingress_userspace::manifests::parse_documents;
use ingress_userspace::model::{
    Backend, BackendAddr, BackendState, DesiredState, Frontend, FrontendState, NodeInfo, Protocol, ServicePortRef,
};
use ingress_userspace::reconcile::reconcile;
use ingress_userspace::translate::translate;

use crate::is_root;
use crate::packet::{self, Frame, SYN};
use crate::pins::PinDir;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
/// `bpf_redirect`'s verdict.
pub const TC_ACT_REDIRECT: u32 = 7;

/// Runs `lb_xdp` on `frame`.
pub fn xdp(dataplane: &mut Dataplane, frame: &[u8]) -> (u32, Vec<u8>) {
    try_run(dataplane, XDP_PROGRAM, frame).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs a TC program (`TC_UPLINK_PROGRAM`, `TC_IN_PROGRAM` or `TC_OUT_PROGRAM`) on `frame`.
pub fn tc(dataplane: &mut Dataplane, program: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    try_run(dataplane, program, frame).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs the program named `program` (`XDP_PROGRAM` or a TC program) on
/// `frame`: its verdict and the frame as it left it, or why the kernel
/// refused the run.
pub fn try_run(dataplane: &mut Dataplane, program: &str, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
    if program == XDP_PROGRAM {
        run(dataplane.xdp()?, program, frame)
    } else {
        run(dataplane.tc(program)?, program, frame)
    }
}

/// `struct __sk_buff`: its size, and where its `mark` is.
const SKB_CTX_SIZE: usize = 192;
const SKB_MARK_OFFSET: usize = 8;

/// Runs a TC program on `frame` carrying `skb->mark` `mark`: its verdict,
/// the frame and the mark as it left them.
pub fn tc_marked(dataplane: &mut Dataplane, program: &str, frame: &[u8], mark: u32) -> (u32, Vec<u8>, u32) {
    let mut ctx_in = [0u8; SKB_CTX_SIZE];
    ctx_in[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4].copy_from_slice(&mark.to_ne_bytes());
    let mut ctx_out = [0u8; SKB_CTX_SIZE];
    let mut out = vec![0u8; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx_in),
        ctx_out: Some(&mut ctx_out),
        ..Default::default()
    };
    let result = dataplane
        .tc(program)
        .and_then(|program| Ok(program.test_run(options)?))
        .unwrap_or_else(|e| panic!("test run of {program} with mark {mark:#x}: {e:#}"));
    out.truncate(result.data_size_out as usize);
    let mark_out = u32::from_ne_bytes(ctx_out[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4].try_into().unwrap());
    (result.return_value, out, mark_out)
}

fn run<P>(program: &mut P, name: &str, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    // Room for programs that grow the frame.
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .with_context(|| format!("test run of {name} on {} bytes", frame.len()))?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// Where a client's frame enters the node, hence which program runs it.
#[derive(Clone, Copy, Debug)]
pub enum Entry {
    /// `lb_xdp` on the uplink: a client outside the node (a NIC uplink).
    Uplink,
    /// `lb_tc_uplink` on the uplink's TC ingress: a client outside the node
    /// (a veth uplink, as on kind nodes).
    UplinkTc,
    /// `lb_tc_in` on a pod veth's host side: a pod of this node.
    PodVeth,
}

/// Both programs an uplink may run: what an outside client gets must not
/// depend on which one the agent chose.
pub const UPLINKS: [Entry; 2] = [Entry::Uplink, Entry::UplinkTc];

impl Entry {
    /// The verdict of a frame the program lets through.
    pub fn passed(self) -> u32 {
        match self {
            Entry::Uplink => XDP_PASS,
            Entry::UplinkTc | Entry::PodVeth => TC_ACT_OK,
        }
    }

    /// The verdict of a frame the program drops.
    pub fn dropped(self) -> u32 {
        match self {
            Entry::Uplink => XDP_DROP,
            Entry::UplinkTc | Entry::PodVeth => TC_ACT_SHOT,
        }
    }

    /// The verdict of a frame turned into a reject: XDP_TX, or in TC a
    /// redirect to the egress of the interface it came in on.
    pub fn rejected(self) -> u32 {
        match self {
            Entry::Uplink => XDP_TX,
            Entry::UplinkTc | Entry::PodVeth => TC_ACT_REDIRECT,
        }
    }
}

/// The programs and maps of one test, pinned under a directory of its own
/// that goes with it.
pub struct Programmed {
    pub dataplane: Dataplane,
    pub maps: PinnedMaps,
    pub pins: PinDir,
}

impl Programmed {
    /// Loads the programs under a unique pin directory named after `name`
    /// and reconciles `desired` into their maps. None, with a note, when
    /// not root: the kernel refuses BPF_PROG_TEST_RUN then.
    pub fn load(name: &str, desired: &DesiredState) -> Option<Programmed> {
        Programmed::load_sized(name, desired, &MapSizes::default())
    }

    /// [`Programmed::load`] with maps of `sizes` (small ones fill up fast).
    pub fn load_sized(name: &str, desired: &DesiredState, sizes: &MapSizes) -> Option<Programmed> {
        Programmed::load_with(name, desired, |pins| Dataplane::load_sized(pins, sizes))
    }

    /// [`Programmed::load`] with host routing on (`--host-routing`), the TC
    /// programs only (XDP does not host-route).
    pub fn load_host_routed(name: &str, desired: &DesiredState) -> Option<Programmed> {
        Programmed::load_with(name, desired, |pins| {
            let mut dataplane = Dataplane::maps_only(pins, &MapSizes::default(), true)?;
            dataplane.verify(&[TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM])?;
            Ok(dataplane)
        })
    }

    fn load_with(
        name: &str,
        desired: &DesiredState,
        load: impl FnOnce(&Path) -> anyhow::Result<Dataplane>,
    ) -> Option<Programmed> {
        if !is_root() {
            eprintln!("skipped: BPF_PROG_TEST_RUN needs root");
            return None;
        }
        let pins = PinDir::unique(name);
        let dataplane = load(pins.path()).expect("loading the programs");
        let mut maps = dataplane.maps().expect("opening the maps");
        reconcile(&mut maps, desired).expect("programming the maps");
        Some(Programmed { dataplane, maps, pins })
    }

    /// [`Programmed::load`] with what the agent of `node` makes of the
    /// manifests `yaml` (parsed and translated as the agent does; neither
    /// may report a problem).
    pub fn from_manifests(name: &str, yaml: &str, node: &NodeInfo) -> Option<Programmed> {
        let loaded = parse_documents(&format!("{name}.yaml"), yaml);
        assert_eq!(loaded.problems, [], "problems in the manifests of {name}");
        let (desired, problems) = translate(&loaded.snapshot, node);
        assert_eq!(problems, [], "problems translating the manifests of {name}");
        Programmed::load(name, &desired)
    }

    /// The backends new TCP connections from `client` to `to` land on, over
    /// `flows` source ports from `first_sport`: every SYN must pass
    /// translated to `target_port`, with the client's address and port kept
    /// and valid checksums. Either family.
    pub fn destinations(
        &mut self,
        entry: Entry,
        client: impl Into<IpAddr>,
        to: (impl Into<IpAddr>, u16),
        (first_sport, flows): (u16, u16),
        target_port: u16,
    ) -> BTreeSet<IpAddr> {
        let (client, frontend) = (client.into(), to.0.into());
        (first_sport..first_sport + flows)
            .map(|sport| {
                let syn = Frame::tcp(client, sport, frontend, to.1, SYN).build();
                let (verdict, out) = self.run(entry, &syn);
                assert_eq!(verdict, entry.passed(), "{entry:?}: flow from {client} port {sport} to {frontend}:{}", to.1);
                let seen = packet::read_ip(&out);
                assert_eq!((seen.src, seen.sport, seen.dport), (client, sport, target_port), "{entry:?}: {seen:?}");
                assert!(seen.checksums_ok(), "{entry:?}: checksums of {seen:?}");
                seen.dst
            })
            .collect()
    }

    /// Runs the program of `entry` on a client's frame.
    pub fn run(&mut self, entry: Entry, frame: &[u8]) -> (u32, Vec<u8>) {
        match entry {
            Entry::Uplink => self.xdp(frame),
            Entry::UplinkTc => tc(&mut self.dataplane, TC_UPLINK_PROGRAM, frame),
            Entry::PodVeth => self.tc_in(frame),
        }
    }

    /// `lb_xdp`: the uplink's ingress.
    pub fn xdp(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        xdp(&mut self.dataplane, frame)
    }

    /// `lb_tc_in`: a pod veth's ingress (what the pod sends).
    pub fn tc_in(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        tc(&mut self.dataplane, TC_IN_PROGRAM, frame)
    }

    /// `lb_tc_out`: the egress of the uplink and of every pod veth.
    pub fn tc_out(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        tc(&mut self.dataplane, TC_OUT_PROGRAM, frame)
    }

    /// Packets counted under a `ingress_common::stats` reason.
    pub fn packets(&self, reason: u32) -> u64 {
        self.maps.stats().expect("reading the stats")[reason as usize].packets
    }
}

/// `pods` (IPv4 or IPv6) on `port` as active endpoints of this node.
pub fn local_backends<A: Into<IpAddr> + Copy>(pods: &[A], port: u16) -> Vec<Backend> {
    backends(pods, port, true)
}

/// `pods` on `port` as active endpoints, of this node if `local`.
pub fn backends<A: Into<IpAddr> + Copy>(pods: &[A], port: u16, local: bool) -> Vec<Backend> {
    pods.iter()
        .map(|ip| Backend { addr: BackendAddr { addr: (*ip).into(), port }, state: BackendState::Active, local })
        .collect()
}

/// Adds Service `default/name` on `vip` (IPv4 or IPv6): 80/TCP (port "tcp")
/// and 53/UDP (port "udp"), both over `backends`.
pub fn add_tcp_and_udp_service(desired: &mut DesiredState, vip: impl Into<IpAddr>, name: &str, backends: &[Backend]) {
    let state = FrontendState { backends: backends.to_vec(), ..FrontendState::default() };
    add_tcp_and_udp_frontends(desired, vip, 80, 53, name, &state);
}

/// Adds frontends `vip:tcp_port/TCP` (port "tcp") and `vip:udp_port/UDP`
/// (port "udp") of Service `default/name`, both as `state` says (its
/// `service` is filled in here).
pub fn add_tcp_and_udp_frontends(
    desired: &mut DesiredState,
    vip: impl Into<IpAddr>,
    tcp_port: u16,
    udp_port: u16,
    name: &str,
    state: &FrontendState,
) {
    let addr = vip.into();
    for (port, protocol, port_name) in [(tcp_port, Protocol::Tcp, "tcp"), (udp_port, Protocol::Udp, "udp")] {
        let service = ServicePortRef { namespace: "default".into(), name: name.into(), port_name: port_name.into() };
        desired.frontends.insert(Frontend { addr, port, protocol }, FrontendState { service, ..state.clone() });
    }
}
