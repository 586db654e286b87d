//! The pure half of the packet fuzzer (`tests/packet_fuzz.rs`): a seeded
//! PRNG, the mutations made to valid frames, and the fuzzer's own reading of
//! a frame (the flow it carries under the programs' parser contract, and its
//! checksums), written apart from `ingress-ebpf` so that it can disagree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{ETH_HLEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ICMP, ICMPV6, IPV4_HLEN, IPV6_HLEN, TCP, UDP};

/// SplitMix64 (Steele, Lea and Flood, 2014): a few lines, seedable, and
/// plenty random to pick frames and mutations; no crate needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Whether BPF_PROG_TEST_RUN refuses (EINVAL) to build an skb of `frame`
/// for a TC program, before any program runs: it wants the whole fixed
/// IPv4 or IPv6 header of a frame whose EtherType announces one (measured
/// on Linux 6.18). XDP runs every frame of an Ethernet header or more.
pub fn tc_test_run_refuses(frame: &[u8]) -> bool {
    match ethertype(frame) {
        Some(ETHERTYPE_IPV4) => frame.len() < ETH_HLEN + IPV4_HLEN,
        Some(ETHERTYPE_IPV6) => frame.len() < ETH_HLEN + IPV6_HLEN,
        _ => frame.len() < ETH_HLEN,
    }
}

/// One change to a frame, as a broken link, a buggy sender or an attacker
/// makes it. Offsets that fall outside the frame change nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Keeps the first `n` bytes, never fewer than an Ethernet header (the
    /// kernel runs no program on less).
    Truncate(usize),
    /// Flips bit `n % 8` of byte `n / 8`.
    FlipBit(usize),
    SetByte(usize, u8),
    /// The IPv4 header length nibble.
    Ihl(u8),
    /// IPv4's total length or IPv6's payload length field.
    IpLength(u16),
    /// IPv4's flags and fragment offset field.
    Fragment(u16),
    /// An 802.1Q (`tpid` 0x8100) or 802.1ad (0x88a8) tag after the MACs.
    Vlan { tpid: u16, tci: u16 },
    /// Bytes after the IP packet (Ethernet padding, garbage).
    Trailer(Vec<u8>),
    /// The IPv4 header and L4 checksums recomputed for what the frame now
    /// says, so that odd fields come with valid checksums.
    FixChecksums,
}

impl Mutation {
    /// A random mutation for a frame of `len` bytes.
    pub fn random(rng: &mut Rng, len: usize) -> Mutation {
        // The headers are where the programs look: most changes go there.
        let header_byte = |rng: &mut Rng| rng.below(len.min(ETH_HLEN + 60 + 20));
        match rng.below(10) {
            0 => Mutation::Truncate(ETH_HLEN + rng.below(len.saturating_sub(ETH_HLEN).max(1))),
            1 => Mutation::FlipBit(rng.below(len * 8)),
            2 => Mutation::FlipBit(header_byte(rng) * 8 + rng.below(8)),
            3 => Mutation::SetByte(header_byte(rng), rng.next_u64() as u8),
            4 => Mutation::Ihl(rng.below(16) as u8),
            5 => Mutation::IpLength(match rng.below(3) {
                0 => rng.next_u64() as u16,
                // Near the truth: off by a few bytes either way.
                _ => (len.saturating_sub(ETH_HLEN) as u16).wrapping_add(rng.below(41) as u16).wrapping_sub(20),
            }),
            6 => {
                let any = rng.next_u64() as u16;
                Mutation::Fragment(*rng.pick(&[0x2000, 0x0001, 0x2001, 0x1fff, 0x8000, 0x4000, any]))
            }
            7 => Mutation::Vlan { tpid: *rng.pick(&[0x8100, 0x88a8]), tci: rng.next_u64() as u16 },
            8 => {
                let n = 1 + rng.below(40);
                Mutation::Trailer(rng.bytes(n))
            }
            _ => Mutation::FixChecksums,
        }
    }

