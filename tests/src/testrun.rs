//! BPF_PROG_TEST_RUN: the loaded XDP program run by the kernel on one crafted
//! frame, giving its verdict and the frame as the program left it.

use aya::programs::{TestRun, TestRunOptions};
use ingress_userspace::dataplane::ebpf::Dataplane;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

pub fn xdp(dataplane: &mut Dataplane, frame: &[u8]) -> (u32, Vec<u8>) {
    // Room for programs that grow the frame.
    let mut out = vec![0u8; frame.len() + 256];
    let result = dataplane
        .xdp()
        .expect("the XDP program is loaded")
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .unwrap_or_else(|e| panic!("XDP test run on {} bytes: {e}", frame.len()));
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}
