//! Internet checksums: incremental updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))
//! for rewritten packets, and full sums (RFC 1071) for the ones built anew.
//!
//! The one's-complement sum does not depend on byte order as long as every
//! operand is read the same way, so callers of the incremental updates pass
//! fields exactly as loaded from the packet and store the result back the
//! same way. The full sums read big-endian words, as on the wire.

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum after one 16-bit word of the covered data changed.
#[inline(always)]
pub fn replace16(check: u16, from: u16, to: u16) -> u16 {
    let sum = (!check as u32) + (!from as u32) + (to as u32);
    !fold(sum)
}

/// The checksum after one 32-bit word (an IPv4 address) changed.
#[inline(always)]
pub fn replace32(check: u16, from: u32, to: u32) -> u16 {
    let sum = (!check as u32)
        + (!(from >> 16) & 0xffff)
        + (!from & 0xffff)
        + (to >> 16)
        + (to & 0xffff);
    !fold(sum)
}

/// The checksum after a 16-byte address changed (an IPv6 address in a
/// pseudo-header; for IPv4 the mapped prefix is the same on both sides and
/// cancels out, leaving `replace32` of the last word).
#[inline(always)]
pub fn replace_addr(check: u16, from: &crate::addr::Addr, to: &crate::addr::Addr) -> u16 {
    let mut check = check;
    for i in 0..4 {
        check = replace32(check, from.words[i], to.words[i]);
    }
    check
}

/// The unfolded one's-complement sum of `bytes` as big-endian 16-bit words
/// (an odd last byte is padded with zero). Sums of parts add up, so a
/// pseudo-header and a segment can be summed apart.
#[inline(always)]
pub fn sum(bytes: &[u8]) -> u32 {
    let mut total: u32 = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        total += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    if i < bytes.len() {
        total += (bytes[i] as u32) << 8;
    }
    total
}

/// The checksum field, big-endian, for a `sum` over everything it covers
/// (with the field itself zero).
#[inline(always)]
pub fn finish(sum: u32) -> [u8; 2] {
    (!fold(sum)).to_be_bytes()
}

/// The UDP checksum after an update: 0 means "no checksum" in UDP and stays
/// 0; a computed 0 is sent as 0xffff (RFC 768).
#[inline(always)]
pub fn udp_adjust(old: u16, new: u16) -> u16 {
    match (old, new) {
        (0, _) => 0,
        (_, 0) => 0xffff,
        (_, n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full checksum over 16-bit big-endian words, the reference the
    /// incremental update must agree with.
    fn full(words: &[u16]) -> u16 {
        let mut sum: u32 = 0;
        for w in words {
            sum += *w as u32;
        }
        !fold(sum)
    }

    #[test]
    fn replace16_matches_full_recompute() {
        let cases: &[(&[u16], usize, u16)] = &[
            (&[0x4500, 0x0073, 0x0000, 0x4000, 0x4011, 0xc0a8, 0x0001, 0xc0a8, 0x00c7], 2, 0x1234),
            (&[0xffff, 0x0000, 0x8000], 1, 0xffff),
            (&[0x0001, 0xfffe], 0, 0x0000),
            (&[0x1f90, 0x0050, 0xabcd], 1, 0x1f90),
        ];
        for (words, index, to) in cases {
            let before = full(words);
            let mut changed = words.to_vec();
            let from = changed[*index];
            changed[*index] = *to;
            let expected = full(&changed);
            let got = replace16(before, from, *to);
            // 0x0000 and 0xffff are the same value in one's complement.
            assert!(
                got == expected || (got ^ expected) == 0xffff && (got == 0 || got == 0xffff),
                "{words:x?}[{index}] -> {to:#x}: got {got:#x}, want {expected:#x}"
            );
        }
    }

    #[test]
    fn replace32_matches_full_recompute() {
        let header = [0x4500u16, 0x003c, 0x1c46, 0x4000, 0x4006, 0x0000, 0xac10, 0x0a63, 0xac10, 0x0a0c];
        let before = full(&header);
        for to in [0x0a60_0001u32, 0xc000_0201, 0xffff_ffff, 0x0000_0000, 0x0af4_0102] {
            let mut changed = header;
            changed[8] = (to >> 16) as u16;
            changed[9] = to as u16;
            let from = 0xac10_0a0cu32;
            assert_eq!(replace32(before, from, to), full(&changed), "to {to:#x}");
        }
    }

    #[test]
    fn replace_addr_matches_full_recompute() {
        use crate::addr::Addr;
        let from = Addr::from_octets([0xfd, 0, 0, 0x10, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa]);
        let to = Addr::from_octets([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0xab, 0xcd, 0, 0, 0x12, 0x34, 0x56, 0x78]);
        let packet = |addr: &Addr| {
            let mut bytes = addr.octets().to_vec();
            bytes.extend_from_slice(&[0x00, 0x50, 0x1f, 0x90, 0xde, 0xad]);
            bytes
        };
        let before = u16::from_be_bytes(finish(sum(&packet(&from))));
        let after = u16::from_be_bytes(finish(sum(&packet(&to))));
        // Fields are loaded from the wire in native order, so is the checksum.
        let updated = replace_addr(before.to_be(), &from, &to);
        assert_eq!(u16::from_be(updated), after);
    }

    #[test]
    fn full_sum_matches_rfc1071_and_splits_into_parts() {
        // The IPv4 header of RFC 1071's companion examples: checksum 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
            0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum(&header)), [0xb8, 0x61]);
        let mut filled = header;
        filled[10..12].copy_from_slice(&finish(sum(&header)));
        assert_eq!(finish(sum(&filled)), [0, 0], "a header with its checksum sums to all ones");
        assert_eq!(sum(&header[..8]) + sum(&header[8..]), sum(&header));
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600, "odd byte padded on the right");
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn udp_zero_checksum_rules() {
        assert_eq!(udp_adjust(0, 0x1234), 0, "absent checksum stays absent");
        assert_eq!(udp_adjust(0x1111, 0), 0xffff, "computed zero is sent as all ones");
        assert_eq!(udp_adjust(0x1111, 0x2222), 0x2222);
    }
}
