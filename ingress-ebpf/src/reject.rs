//! Rejecting a packet to a frontend without endpoints as kube-proxy does, so
//! the client fails at once instead of waiting for a timeout: TCP gets a RST,
//! UDP an ICMP (ICMPv6 for IPv6) port unreachable. The packet itself becomes the answer, sent
//! back where it came from (the caller picks XDP_TX or a redirect).

use ingress_common::addr::Addr;
use ingress_common::checksum::{finish, sum};
use ingress_common::stats::{DROP_NO_BACKEND, REJECT_NO_BACKEND};
use ingress_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::parse::{ICMP_DEST_UNREACH, ICMP_HLEN, ICMP_QUOTED_L4, ICMPV6_DEST_UNREACH};
use crate::outcome::Outcome;
use crate::packet::{Packet, Reshape};
use crate::parse::{ETH_HLEN, Flow, IPV4_HLEN, IPV6_HLEN};
use crate::scratch;

const TCP_HLEN: usize = 20;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMPV6_PORT_UNREACH: u8 = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const HOP_LIMIT: u8 = 64;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// What a packet to a frontend without endpoints gets. Never answered: a
/// RST (RFC 793) and a source that is not one host (RFC 1122 3.2.2.1, RFC
/// 4443 2.4: multicast or unspecified).
#[inline(always)]
pub fn no_backend(flow: &Flow) -> Outcome {
    let one_host = if flow.v6 {
        flow.saddr.words[0].to_ne_bytes()[0] != 0xff && flow.saddr != Addr::default()
    } else {
        let v4 = flow.saddr.v4();
        v4 != 0 && v4.to_ne_bytes()[0] < 224
    };
    let is_reset = flow.proto == IPPROTO_TCP && flow.tcp_flags & TCP_RST != 0;
    if one_host && !is_reset { Outcome::Reject(REJECT_NO_BACKEND) } else { Outcome::Drop(DROP_NO_BACKEND) }
}

/// Turns the packet into the reject of `flow`, in place.
#[inline(always)]
pub fn answer<P: Packet + Reshape>(packet: &P, flow: &Flow) -> Result<(), ()> {
    match (flow.proto, flow.v6) {
        (IPPROTO_TCP, false) => reset::<P, IPV4_HLEN, { ETH_HLEN + IPV4_HLEN + TCP_HLEN }>(packet, flow),
        (IPPROTO_TCP, true) => reset::<P, IPV6_HLEN, { ETH_HLEN + IPV6_HLEN + TCP_HLEN }>(packet, flow),
        (IPPROTO_UDP, false) => port_unreachable::<P, IPV4_HLEN, { ETH_HLEN + IPV4_HLEN + ICMP_HLEN }>(packet, flow),
        (IPPROTO_UDP, true) => port_unreachable::<P, IPV6_HLEN, { ETH_HLEN + IPV6_HLEN + ICMP_HLEN }>(packet, flow),
        _ => Err(()),
    }
}

/// Writes the Ethernet header back to the sender into `h`: the MAC
/// addresses swapped.
#[inline(always)]
fn ethernet_back<P: Packet>(packet: &P, v6: bool, h: &mut [u8]) -> Option<()> {
    let macs: [u8; 12] = packet.read(0)?;
    h.get_mut(..6)?.copy_from_slice(&macs[6..]);
    h.get_mut(6..12)?.copy_from_slice(&macs[..6]);
    h.get_mut(12..ETH_HLEN)?.copy_from_slice(&(if v6 { ETH_P_IPV6 } else { ETH_P_IP }).to_be_bytes());
    Some(())
}

/// Writes the IP header of an answer from the frontend back to the client,
/// without options or extension headers, into `h` (`HLEN` bytes: the family
/// is decided at compile time), and returns the one's-complement sum of its
/// pseudo-header (the L4 checksum's part that depends on it).
#[inline(always)]
fn ip_back<const HLEN: usize>(flow: &Flow, proto: u8, payload_len: usize, h: &mut [u8; HLEN]) -> u32 {
    let pseudo = if HLEN == IPV6_HLEN {
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        h[6] = proto;
        h[7] = HOP_LIMIT;
        for i in 0..4 {
            h[8 + 4 * i..12 + 4 * i].copy_from_slice(&flow.daddr.words[i].to_ne_bytes());
            h[24 + 4 * i..28 + 4 * i].copy_from_slice(&flow.saddr.words[i].to_ne_bytes());
        }
        sum(&h[8..40])
    } else {
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((IPV4_HLEN + payload_len) as u16).to_be_bytes());
        h[8] = HOP_LIMIT;
        h[9] = proto;
        h[12..16].copy_from_slice(&flow.daddr.v4().to_ne_bytes());
        h[16..20].copy_from_slice(&flow.saddr.v4().to_ne_bytes());
        let check = finish(sum(&h[..]));
        h[10..12].copy_from_slice(&check);
        sum(&h[12..20])
    };
    pseudo + proto as u32 + payload_len as u32
}