    pub fn apply(&self, frame: &mut Vec<u8>) {
        let ipv4 = ethertype(frame) == Some(ETHERTYPE_IPV4);
        let set = |frame: &mut Vec<u8>, at: usize, value: u8| {
            if let Some(byte) = frame.get_mut(at) {
                *byte = value;
            }
        };
        match self {
            Mutation::Truncate(n) => frame.truncate((*n).max(ETH_HLEN)),
            Mutation::FlipBit(n) => {
                if let Some(byte) = frame.get_mut(n / 8) {
                    *byte ^= 1 << (n % 8);
                }
            }
            Mutation::SetByte(at, value) => set(frame, *at, *value),
            Mutation::Ihl(ihl) => {
                let version = frame.get(ETH_HLEN).map_or(0x40, |b| b & 0xf0);
                set(frame, ETH_HLEN, version | (ihl & 0x0f));
            }
            Mutation::IpLength(len) => {
                let at = if ipv4 { ETH_HLEN + 2 } else { ETH_HLEN + 4 };
                let [hi, lo] = len.to_be_bytes();
                set(frame, at, hi);
                set(frame, at + 1, lo);
            }
            Mutation::Fragment(field) => {
                let [hi, lo] = field.to_be_bytes();
                set(frame, ETH_HLEN + 6, hi);
                set(frame, ETH_HLEN + 7, lo);
            }
            Mutation::Vlan { tpid, tci } => {
                let at = 12.min(frame.len());
                let tag = [tpid.to_be_bytes(), tci.to_be_bytes()].concat();
                frame.splice(at..at, tag);
            }
            Mutation::Trailer(bytes) => frame.extend_from_slice(bytes),
            Mutation::FixChecksums => fix_checksums(frame),
        }
    }
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]))
}

/// Where a frame's IP packet and L4 header are, as a receiver reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4's protocol or the fixed IPv6 header's next header.
    pub proto: u8,
    /// Offset of the L4 header in the frame.
    pub l4: usize,
    /// Where the IP packet ends by its own length field (may lie beyond the frame).
    pub ip_end: usize,
    pub v4_header_len: Option<usize>,
}

/// The IPv4 or IPv6 header of an untagged frame; IPv4 must have its
/// whole header (options included) in the frame, IPv6 its fixed header.
/// Extension headers are not followed: `proto` names the first one.
pub fn layout(frame: &[u8]) -> Option<Layout> {
    let ip = frame.get(ETH_HLEN..)?;
    match ethertype(frame)? {
        ETHERTYPE_IPV4 => {
            let ihl = (*ip.first()? & 0x0f) as usize * 4;
            if ip[0] >> 4 != 4 || ihl < IPV4_HLEN || ip.len() < ihl {
                return None;
            }
            let octets = |at: usize| <[u8; 4]>::try_from(&ip[at..at + 4]).unwrap();
            Some(Layout {
                src: Ipv4Addr::from(octets(12)).into(),
                dst: Ipv4Addr::from(octets(16)).into(),
                proto: ip[9],
                l4: ETH_HLEN + ihl,
                ip_end: ETH_HLEN + u16::from_be_bytes([ip[2], ip[3]]) as usize,
                v4_header_len: Some(ihl),
            })
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < IPV6_HLEN || ip[0] >> 4 != 6 {
                return None;
            }
            let octets = |at: usize| <[u8; 16]>::try_from(&ip[at..at + 16]).unwrap();
            Some(Layout {
                src: Ipv6Addr::from(octets(8)).into(),
                dst: Ipv6Addr::from(octets(24)).into(),
                proto: ip[6],
                l4: ETH_HLEN + IPV6_HLEN,
                ip_end: ETH_HLEN + IPV6_HLEN + u16::from_be_bytes([ip[4], ip[5]]) as usize,
                v4_header_len: None,
            })
        }
        _ => None,
    }
}

/// A TCP or UDP flow as the programs' parser contract defines it (the pass
/// reasons of `ingress_common::stats`): an untagged IPv4 frame (version 4,
/// IHL >= 5, not a fragment) or IPv6 frame (version 6, the transport header
/// right after the fixed header, no IPv4-mapped address), with the whole
/// TCP (20 bytes) or UDP (8 bytes) header in the frame. Only such a frame
/// can be to a frontend or a reply of a tracked flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

pub fn flow_of(frame: &[u8]) -> Option<Flow> {
    let at = parsed_layout(frame)?;
    let header = match at.proto {
        TCP => 20,
        UDP => 8,
        _ => return None,
    };
    let l4 = frame.get(at.l4..at.l4 + header)?;
    Some(flow_at(&at, l4))
}

