use std::path::Path;

use super::*;
use crate::manifests::load_dir;

fn fixture_report() -> CheckReport {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/check");
    report(&load_dir(&dir).unwrap())
}

#[test]
fn each_ingress_says_what_is_served_and_what_is_ignored_and_why() {
    let report = fixture_report();
    let lines: Vec<&str> = report.text.lines().collect();
    let expected = [
        "PLACEHOLDER",
    ];
    for line in expected {
        assert!(lines.contains(&line), "missing {line:?} in\n{}", report.text);
    }
}
