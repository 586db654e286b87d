//! Building the eBPF object (nightly, bpfel-unknown-none, build-std) and the agent.

use std::path::PathBuf;
use std::process::Command;

use crate::install::{self, path_with_llvm};
use crate::shell::{check, step, workspace_root};

pub fn agent_binary() -> PathBuf {
    workspace_root().join("target/release/ingress-userspace")
}

pub fn ebpf() -> anyhow::Result<()> {
    step("building the eBPF programs (nightly, bpfel-unknown-none)");
    check(
        Command::new("cargo")
            .args(["+nightly", "build", "--release"])
            .current_dir(workspace_root().join("ingress-ebpf"))
            .env("PATH", path_with_llvm())
            // A parent cargo's settings are for the host build, not this one.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTUP_TOOLCHAIN"),
        "building ingress-ebpf (if bpf-linker is missing, run `cargo xtask install`)",
    )
}

pub fn all() -> anyhow::Result<()> {
    install::all()?;
    ebpf()?;
    step("building the agent and the lab (release)");
    check(
        Command::new("cargo")
            .args([
                "build",
                "--release",
                "-p",
                "ingress-userspace",
                "-p",
                "ingress-tests",
                "--bins",
            ])
            .current_dir(workspace_root()),
        "cargo build --release",
    )
}
