//! BPF_PROG_TEST_RUN of the loaded programs on one crafted frame.

use aya::programs::{TestRun, TestRunOptions};
use ingress_userspace::dataplane::ebpf::Dataplane;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

/// Room for programs that grow the frame.
const HEADROOM: usize = 256;

/// Runs `lb_xdp` on `frame`: the verdict and the frame as the program left it.
pub fn xdp(dataplane: &mut Dataplane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + HEADROOM];
    let result = dataplane
        .xdp()
        .expect("the XDP program")
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .unwrap_or_else(|e| panic!("XDP test run on {} bytes: {e}", frame.len()));
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// Runs the TC program `program` on `frame`.
pub fn tc(dataplane: &mut Dataplane, program: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + HEADROOM];
    let result = dataplane
        .tc(program)
        .expect("the TC program")
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .unwrap_or_else(|e| panic!("TC test run of {program} on {} bytes: {e}", frame.len()));
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}
