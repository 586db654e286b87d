//! `ingress-userspace`: the node agent of the eBPF load balancer.

mod run_args;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ingress_userspace::agent;
use ingress_userspace::dataplane::pin_dir::remove_pins;
use ingress_userspace::dataplane::ebpf::DEFAULT_PIN_DIR;
use ingress_userspace::state;
use run_args::RunArgs;

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
    /// Detach the programs and remove the pinned maps (uninstall). The agent
    /// itself never does this: its programs stay attached across restarts.
    Cleanup {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
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