/// The layout of a frame the programs parse: not an IPv4 fragment, no
/// IPv4-mapped IPv6 address.
fn parsed_layout(frame: &[u8]) -> Option<Layout> {
    let at = layout(frame)?;
    if at.v4_header_len.is_some() && u16::from_be_bytes([frame[ETH_HLEN + 6], frame[ETH_HLEN + 7]]) & 0x3fff != 0 {
        return None;
    }
    let mapped = |ip: IpAddr| matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    if mapped(at.src) || mapped(at.dst) {
        return None;
    }
    Some(at)
}

fn flow_at(at: &Layout, l4: &[u8]) -> Flow {
    Flow {
        src: at.src,
        dst: at.dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        proto: at.proto,
    }
}

/// An ICMP error (IPv4: destination unreachable, time exceeded; ICMPv6:
/// destination unreachable, packet too big, time exceeded) quoting a TCP or
/// UDP packet, as the programs read it: the quoted packet as a frame of its
/// own (the error's Ethernet header, then the quote up to where the error's
/// IP length ends it) and its flow. The quote parses as a packet would and
/// holds at least the first 8 bytes of its L4 header.
pub struct Quote {
    pub frame: Vec<u8>,
    pub flow: Flow,
}

pub fn quote_of(frame: &[u8]) -> Option<Quote> {
    let at = parsed_layout(frame)?;
    let kind = *frame.get(at.l4)?;
    let error = match at.v4_header_len {
        Some(_) => at.proto == ICMP && matches!(kind, 3 | 11),
        None => at.proto == ICMPV6 && matches!(kind, 1..=3),
    };
    if !error {
        return None;
    }
    let quoted = frame.get(at.l4 + 8..at.ip_end.min(frame.len()))?;
    let inner = [&frame[..ETH_HLEN], quoted].concat();
    let inner_at = parsed_layout(&inner)?;
    if !matches!(inner_at.proto, TCP | UDP) {
        return None;
    }
    let l4 = inner.get(inner_at.l4..inner_at.l4 + 8)?;
    let flow = flow_at(&inner_at, l4);
    Some(Quote { frame: inner, flow })
}

/// What the checksums of a quote add up to, as `residuals` for a frame: the
/// quoted IPv4 header's (0 for IPv6), and the quoted L4 header's when the
/// quote holds its checksum field (else `None`: the quote alone does not
/// say). The length in the pseudo-header is the quote's own, so the sums
/// mean nothing by themselves, but a rewrite that updates the checksums
/// correctly keeps them.
pub fn quote_residuals(quote: &Quote) -> (u16, Option<u16>) {
    let at = layout(&quote.frame).expect("quote_of parsed it");
    let ip = at.v4_header_len.map_or(0, |ihl| folded(sum16(&quote.frame[ETH_HLEN..ETH_HLEN + ihl])));
    let field = l4_checksum_field(at.proto).expect("TCP or UDP");
    let segment = &quote.frame[at.l4..];
    let no_udp_checksum = at.proto == UDP && segment.get(6..8) == Some(&[0, 0]);
    let l4 = (segment.len() >= field + 2 && !no_udp_checksum).then(|| folded(l4_sum(&at, segment)));
    (ip, l4)
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum()
}

/// The one's-complement sum folded to 16 bits, with 0xffff (negative zero)
/// read as 0: a covered range with a right checksum sums to 0.
fn folded(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if sum == 0xffff { 0 } else { sum as u16 }
}

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    sum16(&octets(src)) + sum16(&octets(dst)) + proto as u32 + (len as u32 >> 16) + (len as u32 & 0xffff)
}

/// Where the checksum field of `proto`'s header is, if it has one.
fn l4_checksum_field(proto: u8) -> Option<usize> {
    match proto {
        TCP => Some(16),
        UDP => Some(6),
        ICMP | ICMPV6 => Some(2),
        _ => None,
    }
}

/// The sum an L4 segment's checksum is checked with: over the IPv4 or IPv6
/// pseudo-header, except ICMP for IPv4, which covers the message alone.
fn l4_sum(at: &Layout, segment: &[u8]) -> u32 {
    let pseudo = if at.proto == ICMP { 0 } else { pseudo_header_sum(at.src, at.dst, at.proto, segment.len()) };
    pseudo + sum16(segment)
}

