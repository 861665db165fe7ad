//! Many clusters, one fleet (issue 13, docs/adr/0010-many-clusters-one-fleet.md): processes
//! given the same clusters split them by rendezvous hashing over the live processes.
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

use std::collections::BTreeSet;
use std::time::Duration;

use pantheon_domain::NodeId;
use pantheon_domain::placement::{self, Member, Strategy};
use pantheon_store::{Redis, fleet};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// One process's place in the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// This process's id in the registry (the projector's instance name).
    pub id: String,
    pub prefix: String,
    pub clusters: Vec<String>,
    /// How long a registration lives without a heartbeat.
    pub ttl: Duration,
    /// How often the process heartbeats and recomputes what it owns.
    pub every: Duration,
}

impl FleetConfig {
    pub fn new(id: impl Into<String>, prefix: impl Into<String>, clusters: Vec<String>) -> Self {
        Self {
            id: id.into(),
            prefix: prefix.into(),
            clusters,
            ttl: Duration::from_secs(3),
            every: Duration::from_secs(1),
        }
    }
}

/// The clusters of `clusters` that `me` owns among the `live` processes (weighted rendezvous
/// hashing, all weights 1: adding or removing a process moves only the clusters it wins or
/// held). Ids that are not valid node ids are hashed under a stand-in, so they still count.
pub fn owned(clusters: &[String], live: &[String], me: &str) -> BTreeSet<String> {
    let members: Vec<Member> = live
        .iter()
        .filter_map(|p| NodeId::new(p).ok())
        .map(|node| Member { node, weight: 1 })
        .collect();
    let ring = placement::build(Strategy::Rendezvous, 1, members);
    clusters
        .iter()
        .filter(|c| ring.owner(c).is_some_and(|o| o.as_str() == me))
        .cloned()
        .collect()
}

/// Heartbeats until `shutdown`, publishing the owned clusters on `owned_tx` whenever they
/// change; deregisters at the end so the others take over at once. While Redis cannot be
/// reached it keeps the last set (the projectors' leases decide meanwhile).
pub async fn run(
    redis: Redis,
    config: FleetConfig,
    owned_tx: watch::Sender<BTreeSet<String>>,
    shutdown: CancellationToken,
) {
    let mut con = redis.clone();
    let mut failing = false;
    loop {
        match fleet::heartbeat(&mut con, &config.prefix, &config.id, config.ttl).await {
            Ok(registry) => {
                failing = false;
                let mut live = registry.live_ids();
                if !live.contains(&config.id) {
                    live.push(config.id.clone());
                }
                let mine = owned(&config.clusters, &live, &config.id);
                owned_tx.send_if_modified(|current| {
                    if *current == mine {
                        return false;
                    }
                    info!(
                        processes = live.len(),
                        owned = mine.len(),
                        of = config.clusters.len(),
                        "fleet changed: leading my share of the clusters"
                    );
                    *current = mine;
                    true
                });
            }
            Err(e) if !failing => {
                failing = true;
                warn!(error = %e, "fleet heartbeat failed; keeping the clusters I had");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(config.every) => {}
        }
    }
    let _ = fleet::deregister(&mut con, &config.prefix, &config.id).await;
    owned_tx.send_replace(BTreeSet::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize, p: &str) -> Vec<String> {
        (0..n).map(|i| format!("{p}{i}")).collect()
    }

    #[test]
    fn every_cluster_has_exactly_one_owner() {
        let clusters = names(300, "c");
        let live = names(3, "up-");
        let mut seen = BTreeSet::new();
        for p in &live {
            let mine = owned(&clusters, &live, p);
            assert!(mine.len() > 60, "{p} owns only {}", mine.len());
            for c in mine {
                assert!(seen.insert(c), "two owners");
            }
        }
        assert_eq!(seen.len(), clusters.len());
    }

    #[test]
    fn a_new_process_takes_clusters_only_from_others_never_shuffles_them() {
        let clusters = names(300, "c");
        let three = names(3, "up-");
        let mut four = three.clone();
        four.push("up-new".into());
        for p in &three {
            let before = owned(&clusters, &three, p);
            let after = owned(&clusters, &four, p);
            assert!(after.is_subset(&before), "{p} gained a cluster");
        }
        assert!(!owned(&clusters, &four, "up-new").is_empty());
    }
}
