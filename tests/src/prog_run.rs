//! Running the loaded programs once on a crafted frame (BPF_PROG_TEST_RUN)
//! and reading back the verdict and the frame as the program left it.

use aya::programs::{TestRun, TestRunOptions, TestRunResult};
use ingress_userspace::dataplane::ebpf::Dataplane;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

/// Runs `lb_xdp` on `frame`.
pub fn xdp(dataplane: &mut Dataplane, frame: &[u8]) -> (u32, Vec<u8>) {
    run(dataplane.xdp().expect("lb_xdp is loaded"), frame)
}

/// Runs a TC program (`TC_IN_PROGRAM` or `TC_OUT_PROGRAM`) on `frame`.
pub fn tc(dataplane: &mut Dataplane, program: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    run(dataplane.tc(program).expect("the TC program is loaded"), frame)
}

fn run<P>(program: &mut P, frame: &[u8]) -> (u32, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    // Room for programs that grow the frame.
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .unwrap_or_else(|e| panic!("test run on {} bytes: {e}", frame.len()));
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}
