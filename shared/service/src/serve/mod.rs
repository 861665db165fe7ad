//! The one path every Pantheon process serves by: `pantheon up`, `pantheon-projector` and
//! `pantheon-prober`, for one cluster or, with `clusters` set, for their share of many
//! ([`crate::fleet`]).
//!
//! - [`cluster`]: what a process runs for one cluster, by its [`ProcessKind`];
//! - [`supervise`]: the supervisor of those tasks, with a stop deadline.

pub mod cluster;
pub mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pantheon_config::{ConfigError, Settings};
use pantheon_store::Deployment;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use cluster::{ClusterWork, Tasks};
pub use supervise::supervise;

use crate::ProcessKind;
use crate::fleet::{self, FleetConfig, Served};
use crate::http::{self, HttpConfig};

/// How long a process may take to stop after SIGTERM/SIGINT (longer if the prober's grace
/// period needs it: [`Service::stop_deadline`]).
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Extra time, beyond the prober's grace period, to stop after the signal.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// A process of one kind with checked settings, ready to serve.
#[derive(Debug)]
pub struct Service {
    settings: Settings,
    deployment: Deployment,
    work: ClusterWork,
    /// Set when the process serves a share of many clusters.
    fleet: Option<FleetConfig>,
    stop_deadline: Duration,
}

impl Service {
    /// Checks `settings` for a process of `kind`: every error here is a configuration error
    /// (the binaries exit 64). With `clusters` set, the per-cluster settings are checked with
    /// the first cluster named; each cluster's are made again when it is first led (clusters
    /// found by a pattern appear later).
    pub fn new(kind: ProcessKind, settings: &Settings) -> Result<Self, ConfigError> {
        let deployment = settings.deployment()?;
        let projector = kind
            .runs_projector()
            .then(|| settings.projector_config())
            .transpose()?;
        let prober = kind
            .runs_prober()
            .then(|| settings.prober_config())
            .transpose()?;
        // Both stop within the prober's grace period (it finishes in-flight probes).
        let stop_deadline = match &prober {
            Some(p) => STOP_DEADLINE.max(p.grace + STOP_MARGIN),
            None => STOP_DEADLINE,
        };
        let one = |work| Self {
            settings: settings.clone(),
            deployment: deployment.clone(),
            work,
            fleet: None,
            stop_deadline,
        };
        if settings.clusters.is_empty() {
            return Ok(one(ClusterWork::new(kind)));
        }
        let served = Served {
            names: settings.served_clusters()?,
            patterns: settings.cluster_patterns()?,
        };
        if let Some(first) = served.names.first() {
            let first = settings.for_cluster(first);
            if kind.runs_projector() {
                first.projector_config()?;
            }
            if kind.runs_prober() {
                first.prober_config()?;
            }
        }
        // A process that leads registers as its projector instance for one lease TTL: a dead
        // process's registration and leases expire together, so failover takes about one TTL.
        let (id, ttl) = match (&projector, &prober) {
            (Some(p), _) => (p.instance.clone(), p.lease_ttl),
            (None, Some(p)) => (p.id.clone(), p.registration_ttl),
            (None, None) => return Err(ConfigError::new("a process runs a projector or a prober")),
        };
        let work = ClusterWork::in_fleet(kind, &id, prober.as_ref())?;
        let fleet = FleetConfig::new(id, kind, &settings.prefix, served).timed(ttl);
        Ok(Self {
            fleet: Some(fleet),
            ..one(work)
        })
    }

    pub fn kind(&self) -> ProcessKind {
        self.work.kind()
    }

    /// Set when this process serves a share of many clusters.
    pub fn fleet(&self) -> Option<&FleetConfig> {
        self.fleet.as_ref()
    }

    /// The clusters named in the settings (the one `cluster` outside a fleet); a fleet's
    /// patterns may add more later.
    pub fn named_clusters(&self) -> Vec<String> {
        match &self.fleet {
            Some(f) => f.served.names.clone(),
            None => vec![self.settings.cluster.clone()],
        }
    }

    /// How long stopping may take after the signal before the process gives up waiting.
    pub fn stop_deadline(&self) -> Duration {
        self.stop_deadline
    }

    /// Starts the HTTP endpoint if `[http] listen` is set, until `shutdown`; returns the bound
    /// address. In a fleet the dashboard lists the clusters served.
    pub async fn start_http(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<SocketAddr>, String> {
        let Some(addr) = self.settings.http_listen().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let config = HttpConfig {
            deployment: self.deployment.clone(),
            cluster: self.settings.cluster.clone(),
            prefix: self.settings.prefix.clone(),
            fleet: self.fleet.as_ref().map(|f| f.served.clone()),
            kind: self.kind(),
        };
        let (bound, _task) = http::spawn(addr, config, shutdown.clone())
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        Ok(Some(bound))
    }

    /// Serves until `shutdown` (or until the work of the one cluster stops on its own, which
    /// cancels `shutdown`): the cluster's work under [`supervise`], or in a fleet each owned
    /// cluster's. In a fleet one cluster's failure is logged and its work started again.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let deadline = self.stop_deadline;
        let Some(fleet) = self.fleet else {
            let tasks = self
                .work
                .start(&self.settings, &shutdown)
                .map_err(|e| e.to_string())?;
            return supervise(tasks, &shutdown, deadline).await;
        };
        info!(
            id = fleet.id,
            role = fleet.kind.name(),
            "serving a share of the clusters"
        );
        let redis = pantheon_store::Redis::new(self.deployment, pantheon_store::fleet::TAG);
        let (base, work) = (Arc::new(self.settings), self.work);
        let lead = move |cluster: String, token: CancellationToken| {
            let (base, work) = (base.clone(), work.clone());
            async move {
                let tasks = work
                    .start(&base.for_cluster(&cluster), &token)
                    .map_err(|e| e.to_string())?;
                supervise(tasks, &token, deadline).await
            }
        };
        fleet::serve(redis, fleet, lead, shutdown, deadline).await;
        Ok(())
    }
}
