//! The benchmark run by `cargo xtask bench l7`: see `ingress_tests::bench::l7`.
//! Prints the markdown table on stdout; progress goes to stderr.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ingress_tests::bench::cli::CommonArgs;
use ingress_tests::bench::{Named, command_line};
use ingress_tests::bench::l7::{Config, Contender, Pods, run_l7};
use ingress_tests::interrupt::on_ctrl_c;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
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
    #[arg(long, value_delimiter = ',', value_parser = Contender::from_name)]
    contenders: Option<Vec<Contender>>,
    /// Only these kinds of pods, comma-separated (close, keep-alive); default both.
    #[arg(long, value_delimiter = ',', value_parser = Pods::from_name)]
    pods: Option<Vec<Pods>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let agent = args.common.agent_to_run()?;
    let base = if args.common.quick { Config::quick(agent, args.common.out) } else { Config::standard(agent, args.common.out) };
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
