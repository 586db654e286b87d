//! Crafting Ethernet/IPv4/TCP-UDP frames for BPF_PROG_TEST_RUN and checking
//! what the programs made of them. Checksums are computed here from scratch,
//! independently of the incremental updates the dataplane does.

use std::net::Ipv4Addr;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
/// The MAC addresses `ethernet` writes.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC_MAC: [u8; 6] = [0x02, 0x02, 0, 0, 0, 0x01];

/// A frame to build. `Default` is a TCP SYN without payload.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgment numbers.
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
    /// IPv4 options, a multiple of 4 bytes.
    pub ip_options: Vec<u8>,
    /// The IPv4 flags + fragment offset field.
    pub frag: u16,
    /// Send a UDP checksum of 0 ("none").
    pub udp_no_checksum: bool,
}

impl Default for Frame {
    fn default() -> Self {
        Frame {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            dport: 0,
            proto: TCP,
            tcp_flags: SYN,
            seq: 1000,
            ack: 0,
            payload: Vec::new(),
            ip_options: Vec::new(),
            frag: 0x4000, // don't fragment
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

fn l4_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    let pseudo = sum16(&src) + sum16(&dst) + proto as u32 + segment.len() as u32;
    finish(pseudo + sum16(segment))
}

impl Frame {
    pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Frame {
        Frame { src, sport, dst, dport, proto: UDP, tcp_flags: 0, ..Frame::default() }
    }

    pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Frame {
        Frame { src, sport, dst, dport, proto: TCP, tcp_flags: flags, ..Frame::default() }
    }

    pub fn with_payload(mut self, payload: &[u8]) -> Frame {
        self.payload = payload.to_vec();
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let l4 = match self.proto {
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
                let c = l4_checksum(self.src.octets(), self.dst.octets(), TCP, &h);
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
                    let c = match l4_checksum(self.src.octets(), self.dst.octets(), UDP, &h) {
                        0 => 0xffff,
                        c => c,
                    };
                    h[6..8].copy_from_slice(&c.to_be_bytes());
                }
                h
            }
            _ => self.payload.clone(),
        };
        let ihl = 20 + self.ip_options.len();
        let mut ip = vec![0u8; 20];
        ip[0] = 0x40 | (ihl / 4) as u8;
        ip[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
        ip[6..8].copy_from_slice(&self.frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = self.proto;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        ip.extend_from_slice(&self.ip_options);
        let c = finish(sum16(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut frame = ethernet(ETHERTYPE_IPV4);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }
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

pub fn read_tcp(frame: &[u8]) -> TcpSeen {
    let ip = &frame[14..];
    let tcp = &ip[((ip[0] & 0x0f) as usize) * 4..];
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

/// What a frame says, as the receiving host would read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ip_checksum_ok: bool,
    pub l4_checksum_ok: bool,
    /// The raw L4 checksum field.
    pub l4_checksum: u16,
    pub payload: Vec<u8>,
}

/// Reads a TCP or UDP frame built by `Frame::build` (after any rewrite).
pub fn read(frame: &[u8]) -> Seen {
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let proto = ip[9];
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    let l4 = &ip[ihl..total];
    let (csum_at, header) = if proto == TCP { (16, 20) } else { (6, 8) };
    let l4_checksum = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
    let l4_checksum_ok = if proto == UDP && l4_checksum == 0 {
        true
    } else {
        // Summing a segment that includes a correct checksum gives 0 (or 0xffff folded).
        let pseudo = sum16(&src) + sum16(&dst) + proto as u32 + l4.len() as u32;
        finish(pseudo + sum16(l4)) == 0
    };
    Seen {
        src: src.into(),
        dst: dst.into(),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        ip_checksum_ok: finish(sum16(&ip[..ihl])) == 0,
        l4_checksum_ok,
        l4_checksum,
        payload: l4[header..].to_vec(),
    }
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
        let mut bytes = Frame::tcp([1, 2, 3, 4].into(), 1, [5, 6, 7, 8].into(), 2, SYN).build();
        bytes[14 + 16] ^= 1; // destination address
        let seen = read(&bytes);
        assert!(!seen.ip_checksum_ok);
        assert!(!seen.l4_checksum_ok);
    }
}
