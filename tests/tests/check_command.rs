//! `ingress-userspace check --manifests DIR`, the real binary on a fixture
//! directory of good and bad Ingresses: the report on stdout, one error line
//! on stderr and exit status 1 when something is malformed, 0 otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ingress_tests::agent::agent_binary;

fn check(dir: &Path) -> Output {
    Command::new(agent_binary().unwrap())
        .args(["check", "--manifests", dir.to_str().unwrap()])
        .output()
        .expect("running the agent binary")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check")
}

#[test]
fn malformed_annotations_and_manifests_are_reported_and_fail_the_check() {
    let output = check(&fixture());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stderr.trim_end(), "error: 4 errors: what they name is dropped or ignored when served");
    let lines: Vec<&str> = stdout.lines().collect();
    for wanted in [
        "  route shop.example Prefix /api -> shop:80",
        "  route shop.example Exact /login -> shop:http",
        "  skipped legacy.example Prefix relative -> shop:80",
        "  error: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: invalid value \"10Q\" \
         (expected a size such as 8m, 512k or 0 (no limit)), annotation ignored",
        "  warning: metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]: not implemented by this \
         controller, annotation ignored",
        "3 Ingresses, 2 served; errors: 4, warnings: 1",
    ] {
        assert!(lines.contains(&wanted), "missing {wanted:?} in\n{stdout}");
    }
    assert!(lines.iter().any(|line| line.ends_with("(Ingress prod/elsewhere): not served (class \"nginx\" is not ours)")), "{stdout}");
}

#[test]
fn a_clean_directory_passes() {
    let dir = std::env::temp_dir().join(format!("lbt-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(fixture().join("ingresses.yaml")).unwrap();
    // Only the first Ingress (prod/shop) and what comes before it.
    let good: Vec<&str> = good.split("\n---\n").take(3).collect();
    std::fs::write(dir.join("good.yaml"), good.join("\n---\n")).unwrap();
    let output = check(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.ends_with("1 Ingresses, 1 served; errors: 0, warnings: 0\n"), "{stdout}");
}
