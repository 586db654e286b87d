//! Crafting Ethernet/IPv4-or-IPv6/TCP-UDP frames for BPF_PROG_TEST_RUN and
//! checking what the programs made of them. Checksums are computed here from
//! scratch, independently of the incremental updates the dataplane does: the
//! IPv4 header checksum, and the TCP, UDP and ICMPv6 checksums over the
//! pseudo-header of their family (RFC 793/768 for IPv4, RFC 8200 8.1 for IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
/// IPv6 extension headers `Frame::ext6` can carry (next header values).
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_HLEN: usize = 40;
pub const IPV4_HLEN: usize = 20;
pub const ETH_HLEN: usize = 14;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
/// The MAC addresses `ethernet` writes.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC_MAC: [u8; 6] = [0x02, 0x02, 0, 0, 0, 0x01];

/// An IPv6 extension header between the fixed header and the L4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext6 {
    /// Hop-by-hop options: 8 bytes of padding (a PadN option).
    HopByHop,
    /// A fragment header: `offset` in 8-byte units, `more` the M flag.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext6 {
    fn number(self) -> u8 {
        match self {
            Ext6::HopByHop => IPV6_HOP_BY_HOP,
            Ext6::Fragment { .. } => IPV6_FRAGMENT,
        }
    }

    /// The header's 8 bytes, announcing `next` after it.
    fn bytes(self, next: u8) -> [u8; 8] {
        match self {
            // Length 0 (8 bytes), then PadN covering the 6 bytes left.
            Ext6::HopByHop => [next, 0, 1, 4, 0, 0, 0, 0],
            Ext6::Fragment { offset, more, id } => {
                let field = (offset << 3) | u16::from(more);
                let [o0, o1] = field.to_be_bytes();
                let [i0, i1, i2, i3] = id.to_be_bytes();
                [next, 0, o0, o1, i0, i1, i2, i3]
            }
        }
    }
}

/// A frame to build. `Default` is an IPv4 TCP SYN without payload; the
/// family follows the addresses (`src` and `dst` must be of one family).
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgment numbers.
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
    /// IPv4 options, a multiple of 4 bytes (IPv4 only).
    pub ip_options: Vec<u8>,
    /// The IPv4 flags + fragment offset field (IPv4 only).
    pub frag: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv6 extension headers, in order, before the L4 header (IPv6 only).
    pub ext6: Vec<Ext6>,
    /// Send a UDP checksum of 0 ("none"; invalid over IPv6, RFC 8200 8.1).
    pub udp_no_checksum: bool,
}

impl Default for Frame {
    fn default() -> Self {
        Frame {
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            sport: 0,
            dport: 0,
            proto: TCP,
            tcp_flags: SYN,
            seq: 1000,
            ack: 0,
            payload: Vec::new(),
            ip_options: Vec::new(),
            frag: 0x4000, // don't fragment
            ttl: 64,
            ext6: Vec::new(),
            udp_no_checksum: false,
        }
    }
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sum of the pseudo-header of `src`'s family for an upper-layer
/// packet of `len` bytes: RFC 793 (IPv4: addresses, protocol, 16-bit length)
/// or RFC 8200 8.1 (IPv6: addresses, 32-bit length, next header).
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let len = len as u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum16(&s.octets()) + sum16(&d.octets()) + proto as u32 + len,
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum16(&s.octets()) + sum16(&d.octets()) + (len >> 16) + (len & 0xffff) + proto as u32
        }
        _ => panic!("addresses of two families: {src} and {dst}"),
    }
}

/// The checksum an L4 segment (checksum field zero) gets.
fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    finish(pseudo_header_sum(src, dst, proto, segment.len()) + sum16(segment))
}

/// Whether a segment including its checksum field sums to zero.
fn l4_checksum_valid(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    finish(pseudo_header_sum(src, dst, proto, segment.len()) + sum16(segment)) == 0
}

impl Frame {
    pub fn udp(src: impl Into<IpAddr>, sport: u16, dst: impl Into<IpAddr>, dport: u16) -> Frame {
        Frame { src: src.into(), sport, dst: dst.into(), dport, proto: UDP, tcp_flags: 0, ..Frame::default() }
    }

