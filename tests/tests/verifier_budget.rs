//! The verifier's budget. The kernel walks every path through a program
//! and refuses one that takes more than 1,000,000 instructions processed
//! (`BPF_COMPLEXITY_LIMIT_INSNS`); every new branch of the dataplane adds
//! to the walk. Each program's figure is printed with the run's figures,
//! and must stay under `BUDGET`, so a change that nears the limit fails
//! here, with its figure, before an agent's start fails on it (another
//! kernel or compiler may walk a little more).

use ingress_tests::figures;
use ingress_tests::is_root;
use ingress_tests::pins::PinDir;
use ingress_userspace::dataplane::ebpf::{Dataplane, ICMP_PROGRAMS, TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM, XDP_PROGRAM};
use ingress_userspace::dataplane::sizes::MapSizes;

/// 80% of the verifier's limit.
const BUDGET: u32 = 800_000;

/// Host routing is a load-time constant (`HOST_ROUTING_GLOBAL`): off, the
/// verifier skips its paths; on, it walks them too. Both must fit.
#[test]
fn every_program_stays_well_under_the_verifiers_limit_with_host_routing_off_and_on() {
    if !is_root() {
        eprintln!("skipped: loading eBPF programs needs root");
        return;
    }
    let mut over = Vec::new();
    for host_routing in [false, true] {
        let pins = PinDir::unique("verifier-budget");
        let mut dataplane = Dataplane::maps_only(pins.path(), &MapSizes::default(), host_routing).expect("loading the object");
        let mut counts = Vec::new();
        for name in [XDP_PROGRAM, TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM].into_iter().chain(ICMP_PROGRAMS) {
            let Some(count) = dataplane.verified_instructions(name).unwrap() else {
                eprintln!("skipped: this kernel does not report the verifier's instruction count");
                return;
            };
            counts.push((name, count));
        }
        let text: Vec<String> = counts.iter().map(|(name, count)| format!("{name} {count}")).collect();
        let label = if host_routing { "with --host-routing" } else { "default" };
        figures::report("verifier_budget", &format!("instructions processed, {label}: {} (limit 1000000)", text.join(", ")));
        over.extend(counts.into_iter().filter(|(_, count)| *count >= BUDGET).map(|(name, count)| format!("{name} {count} ({label})")));
    }
    assert!(over.is_empty(), "the verifier processed more than the budget of {BUDGET} instructions: {}", over.join(", "));
}

/// `lb_snat_prepare` is a global function only while the kernel takes the
/// object's BTF (see `ingress-ebpf/src/snat.rs` and
/// `ingress-userspace/build_btf.rs`); without it the verifier walks it once
/// per caller state again, and `lb_tc_uplink`'s walk grows from about
/// 60,000 instructions to about 240,000 (Linux 6.18).
#[test]
fn the_programs_carry_their_btf_so_the_snat_port_search_is_verified_once() {
    if !is_root() {
        eprintln!("skipped: loading eBPF programs needs root");
        return;
    }
    let pins = PinDir::unique("verifier-btf");
    let mut dataplane = Dataplane::maps_only(pins.path(), &MapSizes::default(), false).expect("loading the object");
    for name in [XDP_PROGRAM, TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM] {
        assert!(dataplane.carries_btf(name).unwrap(), "{name} was loaded without the object's BTF");
    }
    if let Some(count) = dataplane.verified_instructions(TC_UPLINK_PROGRAM).unwrap() {
        assert!(count < 120_000, "{TC_UPLINK_PROGRAM}: {count} instructions processed, as if lb_snat_prepare were static");
    }
}
