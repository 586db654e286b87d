//! The L7 benchmark in quick mode runs end to end and writes its three
//! outputs; no figure is judged, only that each output is there and parses.
//! nginx, HAProxy and wrk come from `cargo xtask install`: without them this
//! fails, saying so.

use std::sync::atomic::AtomicBool;

use ingress_tests::agent::agent_binary;
use ingress_tests::bench::l7::{Config, run_l7};
use ingress_tests::is_root;

#[test]
fn quick_l7_benchmark_writes_table_json_and_plot() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    let out = std::env::temp_dir().join(format!("lb-bench-l7-quick-{}", std::process::id()));
    let config = Config::quick(agent_binary().unwrap(), out.clone());
    let outputs = run_l7(&config, &AtomicBool::new(false)).unwrap();

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&outputs.json_file).unwrap()).unwrap();
    let cells = json["cells"].as_array().unwrap();
    for pods in ["close", "keep-alive"] {
        for contender in ["direct", "ebpf-lb", "nginx", "haproxy"] {
            let cell = cells.iter().find(|c| c["contender"] == contender && c["pods"] == pods);
            let cell = cell.unwrap_or_else(|| panic!("no {contender} with {pods} pods in {json}"));
            assert!(cell["median"]["requests_per_s"].as_f64().is_some_and(|v| v > 0.0), "{contender} {pods}: {json}");
            assert_eq!(cell["median"]["failed"].as_f64(), Some(0.0), "{contender} {pods}: {json}");
        }
    }
    let churn = json["churn"].as_array().unwrap();
    assert_eq!(churn.len(), 3, "{json}");
    assert!(churn.iter().all(|c| c["changes"].as_u64().is_some_and(|n| n > 0)), "{json}");
    let markdown = std::fs::read_to_string(&outputs.markdown_file).unwrap();
    assert_eq!(markdown, outputs.markdown);
    assert!(markdown.contains("| haproxy | keep-alive |"), "{markdown}");
    let png = std::fs::read(&outputs.plot_file).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::remove_dir_all(&out).unwrap();
}