    pub fn tcp(src: impl Into<IpAddr>, sport: u16, dst: impl Into<IpAddr>, dport: u16, flags: u8) -> Frame {
        Frame { src: src.into(), sport, dst: dst.into(), dport, proto: TCP, tcp_flags: flags, ..Frame::default() }
    }

    /// An ICMP (IPv4) or ICMPv6 error from `src` to `dst`: `kind`, `code`,
    /// the 4 bytes the type defines (`rest`: unused, or an MTU), then
    /// `quote`, the offending IP packet from its header on as far as the
    /// sender quotes it. The ICMP checksum is computed here from scratch.
    pub fn icmp_error(src: IpAddr, dst: IpAddr, (kind, code): (u8, u8), rest: [u8; 4], quote: &[u8]) -> Frame {
        let proto = if src.is_ipv6() { ICMPV6 } else { ICMP };
        let payload = [&[kind, code, 0, 0][..], &rest, quote].concat();
        Frame { src, dst, proto, tcp_flags: 0, payload, ..Frame::default() }
    }

    pub fn with_payload(mut self, payload: &[u8]) -> Frame {
        self.payload = payload.to_vec();
        self
    }

    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// The L4 header and payload, with a checksum over the pseudo-header.
    fn l4(&self) -> Vec<u8> {
        match self.proto {
            TCP => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..8].copy_from_slice(&self.seq.to_be_bytes());
                h[8..12].copy_from_slice(&self.ack.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = self.tcp_flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                h.extend_from_slice(&self.payload);
                let c = l4_checksum(self.src, self.dst, TCP, &h);
                h[16..18].copy_from_slice(&c.to_be_bytes());
                h
            }
            UDP => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&self.sport.to_be_bytes());
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                h.extend_from_slice(&self.payload);
                if !self.udp_no_checksum {
                    let c = match l4_checksum(self.src, self.dst, UDP, &h) {
                        0 => 0xffff,
                        c => c,
                    };
                    h[6..8].copy_from_slice(&c.to_be_bytes());
                }
                h
            }
            ICMPV6 if self.is_ipv6() && self.payload.len() >= 4 => {
                // An ICMPv6 message with its checksum filled in.
                let mut h = self.payload.clone();
                h[2..4].copy_from_slice(&[0, 0]);
                let c = l4_checksum(self.src, self.dst, ICMPV6, &h);
                h[2..4].copy_from_slice(&c.to_be_bytes());
                h
            }
            ICMP if !self.is_ipv6() && self.payload.len() >= 4 => {
                // ICMP for IPv4 covers the message alone, no pseudo-header.
                let mut h = self.payload.clone();
                h[2..4].copy_from_slice(&[0, 0]);
                let c = finish(sum16(&h));
                h[2..4].copy_from_slice(&c.to_be_bytes());
                h
            }
            _ => self.payload.clone(),
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4();
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.build_v4(src, dst, &l4),
            (IpAddr::V6(src), IpAddr::V6(dst)) => self.build_v6(src, dst, &l4),
            (src, dst) => panic!("a frame from {src} to {dst}: the addresses must be of one family"),
        }
    }

    fn build_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
        let ihl = IPV4_HLEN + self.ip_options.len();
        let mut ip = vec![0u8; IPV4_HLEN];
        ip[0] = 0x40 | (ihl / 4) as u8;
        ip[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
        ip[6..8].copy_from_slice(&self.frag.to_be_bytes());
        ip[8] = self.ttl;
        ip[9] = self.proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        ip.extend_from_slice(&self.ip_options);
        let c = finish(sum16(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut frame = ethernet(ETHERTYPE_IPV4);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(l4);
        frame
    }

    fn build_v6(&self, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        // The chain: each header names the one after it, the last the L4 protocol.
        let mut ext = Vec::new();
        for (i, header) in self.ext6.iter().enumerate() {
            let next = self.ext6.get(i + 1).map_or(self.proto, |h| h.number());
            ext.extend_from_slice(&header.bytes(next));
        }
        let first = self.ext6.first().map_or(self.proto, |h| h.number());
        let mut ip = vec![0u8; IPV6_HLEN];
        // Version 6, traffic class 0, a flow label that must survive untouched.
        ip[0..4].copy_from_slice(&0x6000_beefu32.to_be_bytes());
        ip[4..6].copy_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
        ip[6] = first;
        ip[7] = self.ttl;
        ip[8..24].copy_from_slice(&src.octets());
        ip[24..40].copy_from_slice(&dst.octets());
        let mut frame = ethernet(ETHERTYPE_IPV6);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&ext);
        frame.extend_from_slice(l4);
        frame
    }
}

