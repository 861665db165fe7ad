//! Leading the owned clusters: one supervisor per cluster runs its work while this process
//! owns it, hands it over when it does not, and restarts it a second after it fails.

use std::collections::BTreeSet;
use std::time::Duration;

use pantheon_store::Redis;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::FleetConfig;

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

/// Serves every cluster of `config.served` this process owns until `shutdown`: the fleet
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
    let fleet = tokio::spawn(super::heartbeat::run(
        redis,
        config,
        owned_tx,
        shutdown.clone(),
    ));
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
