//! Runs the single-connection workloads (RR and CRR) with every thread of
//! this process (the client and the lab's echo pods) on one CPU, for every
//! contender alike, as netperf's `-T` pins both ends. The kernel then does
//! all of an exchange's work (softirqs included: a veth hands a packet to
//! the backlog of the CPU that sent it) on that CPU, so the latency is the
//! path's cost, not the luck of where the scheduler put the two ends: on a
//! VM whose idle CPUs halt, a wake-up on the other CPU costs tens of µs,
//! and unpinned RR rounds on the same machine ranged from 6 to 62 µs.

use std::mem::MaybeUninit;

use anyhow::{Context, Result, bail};

/// Every thread of the process on one CPU until dropped; then back on the
/// CPUs the calling thread had, threads started meanwhile included.
pub struct OneCpu {
    before: libc::cpu_set_t,
}

impl OneCpu {
    /// Pins to the first CPU the calling thread may use.
    pub fn pin() -> Result<OneCpu> {
        let before = affinity(0)?;
        let cpu = *cpus(&before).first().context("this thread may run on no CPU")?;
        let pinned = OneCpu { before };
        set_all(&only(cpu))?;
        Ok(pinned)
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        restore(&self.before);
    }
}

/// The throughput workload's CPUs, for every contender alike: the process's
/// threads (the lab's echo pods) on the second CPU the calling thread may
/// use, and each client thread, once it calls `enter_client`, on the first,
/// as netperf's `-T 0,1` places its two ends. Unpinned, the scheduler moved
/// the eight clients and their pods between the two CPUs from round to
/// round, and a contender's rounds spread wider than the gaps between
/// contenders. Until dropped.
pub struct SplitCpus {
    before: libc::cpu_set_t,
    client: libc::cpu_set_t,
}

impl SplitCpus {
    /// `None` where the calling thread may use one CPU only.
    pub fn pin() -> Result<Option<SplitCpus>> {
        let before = affinity(0)?;
        let &[client, pods, ..] = cpus(&before).as_slice() else { return Ok(None) };
        let split = SplitCpus { before, client: only(client) };
        set_all(&only(pods))?;
        Ok(Some(split))
    }

    /// Moves the calling thread to the clients' CPU.
    pub fn enter_client(&self) -> Result<()> {
        // SAFETY: the kernel reads `size_of` bytes from the set.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.client) } != 0 {
            bail!("sched_setaffinity of a client thread: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SplitCpus {
    fn drop(&mut self) {
        restore(&self.before);
    }
}

fn restore(before: &libc::cpu_set_t) {
    if let Err(error) = set_all(before) {
        eprintln!("bench: restoring the CPUs of its threads: {error:#}");
    }
}

/// The CPUs in `set`, lowest first.
fn cpus(set: &libc::cpu_set_t) -> Vec<usize> {
    // SAFETY: reads a set the kernel filled in, below its size.
    (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) }).collect()
}

/// The set of `cpu` alone.
fn only(cpu: usize) -> libc::cpu_set_t {
    let mut set = empty_set();
    // SAFETY: `cpu` came from a set, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: a cpu_set_t is plain bits; all zero is the empty set.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// The CPUs thread `tid` may run on (0: the calling thread).
fn affinity(tid: libc::pid_t) -> Result<libc::cpu_set_t> {
    let mut set = empty_set();
    // SAFETY: the kernel writes at most `size_of` bytes into `set`.
    if unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(set)
}

/// Sets `set` on every thread of the process. A thread that ended while the
/// list was read is skipped.
fn set_all(set: &libc::cpu_set_t) -> Result<()> {
    for task in std::fs::read_dir("/proc/self/task").context("listing this process's threads")? {
        let Some(tid) = task?.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok()) else { continue };
        // SAFETY: the kernel reads `size_of` bytes from `set`.
        if unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), set) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                bail!("sched_setaffinity of thread {tid}: {error}");
            }
        }
    }
    Ok(())
}
