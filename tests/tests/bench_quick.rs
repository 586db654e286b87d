//! The L4 benchmark in quick mode runs end to end and writes its three
//! outputs; no figure is checked, only that each output is there and parses,
//! and that the `ebpf` and `ebpf-fwd` rows carry the programs' ns per packet.

use std::sync::atomic::AtomicBool;

use ingress_tests::agent::agent_binary;
use ingress_tests::bench::{Config, run_l4};
use ingress_tests::is_root;

#[test]
fn quick_l4_benchmark_writes_table_json_and_plot() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    let out = std::env::temp_dir().join(format!("lb-bench-quick-{}", std::process::id()));
    let config = Config { sizes: vec![1, 50], rounds: 1, ..Config::quick(agent_binary().unwrap(), out.clone()) };
    let outputs = run_l4(&config, &AtomicBool::new(false)).unwrap();

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&outputs.json_file).unwrap()).unwrap();
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2 * 4, "{json}");
    for contender in ["direct", "ebpf", "ebpf-fwd", "iptables"] {
        assert!(cells.iter().any(|c| c["contender"] == contender && c["services"] == 50), "{contender} at N=50");
    }
    assert!(cells.iter().all(|c| c["median"]["rr_p50_us"].as_f64().is_some_and(|v| v > 0.0)), "{json}");
    // The ebpf rows carry each program's ns per packet: TC ingress on the
    // lab's veth uplink (the agent's default there), lb_tc_in, lb_tc_out.
    for cell in cells.iter().filter(|c| c["contender"] == "ebpf" || c["contender"] == "ebpf-fwd") {
        let median = &cell["median"];
        assert_eq!(median["uplink_program"], "lb_tc_uplink", "{cell}");
        for field in ["uplink_ns_per_packet", "tc_in_ns_per_packet", "tc_out_ns_per_packet"] {
            assert!(median[field].as_f64().is_some_and(|ns| ns > 0.0), "{field}: {cell}");
        }
    }
    let markdown = std::fs::read_to_string(&outputs.markdown_file).unwrap();
    assert_eq!(markdown, outputs.markdown);
    assert!(markdown.contains("| 50 | iptables |"), "{markdown}");
    assert!(markdown.contains("| 50 | ebpf-fwd | lb_tc_uplink |"), "the ns per packet table: {markdown}");
    let png = std::fs::read(&outputs.plot_file).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::remove_dir_all(&out).unwrap();
}