/// The IP packet of a frame, from its IP header on, cut to `len` bytes (as
/// an ICMP error quotes it).
pub fn ip_packet(frame: &[u8], len: usize) -> &[u8] {
    &frame[ETH_HLEN..ETH_HLEN + len]
}

/// A 14-byte Ethernet header from `SRC_MAC` to `DST_MAC`.
pub fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut h = DST_MAC.to_vec();
    h.extend_from_slice(&SRC_MAC);
    h.extend_from_slice(&ethertype.to_be_bytes());
    h
}

/// A frame's Ethernet header: (destination, source, EtherType).
pub fn ethernet_of(frame: &[u8]) -> ([u8; 6], [u8; 6], u16) {
    (
        frame[..6].try_into().unwrap(),
        frame[6..12].try_into().unwrap(),
        u16::from_be_bytes([frame[12], frame[13]]),
    )
}

/// Where the parts of an IPv4 or IPv6 frame are, as a receiver finds them.
struct Layout {
    src: IpAddr,
    dst: IpAddr,
    /// The L4 protocol: IPv4's protocol, IPv6's last next header.
    proto: u8,
    /// TTL or hop limit.
    ttl: u8,
    /// IPv4's header checksum; true for IPv6, which has none.
    ip_checksum_ok: bool,
    /// Offsets in the frame of the L4 header and of the end the IP header
    /// announces (cut to the frame).
    l4_start: usize,
    l4_end: usize,
}

fn ipv6_of(bytes: &[u8]) -> Ipv6Addr {
    <[u8; 16]>::try_from(bytes).unwrap().into()
}

fn layout(frame: &[u8]) -> Layout {
    let (_, _, ethertype) = ethernet_of(frame);
    let ip = &frame[ETH_HLEN..];
    match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            Layout {
                src: IpAddr::V4(<[u8; 4]>::try_from(&ip[12..16]).unwrap().into()),
                dst: IpAddr::V4(<[u8; 4]>::try_from(&ip[16..20]).unwrap().into()),
                proto: ip[9],
                ttl: ip[8],
                ip_checksum_ok: finish(sum16(&ip[..ihl])) == 0,
                l4_start: ETH_HLEN + ihl,
                l4_end: ETH_HLEN + total.min(ip.len()),
            }
        }
        ETHERTYPE_IPV6 => {
            let payload_len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let (mut next, mut at) = (ip[6], IPV6_HLEN);
            // Hop-by-hop, routing and destination options carry their
            // length; a fragment header is 8 bytes.
            loop {
                match next {
                    0 | 43 | 60 => {
                        let len = (ip[at + 1] as usize + 1) * 8;
                        next = ip[at];
                        at += len;
                    }
                    IPV6_FRAGMENT => {
                        next = ip[at];
                        at += 8;
                    }
                    _ => break,
                }
            }
            Layout {
                src: IpAddr::V6(ipv6_of(&ip[8..24])),
                dst: IpAddr::V6(ipv6_of(&ip[24..40])),
                proto: next,
                ttl: ip[7],
                ip_checksum_ok: true,
                l4_start: ETH_HLEN + at,
                l4_end: ETH_HLEN + (IPV6_HLEN + payload_len).min(ip.len()),
            }
        }
        other => panic!("EtherType {other:#06x} is neither IPv4 nor IPv6"),
    }
}

/// The TCP fields of a frame that `read` leaves out.
#[derive(Debug, PartialEq, Eq)]
pub struct TcpSeen {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Header length in bytes.
    pub header_len: usize,
    pub window: u16,
}

