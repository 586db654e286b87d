//! The programs' clock for idle timeouts (conntrack, SNAT, session
//! affinity): the kernel's coarse monotonic time, as of the last tick. Its
//! read is a few loads, where the precise clock reads the TSC, which on a
//! VM costs tens of nanoseconds per call, on every packet of a flow. The
//! agent compares these stamps with `CLOCK_MONOTONIC`, of the same origin:
//! a stamp lags it by less than a tick (at most 10 ms at HZ=100), and the
//! shortest timeout is seconds.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}
