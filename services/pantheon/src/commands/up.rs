//! `pantheon up`: the embedded default deployment. One projector (leader, or standby behind
//! another's lease) and one prober replica in this process, until SIGTERM or Ctrl-C; then both
//! stop gracefully (the prober finishes in-flight probes within its grace period and
//! deregisters; the projector finishes its batch and releases its lease), and a Redis started
//! for them is stopped last.
//!
//! `pantheon up --clusters a,b,c` serves many clusters, sharing their leading with every
//! other process given the same list (docs/adr/0010-many-clusters-one-fleet.md): each cluster
//! it owns gets its own projector and prober, stopped when another process takes it over.
//! One cluster's projector failing or lagging never touches another's; only the runtime and
//! the HTTP endpoint are shared. Both modes run through [`pantheon_service::Service`], like
//! the `pantheon-projector` and `pantheon-prober` binaries.

use pantheon_service::{ProcessKind, Service};
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;
use crate::config::{Settings, mask_url};
use crate::connect::Cluster;
use crate::error::CliError;
use crate::local_redis;
use pantheon_store::acl::Role;

pub async fn run(args: UpArgs, settings: &Settings) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    if !args.clusters.is_empty() {
        settings.clusters = args.clusters.clone();
    }
    let settings = &settings;
    let service = Service::new(ProcessKind::Up, settings)?;
    let local = match local_redis::ensure(settings, !args.no_local_redis).await {
        Ok(local) => local,
        // Nothing answers and none can be started here: a service waits for its Redis (an
        // orchestrator may start them in any order) rather than exiting.
        Err(e) if is_unreachable(settings).await => {
            eprintln!("pantheon up: {e:#}; waiting for it (Ctrl-C stops)");
            None
        }
        Err(e) => return Err(e),
    };
    let outcome = serve(settings, service).await;
    if let Some(redis) = local {
        tracing::info!("stopping the local redis-server");
        redis.stop().await;
    }
    outcome
}

async fn serve(settings: &Settings, service: Service) -> anyhow::Result<()> {
    let shutdown = pantheon_service::shutdown_on_signals();
    // Up before Redis is: /healthz answers and /readyz says why it is not ready.
    if let Some(addr) = service.start_http(&shutdown).await.map_err(crate::usage)? {
        eprintln!("pantheon up: HTTP endpoint on http://{addr}/ (/healthz /readyz /metrics)");
    }
    // Waits while nothing answers; fails fast on what waiting cannot fix (a password, TLS,
    // a schema newer than this binary). The projector applies pending migrations itself
    // when it takes the lead.
    if !wait_for_redis(settings, &shutdown).await {
        return Ok(());
    }
    check_permissions(settings, &service).await?;
    announce(settings, &service)?;
    service.run(shutdown).await.map_err(anyhow::Error::msg)?;
    eprintln!("pantheon up: stopped");
    Ok(())
}

/// A user without the service's permissions would retry NOPERM forever inside the services:
/// say which command and key is missing, once, and stop. Checked for every cluster named
/// (those found by a pattern later show a NOPERM in the log and are retried).
async fn check_permissions(settings: &Settings, service: &Service) -> anyhow::Result<()> {
    for name in service.named_clusters() {
        let cluster = Cluster::connect(&settings.for_cluster(&name)).await?;
        cluster
            .client
            .admin()
            .check_permissions(Role::Service)
            .await
            .map_err(|e| {
                let what = match service.fleet() {
                    Some(_) => format!("the services of {name:?}"),
                    None => "the services".to_owned(),
                };
                CliError::failed(format!("cannot run {what}: {e}"))
            })?;
    }
    Ok(())
}

/// One line on stderr: what this process runs, where, and how to stop it.
fn announce(settings: &Settings, service: &Service) -> anyhow::Result<()> {
    let url = mask_url(&settings.redis_url);
    match service.fleet() {
        None => eprintln!(
            "pantheon up: projector {:?} and prober {:?} for cluster {:?} on {url}; Ctrl-C or SIGTERM stops them",
            settings.projector_config()?.instance,
            settings.prober_config()?.id,
            settings.cluster,
        ),
        Some(fleet) => eprintln!(
            "pantheon up: process {:?} serving {} clusters{} on {url}, sharing them with the other \
             processes given the same list; Ctrl-C or SIGTERM stops it",
            fleet.id,
            fleet.served.names.len(),
            if fleet.served.patterns.is_empty() {
                String::new()
            } else {
                format!(" and those matching {}", fleet.served.patterns.join(", "))
            },
        ),
    }
    Ok(())
}

/// Waits (with backoff) while no Redis answers; false if `shutdown` came first.
async fn wait_for_redis(settings: &Settings, shutdown: &CancellationToken) -> bool {
    let mut failures = 0;
    while is_unreachable(settings).await {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(pantheon_store::handle::backoff(failures)) => {}
        }
        failures += 1;
    }
    true
}

/// True when no Redis answers at the configured URL (as opposed to one answering badly).
async fn is_unreachable(settings: &Settings) -> bool {
    matches!(
        crate::connect::ping(settings, settings.connect_timeout()).await,
        Err(crate::connect::PingError::Unreachable(_))
    )
}
