//! `cargo xtask bench`: builds, then runs the benchmark binary, which sets
//! the lab up, measures, tears it down and writes the results.

use std::path::PathBuf;
use std::process::Command;

use clap::ValueEnum;

use crate::build;
use crate::install;
use crate::shell::{show, step, workspace_root};

#[derive(Clone, Copy, ValueEnum)]
pub enum Suite {
    /// eBPF dataplane against kube-proxy's iptables mode and the pod IP.
    L4,
    /// The L7 proxy against nginx and HAProxy.
    L7,
}

pub fn run(suite: Suite, quick: bool, out: Option<PathBuf>, extra: &[String]) -> anyhow::Result<()> {
    if let Suite::L7 = suite {
        return l7(quick, out, extra);
    }
    install::require_root("the benchmark (network namespaces, eBPF, iptables)")?;
    build::all()?;
    step("running the L4 benchmark");
    let mut command_line = String::from("cargo xtask bench l4");
    if quick {
        command_line.push_str(" --quick");
    }
    for arg in extra {
        command_line.push(' ');
        command_line.push_str(arg);
    }
    let mut bench = Command::new(workspace_root().join("target/release/bench"));
    bench
        .arg("--agent")
        .arg(build::agent_binary())
        .arg("--out")
        .arg(out.unwrap_or_else(|| workspace_root().join("results")))
        .args(extra)
        .env("BENCH_COMMAND", command_line);
    if quick {
        bench.arg("--quick");
    }
    // The agent logs to stdout, which carries the table: keep it to warnings.
    if std::env::var_os("RUST_LOG").is_none() {
        bench.env("RUST_LOG", "warn");
    }
    show(&mut bench, "the benchmark")
}

/// `cargo xtask bench l7`: builds (which installs nginx, HAProxy and wrk if
/// missing), then runs the L7 benchmark binary.
fn l7(quick: bool, out: Option<PathBuf>, extra: &[String]) -> anyhow::Result<()> {
    install::require_root("the benchmark (network namespaces, eBPF)")?;
    build::all()?;
    step("running the L7 benchmark");
    let quick_flag = quick.then_some("--quick");
    let said: Vec<&str> = ["cargo xtask bench l7"].into_iter().chain(quick_flag).chain(extra.iter().map(String::as_str)).collect();
    show(
        Command::new(workspace_root().join("target/release/bench_l7"))
            .arg("--agent")
            .arg(build::agent_binary())
            .arg("--out")
            .arg(out.unwrap_or_else(|| workspace_root().join("results")))
            .args(quick_flag)
            .args(extra)
            .env("BENCH_COMMAND", said.join(" "))
            // The agent logs to stdout, which carries the table.
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())),
        "the L7 benchmark",
    )
}
