//! What happened to a packet: the one result every stage of the dataplane
//! returns, turned into a verdict and counted in `main`.

/// What happened to a packet, with the `ingress_common::stats` reason it is
/// counted under.
pub enum Outcome {
    Translated(u32),
    /// Translated, and to be sent on by the program itself (see `host_route`).
    Routed(u32),
    Pass(u32),
    Drop(u32),
    /// Answered with a reject sent back to the client (see `reject`).
    Reject(u32),
}

impl Outcome {
    #[inline(always)]
    pub fn reason(&self) -> u32 {
        match self {
            Outcome::Translated(r) | Outcome::Routed(r) | Outcome::Pass(r) | Outcome::Drop(r) | Outcome::Reject(r) => *r,
        }
    }
}
