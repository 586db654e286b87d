//! Assertions on what the programs made of a frame, shared by the kernel
//! tests (BPF_PROG_TEST_RUN) of both address families. Every checksum is
//! verified from scratch by [`crate::packet`].

use std::fmt::Debug;
use std::net::IpAddr;

use crate::packet::{self, ACK, DST_MAC, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Frame, ICMPV6, RST, SRC_MAC, Seen, TCP};
use crate::prog_run::{Entry, TC_ACT_REDIRECT, XDP_TX};

/// Each entry with what its program answers a reject with: XDP_TX from
/// `lb_xdp`, a redirect to the egress of the interface it came in on in TC
/// (the uplink's or the pod veth's).
pub const REJECT_ENTRIES: [(Entry, u32); 3] =
    [(Entry::Uplink, XDP_TX), (Entry::UplinkTc, TC_ACT_REDIRECT), (Entry::PodVeth, TC_ACT_REDIRECT)];

/// The TTL (IPv4) or hop limit (IPv6) of the answers the programs make up.
pub const ANSWER_TTL: u8 = 64;

/// ICMPv6 destination unreachable, port unreachable (RFC 4443 3.1).
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PORT_UNREACH: u8 = 4;

/// The IPv4 header checksum (if any) and the L4 checksum are right.
pub fn assert_checksums<A: Debug>(seen: &Seen<A>) {
    assert!(seen.ip_checksum_ok, "IPv4 header checksum wrong: {seen:?}");
    assert!(seen.l4_checksum_ok, "L4 checksum wrong: {seen:?}");
}

/// The frame went back where it came from: Ethernet addresses swapped.
pub fn assert_turned_around(before: &[u8], after: &[u8]) {
    assert_eq!((&after[0..6], &after[6..12]), (&before[6..12], &before[0..6]), "MACs not swapped");
}

/// The RST a TCP frame of either family gets, checked field by field
/// against what it answers: a bare RST|ACK from the frontend back to the
/// client, `seq` and `ack` as given, MACs swapped, TTL or hop limit 64,
/// checksums valid.
pub fn assert_reset_answers(out: &[u8], to: &Frame, seq: u32, ack: u32, what: &str) {
    let (ethertype, ip_hlen) =
        if to.is_ipv6() { (ETHERTYPE_IPV6, packet::IPV6_HLEN) } else { (ETHERTYPE_IPV4, packet::IPV4_HLEN) };
    assert_eq!(out.len(), packet::ETH_HLEN + ip_hlen + 20, "{what}: a bare RST, payload, options and extension headers trimmed");
    assert_eq!(packet::ethernet_of(out), (SRC_MAC, DST_MAC, ethertype), "{what}: MACs swapped");
    let seen = packet::read_ip(out);
    assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (to.dst, to.dport, to.src, to.sport), "{what}: addresses");
    assert_checksums(&seen);
    assert!(seen.payload.is_empty(), "{what}");
    assert_eq!(seen.ttl, ANSWER_TTL, "{what}: TTL / hop limit");
    let tcp = packet::read_tcp(out);
    assert_eq!((tcp.flags, tcp.seq, tcp.ack, tcp.header_len), (RST | ACK, seq, ack, 20), "{what}: {tcp:?}");
    let ip = &out[packet::ETH_HLEN..];
    if to.is_ipv6() {
        assert_eq!(ip[0] >> 4, 6, "{what}: IPv6");
        assert_eq!(ip[6], TCP, "{what}: TCP right after the fixed header");
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 20, "{what}: IPv6 payload length");
    } else {
        assert_eq!(ip[0], 0x45, "{what}: IPv4 without options");
    }
}

/// The ICMPv6 port unreachable an IPv6 UDP frame gets (the frame without
/// extension headers), checked against the frame it quotes: from the
/// frontend back to the client, MACs swapped, hop limit 64, type 1 code 4,
/// the checksum over the IPv6 pseudo-header valid, and the offending IPv6
/// header and the first 8 bytes of its UDP header quoted (48 bytes).
pub fn assert_port_unreachable6_quotes(out: &[u8], to: &Frame, what: &str) {
    let original = to.build();
    let quoted_len = packet::IPV6_HLEN + 8;
    let icmp_len = 8 + quoted_len;
    assert_eq!(out.len(), packet::ETH_HLEN + packet::IPV6_HLEN + icmp_len, "{what}: IPv6 header + 8 bytes quoted, nothing more");
    assert_eq!(packet::ethernet_of(out), (SRC_MAC, DST_MAC, ETHERTYPE_IPV6), "{what}: MACs swapped");
    let icmp = packet::read_icmp6(out);
    let (IpAddr::V6(frontend), IpAddr::V6(client)) = (to.dst, to.src) else {
        panic!("{what}: {to:?} is no IPv6 frame");
    };
    assert_eq!((icmp.src, icmp.dst, icmp.next_header), (frontend, client, ICMPV6), "{what}: from the frontend");
    assert_eq!(icmp.payload_len, icmp_len, "{what}: IPv6 payload length");
    assert_eq!(icmp.hop_limit, ANSWER_TTL, "{what}: hop limit");
    assert!(icmp.checksum_ok, "{what}: ICMPv6 checksum wrong: {icmp:?}");
    assert_eq!((icmp.kind, icmp.code, icmp.rest), (ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, [0; 4]), "{what}");
    assert_eq!(icmp.quoted, original[packet::ETH_HLEN..packet::ETH_HLEN + quoted_len], "{what}: quoted bytes");
}
