//! The traffic of one measurement, from the client namespace. Every loop is
//! bounded by a count, by a time limit and by the stop flag (Ctrl-C); every
//! request by the socket timeouts of [`TcpSession`].

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};

use super::one_cpu::SplitCpus;
use crate::netns::NetNs;
use crate::traffic::TcpSession;

/// Requests on a fresh connection before timing starts (ARP, caches, conntrack).
const WARMUP: usize = 20;
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
pub struct Bounds<'a> {
    pub stop: &'a AtomicBool,
    /// Each workload ends after this long, with the samples it has.
    pub limit: Duration,
}

impl Bounds<'_> {
    fn check(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Result<Percentiles> {
        ensure!(!samples.is_empty(), "no request completed");
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
        Ok(Percentiles { p50: at(0.50), p99: at(0.99), p999: at(0.999) })
    }
}

/// Waits until `to` has answered 10 new connections in a row: right after a
/// switch of contenders, the previous dataplane may still be going away.
pub fn settle(from: &NetNs, to: SocketAddrV4, bounds: Bounds) -> Result<()> {
    let start = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 10 {
        bounds.check()?;
        if start.elapsed() > SETTLE_LIMIT {
            bail!("{to} did not answer 10 connections in a row within {SETTLE_LIMIT:?}");
        }
        match TcpSession::open_timeout(from, to, Duration::from_millis(500)).and_then(|mut s| s.request()) {
            Ok(_) => in_a_row += 1,
            Err(_) => {
                in_a_row = 0;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Ok(())
}

/// RR: `count` requests on one persistent connection.
pub fn request_response(from: &NetNs, to: SocketAddrV4, count: usize, bounds: Bounds) -> Result<Percentiles> {
    let mut session = TcpSession::open(from, to)?;
    for _ in 0..WARMUP {
        session.request()?;
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(count);
    while samples.len() < count && start.elapsed() < bounds.limit {
        bounds.check()?;
        let sent = Instant::now();
        session.request()?;
        samples.push(sent.elapsed());
    }
    Percentiles::of(samples)
}

/// CRR: a new connection for every request. Returns the latencies (connect,
/// request, reply, close) and the rate in connections per second.
pub fn connect_request_response(from: &NetNs, to: SocketAddrV4, count: usize, bounds: Bounds) -> Result<(Percentiles, f64)> {
    for _ in 0..WARMUP {
        TcpSession::open(from, to)?.request()?;
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(count);
    while samples.len() < count && start.elapsed() < bounds.limit {
        bounds.check()?;
        let sent = Instant::now();
        TcpSession::open(from, to)?.request()?;
        samples.push(sent.elapsed());
    }
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    Ok((Percentiles::of(samples)?, rate))
}

/// `threads` persistent connections, `per_thread` requests each. Returns
/// requests per second and this process's CPU time per request: the client,
/// the echo pods (threads of this process) and the kernel's forwarding and
/// translation work done in their context. The clients on one CPU and the
/// pods on another where there are two (`SplitCpus`).
pub fn throughput(from: &NetNs, to: SocketAddrV4, threads: usize, per_thread: usize, bounds: Bounds) -> Result<(f64, f64)> {
    let mut sessions = (0..threads).map(|_| TcpSession::open(from, to)).collect::<Result<Vec<_>>>()?;
    // Answered once, so that every pod's thread of a session is there to
    // be pinned.
    for session in &mut sessions {
        session.request()?;
    }
    let split = SplitCpus::pin()?;
    let split = split.as_ref();
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    let done: Vec<Result<usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = sessions
            .into_iter()
            .map(|mut session| {
                scope.spawn(move || -> Result<usize> {
                    split.map(SplitCpus::enter_client).transpose()?;
                    let mut n = 0;
                    while n < per_thread && start.elapsed() < bounds.limit {
                        bounds.check()?;
                        session.request()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| bail!("a traffic thread panicked"))).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (process_cpu_time() - cpu_before).as_secs_f64();
    let requests: usize = done.into_iter().sum::<Result<usize>>()?;
    ensure!(requests > 0, "no request completed");
    Ok((requests as f64 / elapsed, cpu * 1e6 / requests as f64))
}

/// Sends a request on a new connection every millisecond until one of
/// `pods` answers; returns how long after `since` that was.
pub fn first_answer_from(from: &NetNs, to: SocketAddrV4, pods: &[&str], since: Instant, bounds: Bounds) -> Result<Duration> {
    first_answer_while(from, to, pods, since, bounds, || Ok(()))
}

/// [`first_answer_from`], giving up with `going`'s error (the programming
/// process exited, say) instead of probing on until the limit.
pub fn first_answer_while(
    from: &NetNs,
    to: SocketAddrV4,
    pods: &[&str],
    since: Instant,
    bounds: Bounds,
    mut going: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    while since.elapsed() < bounds.limit {
        bounds.check()?;
        going()?;
        // A failed probe is normal while the rules are swapped: keep probing.
        if let Ok(reply) = TcpSession::open_timeout(from, to, Duration::from_millis(200)).and_then(|mut s| s.request())
            && pods.contains(&reply.pod.as_str())
        {
            return Ok(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("none of {pods:?} answered on {to} within {:?}", bounds.limit)
}

fn process_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a writable rusage; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
