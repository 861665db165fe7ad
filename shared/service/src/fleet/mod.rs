//! Many clusters, one fleet (docs/adr/0010-many-clusters-one-fleet.md): processes given the
//! same clusters split them by rendezvous hashing over the live processes.
//!
//! Each process heartbeats into the fleet registry (`pantheon_store::fleet`, the prober
//! replicas' registry under one fleet-wide key: expiry in Redis server time) and publishes
//! the clusters it owns: those whose highest rendezvous score among the live processes is its
//! own. The owner runs the cluster's projector and prober; the others run nothing for it.
//! Correctness never rests on this split: each cluster's projector still takes the cluster's
//! fenced lease, so two processes that briefly both think they own a cluster (their registry
//! reads a heartbeat apart) give one leader and one standby, never two leaders. When a
//! process dies, its registration expires (`ttl`) and the others take its clusters; when one
//! joins, the clusters it wins are stopped (lease released) by their old owner within one
//! heartbeat, and it takes the lease.
//!
//! - [`served`]: which clusters (names, and patterns matched against the clusters that exist);
//! - [`rendezvous`]: who owns which cluster;
//! - [`heartbeat`]: registering, finding clusters again, publishing the owned ones;
//! - [`lead`]: running each owned cluster's work, handing it over when no longer owned.

pub mod heartbeat;
pub mod lead;
pub mod rendezvous;
pub mod served;

use std::time::Duration;

pub use lead::{lead_while_owned, serve};
pub use rendezvous::owned;
pub use served::Served;

use crate::ProcessKind;

/// One process's place in the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// This process's id in the registry (the projector's instance name).
    pub id: String,
    /// Which kind of process; each kind splits the clusters among its own
    /// (`pantheon_store::fleet`).
    pub kind: ProcessKind,
    pub prefix: String,
    /// The clusters served; those matching a pattern are found again every `rediscover`.
    pub served: Served,
    pub rediscover: Duration,
    /// How long a registration lives without a heartbeat.
    pub ttl: Duration,
    /// How often the process heartbeats and recomputes what it owns.
    pub every: Duration,
}

impl FleetConfig {
    pub fn new(
        id: impl Into<String>,
        kind: ProcessKind,
        prefix: impl Into<String>,
        served: Served,
    ) -> Self {
        Self {
            id: id.into(),
            kind,
            prefix: prefix.into(),
            served,
            rediscover: Duration::from_secs(10),
            ttl: Duration::from_secs(3),
            every: Duration::from_secs(1),
        }
    }

    /// The timing every fleet process uses (ADR 0010), from the lifetime of its
    /// registration (`ttl`, the lease TTL for processes that lead): a heartbeat every third
    /// of it (at least 100 ms), and clusters matching a pattern found again every 5
    /// heartbeats.
    pub fn timed(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self.every = (ttl / 3).max(Duration::from_millis(100));
        self.rediscover = self.every * 5;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rediscovery_runs_every_five_heartbeats() {
        let up =
            |ttl| FleetConfig::new("p", ProcessKind::Up, "pantheon", Served::default()).timed(ttl);
        let c = up(Duration::from_secs(5));
        assert_eq!(c.ttl, Duration::from_secs(5));
        assert_eq!(c.every, Duration::from_secs(5) / 3);
        assert_eq!(c.rediscover, c.every * 5);
        let fast = up(Duration::from_millis(150));
        assert_eq!(fast.every, Duration::from_millis(100), "at least 100 ms");
        assert_eq!(fast.rediscover, Duration::from_millis(500));
    }
}
