//! The Kubernetes side of the agent.

pub mod access;
pub mod events;
pub mod gateway_status;
pub mod node;
pub mod retry;
pub mod snapshots;
pub mod status;
pub mod watch;
