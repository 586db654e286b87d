//! The small helpers every command uses: where the workspace is, announcing
//! a step, and running a command whose failure names that step.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `--verbose`: every command's output streams to the terminal instead of a
/// log file.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Lines of a failed step's log shown on the terminal.
const FAILURE_TAIL: usize = 60;

/// Runs a command; a failure names the step. Unless `--verbose`, its output
/// (apt, cargo) goes to a log file under `target/xtask-logs/`, and only a
/// failure shows its last lines and where the rest is.
pub fn check(command: &mut Command, what: &str) -> anyhow::Result<()> {
    if verbose() {
        return show(command, what);
    }
    let log = log_path(what);
    std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
    let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    command.stdout(file.try_clone()?).stderr(file);
    show(command, what).map_err(|error| {
        print_tail(&log);
        anyhow::anyhow!("{error:#}; its whole output: {}", log.display())
    })
}

/// Runs a command whose output is what the user came for (the lab's and the
/// benchmarks' reports); a failure names the step.
pub fn show(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("{what}: could not start {command:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `target/xtask-logs/<the step, as a file name>.log`.
fn log_path(what: &str) -> PathBuf {
    let name: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    workspace_root().join("target/xtask-logs").join(format!("{}.log", name.trim_matches('-')))
}

fn print_tail(log: &Path) {
    let Ok(file) = std::fs::File::open(log) else { return };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    for line in &lines[lines.len().saturating_sub(FAILURE_TAIL)..] {
        eprintln!("    {line}");
    }
}
