//! The HTTP endpoint of `pantheon up` and the service binaries (off unless `[http] listen`
//! / `--listen` is set): `/healthz`, `/readyz`, `/metrics`, and a read-only live dashboard
//! at `/` with its JSON (`/api/status`, `/api/audit`) and server-sent events (`/api/events`).
//!
//! It reads the cluster through the client library's queries ([`Pantheon::status`],
//! [`Pantheon::timeline`]); the connection is made on first use, so `/healthz` answers while
//! Redis is still down.

mod dashboard;
mod live;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use pantheon_client::Pantheon;
use pantheon_metrics::Role;
use pantheon_store::Deployment;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long `/readyz` waits for Redis to answer a PING.
const READY_PING_TIMEOUT: Duration = Duration::from_millis(500);
/// Most open live-update streams (each holds one blocking Redis connection).
const MAX_LIVE_STREAMS: usize = 64;

/// What the endpoint serves, and for which cluster.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub deployment: Deployment,
    pub cluster: String,
    pub prefix: String,
    /// Whether this process runs a projector: then `/readyz` also needs it leading or
    /// standing by.
    pub projector: bool,
}

/// Shared by the handlers.
#[derive(Debug)]
pub struct Shared {
    config: HttpConfig,
    client: OnceCell<Pantheon>,
    live_streams: Arc<Semaphore>,
}

impl Shared {
    pub fn new(config: HttpConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            client: OnceCell::new(),
            live_streams: Arc::new(Semaphore::new(MAX_LIVE_STREAMS)),
        })
    }

    /// The client, connecting on first use.
    async fn client(&self) -> Result<&Pantheon, String> {
        self.client
            .get_or_try_init(|| async {
                Pantheon::builder("", &self.config.cluster)
                    .prefix(&self.config.prefix)
                    .deployment(self.config.deployment.clone())
                    .connect()
                    .await
            })
            .await
            .map_err(|e| e.to_string())
    }
}

/// The routes; build it without a socket to test it, or serve it with [`serve`].
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(dashboard::page))
        .route("/api/status", get(dashboard::status_json))
        .route("/api/audit", get(dashboard::audit_json))
        .route("/api/events", get(live::events))
        .with_state(shared)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds `addr` and serves in the background; returns the bound address (port 0 picks one).
pub async fn spawn(
    addr: SocketAddr,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "HTTP endpoint: /healthz /readyz /metrics and the dashboard at /");
    let task = tokio::spawn(serve(listener, Shared::new(config), shutdown));
    Ok((bound, task))
}

/// 200 while the process runs.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when Redis answers, takes this process's credentials, and the projector (if this
/// process runs one) leads or stands by; else 503 with the reason.
async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match ready(&shared).await {
        Ok(what) => (StatusCode::OK, format!("ready: {what}\n")),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn ready(shared: &Shared) -> Result<String, String> {
    // The services' own connections know first when the user was deleted or its password
    // changed (a connection of ours that stays authenticated would still answer PING).
    if let Some(why) = pantheon_store::credentials::refusal(&shared.config.deployment.url) {
        return Err(why);
    }
    let client = shared
        .client()
        .await
        .map_err(|e| format!("redis unreachable: {e}"))?;
    client
        .redis()
        .ping(READY_PING_TIMEOUT)
        .await
        .map_err(|e| format!("redis unreachable: {e}"))?;
    if let Some((owned, processes)) = pantheon_metrics::process().fleet() {
        // Serving a share of many clusters: owning none is standing by, not a failure.
        return Ok(format!(
            "redis reachable, running {owned} clusters, {processes} processes share them"
        ));
    }
    if !shared.config.projector {
        return Ok("redis reachable".to_owned());
    }
    match pantheon_metrics::process().role() {
        Role::Leading => Ok("redis reachable, projector leading".to_owned()),
        Role::Standby => Ok("redis reachable, projector standing by".to_owned()),
        Role::None => Err("the projector is not running".to_owned()),
    }
}
