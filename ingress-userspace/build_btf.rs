//! Makes the eBPF object's BTF acceptable to the kernel, for `build.rs`.
//!
//! LLVM describes a Rust enum whose tag sits in a niche of its payload (an
//! `Option<Translation>`, whose `None` is a value `Translation::side` never
//! takes) as a union whose tag member has the niche's offset. The kernel
//! wants every union member at offset 0 and refuses the whole BTF
//! ("Invalid member bits_offset"); aya then loads the programs without it,
//! and the verifier, with no function records, checks `lb_snat_prepare`
//! again for every state of its callers (see `ingress-ebpf/src/snat.rs`).
//! Such types only describe functions' arguments and results to a
//! debugger; the verifier reads no member of them. So their members are
//! put at offset 0, in place: the section keeps its size and layout.

/// Puts every union member of the `.BTF` section of the ELF object `elf` at
/// offset 0; returns how many were moved. An object without BTF is left
/// as it is.
pub fn fix_union_offsets(elf: &mut [u8]) -> Result<usize, String> {
    let Some(range) = section(elf, ".BTF")? else { return Ok(0) };
    fix_btf(&mut elf[range])
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, String> {
    bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(|| format!("truncated at byte {at}"))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| format!("truncated at byte {at}"))
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, String> {
    Ok(u64::from(read_u32(bytes, at)?) | u64::from(read_u32(bytes, at + 4)?) << 32)
}

fn to_usize(value: u64) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("offset {value} out of range"))
}

/// The byte range of section `name` in a 64-bit little-endian ELF object.
fn section(elf: &[u8], name: &str) -> Result<Option<std::ops::Range<usize>>, String> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a 64-bit little-endian ELF object".into());
    }
    let headers = to_usize(read_u64(elf, 0x28)?)?;
    let header_size = usize::from(read_u16(elf, 0x3a)?);
    let count = usize::from(read_u16(elf, 0x3c)?);
    let header = |index: usize| headers + index * header_size;
    let names = header(usize::from(read_u16(elf, 0x3e)?));
    let names_at = to_usize(read_u64(elf, names + 24)?)?;
    for index in 0..count {
        let at = header(index);
        let name_at = names_at + read_u32(elf, at)? as usize;
        let found = elf.get(name_at..).and_then(|rest| rest.split(|byte| *byte == 0).next());
        if found == Some(name.as_bytes()) {
            let start = to_usize(read_u64(elf, at + 24)?)?;
            let end = start + to_usize(read_u64(elf, at + 32)?)?;
            if end > elf.len() {
                return Err(format!("section {name} runs past the end of the object"));
            }
            return Ok(Some(start..end));
        }
    }
    Ok(None)
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_UNION: u32 = 5;

/// Bytes that follow a type's 12-byte header: fixed, and per member.
fn trailing(kind: u32) -> Result<(usize, usize), String> {
    Ok(match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        2 | 7..=12 | 16 | 18 => (0, 0),
        // INT, VAR, DECL_TAG
        1 | 14 | 17 => (4, 0),
        // ARRAY
        3 => (12, 0),
        // STRUCT, UNION, DATASEC, ENUM64
        4 | 5 | 15 | 19 => (0, 12),
        // ENUM, FUNC_PROTO
        6 | 13 => (0, 8),
        other => return Err(format!("unknown BTF kind {other}")),
    })
}

