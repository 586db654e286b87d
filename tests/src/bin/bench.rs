//! The benchmark run by `cargo xtask bench l4`: see `ingress_tests::bench`.
//! Prints the markdown table on stdout; progress goes to stderr.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ingress_tests::interrupt::on_ctrl_c;
use ingress_tests::bench::cli::CommonArgs;
use ingress_tests::bench::manifests::ManifestFormat;
use ingress_tests::bench::{Config, Contender, Named, command_line, run_l4};
use ingress_userspace::dataplane::uplink_hook::UplinkHookChoice;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
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
    /// Contenders to run, comma-separated (default direct,ebpf,ebpf-fwd,iptables).
    #[arg(long, value_delimiter = ',', value_parser = Contender::from_name)]
    contenders: Option<Vec<Contender>>,
    /// Budget of the whole run in seconds: later rounds are skipped past it.
    #[arg(long)]
    time_limit_s: Option<u64>,
    /// The agent's `--uplink-hook` for `ebpf`: auto (TC ingress on the lab's
    /// veth uplink), xdp or tc.
    #[arg(long, default_value_t = UplinkHookChoice::Auto, value_parser = parse_uplink_hook)]
    uplink_hook: UplinkHookChoice,
    /// Endpoints of every Service but the measured one (default: 2 and 3
    /// in turn).
    #[arg(long)]
    endpoints: Option<usize>,
    /// How the agent's manifests are written: json (a List per file, the
    /// syntax the API server sends) or yaml.
    #[arg(long, value_enum, default_value_t = ManifestFormat::Json)]
    manifest_format: ManifestFormat,
}

fn parse_uplink_hook(text: &str) -> Result<UplinkHookChoice, String> {
    text.parse()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let agent = args.common.agent_to_run()?;
    let base = if args.common.quick { Config::quick(agent, args.common.out) } else { Config::standard(agent, args.common.out) };
    let config = Config {
        contenders: args.contenders.unwrap_or(base.contenders.clone()),
        sizes: args.sizes.unwrap_or(base.sizes.clone()),
        rounds: args.rounds.unwrap_or(base.rounds),
        rr_requests: args.rr_requests.unwrap_or(base.rr_requests),
        crr_requests: args.crr_requests.unwrap_or(base.crr_requests),
        threads: args.threads.unwrap_or(base.threads),
        requests_per_thread: args.requests_per_thread.unwrap_or(base.requests_per_thread),
        time_limit: args.time_limit_s.map_or(base.time_limit, Duration::from_secs),
        command: command_line(),
        uplink_hook: args.uplink_hook,
        filler_endpoints: args.endpoints,
        manifest_format: args.manifest_format,
        ..base
    };
    let interrupted = on_ctrl_c()?;
    run_l4(&config, &interrupted)?.print();
    Ok(())
}
