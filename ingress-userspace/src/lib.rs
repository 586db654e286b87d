/// The allocator the agent runs with (set in main.rs), and so the L7 cost
/// measure (`l7_cost`) too, which must count what the agent runs.
pub use mimalloc::MiMalloc as AgentAllocator;

pub mod model;
pub mod dataplane;
pub mod manifests;
pub mod problem;
pub mod translate;
pub mod parallel;
pub mod reconcile;
pub mod admin;
pub mod agent;
pub mod metrics;
pub mod health_check;
pub mod listen;
pub mod interfaces;
pub mod k8s;
pub mod source;
pub mod state;
pub mod check;
pub mod l7;
pub mod gateway;
#[cfg(test)]
mod test_rng;
/// `build.rs`'s BTF fix, tested here (a build script has no tests).
#[cfg(test)]
#[path = "../build_btf.rs"]
mod build_btf;
