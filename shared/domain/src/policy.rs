//! Cluster policy: the values that change decisions. They are part of the state and change
//! only through `policy` log entries, never through a config file, so replay is exact.

use crate::placement::Strategy;

/// Health thresholds and placement settings of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failed probes that turn a suspect node dead (HAProxy's `fall`).
    pub fall: u32,
    /// Consecutive successful probes that bring a suspect or dead node back (HAProxy's `rise`).
    pub rise: u32,
    /// How keys are placed on nodes.
    pub strategy: Strategy,
    /// Ring points per unit of node weight (used by [`Strategy::Ring`]).
    pub vnodes: u32,
}

impl Policy {
    pub const DEFAULT_FALL: u32 = 3;
    pub const DEFAULT_RISE: u32 = 2;
    /// Chosen with `cargo run --release -p pantheon-domain --example placement_report`: the
    /// smallest tested count whose busiest node stays within 1.10 × the mean over 1,000,000
    /// keys at 100 nodes for every one of 100 sets of node names (1024 failed 17 of them).
    /// See docs/benchmarks.md for the lookup-time cost at 1,000 nodes.
    pub const DEFAULT_VNODES: u32 = 2048;
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fall: Self::DEFAULT_FALL,
            rise: Self::DEFAULT_RISE,
            strategy: Strategy::Ring,
            vnodes: Self::DEFAULT_VNODES,
        }
    }
}

/// A change of policy: only the fields that are set change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyChange {
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub strategy: Option<Strategy>,
    pub vnodes: Option<u32>,
}

impl PolicyChange {
    pub fn applied_to(&self, policy: Policy) -> Policy {
        Policy {
            fall: self.fall.unwrap_or(policy.fall),
            rise: self.rise.unwrap_or(policy.rise),
            strategy: self.strategy.unwrap_or(policy.strategy),
            vnodes: self.vnodes.unwrap_or(policy.vnodes),
        }
    }
}