/// The TCP header of an IPv4 or IPv6 frame.
pub fn read_tcp(frame: &[u8]) -> TcpSeen {
    let tcp = &frame[layout(frame).l4_start..];
    let word = |at: usize| u32::from_be_bytes(tcp[at..at + 4].try_into().unwrap());
    TcpSeen {
        seq: word(4),
        ack: word(8),
        flags: tcp[13],
        header_len: (tcp[12] >> 4) as usize * 4,
        window: u16::from_be_bytes([tcp[14], tcp[15]]),
    }
}

/// An ICMP message as the receiving host would read it.
#[derive(Debug, PartialEq, Eq)]
pub struct IcmpSeen {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// The IPv4 header's length field, against the frame's own length.
    pub ip_total_len: usize,
    pub ip_checksum_ok: bool,
    pub kind: u8,
    pub code: u8,
    pub checksum_ok: bool,
    /// The 4 bytes after type, code and checksum (unused for unreachables).
    pub rest: [u8; 4],
    /// What the message quotes: the offending IP header and what followed it.
    pub quoted: Vec<u8>,
}

pub fn read_icmp(frame: &[u8]) -> IcmpSeen {
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let icmp = &ip[ihl..total.min(ip.len())];
    IcmpSeen {
        src: <[u8; 4]>::try_from(&ip[12..16]).unwrap().into(),
        dst: <[u8; 4]>::try_from(&ip[16..20]).unwrap().into(),
        proto: ip[9],
        ip_total_len: total,
        ip_checksum_ok: finish(sum16(&ip[..ihl])) == 0,
        kind: icmp[0],
        code: icmp[1],
        // ICMP's checksum covers the message alone, no pseudo-header.
        checksum_ok: finish(sum16(icmp)) == 0,
        rest: icmp[4..8].try_into().unwrap(),
        quoted: icmp[8..].to_vec(),
    }
}

/// An ICMPv6 message (directly after the fixed IPv6 header) as the
/// receiving host would read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Icmp6Seen {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The IPv6 header's next header field.
    pub next_header: u8,
    /// The IPv6 header's payload length field, against the frame's own length.
    pub payload_len: usize,
    pub hop_limit: u8,
    pub kind: u8,
    pub code: u8,
    /// Over the IPv6 pseudo-header and the message (RFC 4443 2.3).
    pub checksum_ok: bool,
    /// The 4 bytes after type, code and checksum (unused for unreachables).
    pub rest: [u8; 4],
    /// What the message quotes: the offending packet from its IPv6 header on.
    pub quoted: Vec<u8>,
}

pub fn read_icmp6(frame: &[u8]) -> Icmp6Seen {
    let ip = &frame[ETH_HLEN..];
    let payload_len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let icmp = &ip[IPV6_HLEN..(IPV6_HLEN + payload_len).min(ip.len())];
    let (src, dst) = (ipv6_of(&ip[8..24]), ipv6_of(&ip[24..40]));
    Icmp6Seen {
        src,
        dst,
        next_header: ip[6],
        payload_len,
        hop_limit: ip[7],
        kind: icmp[0],
        code: icmp[1],
        checksum_ok: l4_checksum_valid(src.into(), dst.into(), ICMPV6, icmp),
        rest: icmp[4..8].try_into().unwrap(),
        quoted: icmp[8..].to_vec(),
    }
}

/// What a frame says, as the receiving host would read it. `A` is the
/// address type: `Ipv4Addr` (`read`), `Ipv6Addr` (`read6`) or `IpAddr`
/// (`read_ip`, either family).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen<A = Ipv4Addr> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4's header checksum; always true for IPv6, which has none.
    pub ip_checksum_ok: bool,
    /// Verified from scratch over the pseudo-header of the frame's family.
    pub l4_checksum_ok: bool,
    /// The raw L4 checksum field.
    pub l4_checksum: u16,
    pub payload: Vec<u8>,
}

impl<A> Seen<A> {
    fn map<B>(self, f: impl Fn(A) -> B) -> Seen<B> {
        Seen {
            src: f(self.src),
            dst: f(self.dst),
            sport: self.sport,
            dport: self.dport,
            ttl: self.ttl,
            ip_checksum_ok: self.ip_checksum_ok,
            l4_checksum_ok: self.l4_checksum_ok,
            l4_checksum: self.l4_checksum,
            payload: self.payload,
        }
    }

