//! Packet fuzzing through the real programs (BPF_PROG_TEST_RUN): random
//! bytes, and valid TCP, UDP and ICMP frames of both families mutated
//! (truncated, bad IHL or IP lengths, IP options, IPv6 extension headers,
//! VLAN tags, fragments, bit flips; see `fuzz::Mutation`), through `lb_xdp`,
//! `lb_tc_uplink`, `lb_tc_in` and `lb_tc_out`, over maps with frontends with
//! and without endpoints, endpoints on another node (SNAT) and tracked flows.
//! Every frame must get:
//! (a) a verdict its program may return, and never a refused run;
//! (b) byte for byte what it was, passed, when it is neither to a frontend
//!     nor of a tracked flow (conntrack reply, SNAT, hairpin answer) nor an
//!     ICMP error quoting a packet of one (a client's, or a pod's reply);
//! (c) when rewritten, checksums that still add up as before (valid stays
//!     valid; an ICMP error's quoted headers too), and when answered with a reject, valid ones whatever came in;
//! (d) exactly one count, under a reason of its verdict's kind: over every
//!     batch, each kind's reasons grow by the frames that got that kind, and
//!     the bytes counted by the frames' lengths (`assert_counted`).
//!
//! `FUZZ_SEED` (decimal or 0x-hex) replays a run, else the seed is random
//! and printed; `FUZZ_FRAMES` is how many runs of random frames (at least;
//! default 1,000,000, a batch at a time through each program in turn). A
//! sweep of every template cut at every offset through every program comes
//! on top. A failure names the seed, the
//! frame's index, what it was made of and its bytes in hex.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ingress_common::addr::Addr;
use ingress_common::maps::{CT_FORWARD, CT_REPLY, CtKey, SNAT_FORWARD, SNAT_REPLY, SnatKey};
use ingress_common::stats::*;
use ingress_common::{HAIRPIN_ADDR, HAIRPIN_ADDR6};
use ingress_tests::figures;
use ingress_tests::fuzz::{
    Flow, Mutation, Rng, checksums_valid, flow_of, hex, layout, quote_of, quote_residuals, residuals, tc_test_run_refuses,
};
use ingress_tests::packet::{self, ACK, ETH_HLEN, Ext6, FIN, Frame, ICMP, ICMPV6, PSH, RST, SYN, TCP, UDP};
use ingress_tests::prog_run::{
    Programmed, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX, add_tcp_and_udp_service,
    backends, try_run,
};
use ingress_userspace::dataplane::conntrack_gc::{self, SnatPorts, snat_config};
use ingress_userspace::dataplane::ebpf::{TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM, XDP_PROGRAM};
use ingress_userspace::model::DesiredState;

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const NODE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const EMPTY4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 99);
const LOCAL4: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2)];
const REMOTE4: Ipv4Addr = Ipv4Addr::new(10, 245, 1, 2);
const ELSEWHERE4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x10);
const EMPTY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x99);
const LOCAL6: [Ipv6Addr; 2] =
    [Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2), Ipv6Addr::new(0xfd00, 0x10, 0x244, 2, 0, 0, 0, 2)];
const REMOTE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x245, 1, 0, 0, 0, 2);
const ELSEWHERE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 7);
const POD_PORT: u16 = 8080;
const SNAT_PORTS: SnatPorts = SnatPorts { min: 61_000, max: 61_255 };

const DEFAULT_FRAMES: usize = 1_000_000;
/// Frames per program between two readings of the counters.
const BATCH: usize = 1_000;

/// One address family's cast.
struct Family {
    client: IpAddr,
    node: IpAddr,
    vip: IpAddr,
    empty: IpAddr,
    local: [IpAddr; 2],
    remote: IpAddr,
    elsewhere: IpAddr,
    hairpin: IpAddr,
}

fn families() -> [Family; 2] {
    [
        Family {
            client: CLIENT4.into(),
            node: NODE4.into(),
            vip: VIP4.into(),
            empty: EMPTY4.into(),
            local: LOCAL4.map(IpAddr::from),
            remote: REMOTE4.into(),
            elsewhere: ELSEWHERE4.into(),
            hairpin: Ipv4Addr::from(HAIRPIN_ADDR).into(),
        },
        Family {
            client: CLIENT6.into(),
            node: NODE6.into(),
            vip: VIP6.into(),
            empty: EMPTY6.into(),
            local: LOCAL6.map(IpAddr::from),
            remote: REMOTE6.into(),
            elsewhere: ELSEWHERE6.into(),
            hairpin: Ipv6Addr::from(HAIRPIN_ADDR6).into(),
        },
    ]
}

