//! What a process runs for one cluster, by its kind: the projector, a prober replica, or
//! both. With both, the prober runs on a runtime of its own, in its own thread: its timing
//! (the probe cadence, and the timer lag that makes it suspect itself) must not depend on
//! the projector's CPU work in the same process, such as folding or snapshotting millions of
//! keys.

use pantheon_config::{ConfigError, Settings};
use pantheon_prober::ProberConfig;
use pantheon_prober::http::HttpProber;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ProcessKind;

/// The running work of one cluster; each task ends with why it stopped.
pub type Tasks = JoinSet<Result<(), String>>;

/// Starts a process's work for one cluster at a time, with the cluster's settings.
#[derive(Debug, Clone)]
pub struct ClusterWork {
    kind: ProcessKind,
    /// In a fleet, the prober's id in every cluster: the process's id in the registry.
    prober_id: Option<String>,
    /// In a fleet, one set of HTTP clients (one connection pool) for every cluster's prober.
    prober_http: Option<HttpProber>,
}

impl ClusterWork {
    pub fn new(kind: ProcessKind) -> Self {
        Self {
            kind,
            prober_id: None,
            prober_http: None,
        }
    }

    /// Work for a fleet process `id`, whose probers share one set of HTTP clients made from
    /// `prober` (the settings common to every cluster).
    pub fn in_fleet(
        kind: ProcessKind,
        id: &str,
        prober: Option<&ProberConfig>,
    ) -> Result<Self, ConfigError> {
        let prober_http = match prober.filter(|_| kind.runs_prober()) {
            Some(p) => Some(HttpProber::new(p).map_err(ConfigError::new)?),
            None => None,
        };
        Ok(Self {
            kind,
            prober_id: Some(id.to_owned()),
            prober_http,
        })
    }

    pub fn kind(&self) -> ProcessKind {
        self.kind
    }

    /// Starts the work of the cluster `settings` name; it stops when `token` is cancelled.
    pub fn start(
        &self,
        settings: &Settings,
        token: &CancellationToken,
    ) -> Result<Tasks, ConfigError> {
        let mut tasks = Tasks::new();
        // Two tasks side by side say which of them failed.
        let both = self.kind.runs_projector() && self.kind.runs_prober();
        let why = move |what: &str, e: &dyn std::fmt::Display| {
            if both {
                format!("{what}: {e}")
            } else {
                e.to_string()
            }
        };
        if self.kind.runs_projector() {
            let config = settings.projector_config()?;
            let token = token.clone();
            tasks.spawn(async move {
                pantheon_projector::run(config, token)
                    .await
                    .map_err(|e| why("projector", &e))
            });
        }
        if self.kind.runs_prober() {
            let mut config = settings.prober_config()?;
            if let Some(id) = &self.prober_id {
                config.id.clone_from(id);
            }
            if let Some(http) = &self.prober_http {
                config.http = Some(http.clone());
            }
            let token = token.clone();
            if both {
                spawn_prober_thread(&mut tasks, config, token);
            } else {
                tasks.spawn(async move {
                    pantheon_prober::run(config, token)
                        .await
                        .map_err(|e| why("prober", &e))
                });
            }
        }
        Ok(tasks)
    }
}

/// Runs the prober on a current-thread runtime in a thread of its own; the task in `tasks`
/// ends with it.
fn spawn_prober_thread(tasks: &mut Tasks, config: ProberConfig, token: CancellationToken) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("pantheon-prober".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("prober runtime: {e}"))
                .and_then(|runtime| {
                    runtime
                        .block_on(pantheon_prober::run(config, token))
                        .map_err(|e| format!("prober: {e}"))
                });
            let _ = tx.send(result);
        });
    tasks.spawn(async move {
        thread.map_err(|e| format!("prober thread: {e}"))?;
        rx.await
            .unwrap_or_else(|_| Err("the prober thread ended without a result".to_owned()))
    });
}
