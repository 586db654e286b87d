//! `ingress-userspace`: the node agent of the eBPF load balancer.

mod run_args;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ingress_userspace::{agent, check};
use ingress_userspace::dataplane::pin_dir::remove_pins;
use ingress_userspace::dataplane::ebpf::DEFAULT_PIN_DIR;
use ingress_userspace::state;
use run_args::RunArgs;

#[global_allocator]
static ALLOCATOR: ingress_userspace::AgentAllocator = ingress_userspace::AgentAllocator;

#[derive(Parser)]
#[command(version, about = "eBPF Service load balancer for Kubernetes nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Program this node from the API server or from a directory of manifests,
    /// and keep it in step with their changes.
    Run(Box<RunArgs>),
    /// Print the programmed state read from the pinned maps.
    State {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Before migrating from ingress-nginx: print, per Ingress, what will be
    /// served (host, path, match type, backend, annotations in effect) and
    /// what is ignored and why. Read-only; exit status 1 when anything is
    /// malformed.
    Check(CheckArgs),
    /// Detach the programs and remove the pinned maps (uninstall). The agent
    /// itself never does this: its programs stay attached across restarts.
    Cleanup {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["manifests", "kubernetes"])))]
struct CheckArgs {
    /// Directory of Kubernetes YAML, as `run --manifests` reads it.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// List the objects from the API server (in-cluster, or as KUBECONFIG says).
    #[arg(long)]
    kubernetes: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // One line, the cause and the fix: never anyhow's multi-line report
    // (with a backtrace wherever RUST_BACKTRACE is set).
    if let Err(error) = execute(Cli::parse().command) {
        eprintln!("error: {}", one_line(&error));
        std::process::exit(1);
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(agent::run(args.into_config()?, shutdown_signal())),
        Command::Check(args) => {
            let loaded = match args.manifests {
                Some(dir) => ingress_userspace::manifests::load_dir(&dir)?,
                None => tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(check::load_cluster())?,
            };
            let report = check::report(&loaded);
            print!("{}", report.text);
            anyhow::ensure!(report.errors == 0, "{} errors: what they name is dropped or ignored when served", report.errors);
            Ok(())
        }
        Command::State { pin_dir } => {
            print!("{}", state::render(&pin_dir)?);
            Ok(())
        }
        Command::Cleanup { pin_dir } => {
            println!("{}", remove_pins(&pin_dir)?);
            Ok(())
        }
    }
}

/// The error's chain on one line; a cause that spans lines (a verifier log)
/// keeps its first line.
fn one_line(error: &anyhow::Error) -> String {
    error.chain().map(|cause| cause.to_string().lines().next().unwrap_or_default().to_owned()).collect::<Vec<_>>().join(": ")
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_chain_is_one_line_and_a_multi_line_cause_keeps_its_first() {
        let error = anyhow::anyhow!("the verifier rejected it:\n0: (b7) r0 = 0\n1: (95) exit").context("loading lb_xdp");
        assert_eq!(one_line(&error), "loading lb_xdp: the verifier rejected it:");
    }
}
