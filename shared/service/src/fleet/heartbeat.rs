//! The fleet heartbeat: registers this process, finds the clusters matching its patterns,
//! and publishes the ones it owns.

use std::collections::BTreeSet;

use pantheon_store::{Redis, fleet};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{FleetConfig, owned};

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
    let mut clusters = config.served.names.clone();
    let mut next_discovery = tokio::time::Instant::now();
    let role = config.kind.name();
    loop {
        if !config.served.patterns.is_empty() && tokio::time::Instant::now() >= next_discovery {
            next_discovery = tokio::time::Instant::now() + config.rediscover;
            match config.served.find(redis.deployment(), &config.prefix).await {
                Ok(all) => {
                    if all.len() != clusters.len() {
                        info!(clusters = all.len(), "clusters found by pattern");
                    }
                    clusters = all;
                }
                Err(e) => warn!(error = %e, "could not look for clusters; keeping the ones known"),
            }
        }
        match fleet::heartbeat(&mut con, &config.prefix, role, &config.id, config.ttl).await {
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
    let _ = fleet::deregister(&mut con, &config.prefix, role, &config.id).await;
    owned_tx.send_replace(BTreeSet::new());
}
