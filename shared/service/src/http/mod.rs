//! The HTTP endpoint of `pantheon up` and the service binaries (off unless `[http] listen`
//! / `--listen` is set): `/healthz`, `/readyz`, `/metrics`, and a read-only live dashboard
//! at `/` with its JSON (`/api/status`, `/api/audit`, `/api/explain?key=K`) and server-sent
//! events (`/api/events`).
//!
//! It reads the cluster through the client library's queries ([`Pantheon::status`],
//! [`Pantheon::timeline`]); the connection is made on first use, so `/healthz` answers while
//! Redis is still down. A process serving a share of many clusters lists them at `/` and
//! `/api/clusters`; `?cluster=NAME` picks one for the pages and the JSON.

mod chart;
pub mod clock;
mod clusters;
mod dashboard;
mod explain;
mod live;
mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pantheon_client::Pantheon;
use pantheon_metrics::Role;
use pantheon_store::Deployment;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ProcessKind;
use crate::fleet::Served;

/// How long `/readyz` waits for Redis to answer a PING.
const READY_PING_TIMEOUT: Duration = Duration::from_millis(500);
/// Most open live-update streams (each holds one blocking Redis connection).
const MAX_LIVE_STREAMS: usize = 64;
/// Most clusters' clients kept at once: with a pattern such as `*` any name may be asked for.
const MAX_CLIENTS: usize = 256;

/// What the endpoint serves, and for which clusters.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub deployment: Deployment,
    /// The cluster shown (the `cluster` setting); `/readyz` and `/metrics` read it.
    pub cluster: String,
    pub prefix: String,
    /// Set when the process serves a share of many clusters: the dashboard lists these
    /// instead of showing `cluster`.
    pub fleet: Option<Served>,
    /// What the process runs: with a projector, `/readyz` also needs it leading or standing
    /// by.
    pub kind: ProcessKind,
}

/// Shared by the handlers.
#[derive(Debug)]
pub struct Shared {
    config: HttpConfig,
    /// Each cluster's client, connecting on first use (a std mutex: it is held only to find
    /// the cell, never across an await).
    clients: std::sync::Mutex<BTreeMap<String, Arc<OnceCell<Pantheon>>>>,
    live_streams: Arc<Semaphore>,
}

impl Shared {
    pub fn new(config: HttpConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            clients: std::sync::Mutex::new(BTreeMap::new()),
            live_streams: Arc::new(Semaphore::new(MAX_LIVE_STREAMS)),
        })
    }

    /// The client of the `cluster` setting, connecting on first use.
    async fn client(&self) -> Result<Pantheon, String> {
        self.client_of(&self.config.cluster).await
    }

    /// The client of `cluster`, connecting on first use.
    async fn client_of(&self, cluster: &str) -> Result<Pantheon, String> {
        let cell = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            if clients.len() >= MAX_CLIENTS && !clients.contains_key(cluster) {
                clients.clear();
            }
            clients.entry(cluster.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            Pantheon::builder("", cluster)
                .prefix(&self.config.prefix)
                .deployment(self.config.deployment.clone())
                .connect()
                .await
        })
        .await
        .cloned()
        .map_err(|e| e.to_string())
    }

    /// The client of the cluster a request asks for with `?cluster=NAME`: one this process
    /// serves. Without it, the `cluster` setting's, except in a fleet, which serves many.
    async fn client_for(&self, asked: Option<&str>) -> Result<Pantheon, Response> {
        let cluster = match (asked, &self.config.fleet) {
            (None, None) => &self.config.cluster,
            (None, Some(_)) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "this process serves many clusters: name one with ?cluster=NAME \
                     (/api/clusters lists them)\n",
                )
                    .into_response());
            }
            (Some(c), fleet) => {
                let served = match fleet {
                    Some(f) => f.includes(c),
                    None => c == self.config.cluster,
                };
                if !served {
                    return Err((
                        StatusCode::NOT_FOUND,
                        format!("cluster {c:?} is not served here\n"),
                    )
                        .into_response());
                }
                c
            }
        };
        self.client_of(cluster)
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response())
    }
}

/// The routes; build it without a socket to test it, or serve it with [`serve`].
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(dashboard::page))
        .route("/api/clusters", get(clusters::clusters_json))
        .route("/api/status", get(dashboard::status_json))
        .route("/api/audit", get(dashboard::audit_json))
        .route("/api/explain", get(explain::explain_json))
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
    if !shared.config.kind.runs_projector() {
        return Ok("redis reachable".to_owned());
    }
    match pantheon_metrics::process().role() {
        Role::Leading => Ok("redis reachable, projector leading".to_owned()),
        Role::Standby => Ok("redis reachable, projector standing by".to_owned()),
        Role::None => Err("the projector is not running".to_owned()),
    }
}
