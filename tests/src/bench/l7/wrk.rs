//! `wrk` in the client namespace, pinned with `taskset`, and its report.

use std::net::SocketAddrV4;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::NetNs;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx/3xx responses plus socket errors (connect, read, write, timeout).
    pub failed: u64,
}

/// A load of `connections` connections for `duration`, asking `host` for `path`.
pub struct Load<'a> {
    pub client: &'a NetNs,
    pub cpus: &'a str,
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
    pub host: &'a str,
    pub path: &'a str,
}

/// A running wrk.
pub struct Running {
    child: Option<Child>,
    limit: Instant,
}

impl Load<'_> {
    pub fn start(&self, to: SocketAddrV4) -> Result<Running> {
        let (threads, connections) = (self.threads.to_string(), self.connections.max(self.threads).to_string());
        let (duration, host) = (format!("{}s", self.duration.as_secs().max(1)), format!("Host: {}", self.host));
        let url = format!("http://{to}{}", self.path);
        let args = ["-c", self.cpus, "wrk", "-t", &threads, "-c", &connections, "-d", &duration, "--timeout", "2s", "--latency", "-H", &host, &url];
        let child = self
            .client
            .exec("taskset", &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wrk (installed by `cargo xtask install`)")?;
        Ok(Running { child: Some(child), limit: Instant::now() + self.duration + Duration::from_secs(15) })
    }

    pub fn run(&self, to: SocketAddrV4) -> Result<WrkResult> {
        self.start(to)?.finish()
    }
}

impl Running {
    /// Waits for wrk's report (bounded: killed past its duration plus a margin).
    pub fn finish(mut self) -> Result<WrkResult> {
        let mut child = self.child.take().context("wrk already finished")?;
        while child.try_wait()?.is_none() {
            if Instant::now() > self.limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("wrk did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("wrk failed ({}): {} {}", output.status, String::from_utf8_lossy(&output.stderr).trim(), stdout.trim());
        }
        parse(&stdout).with_context(|| format!("reading wrk's report:\n{stdout}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the summary of `wrk --latency`.
pub fn parse(report: &str) -> Result<WrkResult> {
    let mut result = WrkResult::default();
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => result.p50_us = micros(value)?,
            ["99%", value] => result.p99_us = micros(value)?,
            [count, "requests", "in", ..] => result.requests = count.parse()?,
            ["Requests/sec:", rate] => result.requests_per_s = rate.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", count] => result.failed += count.parse::<u64>()?,
            ["Socket", "errors:", ..] => {
                for count in line.split(',').filter_map(|part| part.split_whitespace().last()) {
                    result.failed += count.parse::<u64>()?;
                }
            }
            _ => {}
        }
    }
    if result.p50_us == 0.0 || result.requests_per_s == 0.0 {
        bail!("no latency distribution or request rate in the report (did any request succeed?)");
    }
    Ok(result)
}

/// wrk prints durations as `812.00us`, `1.23ms` or `2.01s`.
fn micros(value: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("unknown duration {value:?}")
    };
    Ok(number.parse::<f64>().with_context(|| format!("duration {value:?}"))? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://198.51.100.1:8081/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  400.00us  12.00ms   90.00%
    Req/Sec    14.00k     1.00k   15.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.50s
  140000 requests in 10.00s, 20.00MB read
  Socket errors: connect 1, read 20, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  13999.50
Transfer/sec:      2.00MB
";

    #[test]
    fn reads_rate_percentiles_and_every_kind_of_failure() {
        let result = parse(REPORT).unwrap();
        assert_eq!(
            result,
            WrkResult { requests: 140_000, requests_per_s: 13_999.5, p50_us: 812.0, p99_us: 2.5e6, failed: 1 + 20 + 3 + 4 + 5 }
        );
    }

    #[test]
    fn a_clean_run_has_no_failures_and_an_empty_report_is_an_error() {
        let clean: String = REPORT.lines().filter(|l| !l.contains("errors") && !l.contains("Non-2xx")).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse(&clean).unwrap().failed, 0);
        assert!(parse("Running 1s test\n").is_err());
        assert!(micros("3.5ms").unwrap() == 3500.0 && micros("12h").is_err());
    }
}
