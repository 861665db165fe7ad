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
    /// The panic threshold, in percent (Envoy's `healthy_panic_threshold`): placement never
    /// takes out more than this share of the nodes that are not draining. A node that dies
    /// past it keeps its keys (it is `held`) until enough nodes are back. 0 turns it off.
    pub panic: u32,
    /// Flap damping (RFC 2439 style, see [`crate::damping`]): penalty added by each death
    /// (0 turns damping off), the penalty above which a node is damped (kept out of placement
    /// even while healthy), the penalty at or below which it is undamped, the half-life of
    /// the penalty in seconds of log time, and the longest a stable node stays damped, in
    /// seconds.
    pub damp_penalty: u32,
    pub damp_suppress: u32,
    pub damp_reuse: u32,
    pub damp_half_life: u32,
    pub damp_max_suppress: u32,
    /// How long (ms of log time) a node that hands off (see
    /// `docs/adr/0016-planned-moves-hand-off.md`) may take to release keys a planned move
    /// gives to another node before the projector leader forces the move. 0 turns hand-offs
    /// off: every move is immediate.
    pub handoff_timeout: u32,
    /// Load-aware placement (`docs/adr/0018-load-aware-placement.md`): keep every node's
    /// reported load at or below `(1 + load_epsilon / 100) × mean` by moving hot keys and
    /// giving them read replicas. 0 (the default) turns it off: placement counts keys only.
    pub load_epsilon: u32,
}

impl Policy {
    /// The damping fields with their wire names.
    pub fn damping_fields(&self) -> [(&'static str, u32); 5] {
        [
            ("damp_penalty", self.damp_penalty),
            ("damp_suppress", self.damp_suppress),
            ("damp_reuse", self.damp_reuse),
            ("damp_half_life", self.damp_half_life),
            ("damp_max_suppress", self.damp_max_suppress),
        ]
    }

    pub const DEFAULT_FALL: u32 = 3;
    pub const DEFAULT_RISE: u32 = 2;
    /// Chosen with `cargo run --release -p pantheon-domain --example placement_report`: the
    /// smallest tested count whose busiest node stays within 1.10 × the mean over 1,000,000
    /// keys at 100 nodes for every one of 100 sets of node names (1024 failed 17 of them).
    /// See docs/benchmarks.md for the lookup-time cost at 1,000 nodes.
    pub const DEFAULT_VNODES: u32 = 2048;
    /// Envoy's default: losing more than half the fleet at once is more likely a fault of the
    /// watcher (its network, a bad deploy of the health endpoint) than of the nodes, and
    /// moving every key onto the other half would overload it.
    pub const DEFAULT_PANIC: u32 = 50;
    /// Damping defaults (RFC 2439's 1000 per withdrawal, scaled to seconds instead of
    /// minutes): one death never damps (1000 ≤ 1500); a second death within one half-life
    /// (30 s) does (≥ 1500). A node that keeps flapping stays out; once stable it returns
    /// after at most `damp_max_suppress` = 120 s (the ceiling decays to 500 in 4 half-lives).
    /// Flapping every 2 s for 10 minutes then costs 3 rebalances (out, back, out) instead of
    /// one pair per flap (tests/damping.rs and the `bursts` bench).
    pub const DEFAULT_DAMP_PENALTY: u32 = 1000;
    pub const DEFAULT_DAMP_SUPPRESS: u32 = 1500;
    pub const DEFAULT_DAMP_REUSE: u32 = 500;
    pub const DEFAULT_DAMP_HALF_LIFE: u32 = 30;
    pub const DEFAULT_DAMP_MAX_SUPPRESS: u32 = 120;
    /// 10 s: a worker that keeps its state in memory releases within milliseconds; Akka's
    /// 60 s default is the stall its users complain about (ADR 0016).
    pub const DEFAULT_HANDOFF_TIMEOUT: u32 = 10_000;
    /// Off: load-aware placement is asked for, never assumed.
    pub const DEFAULT_LOAD_EPSILON: u32 = 0;
    /// The largest `load_epsilon` (percent).
    pub const MAX_LOAD_EPSILON: u32 = 100;

    /// Whether the damping fields are all at their defaults (older builds had no damping
    /// fields; the checksum leaves defaults out).
    pub fn damping_is_default(&self) -> bool {
        (
            self.damp_penalty,
            self.damp_suppress,
            self.damp_reuse,
            self.damp_half_life,
            self.damp_max_suppress,
        ) == (
            Self::DEFAULT_DAMP_PENALTY,
            Self::DEFAULT_DAMP_SUPPRESS,
            Self::DEFAULT_DAMP_REUSE,
            Self::DEFAULT_DAMP_HALF_LIFE,
            Self::DEFAULT_DAMP_MAX_SUPPRESS,
        )
    }

    /// How many of `nodes` non-draining nodes placement may take out for their health;
    /// `None` when the panic threshold is off.
    pub fn removable(&self, nodes: usize) -> Option<usize> {
        (self.panic > 0).then(|| nodes * self.panic as usize / 100)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fall: Self::DEFAULT_FALL,
            rise: Self::DEFAULT_RISE,
            strategy: Strategy::Ring,
            vnodes: Self::DEFAULT_VNODES,
            panic: Self::DEFAULT_PANIC,
            damp_penalty: Self::DEFAULT_DAMP_PENALTY,
            damp_suppress: Self::DEFAULT_DAMP_SUPPRESS,
            damp_reuse: Self::DEFAULT_DAMP_REUSE,
            damp_half_life: Self::DEFAULT_DAMP_HALF_LIFE,
            damp_max_suppress: Self::DEFAULT_DAMP_MAX_SUPPRESS,
            handoff_timeout: Self::DEFAULT_HANDOFF_TIMEOUT,
            load_epsilon: Self::DEFAULT_LOAD_EPSILON,
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
    pub panic: Option<u32>,
    pub damp_penalty: Option<u32>,
    pub damp_suppress: Option<u32>,
    pub damp_reuse: Option<u32>,
    pub damp_half_life: Option<u32>,
    pub damp_max_suppress: Option<u32>,
    pub handoff_timeout: Option<u32>,
    pub load_epsilon: Option<u32>,
}

impl PolicyChange {
    /// The damping fields with their wire names.
    pub fn damping_fields(&self) -> [(&'static str, Option<u32>); 5] {
        [
            ("damp_penalty", self.damp_penalty),
            ("damp_suppress", self.damp_suppress),
            ("damp_reuse", self.damp_reuse),
            ("damp_half_life", self.damp_half_life),
            ("damp_max_suppress", self.damp_max_suppress),
        ]
    }

    pub fn applied_to(&self, policy: Policy) -> Policy {
        Policy {
            fall: self.fall.unwrap_or(policy.fall),
            rise: self.rise.unwrap_or(policy.rise),
            strategy: self.strategy.unwrap_or(policy.strategy),
            vnodes: self.vnodes.unwrap_or(policy.vnodes),
            panic: self.panic.unwrap_or(policy.panic),
            damp_penalty: self.damp_penalty.unwrap_or(policy.damp_penalty),
            damp_suppress: self.damp_suppress.unwrap_or(policy.damp_suppress),
            damp_reuse: self.damp_reuse.unwrap_or(policy.damp_reuse),
            damp_half_life: self.damp_half_life.unwrap_or(policy.damp_half_life),
            damp_max_suppress: self.damp_max_suppress.unwrap_or(policy.damp_max_suppress),
            handoff_timeout: self.handoff_timeout.unwrap_or(policy.handoff_timeout),
            load_epsilon: self.load_epsilon.unwrap_or(policy.load_epsilon),
        }
    }
}
