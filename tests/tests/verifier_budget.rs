//! The verifier's budget. The kernel walks every path through a program
//! and refuses one that takes more than 1,000,000 instructions processed
//! (`BPF_COMPLEXITY_LIMIT_INSNS`); every new branch of the dataplane adds
//! to the walk. Each program's figure is printed with the run's figures,
//! and must stay under `BUDGET`, so a change that nears the limit fails
//! here, with its figure, before an agent's start fails on it (another
//! kernel or compiler may walk a little more).

use ingress_tests::figures;
use ingress_tests::prog_run::Programmed;
use ingress_userspace::dataplane::ebpf::{TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM, XDP_PROGRAM};
use ingress_userspace::model::DesiredState;

/// 80% of the verifier's limit.
const BUDGET: u32 = 800_000;

#[test]
fn every_program_stays_well_under_the_verifiers_limit() {
    let Some(mut p) = Programmed::load("verifier-budget", &DesiredState::default()) else { return };
    let mut counts = Vec::new();
    for name in [XDP_PROGRAM, TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM] {
        let Some(count) = p.dataplane.verified_instructions(name).unwrap() else {
            eprintln!("skipped: this kernel does not report the verifier's instruction count");
            return;
        };
        counts.push((name, count));
    }
    let text: Vec<String> = counts.iter().map(|(name, count)| format!("{name} {count}")).collect();
    figures::report("verifier_budget", &format!("instructions processed: {} (limit 1000000)", text.join(", ")));
    for (name, count) in counts {
        assert!(count < BUDGET, "{name}: the verifier processed {count} instructions, over the budget of {BUDGET}");
    }
}
