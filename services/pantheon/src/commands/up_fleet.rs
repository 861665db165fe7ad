//! `pantheon up --clusters a,b,c`: one process serving many clusters, sharing their leading
//! with every other process given the same list (docs/adr/0010-many-clusters-one-fleet.md).
//!
//! A fleet task heartbeats and publishes which clusters this process owns (rendezvous over
//! the live processes, `pantheon_service::fleet`). Each cluster has a small supervisor that
//! runs the cluster's projector and prober while it is owned and stops them (gracefully:
//! the lease is released, the prober deregisters) when it is not. One cluster's projector
//! failing or lagging never touches another's: each has its own tasks and connections, only
//! the runtime and the HTTP endpoint are shared.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::up::{spawn_services, supervise};
use crate::config::{Settings, mask_url};
use crate::connect::Cluster;
use crate::error::CliError;
use pantheon_store::acl::Role;

/// A cluster whose services stopped on their own (an error) is started again after this.
const RESTART_AFTER: Duration = Duration::from_secs(1);

pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let clusters = settings.served_clusters()?;
    let shutdown = pantheon_service::shutdown_on_signals();
    if let Some(addr) = pantheon_service::start_http(settings, true, &shutdown)
        .await
        .map_err(crate::usage)?
    {
        eprintln!("pantheon up: HTTP endpoint on http://{addr}/ (/healthz /readyz /metrics)");
    }
    // Check every cluster's permissions once, up front: NOPERM is not retried.
    for name in &clusters {
        let one = settings_for(settings, name);
        let cluster = Cluster::connect(&one).await?;
        let mut con = cluster.con.dedicated().await?;
        pantheon_store::acl::check(&mut con, Role::Service, &cluster.layout, cluster.con.user())
            .await
            .map_err(|e| CliError::failed(format!("cannot run the services of {name:?}: {e}")))?;
    }
    let base = settings.projector_config()?;
    let me = base.instance.clone();
    let mut fleet_config =
        pantheon_service::fleet::FleetConfig::new(&me, &settings.prefix, clusters.clone());
    // A dead process's clusters are taken over when both its registration and its leases
    // have expired: give them the same lifetime, so failover takes about one lease TTL.
    fleet_config.ttl = base.lease_ttl;
    fleet_config.every = (base.lease_ttl / 3).max(Duration::from_millis(100));
    let redis = pantheon_store::Redis::new(settings.deployment()?, pantheon_store::fleet::TAG);
    let (owned_tx, owned_rx) = watch::channel(BTreeSet::new());
    let fleet = tokio::spawn(pantheon_service::fleet::run(
        redis,
        fleet_config,
        owned_tx,
        shutdown.clone(),
    ));
    eprintln!(
        "pantheon up: process {me:?} serving {} clusters on {}, sharing them with the other \
         processes given the same list; Ctrl-C or SIGTERM stops it",
        clusters.len(),
        mask_url(&settings.redis_url)
    );
    let mut supervisors = Vec::new();
    for name in clusters {
        let one = settings_for(settings, &name);
        let projector = one.projector_config()?;
        let mut prober = one.prober_config()?;
        prober.id.clone_from(&me);
        supervisors.push(tokio::spawn(lead_while_owned(
            name,
            projector,
            prober,
            owned_rx.clone(),
            shutdown.clone(),
        )));
    }
    shutdown.cancelled().await;
    for s in supervisors {
        let _ = s.await;
    }
    let _ = fleet.await;
    eprintln!("pantheon up: stopped");
    Ok(())
}

/// The settings of one cluster of the fleet.
fn settings_for(settings: &Settings, cluster: &str) -> Settings {
    let mut one = settings.clone();
    one.cluster = cluster.to_owned();
    one.clusters.clear();
    one
}

/// Runs `cluster`'s projector and prober while this process owns it.
async fn lead_while_owned(
    cluster: String,
    projector: pantheon_projector::ProjectorConfig,
    prober: pantheon_prober::ProberConfig,
    mut owned: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
) {
    let grace = prober.grace;
    loop {
        let mine = owned.borrow_and_update().contains(&cluster);
        if mine && !shutdown.is_cancelled() {
            info!(%cluster, "leading");
            let token = shutdown.child_token();
            let (p, q) = spawn_services(projector.clone(), prober.clone(), &token);
            let stop = token.clone();
            let mut running = tokio::spawn(async move { supervise(p, q, &stop, grace).await });
            let stopped_by_itself = loop {
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
            match stopped_by_itself {
                Some(r) => {
                    let why = match r {
                        Ok(Ok(())) => "stopped".to_owned(),
                        Ok(Err(e)) => format!("{e:#}"),
                        Err(e) => e.to_string(),
                    };
                    warn!(%cluster, %why, "services stopped; starting them again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RESTART_AFTER) => {}
                    }
                    continue;
                }
                None => {
                    info!(%cluster, "handing over");
                    token.cancel();
                    if let Ok(Err(e)) = running.await {
                        warn!(%cluster, error = %format!("{e:#}"), "stopping its services");
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
