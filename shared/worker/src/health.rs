//! The health endpoint the prober calls: `GET /health` answers 200 while the process runs.
//! Served by the library, or by the application itself (then the library serves nothing).

use std::net::SocketAddr;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::WorkerError;

/// Who answers the prober's health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The library listens on `listen` and answers `GET /health` with 200. The node joins
    /// with `http://<advertise or the bound address>/health`; set `advertise` (scheme, host
    /// and port, e.g. `http://10.0.0.5:8080`) when the prober must use another address
    /// than the one bound (`0.0.0.0`, a container's port mapping).
    Serve {
        listen: SocketAddr,
        advertise: Option<String>,
    },
    /// The application answers health itself at this full URL; the library serves nothing.
    External { url: String },
}

impl Health {
    /// Serve `GET /health` on `listen`, advertising the bound address.
    pub fn serve(listen: SocketAddr) -> Self {
        Health::Serve {
            listen,
            advertise: None,
        }
    }

    /// The application answers health at `url`.
    pub fn external(url: &str) -> Self {
        Health::External {
            url: url.to_owned(),
        }
    }
}

/// The running endpoint (if the library serves one) and the URL the node joins with.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) task: Option<JoinHandle<()>>,
}

/// Starts the endpoint for `health`; it stops when `stop` turns true.
pub(crate) async fn start(
    health: &Health,
    meter: Option<crate::LoadMeter>,
    stop: watch::Receiver<bool>,
) -> Result<Endpoint, WorkerError> {
    let (listen, advertise) = match health {
        Health::External { url } => {
            return Ok(Endpoint {
                url: url.clone(),
                task: None,
            });
        }
        Health::Serve { listen, advertise } => (*listen, advertise),
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| WorkerError::Health {
            addr: listen,
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WorkerError::Health {
            addr: listen,
            source,
        })?;
    let base = advertise
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let app = Router::new().route(
        "/health",
        get(move || {
            let load = meter.as_ref().map(crate::LoadMeter::header_value);
            async move {
                match load {
                    Some(load) => ([(crate::load::HEADER, load)], "ok").into_response(),
                    None => "ok".into_response(),
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let mut stop = stop;
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the health endpoint stopped");
        }
    });
    Ok(Endpoint {
        url: format!("{}/health", base.trim_end_matches('/')),
        task: Some(task),
    })
}
