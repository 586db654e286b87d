//! What a person sees when a command of the agent binary fails: one line on
//! stderr that names the cause and the fix, exit status 1, and no
//! backtrace even where RUST_BACKTRACE is set.

use std::path::Path;
use std::process::{Command, Output};

use ingress_tests::agent::agent_binary;
use ingress_tests::is_root;
use ingress_tests::pins::PinDir;
use ingress_userspace::dataplane::pin_dir::ensure_bpffs;

fn agent(args: &[&str]) -> Output {
    Command::new(agent_binary().unwrap())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("running the agent binary")
}

/// The one line of stderr, after checking there is exactly one and that the
/// command failed.
fn one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit status; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

fn root_with_bpffs() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root for bpffs");
        return false;
    }
    ensure_bpffs(Path::new("/sys/fs/bpf/lbt")).expect("bpffs at /sys/fs/bpf");
    true
}

#[test]
fn state_on_a_pin_dir_no_agent_created_says_so_and_how_to_find_the_right_one() {
    if !root_with_bpffs() {
        return;
    }
    let pins = PinDir::unique("never-created");
    let line = one_error_line(&agent(&["state", "--pin-dir", pins.path().to_str().unwrap()]));
    assert!(line.contains(&format!("{} does not exist", pins.path().display())), "{line}");
    assert!(line.contains("no agent has run with this --pin-dir"), "{line}");
    assert!(line.contains("pass the --pin-dir the agent runs with"), "{line}");
}

#[test]
fn state_outside_any_bpffs_points_at_the_agents_mount_namespace() {
    let dir = std::env::temp_dir().join(format!("lbt-cli-{}", std::process::id()));
    let line = one_error_line(&agent(&["state", "--pin-dir", dir.join("pins").to_str().unwrap()]));
    if is_root() {
        assert!(line.contains(&format!("no bpffs is mounted at {} in this mount namespace", dir.display())), "{line}");
        assert!(line.contains("nsenter --mount=/proc/<agent pid>/ns/mnt"), "{line}");
    } else {
        assert!(line.contains("needs root"), "{line}");
    }
}

#[test]
fn state_on_a_bpffs_directory_without_maps_says_it_is_not_a_pin_directory() {
    if !root_with_bpffs() {
        return;
    }
    let pins = PinDir::unique("empty");
    std::fs::create_dir_all(pins.path()).unwrap();
    let line = one_error_line(&agent(&["state", "--pin-dir", pins.path().to_str().unwrap()]));
    assert!(line.contains("holds none of the agent's maps (lb_services, ...)"), "{line}");
}

#[test]
fn cleanup_of_a_pin_dir_that_is_gone_has_nothing_to_do() {
    if !root_with_bpffs() {
        return;
    }
    let pins = PinDir::unique("gone");
    let output = agent(&["cleanup", "--pin-dir", pins.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.trim(), format!("nothing to remove: {} does not exist", pins.path().display()));
}

#[test]
fn run_on_a_missing_manifest_directory_names_it() {
    let missing = std::env::temp_dir().join(format!("lbt-no-manifests-{}", std::process::id()));
    // Refused before anything is loaded or pinned; the guard is for a regression.
    let pins = PinDir::unique("never-used");
    let line = one_error_line(&agent(&[
        "run",
        "--manifests",
        missing.to_str().unwrap(),
        "--node-name",
        "n1",
        "--pin-dir",
        pins.path().to_str().unwrap(),
    ]));
    assert!(line.contains(&format!("--manifests {}: no such directory", missing.display())), "{line}");
    assert!(!pins.path().exists(), "nothing pinned for a run that could not start");
}

/// `run` in a fresh network namespace and a private mount namespace in which
/// /sys/fs/bpf is not mounted, with `unshare_args` for the rest.
fn run_where_the_host_bpffs_is_not_visible(case: &str, unshare_args: &[&str]) -> Output {
    let manifests = std::env::temp_dir().join(format!("lbt-{case}-{}", std::process::id()));
    std::fs::create_dir_all(&manifests).unwrap();
    let output = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private"])
        .args(unshare_args)
        .args(["sh", "-c", "umount -l /sys/fs/bpf 2>/dev/null; exec \"$0\" \"$@\""])
        .arg(agent_binary().unwrap())
        .args(["run", "--manifests", manifests.to_str().unwrap(), "--node-name", "n1"])
        .args(["--pin-dir", &format!("/sys/fs/bpf/lbt-{case}-{}", std::process::id())])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("running unshare");
    std::fs::remove_dir_all(&manifests).unwrap();
    output
}

#[test]
fn run_refuses_a_bpffs_that_would_die_with_its_private_mount_namespace() {
    if !is_root() {
        eprintln!("skipped: needs root for unshare");
        return;
    }
    let line = one_error_line(&run_where_the_host_bpffs_is_not_visible("private-mnt", &[]));
    assert!(line.contains("no bpffs at /sys/fs/bpf in this mount namespace, which is not the host's"), "{line}");
    assert!(line.contains("detach every program"), "{line}");
}

#[test]
fn run_refuses_a_bpffs_that_would_die_with_its_container() {
    if !is_root() {
        eprintln!("skipped: needs root for unshare");
        return;
    }
    let line = one_error_line(&run_where_the_host_bpffs_is_not_visible("container", &["--pid", "--fork", "--mount-proc"]));
    assert!(line.contains("no bpffs at /sys/fs/bpf in this container"), "{line}");
    assert!(line.contains("hostPath with mountPropagation: Bidirectional"), "{line}");
}
