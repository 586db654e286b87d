//! The lab shared by the integration tests, `cargo xtask lab` and the
//! benchmarks: network namespaces wired like a small cluster (a client, a node
//! and its pods), echo servers in the pods, and client-side traffic helpers.
//!
//! Everything runs in namespaces created here and removed again on drop; the
//! host's own interfaces and routes are never touched. Needs root.

pub mod abuse;
pub mod echo;
pub mod http;
pub mod interrupt;
pub mod lab;
pub mod netns;
pub mod agent;
pub mod api_stand_in;
pub mod backend_choice;
pub mod checks;
pub mod figures;
pub mod fuzz;
pub mod packet;
pub mod pins;
pub mod prog_run;
pub mod programmed;
pub mod traffic;
pub mod test_ca;
pub mod two_node;
pub mod bench;

pub use echo::EchoServer;
pub use lab::{ECHO_PORT, Lab, LabNode, LabSpec, Pod, TwoNodeLab, TwoNodeSpec};
pub use netns::{NetNs, is_root};
pub use traffic::{Reply, Tally, TcpSession, UdpSession, tcp_request, udp_request};