/// Per family: the VIP's 80/TCP and 53/UDP over two local pods and one on
/// another node (SNAT from an uplink), and the same ports on a VIP without
/// endpoints (rejects).
fn desired() -> DesiredState {
    let mut desired = DesiredState::default();
    for (i, f) in families().iter().enumerate() {
        let pods = [backends(&f.local, POD_PORT, true), backends(&[f.remote], POD_PORT, false)].concat();
        add_tcp_and_udp_service(&mut desired, f.vip, &format!("echo-{i}"), &pods);
        add_tcp_and_udp_service(&mut desired, f.empty, &format!("empty-{i}"), &[]);
    }
    desired
}

/// What kind of verdict a frame got; the index into `Tally`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PassedUntouched,
    PassedRewritten,
    Dropped,
    /// Sent back the way it came: a reject, or a hairpinned packet.
    Answered,
}

/// The `ingress_common::stats` reasons of each `Kind`, as `main.rs` turns
/// outcomes into verdicts (every translation changes an address, so a
/// translated frame never passes untouched).
const REASONS: [(Kind, &[u32]); 4] = [
    (
        Kind::PassedUntouched,
        &[PASS_NOT_IP, PASS_TRUNCATED, PASS_BAD_IP_HEADER, PASS_FRAGMENT, PASS_OTHER_PROTOCOL, PASS_NO_SERVICE, PASS_NOT_A_REPLY],
    ),
    (
        Kind::PassedRewritten,
        &[
            FORWARD_TRANSLATED,
            REPLY_TRANSLATED,
            SNAT_TRANSLATED,
            SNAT_REPLY_TRANSLATED,
            ICMP_ERROR_TRANSLATED,
            FORWARD_CT_RECREATED,
        ],
    ),
    (Kind::Dropped, &[DROP_NO_BACKEND, DROP_BAD_SLOT, DROP_REWRITE_FAILED, DROP_SOURCE_RANGE, DROP_SNAT_PORTS_EXHAUSTED]),
    (Kind::Answered, &[REJECT_NO_BACKEND, HAIRPIN_TRANSLATED, HAIRPIN_REPLY_TRANSLATED, ICMP_ERROR_HAIRPIN_TRANSLATED]),
];

/// Reasons counted in addition to a verdict's own: host routing's, never
/// counted here (the fuzzed programs run with it off, `lb_host_iface_kinds` all zero).
const ADDITIONAL_REASONS: [u32; 2] = [HOST_ROUTED_TO_POD, HOST_ROUTED_TO_UPLINK];

#[derive(Clone, Copy)]
struct Program {
    name: &'static str,
    pass: u32,
    drop: u32,
    /// `None` for `lb_tc_out`: the way out only translates back.
    answer: Option<u32>,
    /// A TC program: the kernel refuses to run it on some short frames
    /// (`tc_test_run_refuses`).
    tc: bool,
}

const PROGRAMS: [Program; 4] = [
    Program { name: XDP_PROGRAM, pass: XDP_PASS, drop: XDP_DROP, answer: Some(XDP_TX), tc: false },
    Program { name: TC_UPLINK_PROGRAM, pass: TC_ACT_OK, drop: TC_ACT_SHOT, answer: Some(TC_ACT_REDIRECT), tc: true },
    Program { name: TC_IN_PROGRAM, pass: TC_ACT_OK, drop: TC_ACT_SHOT, answer: Some(TC_ACT_REDIRECT), tc: true },
    Program { name: TC_OUT_PROGRAM, pass: TC_ACT_OK, drop: TC_ACT_SHOT, answer: None, tc: true },
];

impl Program {
    fn kind(&self, verdict: u32, changed: bool) -> Option<Kind> {
        match verdict {
            v if v == self.pass => Some(if changed { Kind::PassedRewritten } else { Kind::PassedUntouched }),
            v if v == self.drop => Some(Kind::Dropped),
            v if Some(v) == self.answer => Some(Kind::Answered),
            _ => None,
        }
    }
}