fn fix_btf(btf: &mut [u8]) -> Result<usize, String> {
    if read_u16(btf, 0)? != BTF_MAGIC {
        return Err("the .BTF section has no BTF magic".into());
    }
    let header_len = read_u32(btf, 4)? as usize;
    let start = header_len + read_u32(btf, 8)? as usize;
    let end = start + read_u32(btf, 12)? as usize;
    if end > btf.len() {
        return Err("the BTF types run past the section".into());
    }
    let mut at = start;
    let mut moved = 0;
    while at < end {
        let info = read_u32(btf, at + 4)?;
        let (kind, members, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31 == 1);
        let (fixed, per_member) = trailing(kind)?;
        at += 12 + fixed;
        if kind == KIND_UNION {
            for member in 0..members {
                let offset_at = at + member * 12 + 8;
                let offset = read_u32(btf, offset_at)?;
                // With kind_flag the top byte is a bitfield's size, kept.
                let bits = if kind_flag { offset & 0x00ff_ffff } else { offset };
                if bits != 0 {
                    btf[offset_at..offset_at + 4].copy_from_slice(&(offset - bits).to_le_bytes());
                    moved += 1;
                }
            }
        }
        at += per_member * members;
    }
    if at != end {
        return Err("the last BTF type runs past the types".into());
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btf_type(name: u32, kind: u32, kind_flag: bool, members: u32, size: u32) -> Vec<u8> {
        let info = kind << 24 | members | u32::from(kind_flag) << 31;
        [name, info, size].iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    fn member(name: u32, type_id: u32, offset: u32) -> Vec<u8> {
        [name, type_id, offset].iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    fn section(types: &[Vec<u8>]) -> Vec<u8> {
        let types: Vec<u8> = types.concat();
        let strings = b"\0".to_vec();
        let mut btf = Vec::new();
        btf.extend(BTF_MAGIC.to_le_bytes());
        btf.extend([1, 0]);
        for word in [24, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            btf.extend(word.to_le_bytes());
        }
        btf.extend(types);
        btf.extend(strings);
        btf
    }

    fn offsets(btf: &[u8], members_at: usize, count: usize) -> Vec<u32> {
        (0..count).map(|i| read_u32(btf, members_at + i * 12 + 8).unwrap()).collect()
    }

    #[test]
    fn union_members_move_to_offset_0_and_nothing_else_changes() {
        let int = [btf_type(0, 1, false, 0, 4), 32u32.to_le_bytes().to_vec()].concat();
        let structure = [btf_type(0, 4, false, 2, 8), member(0, 1, 0), member(0, 1, 32)].concat();
        let union = [btf_type(0, 5, false, 3, 24), member(0, 1, 176), member(0, 2, 0), member(0, 2, 64)].concat();
        let bitfields = [btf_type(0, 5, true, 1, 4), member(0, 1, 3 << 24 | 5)].concat();
        let mut btf = section(&[int.clone(), structure.clone(), union.clone(), bitfields.clone()]);
        let original = btf.clone();
        assert_eq!(fix_btf(&mut btf), Ok(3));
        let structure_members = 24 + int.len() + 12;
        let union_members = structure_members + structure.len();
        let bitfield_members = union_members + union.len();
        assert_eq!(offsets(&btf, structure_members, 2), [0, 32], "struct members keep their offsets");
        assert_eq!(offsets(&btf, union_members, 3), [0, 0, 0]);
        assert_eq!(offsets(&btf, bitfield_members, 1), [3 << 24], "a bitfield keeps its size");
        let changed = btf.iter().zip(&original).filter(|(a, b)| a != b).count();
        assert!(changed <= 3 * 4, "only offsets change, {changed} bytes did");
        assert_eq!(fix_btf(&mut btf), Ok(0), "a second pass finds nothing to move");
    }

    #[test]
    fn malformed_btf_is_an_error_not_a_guess() {
        let mut not_btf = vec![0u8; 32];
        assert!(fix_btf(&mut not_btf).unwrap_err().contains("magic"));
        let mut unknown_kind = section(&[btf_type(0, 30, false, 0, 0)]);
        assert_eq!(fix_btf(&mut unknown_kind), Err("unknown BTF kind 30".into()));
        let mut cut = section(&[[btf_type(0, 5, false, 2, 8), member(0, 1, 0)].concat()]);
        assert!(fix_btf(&mut cut).is_err(), "a union missing a member");
    }

    #[test]
    fn the_embedded_object_has_btf_and_build_rs_fixed_it() {
        let mut object = include_bytes!(concat!(env!("OUT_DIR"), "/ingress-ebpf.o")).to_vec();
        if object.is_empty() {
            eprintln!("skipped: built with INGRESS_EBPF_STUB, no eBPF object");
            return;
        }
        assert!(super::section(&object, ".BTF").unwrap().is_some(), "the eBPF object has no BTF");
        assert_eq!(fix_union_offsets(&mut object), Ok(0));
        assert!(fix_union_offsets(&mut b"not an object".to_vec()).is_err());
    }
}
