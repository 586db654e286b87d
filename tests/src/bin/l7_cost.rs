//! The L7 proxy's cost per request, counted: instructions (callgrind) and
//! system calls per request for each kind of pods; see
//! `ingress_tests::bench::l7::cost`. `l7_cost proxy` is the measured side,
//! started by `l7_cost measure` under valgrind.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use ingress_tests::bench::Named;
use ingress_tests::bench::l7::Pods;
use ingress_tests::bench::l7::cost::{CostConfig, measure, serve};
use ingress_tests::is_root;

// The agent's allocator: the proxy measured here must be the one it runs.
#[global_allocator]
static ALLOCATOR: ingress_userspace::AgentAllocator = ingress_userspace::AgentAllocator;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Counts the proxy's cost per request (root: it makes a network namespace).
    Measure {
        /// Kinds of pods, comma-separated (close, keep-alive).
        #[arg(long, value_delimiter = ',', value_parser = Pods::from_name, default_value = "keep-alive,close")]
        pods: Vec<Pods>,
        /// Requests of the shorter run per kind of pods.
        #[arg(long, default_value_t = 2000)]
        low: usize,
        /// Requests of the longer run; the difference is what is counted.
        #[arg(long, default_value_t = 10000)]
        high: usize,
        #[arg(long, default_value_t = 500)]
        warm_up: usize,
        /// Client connections, as wrk's in the bench.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Where callgrind's files (for callgrind_annotate) and valgrind's logs go.
        #[arg(long, default_value = "results/l7-cost")]
        out: PathBuf,
    },
    /// The measured side: the agent's L7 server on a manifest directory, until stdin closes.
    Proxy {
        #[arg(long)]
        manifests: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Mode::Proxy { manifests, listen } => serve(&manifests, listen),
        Mode::Measure { pods, low, high, warm_up, connections, out } => {
            if !is_root() {
                bail!("the cost measure creates a network namespace: run it as root");
            }
            if high <= low {
                bail!("--high must be above --low");
            }
            let config = CostConfig { proxy_binary: std::env::current_exe()?, pods, low, high, warm_up, connections, out_dir: out };
            println!("| pods | instructions/request | syscalls/request | syscalls by name (per request) | clock reads/request |");
            println!("|---|---:|---:|---|---:|");
            for cost in measure(&config)? {
                let names: Vec<String> = cost.syscalls_by_name.iter().map(|(name, count)| format!("{name} {count:.2}")).collect();
                let row = [cost.pods.name().to_owned(), format!("{:.0}", cost.instructions), format!("{:.2}", cost.syscalls), names.join(", "), format!("{:.2}", cost.clock_reads)];
                println!("| {} |", row.join(" | "));
            }
            Ok(())
        }
    }
}