/// The packet's IP length: header (with IPv4 options) and everything after it.
#[inline(always)]
fn ip_total_len<P: Packet>(packet: &P, flow: &Flow) -> Option<u32> {
    if flow.v6 {
        let payload: [u8; 2] = packet.read(ETH_HLEN + 4)?;
        Some(u16::from_be_bytes(payload) as u32 + IPV6_HLEN as u32)
    } else {
        let total: [u8; 2] = packet.read(ETH_HLEN + 2)?;
        Some(u16::from_be_bytes(total) as u32)
    }
}

/// The first `N` bytes of the scratch frame, all zero, and where its IP
/// header (of `HLEN` bytes) and its L4 header start.
#[inline(always)]
fn zeroed_frame<const HLEN: usize, const N: usize>()
-> Option<(&'static mut [u8; N], [usize; 2])> {
    let frame: &mut [u8; N] = scratch::frame()?.first_chunk_mut::<N>()?;
    Some((frame, [ETH_HLEN, ETH_HLEN + HLEN]))
}

/// RST|ACK, acknowledging everything the packet carried (RFC 793's reset
/// for a closed port, with ACK always set so that any client state takes it).
#[inline(never)]
fn reset<P: Packet + Reshape, const HLEN: usize, const N: usize>(packet: &P, flow: &Flow) -> Result<(), ()> {
    let l4_base = packet.opaque_base(flow.l4);
    let seq: [u8; 4] = packet.read_from(l4_base, 4).ok_or(())?;
    let ack: [u8; 4] = packet.read_from(l4_base, 8).ok_or(())?;
    let data_offset: u8 = packet.read_from(l4_base, 12).ok_or(())?;
    let headers = (flow.l4 - ETH_HLEN) as u32 + (data_offset >> 4) as u32 * 4;
    let payload = ip_total_len(packet, flow).ok_or(())?.saturating_sub(headers);
    let control = (flow.tcp_flags & TCP_SYN != 0) as u32 + (flow.tcp_flags & TCP_FIN != 0) as u32;
    let acked = u32::from_be_bytes(seq).wrapping_add(payload).wrapping_add(control);

    let (frame, [ip, l4]) = zeroed_frame::<HLEN, N>().ok_or(())?;
    ethernet_back(packet, flow.v6, &mut frame[..ip]).ok_or(())?;
    let tcp = frame[l4..].first_chunk_mut::<TCP_HLEN>().ok_or(())?;
    tcp[0..2].copy_from_slice(&flow.dport.to_ne_bytes());
    tcp[2..4].copy_from_slice(&flow.sport.to_ne_bytes());
    if flow.tcp_flags & TCP_ACK != 0 {
        tcp[4..8].copy_from_slice(&ack);
    }
    tcp[8..12].copy_from_slice(&acked.to_be_bytes());
    tcp[12] = (TCP_HLEN as u8 / 4) << 4;
    tcp[13] = TCP_RST | TCP_ACK;
    let tcp_sum = sum(&tcp[..]);
    let pseudo = ip_back::<HLEN>(flow, IPPROTO_TCP, TCP_HLEN, frame[ip..].first_chunk_mut::<HLEN>().ok_or(())?);
    frame[l4 + 16..l4 + 18].copy_from_slice(&finish(pseudo + tcp_sum));

    packet.write_front(frame)?;
    // The payload and any IP or TCP options go: the RST is exactly `frame`.
    packet.truncate(N as u32)
}

/// ICMP destination unreachable / port unreachable from the frontend,
/// quoting the packet's IP header and the first 8 bytes after it, which
/// stay where they are: the new headers go in front of them.
#[inline(never)]
fn port_unreachable<P: Packet + Reshape, const HLEN: usize, const N: usize>(packet: &P, flow: &Flow) -> Result<(), ()> {
    let quoted = flow.l4 - ETH_HLEN + ICMP_QUOTED_L4;
    let quoted_sum = packet.sum_words(ETH_HLEN, quoted / 2).ok_or(())?;

    let (frame, [ip, l4]) = zeroed_frame::<HLEN, N>().ok_or(())?;
    ethernet_back(packet, flow.v6, &mut frame[..ip]).ok_or(())?;
    let (proto, kind, code) = if HLEN == IPV6_HLEN {
        (IPPROTO_ICMPV6, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH)
    } else {
        (IPPROTO_ICMP, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH)
    };
    frame[l4] = kind;
    frame[l4 + 1] = code;
    let pseudo = ip_back::<HLEN>(flow, proto, ICMP_HLEN + quoted, frame[ip..].first_chunk_mut::<HLEN>().ok_or(())?);
    // ICMPv6 covers a pseudo-header (RFC 4443 2.3); ICMP for IPv4 does not.
    let covered = if HLEN == IPV6_HLEN { pseudo } else { 0 };
    let check = finish(covered + kind as u32 * 256 + code as u32 + quoted_sum);
    frame[l4 + 2..l4 + 4].copy_from_slice(&check);

    packet.truncate((ETH_HLEN + quoted) as u32)?;
    packet.grow_front((HLEN + ICMP_HLEN) as u32)?;
    packet.write_front(frame)
}