    /// Both checksums (IPv4 header and L4) are right.
    pub fn checksums_ok(&self) -> bool {
        self.ip_checksum_ok && self.l4_checksum_ok
    }
}

/// Reads an IPv4 or IPv6 TCP or UDP frame built by `Frame::build` (after any rewrite).
pub fn read_ip(frame: &[u8]) -> Seen<IpAddr> {
    let at = layout(frame);
    let l4 = &frame[at.l4_start..at.l4_end];
    let proto = at.proto;
    let (csum_at, header) = if proto == TCP { (16, 20) } else { (6, 8) };
    let l4_checksum = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
    // A UDP checksum of 0 means "none" over IPv4 only.
    let l4_checksum_ok = if proto == UDP && l4_checksum == 0 {
        at.src.is_ipv4()
    } else {
        // Summing a segment that includes a correct checksum gives 0 (or 0xffff folded).
        l4_checksum_valid(at.src, at.dst, proto, l4)
    };
    Seen {
        src: at.src,
        dst: at.dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        ttl: at.ttl,
        ip_checksum_ok: at.ip_checksum_ok,
        l4_checksum_ok,
        l4_checksum,
        payload: l4[header..].to_vec(),
    }
}

/// Reads an IPv4 TCP or UDP frame; panics on any other.
pub fn read(frame: &[u8]) -> Seen {
    read_ip(frame).map(|ip| match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => panic!("an IPv6 frame ({v6}) where IPv4 was expected"),
    })
}