/// What a frame's checksums add up to, 0 each when right: the IPv4 header's
/// (0 for IPv6) and the L4 segment's, the segment taken to the frame's end
/// whatever the length fields say. A rewrite that keeps the frame's length
/// and updates its checksums correctly leaves both unchanged, right or
/// wrong before. `None` for a frame without an IP and L4 header to sum.
pub fn residuals(frame: &[u8]) -> Option<(u16, u16)> {
    let at = layout(frame)?;
    let ip = at.v4_header_len.map_or(0, |ihl| folded(sum16(&frame[ETH_HLEN..ETH_HLEN + ihl])));
    let segment = frame.get(at.l4..)?;
    Some((ip, folded(l4_sum(&at, segment))))
}

/// Whether a TCP, UDP, ICMP or ICMPv6 frame is whole and its checksums are
/// right, as a receiver checks them: the IP packet inside the frame by its
/// length field, the IPv4 header's checksum, and the L4 checksum over the
/// packet's L4 part (a zero UDP checksum means "none" over IPv4 only).
pub fn checksums_valid(frame: &[u8]) -> bool {
    let Some(at) = layout(frame) else { return false };
    let Some(field) = l4_checksum_field(at.proto) else { return false };
    if at.ip_end > frame.len() || at.ip_end < at.l4 + field + 2 {
        return false;
    }
    if let Some(ihl) = at.v4_header_len
        && folded(sum16(&frame[ETH_HLEN..ETH_HLEN + ihl])) != 0
    {
        return false;
    }
    let segment = &frame[at.l4..at.ip_end];
    let none = at.proto == UDP && at.v4_header_len.is_some() && segment[6..8] == [0, 0];
    none || folded(l4_sum(&at, segment)) == 0
}

