//! The lab and the tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::build;
use crate::install;
use crate::shell::{check, show, step, verbose, workspace_root};

pub fn lab(keep: bool) -> anyhow::Result<()> {
    install::require_root("the lab")?;
    build::all()?;
    step("running the lab");
    let mut lab = Command::new(workspace_root().join("target/release/lab"));
    lab.arg("--agent")
        .arg(build::agent_binary())
        .arg("--manifests")
        .arg(workspace_root().join("deploy/examples"));
    if keep {
        lab.arg("--keep");
    }
    if verbose() {
        lab.arg("--verbose");
    } else {
        lab.arg("--agent-log").arg(workspace_root().join("target/lab/agent.log"));
    }
    show(&mut lab, "the lab")
}

pub fn tests(cargo_args: &[String]) -> anyhow::Result<()> {
    install::require_root("the test suite (privileged eBPF and network-namespace tests)")?;
    install::all()?;
    build::ebpf()?;
    step("linting (clippy, warnings are errors)");
    check(
        Command::new("cargo")
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--release",
                "--",
                "-D",
                "warnings",
            ])
            .current_dir(workspace_root()),
        "cargo clippy",
    )?;
    step("building the agent binary the restart tests run");
    check(
        Command::new("cargo")
            .args(["build", "--release", "-p", "ingress-userspace", "--bins"])
            .current_dir(workspace_root()),
        "cargo build --release -p ingress-userspace",
    )?;
    step("running the tests");
    let figures = workspace_root().join("target/test-figures.txt");
    match std::fs::remove_file(&figures) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("removing the last run's {}", figures.display()));
        }
        _ => {}
    }
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--release"])
        .args(cargo_args)
        .env(FIGURES_FILE_VAR, &figures)
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let mut totals = TestTotals::default();
    for line in BufReader::new(child.stdout.take().context("cargo test's output")?).lines() {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    print_figures(&figures);
    println!(
        "\ntests: {} passed, {} failed",
        totals.passed, totals.failed
    );
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// The variable the reliability tests read (`ingress_tests::figures`).
const FIGURES_FILE_VAR: &str = "LB_TEST_FIGURES";

/// What the reliability tests measured in this run, in the order they
/// finished: the figures of the README's Reliability table, printed even
/// when the tests' own output was captured.
fn print_figures(figures: &Path) {
    let Ok(recorded) = std::fs::read_to_string(figures) else {
        return;
    };
    println!("\nreliability figures of this run (the README's Reliability table):");
    for line in recorded.lines() {
        println!("  {line}");
    }
}

/// Sums cargo's per-binary `test result:` lines into one closing line.
#[derive(Default)]
struct TestTotals {
    passed: u64,
    failed: u64,
}

impl TestTotals {
    fn add(&mut self, line: &str) {
        let Some(result) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in result.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match kind {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}
