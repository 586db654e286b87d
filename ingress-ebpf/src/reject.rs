//! Rejecting a packet to a frontend without endpoints as kube-proxy does, so
//! the client fails at once instead of waiting for a timeout: TCP gets a RST,
//! UDP an ICMP port unreachable. The packet itself becomes the answer, sent
//! back where it came from (the caller picks XDP_TX or a redirect).

use ingress_common::checksum::{finish, sum};
use ingress_common::stats::{DROP_NO_BACKEND, REJECT_NO_BACKEND};
use ingress_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::lb::Outcome;
use crate::packet::{Packet, Reshape};
use crate::parse::{ETH_HLEN, Flow};

const IPPROTO_ICMP: u8 = 1;
const IPV4_HLEN: usize = 20;
const TCP_HLEN: usize = 20;
const ICMP_HLEN: usize = 8;
/// An ICMP error quotes the IP header and this much of what follows (RFC 792).
const ICMP_QUOTED_L4: usize = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// What a packet to a frontend without endpoints gets. Never answered: a
/// RST (RFC 793) and a source that is not one host (RFC 1122 3.2.2.1).
#[inline(always)]
pub fn no_backend(flow: &Flow) -> Outcome {
    let first_octet = flow.saddr.to_ne_bytes()[0];
    let one_host = flow.saddr != 0 && first_octet < 224;
    let is_reset = flow.proto == IPPROTO_TCP && flow.tcp_flags & TCP_RST != 0;
    if one_host && !is_reset { Outcome::Reject(REJECT_NO_BACKEND) } else { Outcome::Drop(DROP_NO_BACKEND) }
}

/// Turns the packet into the reject of `flow`, in place.
#[inline(always)]
pub fn answer<P: Packet + Reshape>(packet: &P, flow: &Flow) -> Result<(), ()> {
    match flow.proto {
        IPPROTO_TCP => reset(packet, flow),
        IPPROTO_UDP => port_unreachable(packet, flow),
        _ => Err(()),
    }
}

/// The Ethernet header back to the sender: the MAC addresses swapped.
#[inline(always)]
fn ethernet_back<P: Packet>(packet: &P) -> Option<[u8; ETH_HLEN]> {
    let macs: [u8; 12] = packet.read(0)?;
    let mut h = [0u8; ETH_HLEN];
    h[..6].copy_from_slice(&macs[6..]);
    h[6..12].copy_from_slice(&macs[..6]);
    h[12..].copy_from_slice(&0x0800u16.to_be_bytes());
    Some(h)
}

/// An IPv4 header without options from the frontend back to the client.
#[inline(always)]
fn ipv4_back(flow: &Flow, proto: u8, payload_len: usize) -> [u8; IPV4_HLEN] {
    let mut h = [0u8; IPV4_HLEN];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((IPV4_HLEN + payload_len) as u16).to_be_bytes());
    h[8] = 64; // TTL
    h[9] = proto;
    h[12..16].copy_from_slice(&flow.daddr.to_ne_bytes());
    h[16..20].copy_from_slice(&flow.saddr.to_ne_bytes());
    let check = finish(sum(&h));
    h[10..12].copy_from_slice(&check);
    h
}

/// RST|ACK, acknowledging everything the packet carried (RFC 793's reset
/// for a closed port, with ACK always set so that any client state takes it).
#[inline(always)]
fn reset<P: Packet + Reshape>(packet: &P, flow: &Flow) -> Result<(), ()> {
    let eth = ethernet_back(packet).ok_or(())?;
    let seq: [u8; 4] = packet.read_from(flow.l4_base, 4).ok_or(())?;
    let ack: [u8; 4] = packet.read_from(flow.l4_base, 8).ok_or(())?;
    let data_offset: u8 = packet.read_from(flow.l4_base, 12).ok_or(())?;
    let total_len: [u8; 2] = packet.read(ETH_HLEN + 2).ok_or(())?;
    let headers = (flow.l4 - ETH_HLEN) as u32 + (data_offset >> 4) as u32 * 4;
    let payload = (u16::from_be_bytes(total_len) as u32).saturating_sub(headers);
    let control = (flow.tcp_flags & TCP_SYN != 0) as u32 + (flow.tcp_flags & TCP_FIN != 0) as u32;
    let acked = u32::from_be_bytes(seq).wrapping_add(payload).wrapping_add(control);

    let mut tcp = [0u8; TCP_HLEN];
    tcp[0..2].copy_from_slice(&flow.dport.to_ne_bytes());
    tcp[2..4].copy_from_slice(&flow.sport.to_ne_bytes());
    if flow.tcp_flags & TCP_ACK != 0 {
        tcp[4..8].copy_from_slice(&ack);
    }
    tcp[8..12].copy_from_slice(&acked.to_be_bytes());
    tcp[12] = (TCP_HLEN as u8 / 4) << 4;
    tcp[13] = TCP_RST | TCP_ACK;
    let ip = ipv4_back(flow, IPPROTO_TCP, TCP_HLEN);
    let pseudo = sum(&ip[12..20]) + IPPROTO_TCP as u32 + TCP_HLEN as u32;
    let check = finish(pseudo + sum(&tcp));
    tcp[16..18].copy_from_slice(&check);

    let mut frame = [0u8; ETH_HLEN + IPV4_HLEN + TCP_HLEN];
    frame[..ETH_HLEN].copy_from_slice(&eth);
    frame[ETH_HLEN..ETH_HLEN + IPV4_HLEN].copy_from_slice(&ip);
    frame[ETH_HLEN + IPV4_HLEN..].copy_from_slice(&tcp);
    packet.write_front(&frame)?;
    // The payload and any IP or TCP options go: the RST is exactly `frame`.
    packet.truncate(frame.len() as u32)
}

/// ICMP destination unreachable / port unreachable from the frontend,
/// quoting the packet's IP header and the first 8 bytes after it, which
/// stay where they are: the new headers go in front of them.
#[inline(always)]
fn port_unreachable<P: Packet + Reshape>(packet: &P, flow: &Flow) -> Result<(), ()> {
    let eth = ethernet_back(packet).ok_or(())?;
    let quoted = flow.l4 - ETH_HLEN + ICMP_QUOTED_L4;
    let quoted_sum = packet.sum_words(ETH_HLEN, quoted / 2).ok_or(())?;

    let mut icmp = [0u8; ICMP_HLEN];
    icmp[0] = ICMP_DEST_UNREACH;
    icmp[1] = ICMP_PORT_UNREACH;
    let check = finish(sum(&icmp) + quoted_sum);
    icmp[2..4].copy_from_slice(&check);
    let ip = ipv4_back(flow, IPPROTO_ICMP, ICMP_HLEN + quoted);

    let mut head = [0u8; ETH_HLEN + IPV4_HLEN + ICMP_HLEN];
    head[..ETH_HLEN].copy_from_slice(&eth);
    head[ETH_HLEN..ETH_HLEN + IPV4_HLEN].copy_from_slice(&ip);
    head[ETH_HLEN + IPV4_HLEN..].copy_from_slice(&icmp);
    packet.truncate((ETH_HLEN + quoted) as u32)?;
    packet.grow_front((IPV4_HLEN + ICMP_HLEN) as u32)?;
    packet.write_front(&head)
}