/// A frame to run and what it was made of, for a failure message.
struct Made {
    template: Option<&'static str>,
    mutations: Vec<Mutation>,
    bytes: Vec<u8>,
}

/// Valid frames of both families to mutate: to frontends with and without
/// endpoints, replies of flows the setup tracked, and traffic that is no
/// business of the dataplane.
fn templates(tracked: Vec<(&'static str, Frame)>) -> Vec<(&'static str, Frame)> {
    let mut all = tracked;
    for f in families() {
        let v4 = f.client.is_ipv4();
        let to = |dst: IpAddr, dport: u16, flags: u8| Frame::tcp(f.client, 40_100, dst, dport, flags);
        let echo = if v4 { vec![8, 0, 0, 0, 0, 1, 0, 1] } else { vec![128, 0, 0, 0, 0, 1, 0, 1] };
        let icmp = if v4 { ICMP } else { ICMPV6 };
        all.extend([
            ("syn to a frontend", to(f.vip, 80, SYN)),
            ("data to a frontend", to(f.vip, 80, ACK | PSH).with_payload(b"GET / HTTP/1.1\r\n\r\n")),
            ("fin to a frontend", to(f.vip, 80, FIN | ACK)),
            ("rst to a frontend", to(f.vip, 80, RST)),
            ("udp to a frontend", Frame::udp(f.client, 40_101, f.vip, 53).with_payload(b"query")),
            ("syn to a frontend without endpoints", to(f.empty, 80, SYN)),
            ("data to a frontend without endpoints", to(f.empty, 80, ACK).with_payload(b"x")),
            ("udp to a frontend without endpoints", Frame::udp(f.client, 40_102, f.empty, 53)),
            ("a pod's syn to a frontend", Frame::tcp(f.local[0], 50_100, f.vip, 80, SYN)),
            ("syn to no frontend", to(f.elsewhere, 80, SYN)),
            ("syn to a port the VIP does not serve", to(f.vip, 81, SYN)),
            ("udp to no frontend", Frame::udp(f.client, 40_103, f.elsewhere, 53)),
            ("a pod's untracked answer", Frame::tcp(f.local[0], POD_PORT, f.client, 999, ACK)),
            ("icmp echo to a frontend", Frame { proto: icmp, payload: echo, ..to(f.vip, 0, 0) }),
        ]);
        if v4 {
            all.extend([
                ("udp without checksum", Frame { udp_no_checksum: true, ..Frame::udp(f.client, 40_104, f.vip, 53) }),
                ("ip options", Frame { ip_options: vec![1, 1, 1, 0], ..to(f.vip, 80, SYN) }),
                ("40 bytes of ip options", Frame { ip_options: [vec![1; 39], vec![0]].concat(), ..to(f.vip, 80, ACK) }),
                ("first fragment", Frame { frag: 0x2000, ..to(f.vip, 80, SYN) }),
                ("later fragment", Frame { frag: 0x0010, ..to(f.vip, 80, ACK) }),
            ]);
        } else {
            all.extend([
                ("hop-by-hop header", Frame { ext6: vec![Ext6::HopByHop], ..to(f.vip, 80, SYN) }),
                (
                    "fragment header",
                    Frame {
                        ext6: vec![Ext6::Fragment { offset: 0, more: true, id: 1 }],
                        ..Frame::udp(f.client, 40_105, f.vip, 53)
                    },
                ),
            ]);
        }
    }
    all
}

/// The programs, their maps, and what the maps say is a frontend.
struct Fuzzer {
    programmed: Programmed,
    frontends: BTreeSet<(IpAddr, u16, u8)>,
    without_endpoints: BTreeSet<IpAddr>,
    seed: u64,
}

impl Fuzzer {
    fn new(seed: u64) -> Option<Fuzzer> {
        let desired = desired();
        let programmed = Programmed::load("fuzz", &desired)?;
        let nodes = families().map(|f| f.node);
        conntrack_gc::write_snat_config(programmed.pins.path(), &snat_config(&nodes, SNAT_PORTS)).unwrap();
        let frontends = desired.frontends.keys().map(|f| (f.addr, f.port, f.protocol.number())).collect();
        let without_endpoints =
            desired.frontends.iter().filter(|(_, state)| state.backends.is_empty()).map(|(f, _)| f.addr).collect();
        Some(Fuzzer { programmed, frontends, without_endpoints, seed })
    }

    fn run(&mut self, program: &str, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        try_run(&mut self.programmed.dataplane, program, frame)
    }

    /// Flows opened through `lb_xdp` and `lb_tc_in` so that their replies
    /// (conntrack, SNAT, hairpin) are tracked: templates of those replies
    /// and of the SNAT leg leaving the node.
    fn open_flows(&mut self) -> Vec<(&'static str, Frame)> {
        let mut tracked = Vec::new();
        for f in families() {
            for sport in 40_000..40_008 {
                for (proto, port) in [(TCP, 80), (UDP, 53)] {
                    let frame = Frame { proto, tcp_flags: if proto == TCP { SYN } else { 0 }, ..Frame::udp(f.client, sport, f.vip, port) };
                    let (verdict, dnat) = self.run(XDP_PROGRAM, &frame.build()).unwrap();
                    assert_eq!(verdict, XDP_PASS, "opening {frame:?}");
                    let backend = packet::read_ip(&dnat).dst;
                    let reply = Frame { src: backend, sport: POD_PORT, dst: f.client, dport: sport, tcp_flags: frame.tcp_flags | ACK, ..frame.clone() };
                    tracked.push(("a tracked reply", reply.clone()));
                    tracked.push(("an error about a tracked flow", too_big(backend, f.client, &dnat)));
                    let (_, reply_out) = self.run(TC_OUT_PROGRAM, &reply.build()).unwrap();
                    assert_eq!(packet::read_ip(&reply_out).src, f.vip, "reverse DNAT of {reply:?}");
                    tracked.push(("an error about a tracked reply", too_big(f.client, f.vip, &reply_out)));
                    if backend == f.remote {
                        tracked.push(("an error to another node's pod about its reply", too_big(f.client, backend, &reply.build())));
                        let (_, snat) = self.run(TC_OUT_PROGRAM, &dnat).unwrap();
                        let node = packet::read_ip(&snat);
                        assert_eq!(node.src, f.node, "SNAT of {frame:?}");
                        tracked.push(("the SNAT leg out", Frame { dst: backend, dport: POD_PORT, ..frame.clone() }));
                        tracked.push(("a SNAT reply", Frame { dst: node.src, dport: node.sport, ..reply }));
                        tracked.push(("an error about a SNAT flow", too_big(backend, f.node, &snat)));
                    }
                }
            }
            // A pod given itself as the backend (1 in 3 per flow), and the
            // errors it may send about its packet and about its answer.
            let (sport, hairpinned) = (50_000..50_030)
                .find_map(|sport| {
                    let syn = Frame::tcp(f.local[0], sport, f.vip, 80, SYN).build();
                    let (verdict, out) = self.run(TC_IN_PROGRAM, &syn).unwrap();
                    (verdict == TC_ACT_REDIRECT).then_some((sport, out))
                })
                .expect("no flow of 30 hairpinned");
            let answer = Frame::tcp(f.local[0], POD_PORT, f.hairpin, sport, SYN | ACK);
            let (_, answered) = self.run(TC_IN_PROGRAM, &answer.build()).unwrap();
            tracked.push(("a hairpin answer", answer));
            tracked.push(("an error about a hairpinned packet", too_big(f.local[0], f.hairpin, &hairpinned)));
            tracked.push(("an error about a hairpin answer", too_big(f.local[0], f.vip, &answered)));
        }
        tracked
    }

    /// Whether the programs may touch `frame` at all: a TCP or UDP frame to
    /// a frontend, or of a flow the maps track (a conntrack reply, either
    /// SNAT leg, a hairpin answer); or an ICMP error quoting a packet whose
    /// other direction is such a tracked packet or a tracked flow's forward
    /// packet (an error about a reply).
    fn service_traffic(&self, frame: &[u8]) -> bool {
        if let Some(quote) = quote_of(frame) {
            let q = quote.flow;
            let turned = Flow { src: q.dst, dst: q.src, sport: q.dport, dport: q.sport, proto: q.proto };
            return self.tracked(&turned) || self.tracked_forward(&turned);
        }
        let Some(flow) = flow_of(frame) else { return false };
        self.frontends.contains(&(flow.dst, flow.dport, flow.proto)) || self.tracked(&flow)
    }

    fn tracked(&self, flow: &Flow) -> bool {
        let (saddr, daddr, sport, dport) = (Addr::from(flow.src), Addr::from(flow.dst), flow.sport.to_be(), flow.dport.to_be());
        let maps = &self.programmed.maps;
        let ct = CtKey { saddr, daddr, sport, dport, proto: flow.proto, direction: CT_REPLY, _pad: [0; 2] };
        let snat = |direction| SnatKey { saddr, daddr, sport, dport, proto: flow.proto, direction, _pad: [0; 2] };
        maps.conntrack_entry(&ct).unwrap().is_some()
            || maps.snat_entry(&snat(SNAT_REPLY)).unwrap().is_some()
            || maps.snat_entry(&snat(SNAT_FORWARD)).unwrap().is_some()
    }

    /// Whether `flow` is a forward packet of a flow conntrack tracks.
    fn tracked_forward(&self, flow: &Flow) -> bool {
        let (saddr, daddr, sport, dport) = (Addr::from(flow.src), Addr::from(flow.dst), flow.sport.to_be(), flow.dport.to_be());
        let ct = CtKey { saddr, daddr, sport, dport, proto: flow.proto, direction: CT_FORWARD, _pad: [0; 2] };
        self.programmed.maps.conntrack_entry(&ct).unwrap().is_some()
    }

    /// Properties (a) to (c) for one run; the kind of verdict it got.
    fn check(&self, program: &Program, input: &[u8], verdict: u32, out: &[u8]) -> Result<Kind, String> {
        let kind = program.kind(verdict, out != input).ok_or_else(|| format!("verdict {verdict}, which {} never returns", program.name))?;
        if kind == Kind::PassedUntouched {
            return Ok(kind);
        }
        if !self.service_traffic(input) {
            return Err(format!("{kind:?}, but the frame is neither to a frontend nor of a tracked flow"));
        }
        let reject = kind == Kind::Answered && flow_of(input).is_some_and(|flow| self.without_endpoints.contains(&flow.dst));
        if reject {
            let proto = layout(out).map(|at| at.proto);
            if !matches!(proto, Some(TCP | ICMP | ICMPV6)) || !checksums_valid(out) {
                return Err(format!("a reject that is no whole TCP RST or ICMP error with valid checksums: {}", hex(out)));
            }
        } else if matches!(kind, Kind::PassedRewritten | Kind::Answered) {
            rewritten_checksums(input, out)?;
        }
        Ok(kind)
    }
}

/// A rewritten frame keeps its length and what its checksums add up to (so
/// a valid one stays valid); a UDP datagram without checksum keeps none
/// (over IPv6 too: RFC 6935 allows it to tunnels, and the receiver decides).
fn rewritten_checksums(input: &[u8], out: &[u8]) -> Result<(), String> {
    if out.len() != input.len() {
        return Err(format!("rewritten to {} bytes from {}: {}", out.len(), input.len(), hex(out)));
    }
    let (Some((ip_in, l4_in)), Some((ip_out, l4_out))) = (residuals(input), residuals(out)) else {
        return Err(format!("rewritten into no IP frame: {}", hex(out)));
    };
    let at = layout(input).expect("residuals read it");
    let no_udp_checksum = at.proto == UDP && input[at.l4 + 6..at.l4 + 8] == [0, 0];
    if no_udp_checksum && out[at.l4 + 6..at.l4 + 8] != [0, 0] {
        return Err(format!("a UDP datagram without checksum got one: {}", hex(out)));
    }
    if ip_in != ip_out || (!no_udp_checksum && l4_in != l4_out) {
        return Err(format!(
            "checksums broken by the rewrite: IPv4 header sums {ip_in:#06x} -> {ip_out:#06x}, L4 {l4_in:#06x} -> {l4_out:#06x}: {}",
            hex(out)
        ));
    }
    if checksums_valid(input) && !checksums_valid(out) {
        return Err(format!("valid checksums made invalid: {}", hex(out)));
    }
    // An ICMP error's quote keeps what its checksums add up to as well.
    if let (Some(quote_in), Some(quote_out)) = (quote_of(input), quote_of(out))
        && quote_residuals(&quote_in) != quote_residuals(&quote_out)
    {
        return Err(format!(
            "the quote's checksums broken by the rewrite: {:?} -> {:?}: {}",
            quote_residuals(&quote_in),
            quote_residuals(&quote_out),
            hex(out)
        ));
    }
    Ok(())
}

/// Packet too big / fragmentation needed from `from` to `to` about `packet`
/// (a frame as it left the node), quoting all of it.
fn too_big(from: IpAddr, to: IpAddr, packet: &[u8]) -> Frame {
    let (kind, rest) = if from.is_ipv6() { ((2, 0), 1280u32.to_be_bytes()) } else { ((3, 4), [0, 0, 0x05, 0x78]) };
    Frame::icmp_error(from, to, kind, rest, &packet[ETH_HLEN..])
}

/// Frames by kind of verdict, and their bytes, over one batch; and the
/// frames the kernel refused to run (never counted by a program).
#[derive(Default)]
struct Tally {
    frames: [u64; 4],
    bytes: u64,
    refused: usize,
}

/// Property (d): between two readings of the counters (`before` and
/// `after`, by reason), each kind's reasons grew by exactly the frames that
/// got a verdict of that kind, and the bytes counted by their lengths.
fn assert_counted(before: &[Counter], after: &[Counter], tally: &Tally) -> Result<(), String> {
    let grown = |reason: u32| after[reason as usize].packets - before[reason as usize].packets;
    for (i, (kind, reasons)) in REASONS.iter().enumerate() {
        let counted: u64 = reasons.iter().map(|r| grown(*r)).sum();
        if counted != tally.frames[i] {
            return Err(format!("{} frames got a {kind:?} verdict, {counted} were counted so", tally.frames[i]));
        }
    }
    if let Some(reason) = ADDITIONAL_REASONS.iter().find(|r| grown(**r) != 0) {
        return Err(format!("{} frames were counted as host routed with host routing off", grown(*reason)));
    }
    let bytes: u64 = after.iter().zip(before).map(|(a, b)| a.bytes - b.bytes).sum();
    if bytes != tally.bytes {
        return Err(format!("{} bytes ran, {bytes} were counted", tally.bytes));
    }
    Ok(())
}

fn make(rng: &mut Rng, templates: &[(&'static str, Frame)]) -> Made {
    if rng.one_in(10) {
        let len = ETH_HLEN + rng.below(120);
        let mut bytes = rng.bytes(len);
        let ethertype: u16 = *rng.pick(&[0x0800, 0x86dd, 0x0806, 0x8100, bytes[12] as u16]);
        bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
        return Made { template: None, mutations: Vec::new(), bytes };
    }
    let (name, template) = rng.pick(templates);
    let mut frame = template.clone();
    if rng.one_in(4) {
        frame.sport = rng.next_u64() as u16;
    }
    if rng.one_in(4) {
        let len = rng.below(64);
        frame.payload = rng.bytes(len);
    }
    let mut bytes = frame.build();
    let mutations: Vec<Mutation> = (0..rng.below(4)).map(|_| Mutation::random(rng, bytes.len())).collect();
    for mutation in &mutations {
        mutation.apply(&mut bytes);
    }
    Made { template: Some(name), mutations, bytes }
}

fn seed() -> u64 {
    match std::env::var("FUZZ_SEED") {
        Ok(text) => {
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("FUZZ_SEED={text} is no number (decimal or 0x-hex)"))
        }
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

fn frames_wanted() -> usize {
    std::env::var("FUZZ_FRAMES").map_or(DEFAULT_FRAMES, |text| {
        text.replace('_', "").parse().unwrap_or_else(|_| panic!("FUZZ_FRAMES={text} is no count"))
    })
}

#[test]
fn reasons_cover_every_counter_once() {
    let mut all: Vec<u32> = REASONS.iter().flat_map(|(_, reasons)| reasons.iter().copied()).chain(ADDITIONAL_REASONS).collect();
    all.sort();
    assert_eq!(all, (0..REASON_COUNT).collect::<Vec<_>>());
}

#[test]
fn every_program_keeps_its_contract_on_a_million_fuzzed_frames() {
    let seed = seed();
    println!("packet fuzz seed {seed:#x} (FUZZ_SEED={seed:#x} replays this run)");
    let Some(mut fuzzer) = Fuzzer::new(seed) else { return };
    let templates = templates(fuzzer.open_flows());
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut ran = [0usize; 4];

    // Every template cut at every offset, through every program.
    let mut index = 0usize;
    for (p, program) in PROGRAMS.iter().enumerate() {
        let cuts: Vec<Made> = templates
            .iter()
            .flat_map(|(name, frame)| {
                let bytes = frame.build();
                (ETH_HLEN..bytes.len()).map(move |n| Made {
                    template: Some(*name),
                    mutations: vec![Mutation::Truncate(n)],
                    bytes: bytes[..n].to_vec(),
                })
            })
            .collect();
        ran[p] += fuzzer.run_batch(program, &cuts, &mut index);
    }

    let wanted = frames_wanted();
    let mut random_runs = 0;
    while random_runs < wanted {
        for (p, program) in PROGRAMS.iter().enumerate() {
            let batch: Vec<Made> = (0..BATCH.min(wanted)).map(|_| make(&mut rng, &templates)).collect();
            let runs = fuzzer.run_batch(program, &batch, &mut index);
            ran[p] += runs;
            random_runs += runs;
        }
    }
    let stats = fuzzer.programmed.maps.stats().unwrap();
    let per_reason: Vec<String> =
        REASON_NAMES.iter().zip(&stats).filter(|(_, c)| c.packets > 0).map(|(n, c)| format!("{n} {}", c.packets)).collect();
    let figures = format!(
        "{} runs of {index} frames in {:.1?} (seed {seed:#x}; the rest were short TC frames the kernel refused, as expected); per program: {}\n  counted: {}",
        ran.iter().sum::<usize>(),
        started.elapsed(),
        PROGRAMS.iter().zip(ran).map(|(p, n)| format!("{} {n}", p.name)).collect::<Vec<_>>().join(", "),
        per_reason.join(", ")
    );
    figures::report("packet_fuzz", &figures);
}

impl Fuzzer {
    /// Runs `frames` through `program`, checking each and then the counters;
    /// how many ran (the rest the kernel refused, as it should).
    fn run_batch(&mut self, program: &Program, frames: &[Made], index: &mut usize) -> usize {
        let before = self.programmed.maps.stats().unwrap();
        let mut tally = Tally::default();
        let first = *index;
        for made in frames {
            *index += 1;
            if program.tc && tc_test_run_refuses(&made.bytes) {
                if let Ok((verdict, out)) = self.run(program.name, &made.bytes) {
                    self.fail(program, *index - 1, made, &out, &format!("verdict {verdict} on a frame the kernel was expected to refuse"));
                }
                tally.refused += 1;
                continue;
            }
            let checked = self
                .run(program.name, &made.bytes)
                .map_err(|e| (format!("{e:#}"), Vec::new()))
                .and_then(|(verdict, out)| self.check(program, &made.bytes, verdict, &out).map_err(|e| (e, out)));
            match checked {
                Ok(kind) => tally.frames[kind as usize] += 1,
                Err((problem, out)) => self.fail(program, *index - 1, made, &out, &problem),
            }
            tally.bytes += made.bytes.len() as u64;
        }
        let after = self.programmed.maps.stats().unwrap();
        if let Err(problem) = assert_counted(&before, &after, &tally) {
            panic!(
                "{}: counters of frames {first}..{} disagree with their verdicts: {problem} (seed {:#x}, FUZZ_SEED={:#x} replays)",
                program.name, *index, self.seed, self.seed
            );
        }
        frames.len() - tally.refused
    }

    fn fail(&self, program: &Program, index: usize, made: &Made, out: &[u8], problem: &str) -> ! {
        panic!(
            "{}: frame {index}: {problem}\n  seed {:#x} (FUZZ_SEED={:#x} replays), made from {} with {:?}\n  in:  {}\n  out: {}",
            program.name,
            self.seed,
            self.seed,
            made.template.unwrap_or("random bytes"),
            made.mutations,
            hex(&made.bytes),
            hex(out)
        )
    }
}
