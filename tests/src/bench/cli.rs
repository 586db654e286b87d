//! The options both benchmark binaries (`bench`, `bench_l7`) take, and what
//! they check before anything runs.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::is_root;

#[derive(clap::Args)]
pub struct CommonArgs {
    /// The agent binary (default: `ingress-userspace` beside this binary).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Where the table (.md), the figures (.json) and the plot (.png) go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// CI mode: tiny sizes, durations and counts; checks that everything runs.
    #[arg(long)]
    pub quick: bool,
}

impl CommonArgs {
    /// The agent binary to run, once it is clear the benchmark can run here.
    pub fn agent_to_run(&self) -> Result<PathBuf> {
        if !is_root() {
            bail!("the benchmark creates network namespaces and loads eBPF programs: run it as root");
        }
        match &self.agent {
            Some(agent) => Ok(agent.clone()),
            None => Ok(std::env::current_exe()?.parent().context("the binary's directory")?.join("ingress-userspace")),
        }
    }
}
