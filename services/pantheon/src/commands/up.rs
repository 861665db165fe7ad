//! `pantheon up`: the embedded default deployment. One projector (leader, or standby behind
//! another's lease) and one prober replica in this process, until SIGTERM or Ctrl-C; then both
//! stop gracefully (the prober finishes in-flight probes within its grace period and
//! deregisters; the projector finishes its batch and releases its lease), and a Redis started
//! for them is stopped last.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;
use crate::config::{Settings, mask_url};
use crate::connect::Cluster;
use crate::local_redis;

/// Extra time, beyond the prober's grace period, for both to stop after the signal.
const STOP_MARGIN: Duration = Duration::from_secs(5);

type Task = JoinHandle<anyhow::Result<()>>;

/// Starts the projector and a prober on `shutdown`; used by `up` and `demo`.
pub fn spawn_services(
    projector: pantheon_projector::ProjectorConfig,
    prober: pantheon_prober::ProberConfig,
    shutdown: &CancellationToken,
) -> (Task, Task) {
    let t = shutdown.clone();
    let p = tokio::spawn(async move {
        pantheon_projector::run(projector, t)
            .await
            .map_err(|e| anyhow::anyhow!("projector: {e}"))
    });
    let t = shutdown.clone();
    let q = tokio::spawn(async move {
        pantheon_prober::run(prober, t)
            .await
            .map_err(|e| anyhow::anyhow!("prober: {e}"))
    });
    (p, q)
}

fn joined(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match r {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("task failed: {e}")),
    }
}

/// Waits for both tasks; the first to end (on its own, or with an error) stops the other.
pub async fn supervise(
    mut projector: Task,
    mut prober: Task,
    shutdown: &CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let (first, other) = tokio::select! {
        r = &mut projector => (joined(r), prober),
        r = &mut prober => (joined(r), projector),
    };
    if !shutdown.is_cancelled() {
        // One of them stopped without being asked to: stop the other, report why.
        shutdown.cancel();
    }
    let second = match tokio::time::timeout(grace + STOP_MARGIN, other).await {
        Ok(r) => joined(r),
        Err(_) => Err(anyhow::anyhow!("did not stop within {grace:?}")),
    };
    first.and(second)
}

pub async fn run(args: UpArgs, settings: &Settings) -> anyhow::Result<()> {
    let projector = settings.projector_config()?;
    let prober = settings.prober_config()?;
    let local = local_redis::ensure(settings, !args.no_local_redis).await?;
    let outcome = serve(settings, projector, prober).await;
    if let Some(redis) = local {
        tracing::info!("stopping the local redis-server");
        redis.stop().await;
    }
    outcome
}

async fn serve(
    settings: &Settings,
    projector: pantheon_projector::ProjectorConfig,
    prober: pantheon_prober::ProberConfig,
) -> anyhow::Result<()> {
    // Fails fast on an unreachable Redis or a schema newer than this binary; the projector
    // applies pending migrations itself when it takes the lead.
    Cluster::connect(settings).await?;
    let shutdown = pantheon_service::shutdown_on_signals();
    let grace = prober.grace;
    eprintln!(
        "pantheon up: projector {:?} and prober {:?} for cluster {:?} on {}; Ctrl-C or SIGTERM stops them",
        projector.instance,
        prober.id,
        settings.cluster,
        mask_url(&settings.redis_url)
    );
    let (p, q) = spawn_services(projector, prober, &shutdown);
    let outcome = supervise(p, q, &shutdown, grace).await;
    if outcome.is_ok() {
        eprintln!("pantheon up: stopped");
    }
    outcome
}
