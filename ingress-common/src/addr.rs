//! Addresses in map keys and values. IPv4 and IPv6 share one 16-byte form,
//! an IPv4 address stored IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2),
//! the way Katran's flow and VIP keys hold either family in one union. So
//! every map, key and lookup exists once for both families, and only parsing
//! and rewriting a packet know which family it is.

/// An IPv4 or IPv6 address as four 32-bit words loaded from the wire: each
/// word holds four bytes in network order, exactly as a packet has them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub words: [u32; 4],
}

/// The third word of an IPv4-mapped address, as loaded from the wire.
const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

impl Addr {
    /// An IPv4 address as loaded from the wire (network byte order).
    #[inline(always)]
    pub const fn from_v4(v4: u32) -> Addr {
        Addr { words: [0, 0, V4_MAPPED_WORD, v4] }
    }

    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.words[0] == 0 && self.words[1] == 0 && self.words[2] == V4_MAPPED_WORD
    }

    /// The IPv4 address as loaded from the wire; meaningful when `is_v4`.
    #[inline(always)]
    pub fn v4(&self) -> u32 {
        self.words[3]
    }

    /// All 16 bytes folded into one word, for hashing: equal for equal
    /// addresses, and every byte counts.
    #[inline(always)]
    pub fn fold(&self) -> u32 {
        self.words[0] ^ self.words[1] ^ self.words[2] ^ self.words[3]
    }

    /// The 16 bytes in network order (an IPv4-mapped form for IPv4).
    pub fn octets(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(self.words) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        bytes
    }

    pub const fn from_octets(bytes: [u8; 16]) -> Addr {
        let mut words = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            words[i] = u32::from_ne_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
            i += 1;
        }
        Addr { words }
    }
}

impl From<core::net::IpAddr> for Addr {
    fn from(ip: core::net::IpAddr) -> Addr {
        match ip {
            core::net::IpAddr::V4(v4) => Addr::from_v4(u32::from_ne_bytes(v4.octets())),
            core::net::IpAddr::V6(v6) => Addr::from_octets(v6.octets()),
        }
    }
}

impl From<Addr> for core::net::IpAddr {
    /// An IPv4-mapped address reads back as IPv4: the maps hold no other
    /// kind (the agent never programs an IPv6 address of that form).
    fn from(addr: Addr) -> core::net::IpAddr {
        if addr.is_v4() {
            core::net::IpAddr::V4(core::net::Ipv4Addr::from(addr.v4().to_ne_bytes()))
        } else {
            core::net::IpAddr::V6(core::net::Ipv6Addr::from(addr.octets()))
        }
    }
}

const _: () = assert!(core::mem::size_of::<Addr>() == 16);

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv4_is_stored_mapped_and_reads_back_as_ipv4() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
        let addr = Addr::from(ip);
        assert!(addr.is_v4());
        assert_eq!(addr.octets(), Ipv4Addr::new(10, 96, 0, 10).to_ipv6_mapped().octets());
        assert_eq!(addr.v4().to_ne_bytes(), [10, 96, 0, 10], "as a packet holds it");
        assert_eq!(IpAddr::from(addr), ip);
    }

    #[test]
    fn ipv6_round_trips_in_network_order() {
        let ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa));
        let addr = Addr::from(ip);
        assert!(!addr.is_v4());
        assert_eq!(addr.octets(), [0xfd, 0, 0, 0x10, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa]);
        assert_eq!(IpAddr::from(addr), ip);
    }

    #[test]
    fn fold_depends_on_every_word() {
        let base = Addr::from_octets([1; 16]);
        for i in 0..16 {
            let mut bytes = [1; 16];
            bytes[i] = 2;
            assert_ne!(Addr::from_octets(bytes).fold(), base.fold(), "byte {i}");
        }
    }
}
