//! Prerequisites, installed only when missing so every command can call this.

use std::process::Command;

use anyhow::{Context, bail};

use crate::shell::{check, step};

/// Debian packages: LLVM 22 for bpf-linker (the same major as nightly rustc's
/// LLVM), iproute2/ethtool/util-linux (nsenter) for the lab, iptables for
/// the kube-proxy comparison, nginx/haproxy/wrk for the L7 comparison.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "iproute2",
    "iptables",
    // `nft delete table`: the benchmark removes the iptables contender's
    // tables (iptables-nft cannot delete a table, only flush it).
    "nftables",
    "iputils-ping",
    "ethtool",
    "util-linux",
    // The font the benchmark plots are labelled with.
    "fonts-dejavu-core",
    // The L7 benchmark's contenders and load generator.
    "nginx",
    "haproxy",
    "wrk",
];
/// Packages whose install may start a system service: the benchmark runs its
/// own instances inside the lab, so the system ones are stopped and disabled.
const SERVICES: &[&str] = &["nginx", "haproxy"];
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// `PATH` with LLVM 22's tools first: building bpf-linker and linking with it look for them there.
pub fn path_with_llvm() -> String {
    format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default())
}

pub fn all() -> anyhow::Result<()> {
    require_root("installing prerequisites")?;
    apt_packages()?;
    rust_src()?;
    bpf_linker()
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "{what} needs root (apt-get, loading eBPF programs and creating network \
             namespaces need CAP_SYS_ADMIN/CAP_BPF/CAP_NET_ADMIN): run it again as root"
        );
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    check(
        Command::new("apt-get").arg("update").arg("-qq"),
        "apt-get update",
    )?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )?;
    for service in SERVICES.iter().filter(|s| missing.contains(s)) {
        stop_service(service);
    }
    Ok(())
}

/// Stops and disables a service its package just started (systemd or
/// sysvinit); best effort, since where the package could not start it (a
/// container's policy-rc.d) there is nothing to stop.
fn stop_service(service: &str) {
    step(&format!("stopping and disabling the system's {service} service (the benchmark runs its own)"));
    let quiet = |command: &mut Command| {
        let _ = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status();
    };
    if std::path::Path::new("/run/systemd/system").exists() {
        quiet(Command::new("systemctl").args(["disable", "--now", service]));
    } else {
        quiet(Command::new("service").args([service, "stop"]));
        quiet(Command::new("update-rc.d").args([service, "disable"]));
    }
}

fn rust_src() -> anyhow::Result<()> {
    let list = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup: is the Rust toolchain installed with rustup?")?;
    if String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(());
    }
    step("adding rust-src to the nightly toolchain (eBPF builds core from source)");
    check(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        "rustup component add rust-src --toolchain nightly",
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    step("installing bpf-linker against LLVM 22 (takes a few minutes, once)");
    check(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path_with_llvm()),
        "cargo install bpf-linker",
    )
}
