//! Ethernet / IPv4 or IPv6 / TCP-UDP parsing into a `Flow` (and the IP
//! header an ICMP error quotes, see `icmp_error`). Anything that is not a
//! translatable packet comes back as the pass reason it is counted under.

use ingress_common::addr::Addr;
use ingress_common::stats::*;
use ingress_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::packet::Packet;

pub const ETH_HLEN: usize = 14;
/// EtherType IPv4 as loaded from the wire into a little-endian u16.
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
/// EtherType IPv6, loaded the same way.
const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();
/// The IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
/// The fixed IPv6 header; extension headers would follow it.
pub const IPV6_HLEN: usize = 40;
/// More-fragments flag and fragment offset, in the wire order of `frag_off`.
const IP_MF_OR_OFFSET_BE: u16 = 0x3fffu16.to_be();

/// One packet's 5-tuple and where its headers are. Addresses and ports are
/// in network byte order, as in the maps.
#[derive(Clone, Copy)]
pub struct Flow {
    pub saddr: Addr,
    pub daddr: Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// IPv6 (else IPv4): where the addresses are and which checksums cover them.
    pub v6: bool,
    /// Offset of the L4 header (after any IPv4 options). Never a pointer:
    /// a call to a subprogram that may change the packet makes every packet
    /// pointer the caller holds unusable, so users derive their own
    /// (`Packet::opaque_base`).
    pub l4: usize,
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

impl Flow {
    /// A TCP SYN without ACK: the first packet of a new connection.
    #[inline(always)]
    pub fn opens_connection(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// Where the L4 checksum field is, relative to the L4 header.
    #[inline(always)]
    pub fn l4_csum_field(&self) -> usize {
        if self.proto == IPPROTO_TCP { 16 } else { 6 }
    }
}

/// The network header of an IPv4 or IPv6 packet, before its L4 header is
/// looked at: `transport` makes a `Flow` of it, `icmp_error` an ICMP error.
pub struct Network {
    pub saddr: Addr,
    pub daddr: Addr,
    /// IPv4's protocol or IPv6's next header.
    pub proto: u8,
    /// Offset of the L4 header (after any IPv4 options).
    pub l4: usize,
    pub v6: bool,
}

#[inline(always)]
pub fn network<P: Packet>(packet: &P) -> Result<Network, u32> {
    let ethertype: u16 = packet.read(12).ok_or(PASS_TRUNCATED)?;
    match ethertype {
        ETH_P_IP_BE => ipv4(packet, ETH_HLEN),
        ETH_P_IPV6_BE => ipv6(packet, ETH_HLEN),
        _ => Err(PASS_NOT_IP),
    }
}

/// The TCP or UDP flow of a packet whose network header is `net`.
#[inline(always)]
pub fn transport<P: Packet>(packet: &P, net: &Network) -> Result<Flow, u32> {
    let l4_base = packet.opaque_base(net.l4);
    let tcp_flags = match net.proto {
        IPPROTO_TCP => {
            packet.ptr_from::<[u8; 20]>(l4_base, 0).ok_or(PASS_TRUNCATED)?;
            packet.read_from::<u8>(l4_base, 13).ok_or(PASS_TRUNCATED)?
        }
        IPPROTO_UDP => {
            packet.ptr_from::<[u8; 8]>(l4_base, 0).ok_or(PASS_TRUNCATED)?;
            0
        }
        _ => return Err(PASS_OTHER_PROTOCOL),
    };
    let sport: u16 = packet.read_from(l4_base, 0).ok_or(PASS_TRUNCATED)?;
    let dport: u16 = packet.read_from(l4_base, 2).ok_or(PASS_TRUNCATED)?;
    Ok(Flow { saddr: net.saddr, daddr: net.daddr, sport, dport, proto: net.proto, tcp_flags, v6: net.v6, l4: net.l4 })
}

/// The IPv4 header at offset `at`: the packet's own (`ETH_HLEN`) or one
/// an ICMP error quotes.
#[inline(always)]
pub fn ipv4<P: Packet>(packet: &P, at: usize) -> Result<Network, u32> {
    let ip = packet.opaque_base(at);
    // The fixed IPv4 header must be there before any field is read.
    packet.ptr_from::<[u8; IPV4_HLEN]>(ip, 0).ok_or(PASS_TRUNCATED)?;
    let version_ihl: u8 = packet.read_from(ip, 0).ok_or(PASS_TRUNCATED)?;
    let ihl = (version_ihl & 0x0f) as usize;
    if version_ihl >> 4 != 4 || ihl < 5 {
        return Err(PASS_BAD_IP_HEADER);
    }
    let frag_off: u16 = packet.read_from(ip, 6).ok_or(PASS_TRUNCATED)?;
    if frag_off & IP_MF_OR_OFFSET_BE != 0 {
        return Err(PASS_FRAGMENT);
    }
    let proto: u8 = packet.read_from(ip, 9).ok_or(PASS_TRUNCATED)?;
    let saddr: u32 = packet.read_from(ip, 12).ok_or(PASS_TRUNCATED)?;
    let daddr: u32 = packet.read_from(ip, 16).ok_or(PASS_TRUNCATED)?;
    Ok(Network { saddr: Addr::from_v4(saddr), daddr: Addr::from_v4(daddr), proto, l4: at + ihl * 4, v6: false })
}

/// An IPv6 packet whose next header is the transport header. A packet with
/// extension headers (fragments among them) keeps its next header there and
/// is passed as another protocol: the stack handles those rare flows.
#[inline(always)]
pub fn ipv6<P: Packet>(packet: &P, at: usize) -> Result<Network, u32> {
    let ip = packet.opaque_base(at);
    packet.ptr_from::<[u8; IPV6_HLEN]>(ip, 0).ok_or(PASS_TRUNCATED)?;
    let version: u8 = packet.read_from(ip, 0).ok_or(PASS_TRUNCATED)?;
    if version >> 4 != 6 {
        return Err(PASS_BAD_IP_HEADER);
    }
    let next_header: u8 = packet.read_from(ip, 6).ok_or(PASS_TRUNCATED)?;
    let saddr: Addr = packet.read_from(ip, 8).ok_or(PASS_TRUNCATED)?;
    let daddr: Addr = packet.read_from(ip, 24).ok_or(PASS_TRUNCATED)?;
    // IPv4-mapped addresses never appear on the wire (RFC 4291 2.5.5.2); in
    // the maps they are IPv4, so such a packet must not match an IPv4 flow.
    if saddr.is_v4() || daddr.is_v4() {
        return Err(PASS_BAD_IP_HEADER);
    }
    Ok(Network { saddr, daddr, proto: next_header, l4: at + IPV6_HLEN, v6: true })
}

/// Type, code, checksum and 4 bytes the type defines; the quote follows.
pub const ICMP_HLEN: usize = 8;
/// ICMP destination unreachable (fragmentation needed is its code 4).
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 packet too big, then time exceeded (RFC 4443 3.2, 3.3).
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// What an ICMP error quotes after the IP header, at least (RFC 792; ICMPv6
/// quotes as much as fits, RFC 4443 3.1): the ports, and UDP's checksum.
/// The rejects quote exactly this.
pub const ICMP_QUOTED_L4: usize = 8;
