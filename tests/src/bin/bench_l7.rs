//! The benchmark run by `cargo xtask bench l7`: see `ingress_tests::bench::l7`.
//! Prints the markdown table on stdout; progress goes to stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ingress_tests::bench::command_line;
use ingress_tests::bench::l7::{Config, Contender, Pods, run_l7};
use ingress_tests::interrupt::on_ctrl_c;
use ingress_tests::is_root;

#[derive(Parser)]
struct Args {
    /// The agent binary (default: `ingress-userspace` beside this binary).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where l7.md, l7.json and l7.png go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// CI mode: tiny durations and counts; checks that everything runs.
    #[arg(long)]
    quick: bool,
    /// Rounds; contenders alternate within each.
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds of each measured wrk run.
    #[arg(long)]
    seconds: Option<u64>,
    /// Seconds of the run per proxy during which routes change.
    #[arg(long)]
    churn_seconds: Option<u64>,
    /// Route changes per proxy in that run.
    #[arg(long)]
    changes: Option<usize>,
    /// wrk's connections.
    #[arg(long)]
    connections: Option<usize>,
    /// Budget of the rounds in seconds: later rounds are skipped past it.
    #[arg(long)]
    time_limit_s: Option<u64>,
    /// Only these contenders, comma-separated (direct, ebpf-lb, nginx, haproxy); default all.
    #[arg(long, value_delimiter = ',', value_parser = contender)]
    contenders: Option<Vec<Contender>>,
    /// Only these kinds of pods, comma-separated (close, keep-alive); default both.
    #[arg(long, value_delimiter = ',', value_parser = pods)]
    pods: Option<Vec<Pods>>,
}

fn pods(name: &str) -> Result<Pods, String> {
    Pods::from_name(name).ok_or_else(|| format!("unknown kind of pods {name:?} (close, keep-alive)"))
}

fn contender(name: &str) -> Result<Contender, String> {
    Contender::from_name(name).ok_or_else(|| format!("unknown contender {name:?} (direct, ebpf-lb, nginx, haproxy)"))
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
    let config = Config {
        rounds: args.rounds.unwrap_or(base.rounds),
        duration: args.seconds.map_or(base.duration, Duration::from_secs),
        churn_duration: args.churn_seconds.map_or(base.churn_duration, Duration::from_secs),
        changes: args.changes.unwrap_or(base.changes),
        connections: args.connections.unwrap_or(base.connections),
        time_limit: args.time_limit_s.map_or(base.time_limit, Duration::from_secs),
        contenders: args.contenders.unwrap_or(base.contenders),
        pods: args.pods.unwrap_or(base.pods),
        command: command_line(),
        ..base
    };
    let interrupted = on_ctrl_c()?;
    run_l7(&config, &interrupted)?.print();
    Ok(())
}