/// Reads an IPv6 TCP or UDP frame; panics on any other.
pub fn read6(frame: &[u8]) -> Seen<Ipv6Addr> {
    read_ip(frame).map(|ip| match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => panic!("an IPv4 frame ({v4}) where IPv6 was expected"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_have_valid_checksums() {
        let a = Ipv4Addr::new(198, 51, 100, 2);
        let b = Ipv4Addr::new(10, 96, 0, 10);
        for frame in [
            Frame::tcp(a, 40000, b, 80, SYN),
            Frame::tcp(a, 40000, b, 80, ACK).with_payload(b"hello\n"),
            Frame::udp(a, 5353, b, 53).with_payload(b"odd"),
            Frame { ip_options: vec![1, 1, 1, 0], ..Frame::tcp(a, 1, b, 2, SYN) },
        ] {
            let seen = read(&frame.build());
            assert!(seen.ip_checksum_ok && seen.l4_checksum_ok, "{frame:?}");
            assert_eq!((seen.src, seen.dst, seen.sport, seen.dport), (a, b, frame.sport, frame.dport));
        }
    }

    #[test]
    fn a_changed_byte_breaks_the_checksums() {
        let mut bytes = Frame::tcp(Ipv4Addr::new(1, 2, 3, 4), 1, Ipv4Addr::new(5, 6, 7, 8), 2, SYN).build();
        bytes[14 + 16] ^= 1; // destination address
        let seen = read(&bytes);
        assert!(!seen.ip_checksum_ok);
        assert!(!seen.l4_checksum_ok);
    }

    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa);

    #[test]
    fn ipv6_frames_have_the_fixed_header_and_valid_checksums() {
        for frame in [
            Frame::tcp(A6, 40000, B6, 80, SYN),
            Frame::tcp(A6, 40000, B6, 80, ACK).with_payload(b"hello\n"),
            Frame::udp(A6, 5353, B6, 53).with_payload(b"odd"),
            Frame::udp(A6, 5353, B6, 53),
            Frame { ttl: 7, ..Frame::tcp(A6, 1, B6, 2, SYN) },
        ] {
            let bytes = frame.build();
            assert_eq!(ethernet_of(&bytes).2, ETHERTYPE_IPV6);
            assert_eq!(bytes[14] >> 4, 6, "version");
            assert_eq!(bytes[14 + 6], frame.proto, "next header");
            let l4_len = if frame.proto == TCP { 20 } else { 8 } + frame.payload.len();
            assert_eq!(u16::from_be_bytes([bytes[18], bytes[19]]) as usize, l4_len, "payload length");
            assert_eq!(bytes.len(), 14 + 40 + l4_len);
            let seen = read6(&bytes);
            assert!(seen.checksums_ok(), "{frame:?}: {seen:?}");
            assert_eq!((seen.src, seen.dst, seen.sport, seen.dport, seen.ttl), (A6, B6, frame.sport, frame.dport, frame.ttl));
            assert_eq!(seen.payload, frame.payload);
            assert_eq!(read_ip(&bytes).src, IpAddr::V6(A6));
        }
    }

    #[test]
    fn ipv6_checksums_cover_every_address_byte_and_the_pseudo_header() {
        for frame in [Frame::tcp(A6, 1, B6, 2, SYN).with_payload(b"x"), Frame::udp(A6, 1, B6, 2).with_payload(b"x")] {
            for at in (14 + 8)..(14 + 40) {
                let mut bytes = frame.build();
                bytes[at] ^= 0x40;
                assert!(!read6(&bytes).l4_checksum_ok, "byte {at} of the addresses is not covered");
            }
        }
        // A known value, computed by hand: TCP SYN from ::1 port 1 to ::2 port 2,
        // sequence 1000, window 64240, 20 bytes.
        let one = Ipv6Addr::LOCALHOST;
        let two = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 2);
        let bytes = Frame::tcp(one, 1, two, 2, SYN).build();
        // Pseudo-header: ::1 + ::2 + length 20 + next header 6 = 29; segment:
        // ports 1 and 2, sequence 1000, offset and flags 0x5002, window 64240.
        let expected = finish(29 + 1 + 2 + 1000 + 0x5002 + 64240);
        assert_eq!(read6(&bytes).l4_checksum, expected);
        // A zero UDP checksum is "none" over IPv4 but invalid over IPv6.
        let none = Frame { udp_no_checksum: true, ..Frame::udp(A6, 1, B6, 2) }.build();
        assert!(!read6(&none).l4_checksum_ok);
    }

    #[test]
    fn ipv6_extension_headers_are_chained_and_skipped_when_read() {
        let frame = Frame {
            ext6: vec![Ext6::HopByHop, Ext6::Fragment { offset: 0, more: false, id: 7 }],
            ..Frame::udp(A6, 5353, B6, 53).with_payload(b"q")
        };
        let bytes = frame.build();
        assert_eq!(bytes[14 + 6], IPV6_HOP_BY_HOP);
        assert_eq!(bytes[14 + 40], IPV6_FRAGMENT, "hop-by-hop names the fragment header");
        assert_eq!(bytes[14 + 48], UDP, "the fragment header names UDP");
        assert_eq!(u16::from_be_bytes([bytes[18], bytes[19]]), 16 + 8 + 1);
        let seen = read6(&bytes);
        assert!(seen.l4_checksum_ok, "the pseudo-header counts the UDP length only: {seen:?}");
        assert_eq!((seen.sport, seen.dport, seen.payload.as_slice()), (5353, 53, &b"q"[..]));
    }

    #[test]
    fn icmpv6_checksums_are_verified_over_the_pseudo_header() {
        // An echo request, checksum filled in by the builder.
        let echo = Frame { proto: ICMPV6, payload: vec![128, 0, 0, 0, 0, 1, 0, 1], ..Frame::tcp(A6, 0, B6, 0, 0) }.build();
        let seen = read_icmp6(&echo);
        assert!(seen.checksum_ok, "{seen:?}");
        assert_eq!((seen.src, seen.dst, seen.next_header, seen.payload_len, seen.kind), (A6, B6, ICMPV6, 8, 128));
        let mut broken = echo.clone();
        broken[14 + 8 + 15] ^= 1;
        assert!(!read_icmp6(&broken).checksum_ok);
    }

    #[test]
    fn tcp_fields_are_read_in_both_families() {
        for (src, dst) in [(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8))), (A6.into(), B6.into())] {
            let frame = Frame { seq: 7, ack: 9, ..Frame::tcp(src, 1, dst, 2, SYN | ACK) };
            assert_eq!(read_tcp(&frame.build()), TcpSeen { seq: 7, ack: 9, flags: SYN | ACK, header_len: 20, window: 64240 });
        }
    }
}