/// Recomputes the IPv4 header checksum and the L4 checksum of what the
/// frame now says, where the frame holds what they cover.
pub fn fix_checksums(frame: &mut [u8]) {
    let Some(at) = layout(frame) else { return };
    if let Some(ihl) = at.v4_header_len {
        frame[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
        let check = !folded(sum16(&frame[ETH_HLEN..ETH_HLEN + ihl]));
        frame[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&check.to_be_bytes());
    }
    let Some(field) = l4_checksum_field(at.proto) else { return };
    let end = at.ip_end.min(frame.len());
    if end < at.l4 + field + 2 {
        return;
    }
    frame[at.l4 + field..at.l4 + field + 2].fill(0);
    let check = !folded(l4_sum(&at, &frame[at.l4..end]));
    frame[at.l4 + field..at.l4 + field + 2].copy_from_slice(&check.to_be_bytes());
}

/// Lower-case hex, for a frame in a failure message.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ACK, Ext6, Frame, SYN};

    const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x10);

    #[test]
    fn the_prng_is_reproducible_and_spreads() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(8).next_u64(), first[0]);
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[a.below(4)] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn flows_follow_the_parser_contract() {
        let tcp = Frame::tcp(A, 1000, B, 80, SYN);
        let flow = Some(Flow { src: A.into(), dst: B.into(), sport: 1000, dport: 80, proto: TCP });
        let with = |m: Mutation| {
            let mut bytes = tcp.build();
            m.apply(&mut bytes);
            flow_of(&bytes)
        };
        let cases: &[(&str, Option<Flow>)] = &[
            ("as built", flow_of(&tcp.build())),
            ("a bad IP length is not the parser's business", with(Mutation::IpLength(3))),
            ("trailing bytes", with(Mutation::Trailer(vec![0; 6]))),
        ];
        for (name, got) in cases {
            assert_eq!(*got, flow, "{name}");
        }
        let none: &[(&str, Option<Flow>)] = &[
            ("IHL 4", with(Mutation::Ihl(4))),
            ("IHL beyond the frame", with(Mutation::Ihl(15))),
            ("more fragments", with(Mutation::Fragment(0x2000))),
            ("an offset", with(Mutation::Fragment(0x0001))),
            ("VLAN tag", with(Mutation::Vlan { tpid: 0x8100, tci: 5 })),
            ("TCP header cut", with(Mutation::Truncate(ETH_HLEN + 20 + 19))),
            ("ICMP", flow_of(&Frame { proto: ICMP, payload: vec![8, 0, 0, 0], ..tcp.clone() }.build())),
            (
                "IPv6 hop-by-hop",
                flow_of(&Frame { ext6: vec![Ext6::HopByHop], ..Frame::tcp(A6, 1, B6, 80, SYN) }.build()),
            ),
            ("IPv4-mapped IPv6", flow_of(&Frame::tcp(A6, 1, B.to_ipv6_mapped(), 80, SYN).build())),
        ];
        for (name, got) in none {
            assert_eq!(*got, None, "{name}");
        }
        assert_eq!(flow_of(&Frame::udp(A6, 5, B6, 53).build()).map(|f| f.proto), Some(UDP));
        assert_eq!(with(Mutation::Fragment(0x4000)), flow, "don't-fragment alone is no fragment");
    }

    #[test]
    fn checksums_are_judged_as_a_receiver_does() {
        for frame in [
            Frame::tcp(A, 1, B, 80, ACK).with_payload(b"odd"),
            Frame::udp(A6, 1, B6, 53).with_payload(b"q"),
            Frame { udp_no_checksum: true, ..Frame::udp(A, 1, B, 53) },
            Frame { ip_options: vec![1, 1, 1, 0], ..Frame::tcp(A, 1, B, 80, SYN) },
        ] {
            let bytes = frame.build();
            assert!(checksums_valid(&bytes), "{frame:?}");
            assert_eq!(residuals(&bytes).map(|(ip, _)| ip), Some(0), "{frame:?}");
            let mut flipped = bytes.clone();
            Mutation::FlipBit((ETH_HLEN + if frame.is_ipv6() { 24 } else { 16 }) * 8).apply(&mut flipped);
            assert!(!checksums_valid(&flipped), "a changed destination: {frame:?}");
            let mut cut = bytes.clone();
            Mutation::IpLength(2000).apply(&mut cut);
            assert!(!checksums_valid(&cut), "a packet longer than its frame: {frame:?}");
        }
        let none6 = Frame { udp_no_checksum: true, ..Frame::udp(A6, 1, B6, 53) }.build();
        assert!(!checksums_valid(&none6), "no UDP checksum is invalid over IPv6");
    }

    #[test]
    fn fixed_checksums_are_valid_and_residuals_see_a_wrong_update() {
        let mut bytes = Frame::tcp(A, 1, B, 80, SYN).build();
        Mutation::SetByte(ETH_HLEN + 20 + 3, 81).apply(&mut bytes);
        assert!(!checksums_valid(&bytes));
        let before = residuals(&bytes);
        assert_ne!(before.map(|(_, l4)| l4), Some(0));
        Mutation::FixChecksums.apply(&mut bytes);
        assert!(checksums_valid(&bytes));
        assert_eq!(residuals(&bytes), Some((0, 0)));
        // A port changed without its checksum shows.
        let mut moved = bytes.clone();
        moved.swap(ETH_HLEN + 20 + 2, ETH_HLEN + 20 + 3);
        assert_ne!(residuals(&moved), Some((0, 0)));
    }

    #[test]
    fn mutations_change_what_they_name() {
        let bytes = Frame::tcp(A, 1, B, 80, SYN).build();
        type Case<'a> = (Mutation, &'a dyn Fn(&[u8]) -> bool);
        let cases: &[Case] = &[
            (Mutation::Truncate(3), &|f| f.len() == ETH_HLEN),
            (Mutation::Truncate(40), &|f| f.len() == 40),
            (Mutation::FlipBit(8 * 14 + 7), &|f| f[14] == 0x45 ^ 0x80),
            (Mutation::Ihl(15), &|f| f[14] == 0x4f),
            (Mutation::IpLength(0x1234), &|f| f[16..18] == [0x12, 0x34]),
            (Mutation::Fragment(0x2001), &|f| f[20..22] == [0x20, 0x01]),
            (Mutation::Vlan { tpid: 0x8100, tci: 7 }, &|f| f[12..18] == [0x81, 0, 0, 7, 0x08, 0]),
            (Mutation::Trailer(vec![9, 9]), &|f| f.len() == bytes.len() + 2),
            (Mutation::SetByte(9999, 1), &|f| f == bytes.as_slice()),
        ];
        for (mutation, holds) in cases {
            let mut frame = bytes.clone();
            mutation.apply(&mut frame);
            assert!(holds(&frame), "{mutation:?}: {}", hex(&frame));
        }
    }
}
