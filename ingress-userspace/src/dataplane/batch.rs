//! Batched map writes and reads: `BPF_MAP_UPDATE_BATCH`,
//! `BPF_MAP_DELETE_BATCH` and `BPF_MAP_LOOKUP_BATCH` (Linux 5.6) write or read
//! a run of entries of one map in one bpf(2) call instead of one call (two,
//! for a read through aya's iterator) per entry. aya 0.14 has no API for
//! them, so the syscall is made here on the map's file descriptor.
//!
//! The kernel applies a batch's entries one after the other, in array order,
//! exactly as that many single writes would (`generic_map_update_batch` and
//! `generic_map_delete_batch` in kernel/bpf/syscall.c): a packet sees the same
//! intermediate states, and on a failure the kernel stops at the failing
//! entry and reports how many were written before it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

/// `enum bpf_cmd` values (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// The kernel's own "not supported" errno (include/linux/errno.h, absent
/// from libc): what a map type without batch ops (e.g. an LPM trie) answers.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h). The
/// kernel zero-fills the rest of the union when `size` is smaller.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    /// In: entries in `keys` (and `values`). Out: entries written.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

#[derive(Debug)]
pub enum BatchError {
    /// The kernel has no batch op for this map type, or no batch ops at
    /// all: nothing was written, single writes are the way.
    Unsupported,
    /// The entries before `done` were written; entry `done` failed, as
    /// `error` says (naming the command and the entry).
    Failed { done: usize, error: io::Error },
}

/// Writes `keys[i]` = `values[i]` in order (BPF_ANY).
///
/// `K` and `V` must have the map's key and value sizes (aya's typed maps
/// checked that when they were opened).
pub fn update<K: Pod, V: Pod>(map: BorrowedFd, keys: &[K], values: &[V]) -> Result<(), BatchError> {
    assert_eq!(keys.len(), values.len(), "a batch needs one value per key");
    run(BPF_MAP_UPDATE_BATCH, map, keys, values.as_ptr() as u64)
}

/// Deletes `keys` in order; a missing key fails like a single delete (ENOENT).
pub fn delete<K: Pod>(map: BorrowedFd, keys: &[K]) -> Result<(), BatchError> {
    run(BPF_MAP_DELETE_BATCH, map, keys, 0)
}

fn run<K: Pod>(command: libc::c_long, map: BorrowedFd, keys: &[K], values: u64) -> Result<(), BatchError> {
    if keys.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(keys.len()).expect("a batch of fewer than 2^32 entries");
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values,
        count,
        map_fd: map.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` is the kernel's layout for batch commands and lives
    // across the call; `keys` and `values` point at `count` entries of the
    // map's key and value sizes, which the kernel only reads; the kernel
    // writes only `attr.count`, and `size` bounds what it reads of `attr`.
    let result = unsafe { libc::syscall(libc::SYS_bpf, command, &mut attr as *mut BatchAttr, size_of::<BatchAttr>()) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    // The kernel writes `count` back once it has tried entries; a call
    // refused before that (bad command, flags, fd) leaves it as it was.
    let done = if (attr.count as usize) < keys.len() { attr.count as usize } else { 0 };
    match error.raw_os_error() {
        // No batch op for this map type (ENOTSUPP), or a kernel that does
        // not know the command or its attributes (EINVAL). A first entry the
        // map refuses says EINVAL too, and its single write then reports it.
        Some(ENOTSUPP | libc::EOPNOTSUPP | libc::EINVAL) if done == 0 => Err(BatchError::Unsupported),
        _ => {
            let command = if command == BPF_MAP_UPDATE_BATCH { "bpf_map_update_batch" } else { "bpf_map_delete_batch" };
            let error = io::Error::new(error.kind(), format!("{command} failed at entry {done} of {count}: {error}"));
            Err(BatchError::Failed { done, error })
        }
    }
}

/// Entries a read asks for per call: a hash map answers ENOSPC when one of
/// its buckets holds more, and the read then asks for twice as many.
const READ_PER_CALL: usize = 1024;

/// Every entry of a hash map, in the kernel's bucket order.
pub fn read_all<K: Pod, V: Pod>(map: BorrowedFd) -> Result<Vec<(K, V)>, BatchError> {
    read(map, None, usize::MAX)
}

/// Entries `first .. first + count` of an array map (fewer past its end),
/// each with its index.
pub fn read_array<V: Pod>(map: BorrowedFd, first: u32, count: usize) -> Result<Vec<(u32, V)>, BatchError> {
    // An array's batch position is the last index read: the read resumes
    // after it.
    read(map, first.checked_sub(1).map(u64::from), count)
}

/// Reads up to `limit` entries from the batch position `from` (the start
/// when `None`): a hash map's next bucket or an array's last index, in the
/// low 32 bits, as the kernel hands them out (`htab_map_lookup_batch`,
/// `generic_map_lookup_batch`). Ends at the map's end (ENOENT).
fn read<K: Pod, V: Pod>(map: BorrowedFd, mut from: Option<u64>, limit: usize) -> Result<Vec<(K, V)>, BatchError> {
    let mut entries = Vec::new();
    let mut per_call = READ_PER_CALL;
    while entries.len() < limit {
        let want = per_call.min(limit - entries.len());
        // SAFETY: `Pod` types are plain data, valid as all zeros.
        let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; want];
        let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; want];
        let mut next: u64 = 0;
        let mut attr = BatchAttr {
            in_batch: from.as_ref().map_or(0, |position| position as *const u64 as u64),
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(want).expect("a read of fewer than 2^32 entries"),
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is the kernel's layout for batch commands and lives
        // across the call; `keys` and `values` have room for `count` entries
        // of the map's key and value sizes, and `next` for a batch position
        // (4 bytes for a hash map, the key size (4) for an array).
        let result = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &mut attr as *mut BatchAttr, size_of::<BatchAttr>()) };
        let error = (result != 0).then(io::Error::last_os_error);
        let got = (attr.count as usize).min(want);
        entries.extend(keys.into_iter().zip(values).take(got));
        match error.as_ref().and_then(io::Error::raw_os_error) {
            None => from = Some(next),
            Some(libc::ENOENT) => break,
            Some(libc::ENOSPC) if got == 0 => per_call *= 2,
            Some(ENOTSUPP | libc::EOPNOTSUPP | libc::EINVAL) if entries.is_empty() => return Err(BatchError::Unsupported),
            Some(_) => {
                let error = error.expect("an errno comes with an error");
                let done = entries.len();
                let error = io::Error::new(error.kind(), format!("bpf_map_lookup_batch failed after {done} entries: {error}"));
                return Err(BatchError::Failed { done, error });
            }
        }
    }
    Ok(entries)
}
