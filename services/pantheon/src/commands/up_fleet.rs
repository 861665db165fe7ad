//! `pantheon up --clusters a,b,c`: one process serving many clusters, sharing their leading
//! with every other process given the same list (docs/adr/0010-many-clusters-one-fleet.md).
//!
//! A fleet task heartbeats and publishes which clusters this process owns (rendezvous over
//! the live processes, `pantheon_service::fleet`). Each cluster has a small supervisor that
//! runs the cluster's projector and prober while it is owned and stops them (gracefully:
//! the lease is released, the prober deregisters) when it is not. One cluster's projector
//! failing or lagging never touches another's: each has its own tasks and connections, only
//! the runtime and the HTTP endpoint are shared.

use tokio_util::sync::CancellationToken;

use super::up::{STOP_MARGIN, spawn_services, supervise};
use crate::config::{Settings, mask_url};
use crate::connect::Cluster;
use crate::error::CliError;
use pantheon_store::acl::Role;

pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let clusters = settings.served_clusters()?;
    let shutdown = pantheon_service::shutdown_on_signals();
    if let Some(addr) = pantheon_service::start_http(settings, true, &shutdown)
        .await
        .map_err(crate::usage)?
    {
        eprintln!("pantheon up: HTTP endpoint on http://{addr}/ (/healthz /readyz /metrics)");
    }
    // Waits while nothing answers (as a single-cluster `up` does).
    if !super::up::wait_for_redis(settings, &shutdown).await {
        return Ok(());
    }
    // Check every cluster's permissions once, up front: NOPERM is not retried.
    for name in &clusters {
        let one = settings.for_cluster(name);
        let cluster = Cluster::connect(&one).await?;
        let mut con = cluster.con.dedicated().await?;
        pantheon_store::acl::check(&mut con, Role::Service, &cluster.layout, cluster.con.user())
            .await
            .map_err(|e| CliError::failed(format!("cannot run the services of {name:?}: {e}")))?;
    }
    let base = settings.projector_config()?;
    let me = base.instance.clone();
    // A dead process's clusters are taken over when both its registration and its leases
    // have expired: give them the same lifetime, so failover takes about one lease TTL.
    let mut fleet_config =
        pantheon_service::fleet::FleetConfig::new(&me, "up", &settings.prefix, clusters.clone())
            .timed(base.lease_ttl);
    fleet_config.patterns = settings.cluster_patterns()?;
    let redis = pantheon_store::Redis::new(settings.deployment()?, pantheon_store::fleet::TAG);
    eprintln!(
        "pantheon up: process {me:?} serving {} clusters{} on {}, sharing them with the other \
         processes given the same list; Ctrl-C or SIGTERM stops it",
        clusters.len(),
        if fleet_config.patterns.is_empty() {
            String::new()
        } else {
            format!(" and those matching {}", fleet_config.patterns.join(", "))
        },
        mask_url(&settings.redis_url)
    );
    // Each cluster's settings are made when it is first led (clusters found by a pattern
    // appear later); the shared ones were checked above with the first cluster's.
    let prober_base = settings.prober_config()?;
    let grace = prober_base.grace + STOP_MARGIN;
    // One set of HTTP clients (one connection pool) for every cluster's prober.
    let http = pantheon_prober::http::HttpProber::new(&prober_base).map_err(CliError::usage)?;
    let base = std::sync::Arc::new(settings.clone());
    let work = move |cluster: String, token: CancellationToken| {
        let (base, me, http) = (base.clone(), me.clone(), http.clone());
        async move {
            let one = base.for_cluster(&cluster);
            let projector = one.projector_config().map_err(|e| e.to_string())?;
            let mut prober = one.prober_config().map_err(|e| e.to_string())?;
            prober.id.clone_from(&me);
            prober.http = Some(http);
            let grace = prober.grace;
            let (p, q) = spawn_services(projector, prober, &token);
            supervise(p, q, &token, grace)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    };
    pantheon_service::fleet::serve(redis, fleet_config, work, shutdown, grace).await;
    eprintln!("pantheon up: stopped");
    Ok(())
}
