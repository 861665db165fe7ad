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
use pantheon_store::{Redis, discover, fleet};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// One process's place in the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// This process's id in the registry (the projector's instance name).
    pub id: String,
    /// Which kind of process: `up`, `projector` or `prober`; each kind splits the clusters
    /// among its own (`pantheon_store::fleet`).
    pub role: &'static str,
    pub prefix: String,
    /// Clusters named outright.
    pub clusters: Vec<String>,
    /// Patterns (`*`, `billing-*`): every cluster with a log under `prefix` whose name
    /// matches is served too, found again every `rediscover` (`pantheon_store::discover`).
    pub patterns: Vec<String>,
    pub rediscover: Duration,
    /// How long a registration lives without a heartbeat.
    pub ttl: Duration,
    /// How often the process heartbeats and recomputes what it owns.
    pub every: Duration,
}

impl FleetConfig {
    pub fn new(
        id: impl Into<String>,
        role: &'static str,
        prefix: impl Into<String>,
        clusters: Vec<String>,
    ) -> Self {
        Self {
            id: id.into(),
            role,
            prefix: prefix.into(),
            clusters,
            patterns: Vec::new(),
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
    let mut clusters = config.clusters.clone();
    let mut next_discovery = tokio::time::Instant::now();
    loop {
        if !config.patterns.is_empty() && tokio::time::Instant::now() >= next_discovery {
            next_discovery = tokio::time::Instant::now() + config.rediscover;
            match discover::clusters(redis.deployment(), &config.prefix).await {
                Ok(found) => {
                    let mut all: BTreeSet<String> = config.clusters.iter().cloned().collect();
                    all.extend(
                        found.into_iter().filter(|name| {
                            config.patterns.iter().any(|p| discover::matches(p, name))
                        }),
                    );
                    if all.len() != clusters.len() {
                        info!(clusters = all.len(), "clusters found by pattern");
                    }
                    clusters = all.into_iter().collect();
                }
                Err(e) => warn!(error = %e, "could not look for clusters; keeping the ones known"),
            }
        }
        match fleet::heartbeat(
            &mut con,
            &config.prefix,
            config.role,
            &config.id,
            config.ttl,
        )
        .await
        {
            Ok(registry) => {
                failing = false;
                let mut live = registry.live_ids();
                if !live.contains(&config.id) {
                    live.push(config.id.clone());
                }
                let mine = owned(&clusters, &live, &config.id);
                pantheon_metrics::process().set_fleet(mine.len(), live.len());
                owned_tx.send_if_modified(|current| {
                    if *current == mine {
                        return false;
                    }
                    info!(
                        processes = live.len(),
                        owned = mine.len(),
                        of = clusters.len(),
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
    let _ = fleet::deregister(&mut con, &config.prefix, config.role, &config.id).await;
    owned_tx.send_replace(BTreeSet::new());
}

/// A cluster whose work stopped on its own (an error) is started again after this.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Runs `work(cluster, token)` for `cluster` while this process owns it (per `owned`), and
/// cancels `token` (then waits for the work to end, at most `grace`) when it stops owning it
/// or on `shutdown`. Work that ends on its own is logged and started again: one cluster's
/// failure never stops another's.
pub async fn lead_while_owned<W, F>(
    cluster: String,
    work: W,
    mut owned: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
    grace: Duration,
) where
    W: Fn(String, CancellationToken) -> F,
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    loop {
        let mine = owned.borrow_and_update().contains(&cluster);
        if mine && !shutdown.is_cancelled() {
            info!(%cluster, "leading");
            let token = shutdown.child_token();
            let mut running = tokio::spawn(work(cluster.clone(), token.clone()));
            let ended = loop {
                tokio::select! {
                    r = &mut running => break Some(r),
                    changed = owned.changed() => {
                        let still = changed.is_ok() && owned.borrow().contains(&cluster);
                        if !still || shutdown.is_cancelled() {
                            break None;
                        }
                    }
                    _ = shutdown.cancelled() => break None,
                }
            };
            match ended {
                Some(r) => {
                    let why = match r {
                        Ok(Ok(())) => "stopped".to_owned(),
                        Ok(Err(e)) => e,
                        Err(e) => e.to_string(),
                    };
                    warn!(%cluster, %why, "its work stopped; starting it again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RESTART_AFTER) => {}
                    }
                    continue;
                }
                None => {
                    info!(%cluster, "handing over");
                    token.cancel();
                    match tokio::time::timeout(grace, &mut running).await {
                        Ok(Ok(Err(e))) => warn!(%cluster, error = %e, "while stopping"),
                        Err(_) => {
                            running.abort();
                            warn!(%cluster, "did not stop within {grace:?}; aborted");
                        }
                        _ => {}
                    }
                }
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = owned.changed() => if changed.is_err() { return },
        }
    }
}

/// Serves every cluster of `config.clusters` this process owns until `shutdown`: the fleet
/// heartbeat plus one [`lead_while_owned`] per cluster. Used by `pantheon up --clusters` and
/// the service binaries with `clusters` set.
pub async fn serve<W, F>(
    redis: Redis,
    config: FleetConfig,
    work: W,
    shutdown: CancellationToken,
    grace: Duration,
) where
    W: Fn(String, CancellationToken) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (owned_tx, mut owned_rx) = watch::channel(BTreeSet::new());
    let fleet = tokio::spawn(run(redis, config, owned_tx, shutdown.clone()));
    // One supervisor per cluster ever owned (clusters found by a pattern appear later).
    let mut supervisors = std::collections::BTreeMap::new();
    loop {
        let owned: Vec<String> = owned_rx.borrow_and_update().iter().cloned().collect();
        for cluster in owned {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                supervisors.entry(cluster.clone())
            {
                slot.insert(tokio::spawn(lead_while_owned(
                    cluster,
                    work.clone(),
                    owned_rx.clone(),
                    shutdown.clone(),
                    grace,
                )));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = owned_rx.changed() => if changed.is_err() { break },
        }
    }
    for (_, s) in supervisors {
        let _ = s.await;
    }
    let _ = fleet.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize, p: &str) -> Vec<String> {
        (0..n).map(|i| format!("{p}{i}")).collect()
    }

    #[test]
    fn rediscovery_runs_every_five_heartbeats() {
        let c = FleetConfig::new("p", "up", "pantheon", vec![]).timed(Duration::from_secs(5));
        assert_eq!(c.ttl, Duration::from_secs(5));
        assert_eq!(c.every, Duration::from_secs(5) / 3);
        assert_eq!(c.rediscover, c.every * 5);
        let fast =
            FleetConfig::new("p", "up", "pantheon", vec![]).timed(Duration::from_millis(150));
        assert_eq!(fast.every, Duration::from_millis(100), "at least 100 ms");
        assert_eq!(fast.rediscover, Duration::from_millis(500));
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
