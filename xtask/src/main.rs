//! `cargo xtask`: the one entry point for building, the lab and the tests.
//! Every command installs what it needs first (idempotently) and says what
//! failed and what to do when something does.

mod bench;
mod build;
#[cfg(test)]
mod imports;
mod install;
mod kind;
mod run;
mod shell;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run the lab and test the eBPF load balancer")]
struct Cli {
    /// Stream the output of every step (apt, cargo, the lab's agent) instead
    /// of keeping it in log files.
    #[arg(long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the prerequisites: Debian packages, nightly rust-src, bpf-linker.
    Install,
    /// Build the eBPF object and the agent (release).
    Build,
    /// Build, set up the network-namespace lab, run the agent on
    /// deploy/examples, send traffic, print who answered, tear down.
    Lab {
        /// Leave the lab running until Ctrl-C and print how to poke at it.
        #[arg(long)]
        keep: bool,
    },
    /// Build and run the whole test suite, privileged tests included (root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
    /// Create a kind cluster without kube-proxy, build and load the image,
    /// apply deploy/, check a ClusterIP, a NodePort and an Ingress, delete
    /// the cluster. Needs docker, kind and kubectl (see the README).
    Kind,
    /// Build, set up the lab, benchmark, tear down; prints a markdown table
    /// and writes JSON and a PNG plot (results/ by default).
    Bench {
        suite: bench::Suite,
        /// CI mode: tiny sizes and counts, checks only that everything runs.
        #[arg(long)]
        quick: bool,
        /// Where the results go (default: results/ in the repository).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Extra arguments for the benchmark binary (e.g. --sizes 1,1000,10000,30000 --rounds 9).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    shell::set_verbose(cli.verbose);
    let result = match cli.command {
        Command::Install => install::all(),
        Command::Build => build::all(),
        Command::Lab { keep } => run::lab(keep),
        Command::Test { cargo_args } => run::tests(&cargo_args),
        Command::Kind => kind::run(),
        Command::Bench { suite, quick, out, args } => bench::run(suite, quick, out, &args),
    };
    if let Err(error) = result {
        eprintln!("\nxtask: {error:#}");
        std::process::exit(1);
    }
}
