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
use crate::error::CliError;
use crate::local_redis;
use pantheon_store::acl::Role;

/// Extra time, beyond the prober's grace period, for both to stop after the signal.
pub(crate) const STOP_MARGIN: Duration = Duration::from_secs(5);

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
    let q = spawn_prober(prober, shutdown.clone());
    (p, q)
}

/// Runs the prober on a runtime of its own, in its own thread: its timing (the probe cadence,
/// and the timer lag that makes it suspect itself) must not depend on the projector's CPU work
/// in the same process, such as folding or snapshotting millions of keys.
fn spawn_prober(prober: pantheon_prober::ProberConfig, shutdown: CancellationToken) -> Task {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("pantheon-prober".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow::anyhow!("prober runtime: {e}"))
                .and_then(|runtime| {
                    runtime
                        .block_on(pantheon_prober::run(prober, shutdown))
                        .map_err(|e| anyhow::anyhow!("prober: {e}"))
                });
            let _ = tx.send(result);
        });
    tokio::spawn(async move {
        thread.map_err(|e| anyhow::anyhow!("prober thread: {e}"))?;
        rx.await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the prober thread ended without a result")))
    })
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
    // Shutdown has a deadline even while Redis hangs (a command in flight may otherwise wait
    // out its 30 s response timeout).
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace + STOP_MARGIN).await;
    };
    let (first, other) = tokio::select! {
        r = &mut projector => (joined(r), prober),
        r = &mut prober => (joined(r), projector),
        _ = deadline => {
            projector.abort();
            prober.abort();
            return Err(anyhow::anyhow!(
                "did not stop within {:?} of the signal (is Redis answering?); stopped anyway",
                grace + STOP_MARGIN
            ));
        }
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
    let mut settings = settings.clone();
    if !args.clusters.is_empty() {
        settings.clusters = args.clusters.clone();
    }
    let settings = &settings;
    let projector = settings.projector_config()?;
    let prober = settings.prober_config()?;
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
    let outcome = if settings.clusters.is_empty() {
        serve(settings, projector, prober).await
    } else {
        super::up_fleet::serve(settings).await
    };
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
    let shutdown = pantheon_service::shutdown_on_signals();
    // Up before Redis is: /healthz answers and /readyz says why it is not ready.
    if let Some(addr) = pantheon_service::start_http(settings, true, &shutdown)
        .await
        .map_err(crate::usage)?
    {
        eprintln!("pantheon up: HTTP endpoint on http://{addr}/ (/healthz /readyz /metrics)");
    }
    // Waits while nothing answers; fails fast on what waiting cannot fix (a password, TLS,
    // a schema newer than this binary). The projector applies pending migrations itself
    // when it takes the lead.
    if !wait_for_redis(settings, &shutdown).await {
        return Ok(());
    }
    let cluster = Cluster::connect(settings).await?;
    // A user without the service's permissions would retry NOPERM forever inside the
    // services: say which command and key is missing, once, and stop.
    let mut con = cluster.con.dedicated().await?;
    pantheon_store::acl::check(&mut con, Role::Service, &cluster.layout, cluster.con.user())
        .await
        .map_err(|e| CliError::failed(format!("cannot run the services: {e}")))?;
    drop(con);
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

/// Waits (with backoff) while no Redis answers; false if `shutdown` came first.
pub(crate) async fn wait_for_redis(settings: &Settings, shutdown: &CancellationToken) -> bool {
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
