//! The benchmark run by `cargo xtask bench l4`: see `ingress_tests::bench`.
//! Prints the markdown table on stdout; progress goes to stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ingress_tests::interrupt::on_ctrl_c;
use ingress_tests::bench::{Config, Contender, command_line, run_l4};
use ingress_tests::is_root;
use ingress_userspace::dataplane::uplink_hook::UplinkHookChoice;

#[derive(Parser)]
struct Args {
    /// The agent binary (default: `ingress-userspace` beside this binary).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where l4.md, l4.json and l4-latency.png go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// CI mode: tiny sizes and counts; checks that everything runs.
    #[arg(long)]
    quick: bool,
    /// Numbers of Services, comma-separated (default 1,1000,10000,30000).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Rounds per size; contenders alternate within each.
    #[arg(long)]
    rounds: Option<usize>,
    /// Requests on the persistent connection (RR) per measurement.
    #[arg(long)]
    rr_requests: Option<usize>,
    /// New connections (CRR) per measurement.
    #[arg(long)]
    crr_requests: Option<usize>,
    /// Connections of the throughput workload.
    #[arg(long)]
    threads: Option<usize>,
    /// Requests per connection of the throughput workload.
    #[arg(long)]
    requests_per_thread: Option<usize>,
    /// Contenders to run, comma-separated (default direct,ebpf,iptables).
    #[arg(long, value_delimiter = ',')]
    contenders: Option<Vec<String>>,
    /// Budget of the whole run in seconds: later rounds are skipped past it.
    #[arg(long)]
    time_limit_s: Option<u64>,
    /// The agent's `--uplink-hook` for `ebpf`: auto (TC ingress on the lab's
    /// veth uplink), xdp or tc.
    #[arg(long, default_value_t = UplinkHookChoice::Auto, value_parser = parse_uplink_hook)]
    uplink_hook: UplinkHookChoice,
}

fn parse_uplink_hook(text: &str) -> Result<UplinkHookChoice, String> {
    text.parse()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !is_root() {
        bail!("the benchmark creates network namespaces and loads eBPF programs: run it as root");
    }
    let agent = match args.agent {
        Some(agent) => agent,
        None => std::env::current_exe()?.parent().context("the binary's directory")?.join("ingress-userspace"),
    };
    let base = if args.quick { Config::quick(agent, args.out) } else { Config::standard(agent, args.out) };
    let contenders = match args.contenders {
        None => base.contenders.clone(),
        Some(names) => names
            .iter()
            .map(|name| Contender::parse(name).with_context(|| format!("no contender {name:?} (direct, ebpf, iptables)")))
            .collect::<Result<_>>()?,
    };
    let config = Config {
        contenders,
        sizes: args.sizes.unwrap_or(base.sizes.clone()),
        rounds: args.rounds.unwrap_or(base.rounds),
        rr_requests: args.rr_requests.unwrap_or(base.rr_requests),
        crr_requests: args.crr_requests.unwrap_or(base.crr_requests),
        threads: args.threads.unwrap_or(base.threads),
        requests_per_thread: args.requests_per_thread.unwrap_or(base.requests_per_thread),
        time_limit: args.time_limit_s.map_or(base.time_limit, Duration::from_secs),
        command: command_line(),
        uplink_hook: args.uplink_hook,
        ..base
    };
    let interrupted = on_ctrl_c()?;
    run_l4(&config, &interrupted)?.print();
    Ok(())
}
